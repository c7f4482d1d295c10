package message

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAppendJSONGolden(t *testing.T) {
	for _, tc := range samples() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AppendJSON(nil, &tc.msg)
			if err != nil {
				t.Fatalf("AppendJSON: %v", err)
			}
			mustCompact(t, got)
			golden(t, tc.name, got)
			if n := EncodedSize(&tc.msg); n != len(got) {
				t.Errorf("EncodedSize = %d, len(AppendJSON) = %d", n, len(got))
			}
		})
	}
}

func TestAppendJSONAppends(t *testing.T) {
	m := samples()[0].msg
	prefix := []byte("xyz")
	got, err := AppendJSON(prefix, &m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, prefix) || !bytes.HasPrefix(got[3:], []byte(`{"clientId":`)) {
		t.Errorf("AppendJSON did not append: %s", got)
	}
}

func TestMarshalJSON(t *testing.T) {
	m := samples()[1].msg
	direct, err := AppendJSON(nil, &m)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"pointer", &m, string(direct)},
		{"value", m, string(direct)},
		{"slice", []Message{m}, "[" + string(direct) + "]"},
		{"nil pointer", (*Message)(nil), "null"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("json.Marshal = %s\nwant           %s", got, tc.want)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	var msgs []Message
	sum := 0
	for _, tc := range samples() {
		msgs = append(msgs, tc.msg)
		sum += EncodedSize(&tc.msg)
	}
	tests := []struct {
		name string
		msgs []Message
	}{
		{"none", nil},
		{"one", msgs[:1]},
		{"all", msgs},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(tc.msgs)
			if err != nil {
				t.Fatal(err)
			}
			mustCompact(t, got)
			s := 0
			for i := range tc.msgs {
				s += EncodedSize(&tc.msgs[i])
			}
			if want := ArraySize(len(tc.msgs), s); len(got) != want {
				t.Errorf("len = %d, ArraySize = %d", len(got), want)
			}
			back, err := Decode(got)
			if err != nil {
				t.Fatal(err)
			}
			if len(back) != len(tc.msgs) {
				t.Fatalf("decoded %d messages, want %d", len(back), len(tc.msgs))
			}
		})
	}
	if got := ArraySize(5, sum); got != 2+sum+4 {
		t.Errorf("ArraySize(5, %d) = %d", sum, got)
	}
}

