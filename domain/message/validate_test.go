package message

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestValidateSamples(t *testing.T) {
	for _, tc := range samples() {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.msg.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	long := strings.Repeat("x", MaxStringLength+1)
	longKey := strings.Repeat("k", MaxKeyLength+1)
	base := func(typ Type) Message {
		m := Message{ClientID: "c", Source: "s", Type: typ}
		switch typ {
		case TypeData:
			m.Data = &Data{Format: "urn:f"}
		case TypeAlert:
			m.Alert = &Alert{Format: "urn:a", Severity: SeverityNormal}
		case TypeRequest:
			m.Request = &Request{Method: "GET", URL: "u"}
		case TypeResponse:
			m.Response = &Response{StatusCode: 200, RequestID: "r"}
		case TypeResourcesReport:
			m.Report = &ResourcesReport{ReportType: ReportReconciliation, EndpointName: "e"}
		}
		return m
	}
	with := func(typ Type, change func(*Message)) Message {
		m := base(typ)
		change(&m)
		return m
	}
	tests := []struct {
		name string
		msg  Message
		want string // "" for valid; problems joined by newlines
	}{
		{"minimal data", base(TypeData), ""},
		{"minimal alert", base(TypeAlert), ""},
		{"minimal request", base(TypeRequest), ""},
		{"minimal response", base(TypeResponse), ""},
		{"minimal report", base(TypeResourcesReport), ""},
		{"limits exactly", with(TypeData, func(m *Message) {
			m.Data.Fields = []Field{{strings.Repeat("k", MaxKeyLength), strings.Repeat("v", MaxStringLength)}}
		}), ""},
		{"no client id", with(TypeData, func(m *Message) { m.ClientID = "" }),
			`field "clientId": missing; every message needs a unique client ID`},
		{"no source", with(TypeData, func(m *Message) { m.Source = "" }),
			`field "source": missing; expected the endpoint ID of the originator`},
		{"no type", Message{ClientID: "c", Source: "s"},
			`field "type": missing; expected DATA, ALERT, REQUEST, RESPONSE or RESOURCES_REPORT`},
		{"unknown type", Message{ClientID: "c", Source: "s", Type: "RESPONSE_WAIT"},
			`field "type": unknown message type "RESPONSE_WAIT"`},
		{"bad enums", with(TypeData, func(m *Message) { m.Priority = 9; m.Reliability = 4 }),
			"field \"priority\": invalid priority 9, expected 0..4\nfield \"reliability\": invalid reliability 4, expected 0..2"},
		{"everything missing", Message{Type: TypeData},
			"field \"clientId\": missing; every message needs a unique client ID\n" +
				"field \"source\": missing; expected the endpoint ID of the originator\n" +
				"field \"payload\": missing; a DATA message needs its Data payload"},
		{"wrong payload", with(TypeData, func(m *Message) { m.Data = nil; m.Report = &ResourcesReport{} }),
			"field \"payload\": the Report payload is set on a DATA message; only the payload of its type may be set\n" +
				"field \"payload\": missing; a DATA message needs its Data payload"},
		{"data without format", with(TypeData, func(m *Message) { m.Data.Format = "" }),
			`field "payload.format": missing; expected the format URN`},
		{"bad fields", with(TypeData, func(m *Message) {
			m.Data.Fields = []Field{{"a", 1}, {"", 2}, {"a", 3}, {"nan", math.NaN()}, {"num", json.Number("x")}, {"ch", make(chan int)}, {"s", long}}
		}),
			"field \"payload.data\": field 1 has an empty name\n" +
				"field \"payload.data.a\": repeated; each field may appear once\n" +
				"field \"payload.data.nan\": NaN is not a valid JSON number\n" +
				"field \"payload.data.num\": json.Number \"x\" is not a valid JSON number\n" +
				"field \"payload.data.ch\": unsupported value type chan int; expected nil, bool, string, int, int64, float64, time.Time or json.Number\n" +
				"field \"payload.data.s\": value is 65537 bytes long; at most 65536 are allowed"},
		{"many repeated fields", with(TypeData, func(m *Message) {
			for i := range 20 {
				m.Data.Fields = append(m.Data.Fields, Field{string(rune('a' + i)), i})
			}
			m.Data.Fields = append(m.Data.Fields, Field{"c", 0})
		}), `field "payload.data.c": repeated; each field may appear once`},
		{"long key", with(TypeData, func(m *Message) { m.Data.Fields = []Field{{longKey, 1}} }),
			`field "payload.data.` + strings.Repeat("k", 64) + `...": key is 2049 bytes long; at most 2048 are allowed`},
		{"long multibyte key is cut on a rune", with(TypeData, func(m *Message) {
			m.Data.Fields = []Field{{"a" + strings.Repeat("é", MaxKeyLength), 1}}
		}), `field "payload.data.a` + strings.Repeat("é", 31) + `...": key is 4097 bytes long; at most 2048 are allowed`},
		{"alert problems", with(TypeAlert, func(m *Message) { m.Alert.Format = ""; m.Alert.Severity = ""; m.Alert.Description = long }),
			"field \"payload.format\": missing; expected the alert format URN\n" +
				"field \"payload.severity\": missing; expected LOW, NORMAL, SIGNIFICANT or CRITICAL\n" +
				"field \"payload.description\": value is 65537 bytes long; at most 65536 are allowed"},
		{"unknown severity", with(TypeAlert, func(m *Message) { m.Alert.Severity = "HIGH" }),
			`field "payload.severity": unknown severity "HIGH"; expected LOW, NORMAL, SIGNIFICANT or CRITICAL`},
		{"alert field value", with(TypeAlert, func(m *Message) { m.Alert.Fields = []Field{{"x", math.Inf(1)}} }),
			`field "payload.data.x": +Inf is not a valid JSON number`},
		{"request problems", with(TypeRequest, func(m *Message) {
			m.Request.Method, m.Request.URL = "", ""
			m.Request.Headers = map[string][]string{"b": {"ok", long}, "a": {long}, longKey: nil}
			m.Request.Params = map[string]string{"p": long, "q": long}
		}),
			"field \"payload.method\": missing; expected an HTTP method\n" +
				"field \"payload.url\": missing; expected the resource path\n" +
				"field \"payload.headers.a[0]\": value is 65537 bytes long; at most 65536 are allowed\n" +
				"field \"payload.headers.b[1]\": value is 65537 bytes long; at most 65536 are allowed\n" +
				"field \"payload.headers." + strings.Repeat("k", 64) + "...\": key is 2049 bytes long; at most 2048 are allowed\n" +
				"field \"payload.params.p\": value is 65537 bytes long; at most 65536 are allowed\n" +
				"field \"payload.params.q\": value is 65537 bytes long; at most 65536 are allowed"},
		{"response problems", with(TypeResponse, func(m *Message) {
			m.Response.StatusCode, m.Response.RequestID, m.Response.URL = 99, "", long
		}),
			"field \"payload.statusCode\": 99 is not an HTTP status code; expected 100..599\n" +
				"field \"payload.url\": value is 65537 bytes long; at most 65536 are allowed\n" +
				"field \"payload.requestId\": missing; expected the id of the REQUEST answered"},
		{"status 600", with(TypeResponse, func(m *Message) { m.Response.StatusCode = 600 }),
			`field "payload.statusCode": 600 is not an HTTP status code; expected 100..599`},
		{"status bounds", with(TypeResponse, func(m *Message) { m.Response.StatusCode = 599 }), ""},
		{"report problems", with(TypeResourcesReport, func(m *Message) {
			m.Report.ReportType, m.Report.EndpointName = "", ""
			m.Report.Resources = []Resource{{Path: "p"}, {Name: long}}
			m.Report.ReconciliationMark = long
		}),
			"field \"payload.value.reportType\": missing; expected UPDATE, DELETE or RECONCILIATION\n" +
				"field \"payload.value.endpointName\": missing; expected the endpoint ID of the reporter\n" +
				"field \"payload.value.resources[1].name\": value is 65537 bytes long; at most 65536 are allowed\n" +
				"field \"payload.value.reconciliationMark\": value is 65537 bytes long; at most 65536 are allowed"},
		{"unknown report type", with(TypeResourcesReport, func(m *Message) { m.Report.ReportType = "ADD" }),
			`field "payload.value.reportType": unknown report type "ADD"; expected UPDATE, DELETE or RECONCILIATION`},
		{"envelope lengths", with(TypeData, func(m *Message) {
			m.ID, m.Destination, m.Sender = long, long, long
			m.Properties = map[string][]string{"p": {long}, longKey: {"v"}}
		}),
			"field \"id\": value is 65537 bytes long; at most 65536 are allowed\n" +
				"field \"destination\": value is 65537 bytes long; at most 65536 are allowed\n" +
				"field \"sender\": value is 65537 bytes long; at most 65536 are allowed\n" +
				"field \"properties." + strings.Repeat("k", 64) + "...\": key is 2049 bytes long; at most 2048 are allowed\n" +
				"field \"properties.p[0]\": value is 65537 bytes long; at most 65536 are allowed"},
		{"long client id", with(TypeData, func(m *Message) { m.ClientID = long }),
			`field "clientId": value is 65537 bytes long; at most 65536 are allowed`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.msg.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("Validate:\ngot  %s\nwant %s", got, tc.want)
			}
			if err == nil {
				if _, encErr := AppendJSON(nil, &tc.msg); encErr != nil {
					t.Errorf("valid message does not encode: %v", encErr)
				}
			}
		})
	}
	var nilMsg *Message
	if err := nilMsg.Validate(); err == nil || err.Error() != "nil message" {
		t.Errorf("nil message: %v", err)
	}
}
