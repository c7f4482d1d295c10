package model_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/domain/model"
)

// sharedModels is where the example device models of the repository live.
const sharedModels = "../../testdata/devicemodels"

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseFile(t testing.TB, path string) *model.DeviceModel {
	t.Helper()
	m, err := model.Parse(readFile(t, path))
	if err != nil {
		t.Fatalf("Parse(%s): %v", path, err)
	}
	return m
}

func mustNumber(t testing.TB, f float64) model.Value {
	t.Helper()
	v, err := model.Number(f)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustString(t testing.TB, s string) model.Value {
	t.Helper()
	v, err := model.String(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustURI(t testing.TB, s string) model.Value {
	t.Helper()
	v, err := model.URI(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// wantErr checks that err has exactly the text want ("" for no error).
func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	got := ""
	if err != nil {
		got = err.Error()
	}
	if got != want {
		t.Errorf("error:\n got: %s\nwant: %s", got, want)
	}
}

// sameModel compares two models field by field, ignoring Raw, with
// reflect.DeepEqual (which also compares the lookup indexes).
func sameModel(a, b *model.DeviceModel) bool {
	ac, bc := *a, *b
	ac.Raw, bc.Raw = nil, nil
	return reflect.DeepEqual(ac, bc)
}

func TestParseHumiditySensor(t *testing.T) {
	path := filepath.Join(sharedModels, "humidity_sensor.json")
	m := parseFile(t, path)
	if !bytes.Equal(m.Raw, readFile(t, path)) {
		t.Error("Raw is not the parsed bytes")
	}
	want := &model.DeviceModel{
		URN:         "urn:com:oracle:iot:device:humidity_sensor",
		Name:        "Humidity Sensor",
		Description: "Relative humidity in percent, with a writable alert threshold.",
		Attributes: []model.Attribute{
			{Name: "humidity", Description: "Relative humidity (%)", Type: model.TypeInteger, Range: &model.Range{Min: 0, Max: 100}},
			{Name: "maxThreshold", Description: "Alert above this humidity", Type: model.TypeInteger, Range: &model.Range{Min: 60, Max: 100}, Writable: true, Default: model.Integer(80)},
		},
		Formats: []model.Format{{
			URN:         "urn:com:oracle:iot:device:humidity_sensor:too_humid",
			Name:        "tooHumidAlert",
			Description: "Humidity is above maxThreshold",
			Type:        model.FormatAlert,
			DeviceModel: "urn:com:oracle:iot:device:humidity_sensor",
			Fields:      []model.FormatField{{Name: "humidity", Type: model.TypeInteger}},
		}},
	}
	if err := want.Validate(); err != nil {
		t.Fatal(err)
	}
	if !sameModel(m, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", m, want)
	}
}

func TestParseLightSwitch(t *testing.T) {
	m := parseFile(t, filepath.Join(sharedModels, "light_switch.json"))
	if m.URN != "urn:com:example:iot:device:light_switch" || m.System || m.Draft {
		t.Errorf("header: %q system=%v draft=%v", m.URN, m.System, m.Draft)
	}
	types := map[string]model.Type{}
	for _, a := range m.Attributes {
		types[a.Name] = a.Type
	}
	wantTypes := map[string]model.Type{"power": model.TypeBoolean, "brightness": model.TypeInteger,
		"label": model.TypeString, "lastPressed": model.TypeDateTime, "snapshot": model.TypeURI}
	if !reflect.DeepEqual(types, wantTypes) {
		t.Errorf("attribute types = %v, want %v", types, wantTypes)
	}
	if a, _ := m.Attribute("power"); !a.Default.Equal(model.Boolean(false)) || !a.Writable {
		t.Errorf("power = %+v", a)
	}
	if a, _ := m.Attribute("label"); a.Default.Valid() || a.Range != nil {
		t.Errorf("label = %+v, want no default and no range", a)
	}
	wantActions := []model.Action{
		{Name: "blink", Description: "Blink N times", Legacy: true,
			Arguments: []model.Argument{{Name: "value", Type: model.TypeInteger, Range: &model.Range{Min: 1, Max: 20}}}},
		{Name: "toggle", Description: "Flip power"},
		{Name: "schedule", Description: "Turn on at a time for a duration", Arguments: []model.Argument{
			{Name: "at", Type: model.TypeDateTime},
			{Name: "seconds", Type: model.TypeInteger, Range: &model.Range{Min: 1, Max: 86400}},
		}},
	}
	if !reflect.DeepEqual(m.Actions, wantActions) {
		t.Errorf("actions:\n got %+v\nwant %+v", m.Actions, wantActions)
	}
	f, ok := m.Format("urn:com:example:iot:device:light_switch:energy")
	if !ok || f.Type != model.FormatData || len(f.Fields) != 2 || f.Fields[1] != (model.FormatField{Name: "since", Type: model.TypeDateTime}) {
		t.Errorf("energy format = %+v, %v", f, ok)
	}
	f, ok = m.Format("urn:com:example:iot:device:light_switch:button_pressed")
	if !ok || f.Type != model.FormatAlert || !f.Fields[1].Optional || f.Fields[1].Type != model.TypeURI {
		t.Errorf("button_pressed format = %+v, %v", f, ok)
	}
}

func TestParseTemperatureSensor(t *testing.T) {
	m := parseFile(t, filepath.Join(sharedModels, "temperature_sensor.json"))
	if len(m.Attributes) != 7 || len(m.Actions) != 3 || len(m.Formats) != 2 {
		t.Fatalf("counts: %d attributes, %d actions, %d formats", len(m.Attributes), len(m.Actions), len(m.Formats))
	}
	temp, _ := m.Attribute("temp")
	if temp.Type != model.TypeNumber || *temp.Range != (model.Range{Min: -40, Max: 125}) || temp.Writable {
		t.Errorf("temp = %+v", temp)
	}
	unit, _ := m.Attribute("unit")
	if !unit.Default.Equal(mustString(t, "C")) {
		t.Errorf("unit default = %v", unit.Default)
	}
	minT, _ := m.Attribute("minThreshold")
	if !minT.Default.Equal(model.Integer(0)) || *minT.Range != (model.Range{Min: -20, Max: 0}) {
		t.Errorf("minThreshold = %+v", minT)
	}
	reset, _ := m.Action("reset")
	if reset.Legacy || len(reset.Arguments) != 0 {
		t.Errorf("reset = %+v, want no arguments", reset)
	}
	power, _ := m.Action("power")
	if !power.Legacy || power.Arguments[0].Type != model.TypeBoolean || power.Arguments[0].Range != nil {
		t.Errorf("power = %+v", power)
	}
	cal, _ := m.Action("calibrate")
	if *cal.Arguments[0].Range != (model.Range{Min: -5, Max: 5}) {
		t.Errorf("calibrate = %+v", cal)
	}
	hot, _ := m.Format("urn:com:oracle:iot:device:temperature_sensor:too_hot")
	want := []model.FormatField{{Name: "temp", Type: model.TypeNumber}, {Name: "unit", Type: model.TypeString, Optional: true}, {Name: "maxThreshold", Type: model.TypeNumber}}
	if !reflect.DeepEqual(hot.Fields, want) {
		t.Errorf("too_hot fields = %+v", hot.Fields)
	}
}

func TestParseAllFeatures(t *testing.T) {
	m := parseFile(t, "testdata/all_features.json")
	checks := []struct {
		attr string
		want model.Value
	}{
		{"count", model.Integer(1000)},
		{"n", model.Integer(1000)},
		{"ratio", mustNumber(t, 0.25)},
		{"label", mustString(t, "hall <a&b>")},
		{"on", model.Boolean(true)},
		{"since", model.DateTime(time.Date(2024, 5, 6, 7, 8, 9, 123e6, time.UTC))},
		{"born", model.DateTime(time.UnixMilli(1700000000123))},
		{"link", mustURI(t, "https://example.com/x?y=1")},
		{"free", model.Value{}},
	}
	for _, c := range checks {
		a, ok := m.Attribute(c.attr)
		if !ok || !a.Default.Equal(c.want) {
			t.Errorf("attribute %q: default %v, want %v", c.attr, a.Default, c.want)
		}
	}
	if a, _ := m.Attribute("free"); a.Range != nil {
		t.Errorf("free: range %v, want none for an empty range", a.Range)
	}
	if a, _ := m.Attribute("count"); *a.Range != (model.Range{Min: 0, Max: 1e6}) {
		t.Errorf("count: range %v", a.Range)
	}
	if a, ok := m.Action("fade"); !ok || a.Name != "dim" || !a.Legacy {
		t.Errorf("action fade = %+v, %v", a, ok)
	}
	if a, _ := m.Action("noArgs"); a.Legacy || a.Arguments != nil {
		t.Errorf("noArgs = %+v", a)
	}
	move, _ := m.Action("move")
	if len(move.Arguments) != 3 || move.Arguments[0].Description != "steps" ||
		!move.Arguments[1].Default.Equal(model.DateTime(time.UnixMilli(0))) {
		t.Errorf("move = %+v", move)
	}
	if f, ok := m.Format("urn:test:iot:device:all_features:empty"); !ok || f.Fields != nil || f.Name != "" {
		t.Errorf("empty format = %+v", f)
	}
	if !m.Draft {
		t.Error("draft = false")
	}
}

func TestParseErrors(t *testing.T) {
	long := strings.Repeat("x", model.MaxStringBytes+1)
	tests := []struct {
		name, in, want string
	}{
		{"empty input", "", "device model: empty input: want a JSON object"},
		{"only spaces", " \n ", "device model: empty input: want a JSON object"},
		{"truncated", `{"urn":"u"`, "device model: invalid JSON: unexpected end of input"},
		{"syntax error with position", "{\n  \"urn\": \"u\",\n  }", "device model: invalid JSON at line 3, column 3: invalid character '}' looking for beginning of object key string"},
		{"syntax error first byte", "x", "device model: invalid JSON at line 1, column 1: invalid character 'x' looking for beginning of value"},
		{"trailing data", "{\"urn\":\"u\"}\n  {}", "device model: invalid JSON at line 2, column 3: unexpected data after the top-level object"},
		{"not an object", `[1]`, "device model: want a JSON object, got array"},
		{"null", `null`, "device model: want a JSON object, got null"},
		{"urn not a string", `{"urn":5}`, "device model: urn: want string, got number"},
		{"system not a boolean", `{"urn":"u","system":"no"}`, "device model: system: want boolean, got string"},
		{"attributes not an array", `{"urn":"u","attributes":{}}`, "device model: attributes: want array, got object"},
		{"attribute not an object", `{"urn":"u","attributes":[true]}`, "device model: attributes[0]: want object, got boolean"},
		{"writable not a boolean", `{"urn":"u","attributes":[{"name":"a","type":"INTEGER"},{"name":"b","type":"INTEGER"},{"name":"c","type":"BOOLEAN","writable":"true"}]}`,
			"device model: attributes[2].writable: want boolean, got string"},
		{"range not a string", `{"urn":"u","attributes":[{"name":"a","type":"INTEGER","range":[0,1]}]}`, "device model: attributes[0].range: want string, got array"},
		{"range one number", `{"urn":"u","attributes":[{"name":"a","type":"INTEGER","range":"5"}]}`, `device model: attributes[0].range: want "min,max" with two finite numbers, got "5"`},
		{"range three numbers", `{"urn":"u","attributes":[{"name":"a","type":"INTEGER","range":"1,2,3"}]}`, `device model: attributes[0].range: want "min,max" with two finite numbers, got "1,2,3"`},
		{"range words", `{"urn":"u","attributes":[{"name":"a","type":"INTEGER","range":"low,high"}]}`, `device model: attributes[0].range: want "min,max" with two finite numbers, got "low,high"`},
		{"range NaN", `{"urn":"u","attributes":[{"name":"a","type":"NUMBER","range":"NaN,1"}]}`, `device model: attributes[0].range: want "min,max" with two finite numbers, got "NaN,1"`},
		{"range overflow", `{"urn":"u","attributes":[{"name":"a","type":"NUMBER","range":"0,1e999"}]}`, `device model: attributes[0].range: want "min,max" with two finite numbers, got "0,1e999"`},
		{"default wrong type", `{"urn":"u","attributes":[{"name":"power","type":"BOOLEAN","defaultValue":"yes"}]}`, `device model: attributes[0].defaultValue: want BOOLEAN, got "yes"`},
		{"default not integral", `{"urn":"u","attributes":[{"name":"a","type":"INTEGER","defaultValue":1.5}]}`, `device model: attributes[0].defaultValue: want INTEGER, got 1.5`},
		{"default string too long", `{"urn":"u","attributes":[{"name":"a","type":"STRING","defaultValue":"` + long + `"}]}`, `device model: attributes[0].defaultValue: want STRING of at most 65536 bytes, got 65537 bytes`},
		{"default bad datetime", `{"urn":"u","attributes":[{"name":"a","type":"DATETIME","defaultValue":"yesterday"}]}`, `device model: attributes[0].defaultValue: want DATETIME (epoch milliseconds or an RFC 3339 string), got "yesterday"`},
		{"default relative uri", `{"urn":"u","attributes":[{"name":"a","type":"URI","defaultValue":"/x"}]}`, `device model: attributes[0].defaultValue: want URI (an absolute URI), got "/x"`},
		{"default object", `{"urn":"u","attributes":[{"name":"a","type":"NUMBER","defaultValue":{"v":1}}]}`, `device model: attributes[0].defaultValue: want NUMBER, got {"v":1}`},
		{"action with argType and arguments", `{"urn":"u","actions":[{"name":"a","argType":"INTEGER","arguments":[]}]}`, "device model: actions[0]: want either argType or arguments, got both"},
		{"action range without argType", `{"urn":"u","actions":[{"name":"a","range":"0,1"}]}`, "device model: actions[0].range: want argType with a range, got a range alone"},
		{"argType not a string", `{"urn":"u","actions":[{"name":"a","argType":1}]}`, "device model: actions[0].argType: want string, got number"},
		{"legacy range bad", `{"urn":"u","actions":[{"name":"a","argType":"INTEGER","range":"x"}]}`, `device model: actions[0].range: want "min,max" with two finite numbers, got "x"`},
		{"argument not an object", `{"urn":"u","actions":[{"name":"a","arguments":["x"]}]}`, "device model: actions[0].arguments[0]: want object, got string"},
		{"argument default wrong", `{"urn":"u","actions":[{"name":"a","arguments":[{"name":"s","type":"INTEGER","defaultValue":"1"}]}]}`, `device model: actions[0].arguments[0].defaultValue: want INTEGER, got "1"`},
		{"format value not an object", `{"urn":"u","formats":[{"urn":"f","type":"DATA","value":[]}]}`, "device model: formats[0].value: want object, got array"},
		{"field optional not a boolean", `{"urn":"u","formats":[{"urn":"f","type":"DATA","value":{"fields":[{"name":"a","type":"INTEGER","optional":1}]}}]}`,
			"device model: formats[0].value.fields[0].optional: want boolean, got number"},
		{"every problem at once, in order", `{"urn":1,"draft":0,"attributes":[3,{"name":2,"writable":null}],"formats":[{"urn":"f","value":{"fields":"x"}}]}`,
			"device model: urn: want string, got number\n" +
				"device model: draft: want boolean, got number\n" +
				"device model: attributes[0]: want object, got number\n" +
				"device model: attributes[1].name: want string, got number\n" +
				"device model: formats[0].value.fields: want array, got string"},
		{"validation after decoding", `{"urn":"u","attributes":[{"name":"x","type":"INTEGER","range":"100,0"}]}`,
			`device model "u": attribute "x": range "100,0": min 100 is greater than max 0`},
		{"unknown type is a validation problem", `{"urn":"u","attributes":[{"name":"x","type":"FLOAT","defaultValue":1}]}`,
			`device model "u": attribute "x": unknown type "FLOAT": want one of INTEGER, NUMBER, STRING, BOOLEAN, DATETIME, URI`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := model.Parse([]byte(tt.in))
			if m != nil {
				t.Errorf("Parse returned a model with error %v", err)
			}
			wantErr(t, err, tt.want)
		})
	}
}

func TestParseLenient(t *testing.T) {
	tests := []struct {
		name, in string
		check    func(*model.DeviceModel) bool
	}{
		{"nulls count as absent", `{"urn":"u","name":null,"system":null,"attributes":null,"actions":[{"name":"a","argType":null,"arguments":null}],"formats":[{"urn":"f","type":"DATA","value":null}]}`,
			func(m *model.DeviceModel) bool {
				return m.Name == "" && !m.Actions[0].Legacy && m.Actions[0].Arguments == nil
			}},
		{"unknown keys ignored", `{"urn":"u","links":[{"rel":"self"}],"created":1,"attributes":[{"name":"a","type":"URI","sourceId":{"x":1}}]}`,
			func(m *model.DeviceModel) bool { return len(m.Attributes) == 1 }},
		{"empty lists are nil", `{"urn":"u","attributes":[],"actions":[],"formats":[{"urn":"f","type":"ALERT","value":{"fields":[]}}]}`,
			func(m *model.DeviceModel) bool {
				return m.Attributes == nil && m.Actions == nil && m.Formats[0].Fields == nil
			}},
		{"spaces around range numbers", `{"urn":"u","attributes":[{"name":"a","type":"NUMBER","range":" -1.5 , 2e3 "}]}`,
			func(m *model.DeviceModel) bool { return *m.Attributes[0].Range == model.Range{Min: -1.5, Max: 2000} }},
		{"trailing spaces", "{\"urn\":\"u\"} \r\n\t", func(m *model.DeviceModel) bool { return m.URN == "u" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := model.Parse([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(m) {
				t.Errorf("unexpected model %+v", m)
			}
		})
	}
}

func TestParseRawIsACopy(t *testing.T) {
	data := []byte(`{"urn":"u"}`)
	m, err := model.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	data[2] = 'X'
	if string(m.Raw) != `{"urn":"u"}` {
		t.Errorf("Raw = %s, changed with the caller's buffer", m.Raw)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join(sharedModels, "*.json"))
	paths = append(paths, "testdata/all_features.json")
	if len(paths) < 4 {
		t.Fatalf("found only %v", paths)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			m := parseFile(t, path)
			out, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			back, err := model.Parse(out)
			if err != nil {
				t.Fatalf("re-parse: %v\n%s", err, out)
			}
			if !sameModel(m, back) {
				t.Errorf("round trip changed the model:\n got %+v\nwant %+v", back, m)
			}
		})
	}
}

func TestMarshalWireForm(t *testing.T) {
	m := &model.DeviceModel{
		URN: "urn:x",
		Attributes: []model.Attribute{
			{Name: "big", Type: model.TypeInteger, Range: &model.Range{Min: -1e6, Max: 1e20}, Default: model.Integer(5)},
			{Name: "f", Type: model.TypeNumber, Range: &model.Range{Min: 0.5, Max: 1e6}},
			{Name: "at", Type: model.TypeDateTime, Default: model.DateTime(time.UnixMilli(1500))},
		},
		Actions: []model.Action{
			{Name: "l", Legacy: true, Arguments: []model.Argument{{Name: "value", Type: model.TypeBoolean}}},
			{Name: "n"},
		},
		Formats: []model.Format{{URN: "urn:x:f", Name: "f", Type: model.FormatData}},
	}
	want := `{"urn":"urn:x","name":"","system":false,"draft":false,"attributes":[` +
		`{"name":"big","type":"INTEGER","range":"-1000000,1e+20","writable":false,"defaultValue":5},` +
		`{"name":"f","type":"NUMBER","range":"0.5,1e+06","writable":false},` +
		`{"name":"at","type":"DATETIME","writable":false,"defaultValue":1500}],` +
		`"actions":[{"name":"l","argType":"BOOLEAN"},{"name":"n"}],` +
		`"formats":[{"urn":"urn:x:f","name":"f","type":"DATA","value":{"fields":[]}}]}`
	out, err := m.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != want {
		t.Errorf("MarshalJSON:\n got %s\nwant %s", out, want)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	back, err := model.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if !sameModel(m, back) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, m)
	}
	var nilModel *model.DeviceModel
	if out, _ := nilModel.MarshalJSON(); string(out) != "null" {
		t.Errorf("nil model = %s", out)
	}
}

// FuzzParse checks that Parse never panics and that a model that parses
// re-marshals into JSON that parses into an equal model.
func FuzzParse(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join(sharedModels, "*.json"))
	paths = append(paths, "testdata/all_features.json")
	for _, p := range paths {
		f.Add(readFile(f, p))
	}
	f.Add([]byte(`{"urn":"u","attributes":[{"name":"x","type":"INTEGER","range":"100,0"}]}`))
	f.Add([]byte(`{"urn":"u","actions":[{"name":"a","argType":"DATETIME","range":"1,2"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := model.Parse(data)
		if err != nil {
			if m != nil {
				t.Fatal("model with error")
			}
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back, err := model.Parse(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		if !sameModel(m, back) {
			t.Fatalf("round trip changed the model:\n got %+v\nwant %+v", back, m)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	data := readFile(b, filepath.Join(sharedModels, "temperature_sensor.json"))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := model.Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