func TestEmptyPayloadParts(t *testing.T) {
	tests := []struct {
		name string
		msg  Message
		want string
	}{
		{"no payload", Message{ClientID: "c", Type: TypeData},
			`{"clientId":"c","source":"","destination":"","sender":"","priority":"LOWEST","reliability":"BEST_EFFORT","eventTime":0,"type":"DATA"}`},
		{"empty data", Message{ClientID: "c", Type: TypeData, Data: &Data{}, Properties: map[string][]string{}},
			`{"clientId":"c","source":"","destination":"","sender":"","priority":"LOWEST","reliability":"BEST_EFFORT","eventTime":0,"type":"DATA","payload":{"format":"","data":{}}}`},
		{"empty request", Message{ClientID: "c", Type: TypeRequest, Request: &Request{}},
			`{"clientId":"c","source":"","destination":"","sender":"","priority":"LOWEST","reliability":"BEST_EFFORT","eventTime":0,"type":"REQUEST","payload":{"method":"","url":"","headers":{},"params":{},"body":""}}`},
		{"empty response", Message{ClientID: "c", Type: TypeResponse, Response: &Response{}},
			`{"clientId":"c","source":"","destination":"","sender":"","priority":"LOWEST","reliability":"BEST_EFFORT","eventTime":0,"type":"RESPONSE","payload":{"statusCode":0,"url":"","requestId":"","headers":{},"body":""}}`},
		{"empty report", Message{ClientID: "c", Type: TypeResourcesReport, Report: &ResourcesReport{}},
			`{"clientId":"c","source":"","destination":"","sender":"","priority":"LOWEST","reliability":"BEST_EFFORT","eventTime":0,"type":"RESOURCES_REPORT","payload":{"type":"JSON","value":{"reportType":"","endpointName":"","resources":[]}}}`},
		{"empty alert", Message{ClientID: "c", Type: TypeAlert, Alert: &Alert{}, EventTime: time.UnixMilli(-5)},
			`{"clientId":"c","source":"","destination":"","sender":"","priority":"LOWEST","reliability":"BEST_EFFORT","eventTime":-5,"type":"ALERT","payload":{"format":"","severity":"","description":"","data":{}}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AppendJSON(nil, &tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if n := EncodedSize(&tc.msg); n != len(got) {
				t.Errorf("EncodedSize = %d, want %d", n, len(got))
			}
		})
	}
}

func TestFieldValues(t *testing.T) {
	tests := []struct {
		name  string
		value any
		want  string
	}{
		{"nil", nil, "null"},
		{"true", true, "true"},
		{"false", false, "false"},
		{"string", "a\"b", `"a\"b"`},
		{"int", 12, "12"},
		{"negative int", -12, "-12"},
		{"int64 min", int64(math.MinInt64), "-9223372036854775808"},
		{"int64 max", int64(math.MaxInt64), "9223372036854775807"},
		{"float", 21.5, "21.5"},
		{"integral float", 3.0, "3"},
		{"negative zero", math.Copysign(0, -1), "-0"},
		{"small float", 0.000001, "0.000001"},
		{"tiny float", 1e-7, "1e-7"},
		{"large float", 1e20, "100000000000000000000"},
		{"huge float", 1e21, "1e+21"},
		{"huge negative float", -1.5e300, "-1.5e+300"},
		{"time", time.UnixMilli(1234567890123), "1234567890123"},
		{"zero time", time.Time{}, "0"},
		{"json.Number", json.Number("1.5e3"), "1.5e3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := appendValue(nil, tc.value)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
			if n, ok := valueSize(tc.value); !ok || n != len(got) {
				t.Errorf("valueSize = %d, %v; want %d", n, ok, len(got))
			}
			if f, ok := tc.value.(float64); ok {
				std, _ := json.Marshal(f)
				if string(std) != string(got) {
					t.Errorf("encoding/json writes %s", std)
				}
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	data := func(v any) Message {
		return Message{ClientID: "c", Type: TypeData, Data: &Data{Format: "f", Fields: []Field{{"ok", 1}, {"temp", v}}}}
	}
	tests := []struct {
		name string
		msg  Message
		want string
	}{
		{"NaN", data(math.NaN()), `encode message: field "payload.data.temp": NaN is not a valid JSON number`},
		{"+Inf", data(math.Inf(1)), `encode message: field "payload.data.temp": +Inf is not a valid JSON number`},
		{"-Inf", data(math.Inf(-1)), `encode message: field "payload.data.temp": -Inf is not a valid JSON number`},
		{"float32", data(float32(1)), `encode message: field "payload.data.temp": unsupported value type float32; expected nil, bool, string, int, int64, float64, time.Time or json.Number`},
		{"struct", data(struct{}{}), `encode message: field "payload.data.temp": unsupported value type struct {}; expected nil, bool, string, int, int64, float64, time.Time or json.Number`},
		{"bad json.Number", data(json.Number("1.")), `encode message: field "payload.data.temp": json.Number "1." is not a valid JSON number`},
		{"empty json.Number", data(json.Number("")), `encode message: field "payload.data.temp": json.Number "" is not a valid JSON number`},
		{"alert field", Message{ClientID: "c", Type: TypeAlert, Alert: &Alert{Fields: []Field{{"x", []int{1}}}}},
			`encode message: field "payload.data.x": unsupported value type []int; expected nil, bool, string, int, int64, float64, time.Time or json.Number`},
		{"no type", Message{ClientID: "c"}, `encode message: field "type": missing; expected DATA, ALERT, REQUEST, RESPONSE or RESOURCES_REPORT`},
		{"unknown type", Message{ClientID: "c", Type: "DATUM"}, `encode message: field "type": unknown message type "DATUM"`},
		{"bad priority", Message{Type: TypeData, Priority: 5}, `encode message: field "priority": invalid priority 5, expected 0..4`},
		{"bad reliability", Message{Type: TypeData, Reliability: -1}, `encode message: field "reliability": invalid reliability -1, expected 0..2`},
		{"wrong payload", Message{Type: TypeData, Alert: &Alert{}}, `encode message: field "payload": the Alert payload is set on a DATA message; only the payload of its type may be set`},
		{"two payloads", Message{Type: TypeRequest, Request: &Request{}, Response: &Response{}}, `encode message: field "payload": the Response payload is set on a REQUEST message; only the payload of its type may be set`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("keep")
			got, err := AppendJSON(dst, &tc.msg)
			if err == nil {
				t.Fatalf("no error; encoded %s", got)
			}
			if err.Error() != tc.want {
				t.Errorf("error:\ngot  %s\nwant %s", err, tc.want)
			}
			if string(got) != "keep" {
				t.Errorf("dst not restored: %q", got)
			}
			if n := EncodedSize(&tc.msg); n != -1 {
				t.Errorf("EncodedSize = %d, want -1", n)
			}
			if _, err := Encode([]Message{{ClientID: "ok", Type: TypeData}, tc.msg}); err == nil ||
				!strings.HasPrefix(err.Error(), "encode message 1: ") {
				t.Errorf("Encode error = %v, want it to name message 1", err)
			}
			if _, err := tc.msg.MarshalJSON(); err == nil {
				t.Error("MarshalJSON: no error")
			}
		})
	}
	if _, err := AppendJSON(nil, nil); err == nil || err.Error() != "encode message: nil message" {
		t.Errorf("nil message: %v", err)
	}
	if n := EncodedSize(nil); n != -1 {
		t.Errorf("EncodedSize(nil) = %d", n)
	}
}

// stringCases exercise every escaping rule.
var stringCases = []string{
	"", "plain", `quote " and backslash \`, "controls \x00\x01\x08\x0c\n\r\t\x1f\x7f",
	"html <a href=\"x\">&amp;</a>", "unicode héllo 世界 🙂", "line sep \u2028 para sep \u2029",
	"invalid \xff\xfe utf8 \xc3", "truncated \xe4\xb8", "surrogate half \xed\xa0\x80", "/slash/",
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range stringCases {
		t.Run(s, func(t *testing.T) { checkString(t, s) })
	}
}

// checkString compares appendString with encoding/json (HTML escaping off) and stringSize.
func checkString(t *testing.T, s string) {
	t.Helper()
	got := appendString(nil, s)
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	if string(got) != strings.TrimSuffix(want.String(), "\n") {
		t.Errorf("appendString(%q) = %s, encoding/json = %s", s, got, want.Bytes())
	}
	if n := stringSize(s); n != len(got) {
		t.Errorf("stringSize(%q) = %d, want %d", s, n, len(got))
	}
}

func TestValidNumber(t *testing.T) {
	for _, s := range []string{"0", "-0", "1", "-12", "1.5", "1e5", "1E+5", "1.25e-3", "123456789012345678901234567890"} {
		if !validNumber(s) {
			t.Errorf("validNumber(%q) = false", s)
		}
	}
	for _, s := range []string{"", "-", "01", "1.", ".5", "1e", "1e+", "+1", "0x10", "NaN", "1.5.5", "- 1", "1 "} {
		if validNumber(s) {
			t.Errorf("validNumber(%q) = true", s)
		}
	}
}

func TestIntSize(t *testing.T) {
	for _, v := range []int64{0, 9, 10, -1, -10, 99, 100, math.MaxInt64, math.MinInt64, 1700000000123} {
		if got, want := intSize(v), len(strconv.FormatInt(v, 10)); got != want {
			t.Errorf("intSize(%d) = %d, want %d", v, got, want)
		}
	}
}
