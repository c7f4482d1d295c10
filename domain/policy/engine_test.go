package policy

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/domain/model"
)

// base is the fixed time all tests count from; at(ms) is base + ms.
var base = time.UnixMilli(1764201600000).UTC()

func at(ms int64) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }

// testModelJSON is a model with an attribute of each kind the engine treats
// differently, an alias, a default, two actions and two alert formats.
const testModelJSON = `{
  "urn": "urn:test:policy",
  "name": "policy test",
  "attributes": [
    {"name": "temp", "type": "NUMBER", "range": "-40,125"},
    {"name": "fahrenheit", "type": "NUMBER"},
    {"name": "count", "alias": "n", "type": "INTEGER", "range": "0,1000"},
    {"name": "level", "type": "INTEGER"},
    {"name": "limit", "type": "INTEGER", "defaultValue": 50},
    {"name": "label", "type": "STRING"},
    {"name": "on", "type": "BOOLEAN"}
  ],
  "actions": [
    {"name": "reset", "arguments": [
      {"name": "delay", "type": "INTEGER", "range": "0,60"},
      {"name": "reason", "type": "STRING", "defaultValue": "policy"}
    ]},
    {"name": "beep", "argType": "NUMBER"}
  ],
  "formats": [
    {"urn": "urn:test:policy:hot", "name": "hot", "type": "ALERT",
     "value": {"fields": [{"name": "temp", "type": "NUMBER", "optional": false}, {"name": "note", "type": "STRING", "optional": true}]}},
    {"urn": "urn:test:policy:dup", "name": "dup", "type": "ALERT",
     "value": {"fields": [{"name": "count", "type": "INTEGER", "optional": true}]}},
    {"urn": "urn:test:policy:report", "name": "report", "type": "DATA",
     "value": {"fields": [{"name": "a", "type": "INTEGER", "optional": false}]}}
  ]
}`

func testModel(t testing.TB) *model.DeviceModel {
	t.Helper()
	m, err := model.Parse([]byte(testModelJSON))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// policyJSON wraps pipelines (the inside of the array) into a policy.
func policyJSON(pipelines string) string {
	return `{"id": "p1", "enabled": true, "lastModified": 0, "pipelines": [` + pipelines + `]}`
}

func mustEngine(t testing.TB, m *model.DeviceModel, src string, opts Options) *Engine {
	t.Helper()
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	e, err := Compile(p, m, opts)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return e
}

func I(i int64) model.Value { return model.Integer(i) }
func N(f float64) model.Value {
	v, err := model.Number(f)
	if err != nil {
		panic(err)
	}
	return v
}
func S(s string) model.Value {
	v, err := model.String(s)
	if err != nil {
		panic(err)
	}
	return v
}

type vals = map[string]model.Value

// render writes an Outcome as lines, times in ms after base.
func render(o Outcome) []string {
	var out []string
	for _, d := range o.Data {
		out = append(out, fmt.Sprintf("data@%d %s", d.Time.Sub(base).Milliseconds(), renderValues(d.Values)))
	}
	for _, a := range o.Alerts {
		urn := a.FormatURN[strings.LastIndexByte(a.FormatURN, ':')+1:]
		out = append(out, fmt.Sprintf("alert@%d %s %s %s", a.Time.Sub(base).Milliseconds(), urn, a.Severity, renderValues(a.Fields)))
	}
	for _, a := range o.Actions {
		var args []string
		for _, v := range a.Args {
			args = append(args, v.String())
		}
		out = append(out, fmt.Sprintf("action %s(%s)", a.Name, strings.Join(args, ", ")))
	}
	for _, err := range o.Errors {
		out = append(out, "error: "+err.Error())
	}
	return out
}

func renderValues(m map[string]model.Value) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+m[k].String())
	}
	return strings.Join(parts, " ")
}

// step is one call of a script: offer, tick, flush or next, at ms after
// base, and the lines it must produce (see render; next renders as
// "next@ms" or "next none").
type step struct {
	op     string
	ms     int64
	values vals
	known  vals // merged into the Lookup's values before the call
	want   []string
}

