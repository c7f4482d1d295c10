package message

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	for _, tc := range samples() {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := Encode([]Message{tc.msg})
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(enc)
			if err != nil {
				t.Fatalf("Decode(%s): %v", enc, err)
			}
			if len(got) != 1 {
				t.Fatalf("decoded %d messages", len(got))
			}
			if !reflect.DeepEqual(got[0], tc.msg) {
				t.Errorf("round trip differs\ngot:  %#v\nwant: %#v", got[0], tc.msg)
			}
			var one Message
			if err := one.UnmarshalJSON(enc[1 : len(enc)-1]); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(one, tc.msg) {
				t.Errorf("UnmarshalJSON differs\ngot:  %#v\nwant: %#v", one, tc.msg)
			}
		})
	}
}

func TestDecodeEmpty(t *testing.T) {
	for _, in := range []string{"", " \n\t\r ", "null", " null ", "[]", " [ ] "} {
		t.Run(in, func(t *testing.T) {
			msgs, err := Decode([]byte(in))
			if msgs != nil || err != nil {
				t.Errorf("Decode(%q) = %v, %v; want nil, nil", in, msgs, err)
			}
		})
	}
}

func TestDecodeLenient(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Message
	}{
		{"defaults", `{"type":"DATA"}`, Message{Type: TypeData, Priority: PriorityLow}},
		{"nulls", `{"id":null,"clientId":null,"source":null,"destination":null,"sender":null,"priority":null,` +
			`"reliability":null,"eventTime":null,"type":"DATA","properties":null,"payload":null}`,
			Message{Type: TypeData, Priority: PriorityLow}},
		{"unknown keys", `{"type":"DATA","remainingRetries":3,"x":{"y":[1,{"z":null}],"w":"\u00e9"},"clientId":"c"}`,
			Message{Type: TypeData, Priority: PriorityLow, ClientID: "c"}},
		{"empty properties", `{"type":"DATA","properties":{}}`, Message{Type: TypeData, Priority: PriorityLow}},
		{"whitespace", " {\n \"type\" : \"DATA\" ,\t\"eventTime\" : 1000 } ",
			Message{Type: TypeData, Priority: PriorityLow, EventTime: time.UnixMilli(1000).UTC()}},
		{"zero event time", `{"type":"DATA","eventTime":0}`, Message{Type: TypeData, Priority: PriorityLow}},
		{"exponent event time", `{"type":"DATA","eventTime":1.5e3}`,
			Message{Type: TypeData, Priority: PriorityLow, EventTime: time.UnixMilli(1500).UTC()}},
		{"payload before type", `{"payload":{"format":"f","data":{"a":1}},"type":"DATA"}`,
			Message{Type: TypeData, Priority: PriorityLow, Data: &Data{Format: "f", Fields: []Field{{"a", int64(1)}}}}},
		{"type repeated after payload", `{"type":"DATA","payload":{"format":"f"},"type":"ALERT"}`,
			Message{Type: TypeAlert, Priority: PriorityLow, Alert: &Alert{Format: "f"}}},
		{"payload repeated", `{"type":"DATA","payload":{"format":"f"},"payload":null}`,
			Message{Type: TypeData, Priority: PriorityLow}},
		{"key repeated", `{"type":"DATA","clientId":"a","clientId":"b"}`,
			Message{Type: TypeData, Priority: PriorityLow, ClientID: "b"}},
		{"data missing", `{"type":"DATA","payload":{"format":"f","extra":[]}}`,
			Message{Type: TypeData, Priority: PriorityLow, Data: &Data{Format: "f"}}},
		{"empty data", `{"type":"DATA","payload":{"data":{}}}`,
			Message{Type: TypeData, Priority: PriorityLow, Data: &Data{}}},
		{"repeated fields kept", `{"type":"DATA","payload":{"data":{"a":1,"a":"x"}}}`,
			Message{Type: TypeData, Priority: PriorityLow, Data: &Data{Fields: []Field{{"a", int64(1)}, {"a", "x"}}}}},
		{"empty request", `{"type":"REQUEST","payload":{"headers":{},"params":{},"body":""}}`,
			Message{Type: TypeRequest, Priority: PriorityLow, Request: &Request{}}},
		{"request nulls", `{"type":"REQUEST","payload":{"method":null,"headers":{"h":null,"g":[null]},"params":null,"body":null}}`,
			Message{Type: TypeRequest, Priority: PriorityLow, Request: &Request{Headers: map[string][]string{"h": nil, "g": {""}}}}},
		{"unpadded body", `{"type":"RESPONSE","payload":{"statusCode":200,"body":"T0s"}}`,
			Message{Type: TypeResponse, Priority: PriorityLow, Response: &Response{StatusCode: 200, Body: []byte("OK")}}},
		{"report without encoding", `{"type":"RESOURCES_REPORT","payload":{"value":{"reportType":"DELETE","resources":null}}}`,
			Message{Type: TypeResourcesReport, Priority: PriorityLow, Report: &ResourcesReport{ReportType: ReportDelete}}},
		{"report value null", `{"type":"RESOURCES_REPORT","payload":{"type":"JSON","value":null,"more":1}}`,
			Message{Type: TypeResourcesReport, Priority: PriorityLow, Report: &ResourcesReport{}}},
		{"resource extra keys", `{"type":"RESOURCES_REPORT","payload":{"value":{"resources":[{"path":"p","x":1}],"y":2}}}`,
			Message{Type: TypeResourcesReport, Priority: PriorityLow, Report: &ResourcesReport{Resources: []Resource{{Path: "p"}}}}},
		{"escaped keys", `{"t\u0079pe":"D\u0041TA","client\u0049d":"\u00e9\ud83d\ude42"}`,
			Message{Type: TypeData, Priority: PriorityLow, ClientID: "é🙂"}},
		{"all enums", `{"type":"ALERT","priority":"MEDIUM","reliability":"NO_GUARANTEE","payload":{"severity":"LOW"}}`,
			Message{Type: TypeAlert, Priority: PriorityMedium, Reliability: NoGuarantee, Alert: &Alert{Severity: SeverityLow}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode([]byte("[" + tc.in + "]"))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], tc.want) {
				t.Errorf("got  %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestDecodeNumbers(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{"0", int64(0)},
		{"-0", int64(0)},
		{"-0.0", int64(0)},
		{"42", int64(42)},
		{"-42", int64(-42)},
		{"1.0", int64(1)},
		{"1e3", int64(1000)},
		{"2.5", 2.5},
		{"-1.25e-3", -0.00125},
		{"9223372036854775807", int64(math.MaxInt64)},
		{"-9223372036854775808", int64(math.MinInt64)},
		{"9223372036854775808", 9223372036854775808.0},
		{"1e19", 1e19},
		{"123456789012345678901234567890", 1.2345678901234568e29},
		{"1e-400", int64(0)},
		{"1.7976931348623157e308", math.MaxFloat64},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Decode([]byte(`[{"type":"DATA","payload":{"data":{"v":` + tc.in + `}}}]`))
			if err != nil {
				t.Fatal(err)
			}
			if v := got[0].Data.Fields[0].Value; v != tc.want {
				t.Errorf("got %T %v, want %T %v", v, v, tc.want, tc.want)
			}
		})
	}
}

