package message

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// eventTime is the event time of the sample messages: decoding yields UTC times
// with millisecond precision, so samples use the same.
var eventTime = time.UnixMilli(1_700_000_000_123).UTC()

// samples returns one fully populated message per type, keyed by golden file name.
// Each call returns fresh values, so tests may modify them.
func samples() []struct {
	name string
	msg  Message
} {
	return []struct {
		name string
		msg  Message
	}{
		{"data", Message{
			ClientID: "c0ffee00-0000-4000-8000-000000000001", Source: "0-AE", Destination: "", Sender: "",
			Priority: PriorityLow, Reliability: BestEffort, EventTime: eventTime, Type: TypeData,
			Properties: map[string][]string{"zone": {"north", "east"}, "build": {"7"}},
			Data: &Data{Format: "urn:com:example:thermo:attributes", Fields: []Field{
				{"temperature", 21.5}, {"count", int64(42)}, {"label", "h\u00e9llo \"q\" <b>&\n"},
				{"on", true}, {"missing", nil}, {"n", int64(-7)},
			}},
		}},
		{"alert", Message{
			ClientID: "c0ffee00-0000-4000-8000-000000000002", Source: "0-AE", Priority: PriorityHighest,
			Reliability: GuaranteedDelivery, EventTime: eventTime, Type: TypeAlert,
			Alert: &Alert{Format: "urn:com:example:thermo:tooHot", Severity: SeverityCritical,
				Description: "Too hot", Fields: []Field{{"temperature", 99.25}, {"big", 1e21}, {"tiny", 1e-7}}},
		}},
		{"request", Message{
			ID: "r-1", ClientID: "c0ffee00-0000-4000-8000-000000000003", Source: "iotserver", Destination: "0-AE",
			Priority: PriorityHigh, Reliability: BestEffort, EventTime: eventTime, Type: TypeRequest,
			Request: &Request{Method: "POST", URL: "deviceModels/urn:com:example:thermo/attributes",
				Headers: map[string][]string{"x-http-method-override": {"PATCH"}, "Content-Type": {"application/json"}},
				Params:  map[string]string{"a": "1", "b": "two"},
				Body:    []byte(`{"setpoint":20}`)},
		}},
		{"response", Message{
			ClientID: "c0ffee00-0000-4000-8000-000000000004", Source: "0-AE", Destination: "iotserver",
			Priority: PriorityHighest, Reliability: GuaranteedDelivery, EventTime: eventTime, Type: TypeResponse,
			Response: &Response{StatusCode: 200, URL: "", RequestID: "r-1",
				Headers: map[string][]string{"Content-Type": {"text/plain"}}, Body: []byte("OK")},
		}},
		{"resources_report", Message{
			ID: "rr-1", ClientID: "c0ffee00-0000-4000-8000-000000000005", Source: "0-AE",
			Priority: PriorityHighest, Reliability: GuaranteedDelivery, EventTime: eventTime, Type: TypeResourcesReport,
			Report: &ResourcesReport{ReportType: ReportUpdate, EndpointName: "0-AE", Resources: []Resource{
				{Name: "urn:oracle:iot:dcd:capability:device_policy", Path: "deviceModels/urn:oracle:iot:dcd:capability:device_policy/policyChanged",
					Methods: "PUT", Status: "ADDED", EndpointName: "0-AE"},
				{Name: "counters", Path: "deviceModels/urn:oracle:iot:dcd:capability:message_dispatcher/counters",
					Methods: "GET", Status: "ADDED"},
			}, ReconciliationMark: "0123456789abcdef0123456789abcdef"},
		}},
	}
}

// golden compares got with testdata/golden/<name>.json, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if string(got) != string(want) {
		t.Errorf("encoding differs from %s\ngot:  %s\nwant: %s", path, got, want)
	}
}

// mustCompact fails unless b is valid JSON with no insignificant whitespace.
func mustCompact(t testing.TB, b []byte) {
	t.Helper()
	var c bytes.Buffer
	if err := json.Compact(&c, b); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, b)
	}
	if !bytes.Equal(c.Bytes(), b) {
		t.Fatalf("not compact:\n%s\ncompact would be:\n%s", b, c.Bytes())
	}
}