func offer(ms int64, v vals, want ...string) step {
	return step{op: "offer", ms: ms, values: v, want: want}
}
func tick(ms int64, want ...string) step  { return step{op: "tick", ms: ms, want: want} }
func flush(ms int64, want ...string) step { return step{op: "flush", ms: ms, want: want} }
func next(want string) step               { return step{op: "next", want: []string{want}} }

// play runs a script on e and compares every step's outcome.
func play(t *testing.T, e *Engine, known vals, steps []step) {
	t.Helper()
	lookup := vals{}
	for k, v := range known {
		lookup[k] = v
	}
	get := func(name string) (model.Value, bool) { v, ok := lookup[name]; return v, ok }
	for i, s := range steps {
		for k, v := range s.known {
			lookup[k] = v
		}
		var got []string
		switch s.op {
		case "offer":
			got = render(e.Offer(at(s.ms), s.values, get))
		case "tick":
			got = render(e.Tick(at(s.ms), get))
		case "flush":
			got = render(e.Flush(at(s.ms), get))
		case "next":
			if t, ok := e.Next(); ok {
				got = []string{fmt.Sprintf("next@%d", t.Sub(base).Milliseconds())}
			} else {
				got = []string{"next none"}
			}
		}
		if !slices.Equal(got, s.want) {
			t.Errorf("step %d (%s@%d):\n got  %q\n want %q", i, s.op, s.ms, got, s.want)
		}
	}
}

type scriptCase struct {
	name      string
	pipelines string
	opts      Options
	known     vals
	steps     []step
}

func runScripts(t *testing.T, cases []scriptCase) {
	t.Helper()
	m := testModel(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := mustEngine(t, m, policyJSON(tc.pipelines), tc.opts)
			play(t, e, tc.known, tc.steps)
		})
	}
}

func TestFilterCondition(t *testing.T) {
	runScripts(t, []scriptCase{{
		name:      "drops when true",
		pipelines: `{"attributeName": "temp", "pipeline": [{"id": "filterCondition", "parameters": {"condition": "$(temp) > 100"}}]}`,
		steps: []step{
			offer(0, vals{"temp": N(50)}, "data@0 temp=50"),
			offer(10, vals{"temp": N(150)}),
		},
	}, {
		name:      "out of range values reach the filter and the range check after it",
		pipelines: `{"attributeName": "temp", "pipeline": [{"id": "filterCondition", "parameters": {"condition": "$(temp) < -40"}}]}`,
		steps: []step{
			offer(0, vals{"temp": N(-50)}),
			offer(10, vals{"temp": N(130)}, `error: attribute "temp": 130 is out of range -40..125`),
		},
	}, {
		name:      "other attributes: offered, then known, then default",
		pipelines: `{"attributeName": "temp", "pipeline": [{"id": "filterCondition", "parameters": {"condition": "$(temp) > $(limit)"}}]}`,
		steps: []step{
			offer(0, vals{"temp": N(60)}), // default limit 50
			offer(10, vals{"temp": N(60)}, "data@10 temp=60").withKnown(vals{"limit": I(70)}), // known 70
			offer(20, vals{"temp": N(60), "limit": I(55)}, "data@20 limit=55"),                // offered 55
		},
	}, {
		name:      "a number is true when not 0; a string is an error",
		pipelines: `{"attributeName": "count", "pipeline": [{"id": "filterCondition", "parameters": {"condition": "$(count)"}}]}, {"attributeName": "label", "pipeline": [{"id": "filterCondition", "parameters": {"condition": "$(label)"}}]}`,
		steps: []step{
			offer(0, vals{"count": I(0)}, "data@0 count=0"),
			offer(10, vals{"count": I(3)}),
			offer(20, vals{"label": S("x")}, `error: attribute "label": filterCondition: condition "$(label)" gave the string "x"; expected true or false`),
		},
	}, {
		name:      "a formula error drops the value",
		pipelines: `{"attributeName": "temp", "pipeline": [{"id": "filterCondition", "parameters": {"condition": "$(temp) > $(level)"}}]}`,
		steps: []step{
			offer(0, vals{"temp": N(60), "label": S("x")}, `data@0 label="x"`,
				`error: attribute "temp": filterCondition: formula "$(temp) > $(level)": $(level) has no value`),
		},
	}})
}

func (s step) withKnown(k vals) step { s.known = k; return s }

