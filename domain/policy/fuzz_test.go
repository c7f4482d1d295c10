package policy

import (
	"os"
	"testing"
	"time"

	"github.com/iotnode/iotnode/domain/model"
)

// FuzzParse checks that Parse never panics, and neither does Compile on
// what Parse accepts.
func FuzzParse(f *testing.F) {
	b, err := os.ReadFile("testdata/humidity_sensor.policy.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(fuzzPolicy))
	f.Add([]byte(`{"id": "x", "pipelines": [{"attributeName": "temp", "pipeline": [{"id": "mean", "parameters": {"window": -5}}]}]}`))
	f.Add([]byte(`{"id":1,"pipelines":[1,{"attributeName":""}]}`))
	m := testModel(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if p != nil {
				t.Fatalf("Parse returned a policy with an error: %v", err)
			}
			return
		}
		if _, err := Compile(p, m, Options{}); err != nil && err.Error() == "" {
			t.Fatal("empty error")
		}
	})
}

// fuzzPolicy uses every function.
const fuzzPolicy = `{"id": "fuzz", "pipelines": [
  {"attributeName": "temp", "pipeline": [
    {"id": "filterCondition", "parameters": {"condition": "$(temp) < -30"}},
    {"id": "mean", "parameters": {"window": 300, "slide": 100}},
    {"id": "alertCondition", "parameters": {"condition": "$(temp) > $(limit)", "filter": false,
      "alert": {"urn": "urn:test:policy:hot", "fields": {"temp": "$(temp)", "note": "$(label)"}, "severity": "CRITICAL"}}}]},
  {"attributeName": "fahrenheit", "pipeline": [
    {"id": "computedMetric", "parameters": {"formula": "$(temp) * 9 / 5 + 32"}},
    {"id": "max", "parameters": {"window": 200, "slide": 500}}]},
  {"attributeName": "count", "pipeline": [
    {"id": "sampleQuality", "parameters": {"rate": "random"}},
    {"id": "detectDuplicates", "parameters": {"window": 100, "alertFormatURN": "urn:test:policy:dup"}},
    {"id": "standardDeviation", "parameters": {"window": 250}},
    {"id": "actionCondition", "parameters": {"condition": "$(count) > 3", "filter": false, "action": {"name": "reset", "arguments": ["$(count)"]}}}]},
  {"attributeName": "level", "pipeline": [
    {"id": "eliminateDuplicates", "parameters": {"window": 150}},
    {"id": "sampleQuality", "parameters": {"rate": 2}},
    {"id": "min", "parameters": {"window": 100}}]},
  {"attributeName": "*", "pipeline": [
    {"id": "batchBySize", "parameters": {"batchSize": 3, "alertSeverity": "SIGNIFICANT"}},
    {"id": "batchByTime", "parameters": {"delayLimit": 400}},
    {"id": "batchByCost", "parameters": {"networkCost": "ETHERNET"}}]}
]}`

// FuzzEngine drives an engine that uses every function with random offers,
// ticks and flushes: it must never panic, emit Data out of time order within
// an Outcome, or report a deadline in the past.
func FuzzEngine(f *testing.F) {
	f.Add([]byte{0, 0, 10, 0, 1, 200, 1, 0, 255, 0, 2, 5, 2, 0, 0})
	f.Add([]byte{0, 3, 4, 0, 3, 4, 0, 3, 4, 0, 4, 9, 1, 9, 99, 0, 5, 1})
	f.Fuzz(runFuzzEngine)
}

func runFuzzEngine(t *testing.T, ops []byte) {
	e := mustEngine(t, testModel(t), fuzzPolicy, Options{NetworkCost: "CELLULAR"})
	names := []string{"temp", "fahrenheit", "count", "level", "limit", "label", "n"}
	now := base
	known := func(name string) (model.Value, bool) {
		if name == "label" {
			return S("l"), true
		}
		return model.Value{}, false
	}
	for len(ops) >= 3 {
		op, a, x := ops[0], ops[1], ops[2]
		ops = ops[3:]
		now = now.Add(time.Duration(int8(a)) * 7 * time.Millisecond) // sometimes backwards
		var out Outcome
		switch op % 4 {
		case 0, 3:
			name := names[int(a)%len(names)]
			v := I(int64(x) - 20)
			if x%2 == 1 {
				v = N(float64(x)/3 - 30)
			}
			out = e.Offer(now, map[string]model.Value{name: v}, known)
		case 1:
			if at, ok := e.Next(); ok && x%2 == 0 {
				now = at
			}
			out = e.Tick(now, known)
		case 2:
			out = e.Flush(now, known)
		}
		for i := 1; i < len(out.Data); i++ {
			if out.Data[i].Time.Before(out.Data[i-1].Time) {
				t.Fatalf("Data out of order: %v before %v", out.Data[i-1].Time, out.Data[i].Time)
			}
		}
		if at, ok := e.Next(); ok && !at.After(e.now) {
			t.Fatalf("Next = %v, not after the latest time %v", at, e.now)
		}
	}
}