func TestDecodeStrings(t *testing.T) {
	tests := []struct{ in, want string }{
		{`"plain"`, "plain"},
		{`"\"\\\/\b\f\n\r\t"`, "\"\\/\b\f\n\r\t"},
		{`"\u0041\u00e9\u4e16"`, "Aé世"},
		{`"\ud83d\ude42"`, "🙂"},
		{`"\ud83d"`, "\ufffd"},
		{`"\ude42x"`, "\ufffdx"},
		{`"\ud83d\u0041"`, "\ufffdA"},
		{`"\ud83dx"`, "\ufffdx"},
		{"\"raw \xff byte\"", "raw \ufffd byte"},
		{"\"raw é\"", "raw é"},
		{"\"trunc \xe4\xb8\"", "trunc \ufffd\ufffd"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Decode([]byte(`[{"type":"DATA","clientId":` + tc.in + `}]`))
			if err != nil {
				t.Fatal(err)
			}
			if got[0].ClientID != tc.want {
				t.Errorf("got %q, want %q", got[0].ClientID, tc.want)
			}
			var std string
			if err := json.Unmarshal([]byte(tc.in), &std); err == nil && std != tc.want {
				t.Errorf("encoding/json decodes %q", std)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	deep := strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)
	tests := []struct {
		name, in, want string
		index          int
		field          string
	}{
		{"unknown priority", `[{"clientId":"a","type":"DATA"},{"type":"DATA"},{"type":"DATA","priority":"URGENT"}]`,
			`message 2: field "priority": unknown priority "URGENT"`, 2, "priority"},
		{"lower-case priority", `[{"type":"DATA","priority":"low"}]`, `message 0: field "priority": unknown priority "low"`, 0, "priority"},
		{"unknown reliability", `[{"type":"DATA","reliability":"MAYBE"}]`, `message 0: field "reliability": unknown reliability "MAYBE"`, 0, "reliability"},
		{"priority number", `[{"type":"DATA","priority":1}]`, `message 0: field "priority": expected a string, got a number`, 0, "priority"},
		{"bad base64", `[{"type":"REQUEST","payload":{"method":"GET","body":"QUJD$Q=="}}]`,
			`message 0: field "payload.body": illegal base64 data at input byte 4`, 0, "payload.body"},
		{"base64 number", `[{"type":"REQUEST","payload":{"body":7}}]`,
			`message 0: field "payload.body": expected a base64 string, got a number`, 0, "payload.body"},
		{"response body", `[{"type":"RESPONSE","payload":{"body":"T0s=="}}]`,
			`message 0: field "payload.body": illegal base64 data at input byte 4`, 0, "payload.body"},
		{"object body", `{"a":1}`, `expected a JSON array of messages, got an object`, -1, ""},
		{"string body", `"x"`, `expected a JSON array of messages, got a string`, -1, ""},
		{"not an object", `[{"type":"DATA"},1]`, `message 1: expected an object, got a number`, 1, ""},
		{"null message", `[null]`, `message 0: expected an object, got null`, 0, ""},
		{"trailing comma", `[{"type":"DATA"},]`, `message 1: invalid JSON at byte offset 17: expected a value, found ']'`, 1, ""},
		{"unterminated array", `[{"type":"DATA"}`, `invalid JSON at byte offset 16: unexpected end of input`, -1, ""},
		{"missing comma", `[{"type":"DATA"}{}]`, `invalid JSON at byte offset 16: expected ',' or ']' after array element, found '{'`, -1, ""},
		{"trailing data", `[{"type":"DATA"}] x`, `invalid JSON at byte offset 18: unexpected 'x' after the top-level value`, -1, ""},
		{"bad null", `nul`, `invalid JSON at byte offset 3: unexpected end of input`, -1, ""},
		{"bad literal", `nulL`, `invalid JSON at byte offset 3: invalid literal, expected "null"`, -1, ""},
		{"null then data", `null x`, `invalid JSON at byte offset 5: unexpected 'x' after the top-level value`, -1, ""},
		{"binary", "\xff", `invalid JSON at byte offset 0: expected a value, found byte 0xff`, -1, ""},
		{"array field", `[{"type":"DATA","payload":{"data":{"x":[1]}}}]`,
			`message 0: field "payload.data.x": expected a string, number, boolean or null, got an array`, 0, "payload.data.x"},
		{"object field", `[{"type":"ALERT","payload":{"data":{"x":{}}}}]`,
			`message 0: field "payload.data.x": expected a string, number, boolean or null, got an object`, 0, "payload.data.x"},
		{"huge number", `[{"type":"DATA","payload":{"data":{"x":1e400}}}]`,
			`message 0: field "payload.data.x": number 1e400 is out of the range of a 64-bit float`, 0, "payload.data.x"},
		{"leading zero", `[{"type":"DATA","payload":{"data":{"x":01}}}]`,
			`message 0: field "payload.data.x": invalid JSON at byte offset 39: invalid number literal "01"`, 0, "payload.data.x"},
		{"bad escape", `[{"type":"DATA","payload":{"data":{"x":"\q"}}}]`,
			`message 0: field "payload.data.x": invalid JSON at byte offset 41: invalid escape sequence '\q' in string literal`, 0, "payload.data.x"},
		{"control character", "[{\"type\":\"DATA\",\"payload\":{\"data\":{\"x\":\"a\x01\"}}}]",
			`message 0: field "payload.data.x": invalid JSON at byte offset 41: control character byte 0x01 in string literal; it must be escaped`, 0, "payload.data.x"},
		{"payload string", `[{"type":"DATA","payload":"x"}]`, `message 0: field "payload": expected an object, got a string`, 0, "payload"},
		{"late type, bad payload", `[{"payload":{"data":[]},"type":"DATA"}]`,
			`message 0: field "payload.data": expected an object, got an array`, 0, "payload.data"},
		{"late type, broken payload", `[{"payload":{"data":[},"type":"DATA"}]`,
			`message 0: field "payload": invalid JSON at byte offset 21: expected a value, found '}'`, 0, "payload"},
		{"clientId number", `[{"type":"DATA","clientId":5}]`, `message 0: field "clientId": expected a string, got a number`, 0, "clientId"},
		{"id bool", `[{"type":"DATA","id":true}]`, `message 0: field "id": expected a string, got a boolean`, 0, "id"},
		{"source array", `[{"type":"DATA","source":[]}]`, `message 0: field "source": expected a string, got an array`, 0, "source"},
		{"destination object", `[{"type":"DATA","destination":{}}]`, `message 0: field "destination": expected a string, got an object`, 0, "destination"},
		{"sender number", `[{"type":"DATA","sender":1}]`, `message 0: field "sender": expected a string, got a number`, 0, "sender"},
		{"fractional time", `[{"type":"DATA","eventTime":1.5}]`, `message 0: field "eventTime": expected an integer, got 1.5`, 0, "eventTime"},
		{"string time", `[{"type":"DATA","eventTime":"1"}]`, `message 0: field "eventTime": expected an integer, got a string`, 0, "eventTime"},
		{"far future", `[{"type":"DATA","eventTime":9000000000000000}]`,
			`message 0: field "eventTime": 9000000000000000 is out of range; expected epoch milliseconds within ±8640000000000000`, 0, "eventTime"},
		{"far past", `[{"type":"DATA","eventTime":-1e300}]`, `message 0: field "eventTime": -1e300 is out of the range of a 64-bit integer`, 0, "eventTime"},
		{"huge status", `[{"type":"RESPONSE","payload":{"statusCode":99999999999999999999}}]`,
			`message 0: field "payload.statusCode": 99999999999999999999 is out of the range of a 64-bit integer`, 0, "payload.statusCode"},
		{"overflowing time", `[{"type":"DATA","eventTime":1e999}]`, `message 0: field "eventTime": number 1e999 is out of the range of a 64-bit float`, 0, "eventTime"},
		{"unknown type", `[{"type":"DATUM"}]`, `message 0: field "type": unknown message type "DATUM"`, 0, "type"},
		{"lower-case type", `[{"type":"data"}]`, `message 0: field "type": unknown message type "data"`, 0, "type"},
		{"missing type", `[{"clientId":"x"}]`, `message 0: field "type": missing; expected DATA, ALERT, REQUEST, RESPONSE or RESOURCES_REPORT`, 0, "type"},
		{"property value type", `[{"type":"DATA","properties":{"k":["a",1]}}]`, `message 0: field "properties.k[1]": expected a string, got a number`, 0, "properties.k[1]"},
		{"property not a list", `[{"type":"DATA","properties":{"k":"a"}}]`, `message 0: field "properties.k": expected an array, got a string`, 0, "properties.k"},
		{"empty property key", `[{"properties":{"":0`, `message 0: field "properties.": expected an array, got a number`, 0, "properties."},
		{"properties list", `[{"type":"DATA","properties":[]}]`, `message 0: field "properties": expected an object, got an array`, 0, "properties"},
		{"header value type", `[{"type":"REQUEST","payload":{"headers":{"h":[true]}}}]`, `message 0: field "payload.headers.h[0]": expected a string, got a boolean`, 0, "payload.headers.h[0]"},
		{"param type", `[{"type":"REQUEST","payload":{"params":{"p":1}}}]`, `message 0: field "payload.params.p": expected a string, got a number`, 0, "payload.params.p"},
		{"method type", `[{"type":"REQUEST","payload":{"method":1}}]`, `message 0: field "payload.method": expected a string, got a number`, 0, "payload.method"},
		{"status string", `[{"type":"RESPONSE","payload":{"statusCode":"200"}}]`, `message 0: field "payload.statusCode": expected an integer, got a string`, 0, "payload.statusCode"},
		{"status fraction", `[{"type":"RESPONSE","payload":{"statusCode":200.5}}]`, `message 0: field "payload.statusCode": expected an integer, got 200.5`, 0, "payload.statusCode"},
		{"response headers", `[{"type":"RESPONSE","payload":{"headers":[]}}]`, `message 0: field "payload.headers": expected an object, got an array`, 0, "payload.headers"},
		{"request id type", `[{"type":"RESPONSE","payload":{"requestId":1}}]`, `message 0: field "payload.requestId": expected a string, got a number`, 0, "payload.requestId"},
		{"severity type", `[{"type":"ALERT","payload":{"severity":2}}]`, `message 0: field "payload.severity": expected a string, got a number`, 0, "payload.severity"},
		{"report encoding", `[{"type":"RESOURCES_REPORT","payload":{"type":"XML"}}]`,
			`message 0: field "payload.type": unsupported report encoding "XML", expected "JSON"`, 0, "payload.type"},
		{"resource field", `[{"type":"RESOURCES_REPORT","payload":{"value":{"resources":[{"path":"a"},{"path":1}]}}}]`,
			`message 0: field "payload.value.resources[1].path": expected a string, got a number`, 0, "payload.value.resources[1].path"},
		{"resource not object", `[{"type":"RESOURCES_REPORT","payload":{"value":{"resources":["a"]}}}]`,
			`message 0: field "payload.value.resources[0]": expected an object, got a string`, 0, "payload.value.resources[0]"},
		{"resources object", `[{"type":"RESOURCES_REPORT","payload":{"value":{"resources":{}}}}]`,
			`message 0: field "payload.value.resources": expected an array, got an object`, 0, "payload.value.resources"},
		{"report value", `[{"type":"RESOURCES_REPORT","payload":{"value":"x"}}]`,
			`message 0: field "payload.value": expected an object, got a string`, 0, "payload.value"},
		{"report type type", `[{"type":"RESOURCES_REPORT","payload":{"value":{"reportType":1}}}]`,
			`message 0: field "payload.value.reportType": expected a string, got a number`, 0, "payload.value.reportType"},
		{"unknown key broken", `[{"type":"DATA","x":{"y":[1,2,}}]`, `message 0: field "x": invalid JSON at byte offset 30: expected a value, found '}'`, 0, "x"},
		{"unknown payload key broken", `[{"type":"DATA","payload":{"x":tru}}]`, `message 0: field "payload.x": invalid JSON at byte offset 34: invalid literal, expected "true"`, 0, "payload.x"},
		{"missing colon", `[{"type":"DATA","x" 1}]`, `message 0: invalid JSON at byte offset 20: expected ':' after object key, found '1'`, 0, ""},
		{"missing member comma", `[{"type":"DATA" "x":1}]`, `message 0: invalid JSON at byte offset 16: expected ',' or '}' after object member, found '"'`, 0, ""},
		{"number key", `[{"type":"DATA",1:1}]`, `message 0: invalid JSON at byte offset 16: expected a string key, found '1'`, 0, ""},
		{"cut in object", `[{"type":"DATA","x":1`, `message 0: invalid JSON at byte offset 21: unexpected end of input`, 0, ""},
		{"cut in string", `[{"type":"DATA","x":"abc`, `message 0: field "x": invalid JSON at byte offset 24: unexpected end of input`, 0, "x"},
		{"cut in escaped string", `[{"type":"DATA","x":"a\u00e9`, `message 0: field "x": invalid JSON at byte offset 28: unexpected end of input`, 0, "x"},
		{"cut after backslash", `[{"type":"DATA","x":"a\`, `message 0: field "x": invalid JSON at byte offset 23: unexpected end of input`, 0, "x"},
		{"cut key", `[{"type":"DATA","x`, `message 0: invalid JSON at byte offset 18: unexpected end of input`, 0, ""},
		{"short unicode escape", `[{"type":"DATA","x":"\u12"}]`, `message 0: field "x": invalid JSON at byte offset 23: invalid \u escape, expected four hexadecimal digits`, 0, "x"},
		{"control in escaped string", "[{\"type\":\"DATA\",\"x\":\"\\n\x02\"}]", `message 0: field "x": invalid JSON at byte offset 23: control character byte 0x02 in string literal; it must be escaped`, 0, "x"},
		{"lone minus", `[{"type":"DATA","x":-}]`, `message 0: field "x": invalid JSON at byte offset 20: invalid number literal "-"`, 0, "x"},
		{"bad value", `[{"type":"DATA","x":@}]`, `message 0: field "x": invalid JSON at byte offset 20: expected a value, found '@'`, 0, "x"},
		{"cut value", `[{"type":"DATA","x":`, `message 0: field "x": invalid JSON at byte offset 20: unexpected end of input`, 0, "x"},
		{"cut data value", `[{"type":"DATA","payload":{"data":{"x":`, `message 0: field "payload.data.x": invalid JSON at byte offset 39: unexpected end of input`, 0, "payload.data.x"},
		{"bad false", `[{"type":"DATA","payload":{"data":{"x":fals}}}]`, `message 0: field "payload.data.x": invalid JSON at byte offset 43: invalid literal, expected "false"`, 0, "payload.data.x"},
		{"too deep", `[{"type":"DATA","x":` + deep + `}]`, `message 0: field "x": invalid JSON at byte offset 274: nesting deeper than 256 levels`, 0, "x"},
		{"cut array", `[{"type":"DATA","x":[1`, `message 0: field "x": invalid JSON at byte offset 22: unexpected end of input`, 0, "x"},
		{"bad array separator", `[{"type":"DATA","x":[1:2]}]`, `message 0: field "x": invalid JSON at byte offset 22: expected ',' or ']' after array element, found ':'`, 0, "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := Decode([]byte(tc.in))
			if err == nil {
				t.Fatalf("no error; decoded %#v", msgs)
			}
			if msgs != nil {
				t.Errorf("messages returned with the error: %v", msgs)
			}
			if err.Error() != tc.want {
				t.Errorf("error:\ngot  %s\nwant %s", err, tc.want)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error is %T, want *DecodeError", err)
			}
			if de.Index != tc.index || de.Field != tc.field {
				t.Errorf("Index, Field = %d, %q; want %d, %q", de.Index, de.Field, tc.index, tc.field)
			}
			if errors.Unwrap(err) != de.Err {
				t.Error("Unwrap does not return Err")
			}
		})
	}
}

func TestDecodeErrorUnwraps(t *testing.T) {
	_, err := Decode([]byte(`[{"type":"RESPONSE","payload":{"body":"AB$="}}]`))
	var ce base64.CorruptInputError
	if !errors.As(err, &ce) || ce != 2 {
		t.Errorf("errors.As(%v, CorruptInputError) = %v", err, ce)
	}
	m := Message{Type: TypeData, Data: &Data{Fields: []Field{{"x", json.Number("1x")}}}}
	if _, err := AppendJSON(nil, &m); errors.Unwrap(errors.Unwrap(err)) == nil {
		t.Errorf("encode error %v does not unwrap to its cause", err)
	}
}

func TestUnmarshalJSON(t *testing.T) {
	t.Run("null keeps the message", func(t *testing.T) {
		m := Message{ClientID: "keep"}
		if err := m.UnmarshalJSON([]byte(" null ")); err != nil || m.ClientID != "keep" {
			t.Errorf("err %v, ClientID %q", err, m.ClientID)
		}
	})
	t.Run("resets the message", func(t *testing.T) {
		m := Message{ClientID: "old", Data: &Data{}}
		if err := m.UnmarshalJSON([]byte(`{"type":"ALERT"}`)); err != nil {
			t.Fatal(err)
		}
		if want := (Message{Type: TypeAlert, Priority: PriorityLow}); !reflect.DeepEqual(m, want) {
			t.Errorf("got %#v", m)
		}
	})
	t.Run("via encoding/json", func(t *testing.T) {
		var msgs []Message
		if err := json.Unmarshal([]byte(`[{"type":"DATA","clientId":"a"},{"type":"ALERT"}]`), &msgs); err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 2 || msgs[0].ClientID != "a" || msgs[1].Type != TypeAlert {
			t.Errorf("got %#v", msgs)
		}
	})
	errorTests := []struct{ name, in, want string }{
		{"field", `{"type":"DATA","priority":"URGENT"}`, `field "priority": unknown priority "URGENT"`},
		{"array", `[]`, `expected an object, got an array`},
		{"trailing", `{"type":"DATA"} {}`, `invalid JSON at byte offset 16: unexpected '{' after the top-level value`},
		{"bad null", `nil`, `invalid JSON at byte offset 1: invalid literal, expected "null"`},
		{"null then data", `null 1`, `invalid JSON at byte offset 5: unexpected '1' after the top-level value`},
	}
	for _, tc := range errorTests {
		t.Run(tc.name, func(t *testing.T) {
			m := Message{ClientID: "keep"}
			err := m.UnmarshalJSON([]byte(tc.in))
			if err == nil || err.Error() != tc.want {
				t.Errorf("error:\ngot  %v\nwant %s", err, tc.want)
			}
			var de *DecodeError
			if !errors.As(err, &de) || de.Index != -1 {
				t.Errorf("want *DecodeError with Index -1, got %#v", err)
			}
			if m.ClientID != "keep" {
				t.Error("message modified on error")
			}
		})
	}
}

func TestDecodeDeepNestingLimit(t *testing.T) {
	ok := `[{"type":"DATA","x":` + strings.Repeat("[", maxDepth-2) + strings.Repeat("]", maxDepth-2) + `}]`
	if _, err := Decode([]byte(ok)); err != nil {
		t.Errorf("nesting of %d levels rejected: %v", maxDepth, err)
	}
	huge := strings.Repeat("[", 1_000_000)
	if _, err := Decode([]byte(huge)); err == nil {
		t.Error("1e6 levels accepted")
	}
}