func TestSampleQuality(t *testing.T) {
	counts := func(n int, pass ...int) []step {
		var steps []step
		for i := 1; i <= n; i++ {
			var want []string
			if slices.Contains(pass, i) {
				want = []string{fmt.Sprintf("data@%d count=%d", i, i)}
			}
			steps = append(steps, offer(int64(i), vals{"count": I(int64(i))}, want...))
		}
		return steps
	}
	seq := func(xs ...float64) func() float64 {
		return func() float64 { x := xs[0]; xs = xs[1:]; return x }
	}
	pl := func(rate string) string {
		return `{"attributeName": "count", "pipeline": [{"id": "sampleQuality", "parameters": {"rate": ` + rate + `}}]}`
	}
	runScripts(t, []scriptCase{
		{name: "every 3rd", pipelines: pl("3"), steps: counts(7, 3, 6)},
		{name: "every 1st", pipelines: pl("1"), steps: counts(3, 1, 2, 3)},
		{name: "0 is all", pipelines: pl("0"), steps: counts(3, 1, 2, 3)},
		{name: "all", pipelines: pl(`"all"`), steps: counts(3, 1, 2, 3)},
		{name: "none", pipelines: pl(`"NONE"`), steps: counts(3)},
		{name: "random, fixed sequence", pipelines: pl(`"random"`), steps: counts(31, 1, 31)},
		{name: "-1 is random", pipelines: pl("-1"), steps: counts(4, 2, 3),
			opts: Options{Random: seq(0.5, 0.01, 0.0333, 0.034)}},
	})
}

func TestDuplicates(t *testing.T) {
	runScripts(t, []scriptCase{{
		name:      "eliminateDuplicates",
		pipelines: `{"attributeName": "count", "pipeline": [{"id": "eliminateDuplicates", "parameters": {"window": 1000}}]}`,
		steps: []step{
			offer(0, vals{"count": I(5)}, "data@0 count=5"),
			offer(100, vals{"count": I(5)}),
			offer(500, vals{"count": I(6)}, "data@500 count=6"),
			offer(600, vals{"count": I(6)}),
			offer(1499, vals{"count": I(6)}),
			offer(1500, vals{"count": I(6)}, "data@1500 count=6"), // the window [500, 1500) is over
			offer(1600, vals{"count": I(6)}),
			offer(1700, vals{"count": I(5)}, "data@1700 count=5"),
			next("next none"),
		},
	}, {
		name:      "detectDuplicates",
		pipelines: `{"attributeName": "n", "pipeline": [{"id": "detectDuplicates", "parameters": {"window": 1000, "alertFormatURN": "urn:test:policy:dup"}}]}`,
		steps: []step{
			offer(0, vals{"count": I(5)}, "data@0 count=5"),
			offer(100, vals{"count": I(5)}, "data@100 count=5", "alert@100 dup  count=5"),
			offer(200, vals{"count": I(5)}, "data@200 count=5"),
			offer(1200, vals{"count": I(5)}, "data@1200 count=5", "alert@1200 dup  count=5"),
			offer(1300, vals{"count": I(6)}, "data@1300 count=6"),
			offer(1400, vals{"count": I(6)}, "data@1400 count=6", "alert@1400 dup  count=6"),
			next("next none"),
		},
	}})
}

