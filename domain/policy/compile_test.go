package policy

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	b, err := os.ReadFile("testdata/humidity_sensor.policy.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	want := &Policy{
		ID:           "policy-humidity-1",
		Description:  "Smooth humidity, alert when too humid, batch messages for 5 s",
		Enabled:      true,
		LastModified: time.UnixMilli(1764201600000).UTC(),
		Pipelines: []Pipeline{{
			Attribute: "humidity",
			Functions: []Function{
				{ID: "filterCondition", Parameters: map[string]any{"condition": "$(humidity) < 0 || $(humidity) > 100"}},
				{ID: "mean", Parameters: map[string]any{"window": 10000.0, "slide": 5000.0}},
				{ID: "alertCondition", Parameters: map[string]any{
					"condition": "$(humidity) > $(maxThreshold)",
					"alert": map[string]any{
						"urn":      "urn:com:oracle:iot:device:humidity_sensor:too_humid",
						"fields":   map[string]any{"humidity": "$(humidity)"},
						"severity": "SIGNIFICANT",
					},
					"filter": false,
				}},
			},
		}, {
			Attribute: "maxThreshold",
			Functions: []Function{{ID: "eliminateDuplicates", Parameters: map[string]any{"window": 60000.0}}},
		}, {
			Attribute: "*",
			Functions: []Function{{ID: "batchByTime", Parameters: map[string]any{"delayLimit": 5000.0}}},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse:\n got  %#v\n want %#v", got, want)
	}
}

func TestParseDefaults(t *testing.T) {
	got, err := Parse([]byte(`{"id": "x", "description": null, "pipelines": [{"attributeName": "a", "pipeline": [{"id": "mean"}]}], "extra": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Policy{ID: "x", Enabled: true, Pipelines: []Pipeline{{Attribute: "a", Functions: []Function{{ID: "mean", Parameters: map[string]any{}}}}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse:\n got  %#v\n want %#v", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"empty", ``, []string{"empty input: want a JSON object"}},
		{"truncated", `{"id": "x"`, []string{"invalid JSON: unexpected end of input"}},
		{"syntax", "{\n  \"id\": x}", []string{"invalid JSON at line 2, column 9: invalid character 'x' looking for beginning of value"}},
		{"trailing", `{"id": "x", "pipelines": []} {}`, []string{"invalid JSON at line 1, column 31: unexpected data after the policy object"}},
		{"not an object", `[1]`, []string{"want a JSON object, got array"}},
		{"missing", `{}`, []string{"id: missing; want a string", "pipelines: missing; want an array"}},
		{"kinds", `{"id": 1, "description": [], "enabled": "yes", "lastModified": "now", "pipelines": {}}`, []string{
			"id: want a string, got number",
			"description: want a string, got array",
			"enabled: want a boolean, got string",
			"lastModified: want a number (epoch milliseconds), got string",
			"pipelines: want an array, got object",
		}},
		{"lastModified fraction", `{"id": "x", "lastModified": 1.5, "pipelines": []}`, []string{"lastModified: 1.5 is not a time; expected whole epoch milliseconds"}},
		{"pipelines", `{"id": "x", "pipelines": [1, {"attributeName": ""}, {"attributeName": 2, "pipeline": [3, {"id": "meen", "parameters": []}, {}]}]}`, []string{
			"pipelines[0]: want an object {attributeName, pipeline}, got number",
			"pipelines[1].attributeName: is empty; expected an attribute name or \"*\"",
			"pipelines[1].pipeline: missing; want an array",
			"pipelines[2].attributeName: want a string, got number",
			"pipelines[2].pipeline[0]: want an object {id, parameters}, got number",
			"pipelines[2].pipeline[1]: function \"meen\" is unknown; expected one of actionCondition, alertCondition, batchByCost, batchBySize, batchByTime, computedMetric, detectDuplicates, eliminateDuplicates, filterCondition, max, mean, min, sampleQuality, standardDeviation",
			"pipelines[2].pipeline[1].parameters: want an object, got array",
			"pipelines[2].pipeline[2].id: missing; want a string",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.src))
			if err == nil {
				t.Fatalf("Parse = %+v, want an error", p)
			}
			if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, tc.want) {
				t.Errorf("Parse error:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	m := testModel(t)
	alert := func(params string) string {
		return `{"attributeName": "temp", "pipeline": [{"id": "alertCondition", "parameters": {"condition": "$(temp) > 1", ` + params + `}}]}`
	}
	action := func(params string) string {
		return `{"attributeName": "temp", "pipeline": [{"id": "actionCondition", "parameters": {"condition": "$(temp) > 1", ` + params + `}}]}`
	}
	fn := func(attr, id, params string) string {
		return `{"attributeName": "` + attr + `", "pipeline": [{"id": "` + id + `", "parameters": ` + params + `}]}`
	}
	const p0 = "pipelines[0].pipeline[0]"
	for _, tc := range []struct {
		name      string
		pipelines string
		opts      Options
		want      []string
	}{
		{"negative window", fn("temp", "mean", `{"window": -5}`),
			Options{}, []string{p0 + ".parameters.window: -5 is not a duration; expected milliseconds > 0"}},
		{"window kinds", fn("temp", "mean", `{"window": "5s", "slide": 2.5}`), Options{}, []string{
			p0 + `.parameters.window: "5s" is not a duration; expected milliseconds > 0`,
			p0 + ".parameters.slide: 2.5 is not a duration; expected whole milliseconds > 0",
		}},
		{"window missing and too long", `{"attributeName": "temp", "pipeline": [{"id": "max"}, {"id": "eliminateDuplicates", "parameters": {"window": 1e15}}]}`, Options{}, []string{
			p0 + ".parameters.window: missing; expected milliseconds > 0",
			"pipelines[0].pipeline[1].parameters.window: 1000000000000000 is too long; expected at most 315360000000 milliseconds (10 years)",
		}},
		{"slide too small", fn("temp", "min", `{"window": 100000, "slide": 1}`),
			Options{}, []string{p0 + ".parameters.slide: 1 is too small for a window of 100000; expected at least window/10000"}},
		{"window on a STRING", fn("label", "standardDeviation", `{"window": 1000}`),
			Options{}, []string{p0 + `: standardDeviation needs a NUMBER or INTEGER attribute; "label" is STRING`}},
		{"unknown attribute", fn("nope", "mean", `{"window": 1}`),
			Options{}, []string{`pipelines[0].attributeName: "nope" is not an attribute of device model "urn:test:policy"`}},
		{"two pipelines for one attribute", fn("count", "mean", `{"window": 1}`) + "," + fn("n", "max", `{"window": 1}`) + "," +
			`{"attributeName": "*", "pipeline": []}, {"attributeName": "*", "pipeline": []}`, Options{}, []string{
			`pipelines[1].attributeName: attribute "count" already has a pipeline at pipelines[0]`,
			`pipelines[3].attributeName: "*" already has a pipeline at pipelines[2]`,
		}},
		{"formulas", `{"attributeName": "temp", "pipeline": [
			{"id": "filterCondition", "parameters": {"condition": "$(temp) >"}},
			{"id": "filterCondition", "parameters": {"condition": "$(nope) > 1"}},
			{"id": "filterCondition", "parameters": {"condition": 5}},
			{"id": "computedMetric", "parameters": {}}]}`, Options{}, []string{
			p0 + `.parameters.condition: formula "$(temp) >": at 9: expected an operand`,
			`pipelines[0].pipeline[1].parameters.condition: formula "$(nope) > 1": $(nope) is not an attribute of device model "urn:test:policy"`,
			"pipelines[0].pipeline[2].parameters.condition: want a formula (string), got number",
			"pipelines[0].pipeline[3].parameters.formula: missing; expected a formula",
		}},
		{"sampleQuality", `{"attributeName": "temp", "pipeline": [{"id": "sampleQuality", "parameters": {"rate": -2}}, {"id": "sampleQuality", "parameters": {"rate": "some"}}, {"id": "sampleQuality"}]}`, Options{}, []string{
			p0 + `.parameters.rate: -2 is not a rate; expected a whole number >= -1, "all", "random" or "none"`,
			`pipelines[0].pipeline[1].parameters.rate: "some" is not a rate; expected a whole number >= -1, "all", "random" or "none"`,
			`pipelines[0].pipeline[2].parameters.rate: missing; expected a whole number >= -1, "all", "random" or "none"`,
		}},
		{"alert object", alert(`"filter": "no", "alert": {"urn": "urn:test:policy:report", "severity": "HIGH"}`), Options{}, []string{
			p0 + ".parameters.filter: want a boolean, got string",
			p0 + `.parameters.alert.urn: format "urn:test:policy:report" is DATA; expected an ALERT format`,
			p0 + `.parameters.alert.severity: "HIGH" is not a severity; expected LOW, NORMAL, SIGNIFICANT or CRITICAL`,
		}},
		{"alert missing", alert(`"filter": true`), Options{}, []string{p0 + ".parameters.alert: missing; expected {urn, fields, severity}"}},
		{"alert format unknown", alert(`"alert": {"urn": "urn:x"}`), Options{}, []string{
			p0 + `.parameters.alert.urn: "urn:x" is not a format of device model "urn:test:policy"`}},
		{"alert fields", alert(`"alert": {"urn": "urn:test:policy:hot", "fields": {"x": 1, "note": 5}}`), Options{}, []string{
			p0 + `.parameters.alert.fields.x: alert format "urn:test:policy:hot" has no field "x"`,
			p0 + `.parameters.alert.fields: the required field "temp" of alert format "urn:test:policy:hot" is missing`,
			p0 + `.parameters.alert.fields.note: field "note": want STRING, got 5`,
		}},
		{"alert field formula", alert(`"alert": {"urn": "urn:test:policy:hot", "fields": {"temp": "hot"}}`), Options{}, []string{
			p0 + `.parameters.alert.fields.temp: formula "hot": at 0: unexpected name "hot"; an attribute is written $(hot)`}},
		{"action arguments", action(`"action": {"name": "reset", "arguments": ["x", 2, 3]}`), Options{}, []string{
			p0 + `.parameters.action.arguments: 3 arguments; action "reset" takes 2`,
			p0 + `.parameters.action.arguments[0]: formula "x": at 0: unexpected name "x"; an attribute is written $(x)`,
			p0 + `.parameters.action.arguments[1]: argument "reason": want STRING, got 2`,
		}},
		{"action unknown", action(`"action": {"name": "fly"}`), Options{}, []string{
			p0 + `.parameters.action.name: "fly" is not an action of device model "urn:test:policy"`}},
		{"action argument without default", action(`"action": {"name": "reset"}`), Options{}, []string{
			p0 + `.parameters.action.arguments[0]: missing; argument "delay" of action "reset" has no default`}},
		{"detectDuplicates format", fn("count", "detectDuplicates", `{"window": 1, "alertFormatURN": "urn:test:policy:hot"}`), Options{}, []string{
			p0 + `.parameters.alertFormatURN: alert format "urn:test:policy:hot" has the required field "temp", which detectDuplicates cannot fill (it fills only a field named "count")`}},
		{"batching in the wrong place", fn("temp", "batchByTime", `{"delayLimit": 1}`) + "," + fn("*", "mean", `{"window": 1}`), Options{}, []string{
			p0 + `: batchByTime batches whole messages: it belongs in the "*" pipeline`,
			`pipelines[1].pipeline[0]: function "mean" cannot run on "*"; expected batchByTime, batchBySize or batchByCost`,
		}},
		{"batch parameters", `{"attributeName": "*", "pipeline": [
			{"id": "batchBySize", "parameters": {"batchSize": 0}},
			{"id": "batchByCost", "parameters": {"networkCost": "WIFI"}},
			{"id": "batchByCost"},
			{"id": "batchByTime", "parameters": {"delayLimit": 1, "alertSeverity": "URGENT"}}]}`, Options{}, []string{
			"pipelines[0].pipeline[0].parameters.batchSize: 0 is not a count; expected a whole number >= 1",
			`pipelines[0].pipeline[1].parameters.networkCost: "WIFI" is not a network cost; expected ETHERNET, CELLULAR or SATELLITE`,
			"pipelines[0].pipeline[2].parameters.networkCost: missing; expected ETHERNET, CELLULAR or SATELLITE",
			`pipelines[0].pipeline[3].parameters.alertSeverity: "URGENT" is not a severity; expected LOW, NORMAL, SIGNIFICANT or CRITICAL`,
		}},
		{"options", ``, Options{NetworkCost: "carrier pigeon"}, []string{
			`options.NetworkCost: "carrier pigeon" is not a network cost; expected ETHERNET, CELLULAR or SATELLITE`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(policyJSON(tc.pipelines)))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			e, err := Compile(p, m, tc.opts)
			if err == nil {
				t.Fatalf("Compile = %+v, want an error", e)
			}
			if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, tc.want) {
				t.Errorf("Compile error:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}