func TestWindows(t *testing.T) {
	pl := func(attr, fn, params string) string {
		return `{"attributeName": "` + attr + `", "pipeline": [{"id": "` + fn + `", "parameters": ` + params + `}]}`
	}
	spread := func(attr string, xs ...float64) []step {
		var steps []step
		for i, x := range xs {
			v := N(x)
			if attr != "temp" {
				v = I(int64(x))
			}
			steps = append(steps, offer(int64(i*100), vals{attr: v}))
		}
		return steps
	}
	sample := []float64{2, 4, 4, 4, 5, 5, 7, 9}
	runScripts(t, []scriptCase{{
		name:      "mean, tumbling",
		pipelines: pl("temp", "mean", `{"window": 1000}`),
		steps: []step{
			next("next none"),
			offer(0, vals{"temp": N(10)}),
			offer(500, vals{"temp": N(20)}),
			next("next@1000"),
			tick(999),
			tick(1000, "data@1000 temp=15"),
			next("next none"),
			offer(1500, vals{"temp": N(30)}),
			next("next@2000"),
			tick(3000, "data@2000 temp=30"), // [2000, 3000) is empty: nothing
			next("next none"),
			offer(3500, vals{"temp": N(0)}),
			tick(4000, "data@4000 temp=0"), // Oracle drops a mean whose sum is 0
		},
	}, {
		name:      "mean, sliding",
		pipelines: pl("temp", "mean", `{"window": 1000, "slide": 500}`),
		steps: []step{
			offer(0, vals{"temp": N(10)}),
			offer(600, vals{"temp": N(20)}),
			next("next@1000"),
			offer(1200, vals{"temp": N(30)}, "data@1000 temp=15"), // Offer ticks first
			next("next@1500"),
			tick(2000, "data@1500 temp=25", "data@2000 temp=30"),
			next("next none"),
		},
	}, {
		name:      "slide longer than the window drops the gaps",
		pipelines: pl("temp", "mean", `{"window": 500, "slide": 1000}`),
		steps: []step{
			offer(0, vals{"temp": N(10)}),
			offer(700, vals{"temp": N(99)}, "data@500 temp=10"),
			offer(1100, vals{"temp": N(20)}),
			tick(2000, "data@1500 temp=20"),
		},
	}, {
		name:      "a window result goes through the rest of the pipeline",
		pipelines: `{"attributeName": "temp", "pipeline": [{"id": "max", "parameters": {"window": 1000}}, {"id": "filterCondition", "parameters": {"condition": "$(temp) < 5"}}]}`,
		steps: []step{
			offer(0, vals{"temp": N(1)}),
			offer(100, vals{"temp": N(4)}),
			tick(1000),
			offer(1000, vals{"temp": N(1)}),
			offer(1100, vals{"temp": N(6)}),
			tick(2000, "data@2000 temp=6"),
		},
	}, {
		name:      "the output of one window feeds another",
		pipelines: `{"attributeName": "temp", "pipeline": [{"id": "mean", "parameters": {"window": 1000}}, {"id": "max", "parameters": {"window": 3000}}]}`,
		steps: []step{
			offer(0, vals{"temp": N(1)}),
			offer(1000, vals{"temp": N(5)}),
			offer(2000, vals{"temp": N(3)}),
			tick(3999),
			tick(4000, "data@4000 temp=5"),
		},
	}, {
		name: "min", pipelines: pl("temp", "min", `{"window": 1000}`),
		steps: append(spread("temp", sample...), tick(1000, "data@1000 temp=2")),
	}, {
		name: "max", pipelines: pl("temp", "max", `{"window": 1000}`),
		steps: append(spread("temp", sample...), tick(1000, "data@1000 temp=9")),
	}, {
		name: "standardDeviation is the population one", pipelines: pl("temp", "standardDeviation", `{"window": 1000}`),
		steps: append(spread("temp", sample...), tick(1000, "data@1000 temp=2")),
	}, {
		name: "an INTEGER mean is rounded half away from zero", pipelines: pl("level", "mean", `{"window": 1000}`),
		steps: append(spread("level", 1, 2), offer(1000, vals{"level": I(-1)}, "data@1000 level=2"), offer(1100, vals{"level": I(-2)}),
			tick(2000, "data@2000 level=-2")),
	}, {
		name: "min keeps an INTEGER exact", pipelines: pl("count", "min", `{"window": 1000}`),
		steps: append(spread("count", 7, 3, 5), tick(1000, "data@1000 count=3")),
	}, {
		name:      "a window result is range checked",
		pipelines: pl("temp", "max", `{"window": 1000}`),
		steps: []step{
			offer(0, vals{"temp": N(200)}),
			tick(1000, `error: attribute "temp": 200 is out of range -40..125`),
		},
	}, {
		name:      "Flush cuts a window short; the next value aligns anew",
		pipelines: pl("temp", "mean", `{"window": 10000}`),
		steps: []step{
			offer(0, vals{"temp": N(10)}),
			offer(1000, vals{"temp": N(20)}),
			flush(3000, "data@3000 temp=15"),
			next("next none"),
			flush(3500),
			offer(4000, vals{"temp": N(40)}),
			next("next@14000"),
		},
	}, {
		name:      "time that runs backwards counts as the latest",
		pipelines: pl("temp", "mean", `{"window": 1000}`),
		steps: []step{
			offer(500, vals{"temp": N(10)}),
			offer(100, vals{"temp": N(20)}),
			tick(1400),
			next("next@1500"),
			tick(1500, "data@1500 temp=15"),
		},
	}})
}

func TestComputedMetric(t *testing.T) {
	fahrenheit := `{"attributeName": "fahrenheit", "pipeline": [{"id": "computedMetric", "parameters": {"formula": "$(temp) * 9 / 5 + 32"}}]}`
	runScripts(t, []scriptCase{{
		name:      "runs when a referenced attribute is offered",
		pipelines: fahrenheit,
		steps: []step{
			offer(0, vals{"temp": N(100)}, "data@0 fahrenheit=212 temp=100"),
			offer(10, vals{"label": S("x")}, `data@10 label="x"`),
			offer(20, vals{"fahrenheit": N(0)}, "data@20 fahrenheit=50").withKnown(vals{"temp": N(10)}),
		},
	}, {
		name:      "reads the offered value, not what its pipeline made of it",
		pipelines: fahrenheit + `, {"attributeName": "temp", "pipeline": [{"id": "filterCondition", "parameters": {"condition": "$(temp) > 30"}}]}`,
		steps: []step{
			offer(0, vals{"temp": N(40)}, "data@0 fahrenheit=104"),
		},
	}, {
		name:      "the result is converted and range checked",
		pipelines: `{"attributeName": "count", "pipeline": [{"id": "computedMetric", "parameters": {"formula": "$(temp) * 10"}}]}`,
		steps: []step{
			offer(0, vals{"temp": N(12.34)}, "data@0 count=123 temp=12.34"),
			offer(10, vals{"temp": N(120)}, "data@10 temp=120", `error: attribute "count": 1200 is out of range 0..1000`),
		},
	}, {
		name:      "$$(name) reads the current value and triggers nothing",
		pipelines: `{"attributeName": "level", "pipeline": [{"id": "computedMetric", "parameters": {"formula": "$$(temp) + 1"}}]}`,
		known:     vals{"temp": N(7)},
		steps: []step{
			offer(0, vals{"temp": N(5)}, "data@0 temp=5"),
			offer(10, vals{"level": I(0), "temp": N(5)}, "data@10 level=8 temp=5"),
		},
	}, {
		name:      "a missing value is an error",
		pipelines: fahrenheit,
		steps: []step{
			offer(0, vals{"fahrenheit": N(1)}, `error: attribute "fahrenheit": computedMetric: formula "$(temp) * 9 / 5 + 32": $(temp) has no value`),
		},
	}})
}

func TestAlertCondition(t *testing.T) {
	pl := func(extra, fields string) string {
		return `{"attributeName": "temp", "pipeline": [{"id": "alertCondition", "parameters": {"condition": "$(temp) > 100",
			"alert": {"urn": "urn:test:policy:hot", "fields": ` + fields + `, "severity": "critical"}` + extra + `}}]}`
	}
	runScripts(t, []scriptCase{{
		name:      "filter defaults to true",
		pipelines: pl("", `{"temp": "$(temp)", "note": "too hot"}`),
		steps: []step{
			offer(0, vals{"temp": N(50)}, "data@0 temp=50"),
			offer(10, vals{"temp": N(110)}, `alert@10 hot CRITICAL note="too hot" temp=110`),
		},
	}, {
		name:      "filter false lets the value through",
		pipelines: pl(`, "filter": false`, `{"temp": 99.5, "note": "$(temp)"}`),
		steps: []step{
			offer(10, vals{"temp": N(110.5)}, "data@10 temp=110.5", `alert@10 hot CRITICAL note="110.5" temp=99.5`),
		},
	}, {
		name:      "a field that cannot be evaluated drops the alert and the value",
		pipelines: pl(`, "filter": false`, `{"temp": "$(temp) + $(level)"}`),
		steps: []step{
			offer(10, vals{"temp": N(110)}, `error: attribute "temp": alertCondition: alert "urn:test:policy:hot": field "temp": formula "$(temp) + $(level)": $(level) has no value`),
		},
	}})
}

func TestActionCondition(t *testing.T) {
	pl := func(extra, action string) string {
		return `{"attributeName": "count", "pipeline": [{"id": "actionCondition", "parameters": {"condition": "$(count) > 10", "action": ` + action + extra + `}}]}`
	}
	runScripts(t, []scriptCase{{
		name:      "filter defaults to true; missing arguments take their default",
		pipelines: pl("", `{"name": "reset", "arguments": ["$(count) / 10"]}`),
		steps: []step{
			offer(0, vals{"count": I(5)}, "data@0 count=5"),
			offer(10, vals{"count": I(50)}, `action reset(5, "policy")`),
			offer(20, vals{"count": I(700)}, `error: attribute "count": actionCondition: action "reset": argument "delay": 70 is out of range 0..60`),
		},
	}, {
		name:      "filter false; a legacy action",
		pipelines: pl(`, "filter": false`, `{"name": "beep", "arguments": [1.5]}`),
		steps: []step{
			offer(10, vals{"count": I(50)}, "data@10 count=50", "action beep(1.5)"),
		},
	}})
}

func TestBatching(t *testing.T) {
	temp := func(ms int64, x float64, want ...string) step { return offer(ms, vals{"temp": N(x)}, want...) }
	alert := func(severity, filter string) string {
		return `{"attributeName": "temp", "pipeline": [{"id": "alertCondition", "parameters": {"condition": "$(temp) > 100", "filter": ` + filter + `,
			"alert": {"urn": "urn:test:policy:hot", "fields": {"temp": "$(temp)"}, "severity": "` + severity + `"}}}]}`
	}
	runScripts(t, []scriptCase{{
		name:      "batchByTime",
		pipelines: `{"attributeName": "*", "pipeline": [{"id": "batchByTime", "parameters": {"delayLimit": 1000}}]}`,
		steps: []step{
			next("next none"),
			temp(0, 1),
			next("next@1000"),
			temp(500, 2),
			tick(999),
			tick(1000, "data@0 temp=1", "data@500 temp=2"),
			next("next none"),
			temp(1500, 3),
			flush(1600, "data@1500 temp=3"),
			temp(2000, 4),
			temp(3000, 5, "data@2000 temp=4"), // Offer ticks first: the new value starts a new batch
		},
	}, {
		name:      "batchBySize",
		pipelines: `{"attributeName": "*", "pipeline": [{"id": "batchBySize", "parameters": {"batchSize": 2}}]}`,
		steps: []step{
			temp(0, 1),
			temp(100, 2, "data@0 temp=1", "data@100 temp=2"),
			temp(200, 3),
			next("next none"),
			flush(300, "data@200 temp=3"),
		},
	}, {
		name:      "batchByCost holds on a costlier network",
		pipelines: `{"attributeName": "*", "pipeline": [{"id": "batchByCost", "parameters": {"networkCost": "CELLULAR"}}]}`,
		opts:      Options{NetworkCost: "satellite"},
		steps: []step{
			temp(0, 1),
			temp(100, 2),
			tick(100000),
			flush(100001, "data@0 temp=1", "data@100 temp=2"),
		},
	}, {
		name:      "batchByCost passes on a cheaper network",
		pipelines: `{"attributeName": "*", "pipeline": [{"id": "batchByCost", "parameters": {"networkCost": "Cellular (LTE)"}}]}`,
		steps:     []step{temp(0, 1, "data@0 temp=1")},
	}, {
		name:      "stages chain: size, then time",
		pipelines: `{"attributeName": "*", "pipeline": [{"id": "batchBySize", "parameters": {"batchSize": 2}}, {"id": "batchByTime", "parameters": {"delayLimit": 1000}}]}`,
		steps: []step{
			temp(0, 1),
			temp(100, 2),
			next("next@1100"),
			tick(1100, "data@0 temp=1", "data@100 temp=2"),
		},
	}, {
		name: "a CRITICAL alert releases the batch",
		pipelines: alert("CRITICAL", "false") +
			`, {"attributeName": "*", "pipeline": [{"id": "batchByTime", "parameters": {"delayLimit": 10000}}]}`,
		steps: []step{
			temp(0, 50),
			temp(100, 110, "data@0 temp=50", "data@100 temp=110", "alert@100 hot CRITICAL temp=110"),
		},
	}, {
		name: "a lesser alert does not",
		pipelines: alert("SIGNIFICANT", "true") +
			`, {"attributeName": "*", "pipeline": [{"id": "batchByTime", "parameters": {"delayLimit": 10000}}]}`,
		steps: []step{
			temp(0, 50),
			temp(100, 110, "alert@100 hot SIGNIFICANT temp=110"),
			next("next@10000"),
		},
	}, {
		name: "alertSeverity lowers the bar",
		pipelines: alert("NORMAL", "true") +
			`, {"attributeName": "*", "pipeline": [{"id": "batchBySize", "parameters": {"batchSize": 10, "alertSeverity": "normal"}}]}`,
		steps: []step{
			temp(0, 50),
			temp(100, 110, "data@0 temp=50", "alert@100 hot NORMAL temp=110"),
		},
	}})
}

func TestPassThrough(t *testing.T) {
	m := testModel(t)
	disabled := `{"id": "p", "enabled": false, "pipelines": [{"attributeName": "nope", "pipeline": [{"id": "mean", "parameters": {}}]}]}`
	p, err := Parse([]byte(disabled))
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]*Policy{"nil policy": nil, "disabled policy": p} {
		t.Run(name, func(t *testing.T) {
			e, err := Compile(p, m, Options{})
			if err != nil {
				t.Fatal(err)
			}
			play(t, e, nil, []step{
				offer(0, vals{"count": N(5), "n": I(6), "label": I(5), "bogus": I(1), "temp": N(200), "on": model.Boolean(true)},
					"data@0 count=5 on=true",
					`error: attribute "bogus": not in device model "urn:test:policy"`,
					`error: attribute "label": want STRING, got 5`,
					`error: attribute "count": offered twice (by name and by alias "n"); the second is ignored`,
					`error: attribute "temp": 200 is out of range -40..125`),
				offer(1, vals{}),
				tick(2),
				next("next none"),
				flush(3),
			})
		})
	}
	t.Run("nil engine", func(t *testing.T) {
		var e *Engine
		play(t, e, nil, []step{
			offer(0, vals{"anything": I(500)}, "data@0 anything=500"),
			offer(1, nil),
			tick(2),
			next("next none"),
			flush(3),
		})
	})
	t.Run("no model", func(t *testing.T) {
		if _, err := Compile(nil, nil, Options{}); err == nil || err.Error() != "policy: no device model" {
			t.Errorf("Compile(nil, nil) = %v", err)
		}
	})
}

// TestHumidityPolicy runs the example policy of protocol.md §5 end to end:
// filter out-of-range, mean over 10 s sliding 5 s, an alert above
// maxThreshold that does not filter, eliminateDuplicates on maxThreshold,
// and batchByTime 5 s.
func TestHumidityPolicy(t *testing.T) {
	mb, err := os.ReadFile("testdata/humidity_sensor.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Parse(mb)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := os.ReadFile("testdata/humidity_sensor.policy.json")
	if err != nil {
		t.Fatal(err)
	}
	e := mustEngine(t, m, string(pb), Options{})
	h := func(x int64) vals { return vals{"humidity": I(x)} }
	play(t, e, nil, []step{
		offer(0, vals{"humidity": I(50), "maxThreshold": I(80)}).withKnown(vals{"maxThreshold": I(80)}),
		next("next@5000"),
		offer(1000, h(140)), // filtered out, silently
		offer(2000, h(60)),
		offer(3000, vals{"maxThreshold": I(80)}), // a duplicate within 60 s
		tick(5000, "data@0 maxThreshold=80"),
		next("next@10000"),
		offer(6000, h(95)),
		tick(10000), // mean(50, 60, 95) = 68.33 -> 68 <= 80: no alert; batched
		next("next@15000"),
		offer(11000, vals{"humidity": I(99), "maxThreshold": I(90)}).withKnown(vals{"maxThreshold": I(90)}),
		tick(15000, // mean(95, 99) = 97 > 90
			"data@10000 humidity=68", "data@11000 maxThreshold=90", "data@15000 humidity=97",
			"alert@15000 too_humid SIGNIFICANT humidity=97"),
		next("next@20000"),
		flush(16000, "data@16000 humidity=99", "alert@16000 too_humid SIGNIFICANT humidity=99"),
		next("next none"),
	})
}
