package virtual_test

import (
	"errors"
	"testing"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/virtual"
)

const (
	attrs   = "deviceModels/urn:test:thermostat/attributes"
	actions = "deviceModels/urn:test:thermostat/actions"
)

var override = map[string][]string{"x-http-method-override": {"PATCH"}}

func TestHandleRequestRefused(t *testing.T) {
	const (
		wantPut   = `, expected {"value": <value>}`
		wantPatch = `, expected {"<attribute>": <value>, ...}`
		wantAct   = `, expected {"value": <value>}, {"<argument>": <value>, ...} or an empty body`
	)
	notRequest := request("PUT", attrs+"/mode", `{"value":"eco"}`, nil)
	notRequest.Type = message.TypeData
	noPayload := request("PUT", attrs+"/mode", `{"value":"eco"}`, nil)
	noPayload.Request = nil
	otherEndpoint := request("PUT", attrs+"/mode", `{"value":"eco"}`, nil)
	otherEndpoint.Destination = "ep-2"

	tests := []struct {
		name   string
		req    *message.Message
		status int
		body   string
	}{
		// The message itself.
		{"nil message", nil, 400, "request: not a REQUEST message with a request payload"},
		{"not a REQUEST", notRequest, 400, "request: not a REQUEST message with a request payload"},
		{"no request payload", noPayload, 400, "request: not a REQUEST message with a request payload"},
		{"another endpoint", otherEndpoint, 404, `request: destination "ep-2" is not endpoint "ep-1"`},
		// The URL.
		{"not a device model url", request("PUT", "foo/bar", "", nil), 404,
			`url "foo/bar": not a resource of device model "urn:test:thermostat", expected deviceModels/<urn>/attributes[/<name>] or deviceModels/<urn>/actions/<name>`},
		{"actions without a name", request("POST", actions, "", nil), 404,
			`url "deviceModels/urn:test:thermostat/actions": not a resource of device model "urn:test:thermostat", expected deviceModels/<urn>/attributes[/<name>] or deviceModels/<urn>/actions/<name>`},
		{"too deep", request("PUT", attrs+"/mode/x", "", nil), 404,
			`url "deviceModels/urn:test:thermostat/attributes/mode/x": not a resource of device model "urn:test:thermostat", expected deviceModels/<urn>/attributes[/<name>] or deviceModels/<urn>/actions/<name>`},
		{"another model", request("PUT", "deviceModels/urn:other/attributes/mode", `{"value":1}`, nil), 404,
			`url "deviceModels/urn:other/attributes/mode": device model "urn:other" is not the model of this device, expected "urn:test:thermostat"`},
		// PUT one attribute.
		{"unknown attribute", request("PUT", attrs+"/nope", `{"value":1}`, nil), 404,
			`attribute "nope": not in device model "urn:test:thermostat"`},
		{"attribute with GET", request("GET", attrs+"/sp", "", nil), 405,
			`attribute "setpoint": method GET not allowed, expected PUT`},
		{"attribute with PATCH", request("POST", attrs+"/sp", `{"value":9}`, override), 405,
			`attribute "setpoint": method PATCH not allowed, expected PUT`},
		{"attribute without method", request("", attrs+"/sp", `{"value":9}`, nil), 405,
			`attribute "setpoint": method "" not allowed, expected PUT`},
		{"read-only attribute", request("PUT", attrs+"/temp", `{"value":20}`, nil), 400,
			`attribute "temperature": read-only in device model "urn:test:thermostat", the cloud may set only writable attributes`},
		{"out of range", request("PUT", attrs+"/setpoint", `{"value":31}`, nil), 400,
			`attribute "setpoint": 31 is out of range 5..30`},
		{"wrong type", request("PUT", attrs+"/setpoint", `{"value":"warm"}`, nil), 400,
			`attribute "setpoint": want INTEGER, got "warm"`},
		{"not an integer", request("PUT", attrs+"/setpoint", `{"value":20.5}`, nil), 400,
			`attribute "setpoint": want INTEGER, got 20.5`},
		{"empty body", request("PUT", attrs+"/setpoint", "", nil), 400,
			`attribute "setpoint": body is empty` + wantPut},
		{"not JSON", request("PUT", attrs+"/setpoint", "value=3", nil), 400,
			`attribute "setpoint": body is not JSON (invalid character 'v' looking for beginning of value)` + wantPut},
		{"truncated JSON", request("PUT", attrs+"/setpoint", `{"value":`, nil), 400,
			`attribute "setpoint": body is not JSON (unexpected end of JSON input)` + wantPut},
		{"bad JSON value", request("PUT", attrs+"/setpoint", `{"value":tru}`, nil), 400,
			`attribute "setpoint": body is not JSON (invalid character '}' in literal true (expecting 'e'))` + wantPut},
		{"not an object", request("PUT", attrs+"/setpoint", `[{"value":3}]`, nil), 400,
			`attribute "setpoint": body is not a JSON object` + wantPut},
		{"data after the object", request("PUT", attrs+"/setpoint", `{"value":6} {}`, nil), 400,
			`attribute "setpoint": body is not JSON (invalid character '{' after top-level value)` + wantPut},
		{"no key", request("PUT", attrs+"/setpoint", `{}`, nil), 400,
			`attribute "setpoint": body has no key` + wantPut},
		{"wrong keys", request("PUT", attrs+"/setpoint", `{"setpoint":6,"x":1}`, nil), 400,
			`attribute "setpoint": body has the keys "setpoint", "x"` + wantPut},
		{"duplicate key", request("PUT", attrs+"/setpoint", `{"value":6,"value":7}`, nil), 400,
			`attribute "setpoint": body has the key "value" twice` + wantPut},
		// PATCH several attributes.
		{"attributes with PUT", request("PUT", attrs, `{"mode":"eco"}`, nil), 405,
			`attributes of device model "urn:test:thermostat": method PUT not allowed, expected PATCH (or POST with x-http-method-override: PATCH)`},
		{"attributes with POST and no override", request("POST", attrs, `{"mode":"eco"}`, nil), 405,
			`attributes of device model "urn:test:thermostat": method POST not allowed, expected PATCH (or POST with x-http-method-override: PATCH)`},
		{"patch without attributes", request("PATCH", attrs, `{}`, nil), 400,
			`attributes of device model "urn:test:thermostat": body has no attribute` + wantPatch},
		{"patch empty body", request("PATCH", attrs, ``, nil), 400,
			`attributes of device model "urn:test:thermostat": body is empty` + wantPatch},
		{"patch not an object", request("PATCH", attrs, `"mode"`, nil), 400,
			`attributes of device model "urn:test:thermostat": body is not a JSON object` + wantPatch},
		{"patch with every kind of fault", request("POST", attrs,
			`{"mode":"eco","nope":1,"temp":3,"sp":40,"enabled":"yes","setpoint":10,"since":5}`, override), 400,
			`attribute "nope": not in device model "urn:test:thermostat"` + "\n" +
				`attribute "temperature": read-only in device model "urn:test:thermostat", the cloud may set only writable attributes` + "\n" +
				`attribute "setpoint": 40 is out of range 5..30` + "\n" +
				`attribute "enabled": want BOOLEAN, got "yes"` + "\n" +
				`attribute "setpoint": set twice in one request (as "sp" and "setpoint")`},
		// Actions.
		{"unknown action", request("POST", actions+"/explode", "", nil), 404,
			`action "explode": not in device model "urn:test:thermostat"`},
		{"action with PUT", request("PUT", actions+"/restart", "", nil), 405,
			`action "reboot": method PUT not allowed, expected POST`},
		{"action body not JSON", request("POST", actions+"/boost", `{value:1}`, nil), 400,
			`action "boost": body is not JSON (invalid character 'v' looking for beginning of object key string)` + wantAct},
		{"legacy argument out of range", request("POST", actions+"/boost", `{"value":61}`, nil), 400,
			`action "boost": argument "value": 61 is out of range 1..60`},
		{"legacy argument missing", request("POST", actions+"/boost", ``, nil), 400,
			`action "boost": argument "value" is missing`},
		{"arguments wrong", request("POST", actions+"/schedule", `{"at":"soon","setpoint":4,"extra":1}`, nil), 400,
			`action "schedule": unknown argument "extra": want one of "at", "setpoint"` + "\n" +
				`action "schedule": argument "at": want DATETIME (epoch milliseconds or an RFC 3339 string), got "soon"` + "\n" +
				`action "schedule": argument "setpoint": 4 is out of range 5..30`},
		{"argument to an action without arguments", request("POST", actions+"/reboot", `{"value":1}`, nil), 400,
			`action "reboot": unknown argument "value": the action takes no arguments`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := thermostat(t)
			before := values(d.Values())
			o := d.HandleRequest(tt.req, t0)
			if !o.Final() || o.Changes != nil || o.Invocation != nil {
				t.Fatalf("outcome = %+v, want final only", o)
			}
			r := o.Response.Response
			if r == nil || r.StatusCode != tt.status || string(r.Body) != tt.body {
				t.Fatalf("response = %d %q\nwant       %d %q", r.StatusCode, r.Body, tt.status, tt.body)
			}
			if got := values(d.Values()); got != before {
				t.Errorf("state changed: %s, was %s", got, before)
			}
			res := d.Complete(o, errors.New("ignored"), t0)
			if res.Response.Response != r || res.Data != nil {
				t.Errorf("Complete of a final outcome = %+v, want its own response and no data", res)
			}
		})
	}
}

func TestHandleRequestAccepted(t *testing.T) {
	tests := []struct {
		name        string
		req         *message.Message
		wantChanges string
		wantInvoke  string
	}{
		{"put by name", request("PUT", attrs+"/setpoint", `{"value":25}`, nil), "setpoint: 20 -> 25", ""},
		{"put by alias, slashes tolerated", request("put", "/"+attrs+"/sp/", ` {"value": 6} `, nil), "setpoint: 20 -> 6", ""},
		{"put same value", request("PUT", attrs+"/mode", `{"value":"auto"}`, nil), `mode: "auto" -> "auto"`, ""},
		{"put with no old value", request("PUT", attrs+"/enabled", `{"value":true}`, nil), "enabled: <no value> -> true", ""},
		{"patch in body order", request("PATCH", attrs, `{"sp":22,"mode":"eco","since":1700000000000}`, nil),
			`setpoint: 20 -> 22, mode: "auto" -> "eco", since: <no value> -> 2023-11-14T22:13:20.000Z`, ""},
		{"patch as POST with override", request("POST", attrs, `{"enabled":false}`, override), "enabled: <no value> -> false", ""},
		{"patch as PUT with override", request("PUT", attrs, `{"enabled":false}`, override), "enabled: <no value> -> false", ""},
		{"action without arguments by alias", request("POST", actions+"/restart", "", nil), "", "reboot()"},
		{"action without arguments, empty object", request("POST", actions+"/reboot", "{}", nil), "", "reboot()"},
		{"legacy single argument", request("POST", actions+"/boost", `{"value":10}`, nil), "", "boost(value=10)"},
		{"named arguments", request("POST", actions+"/schedule", `{"at":1700000000000,"setpoint":18}`, nil), "",
			"schedule(at=2023-11-14T22:13:20.000Z, setpoint=18)"},
		{"named argument default", request("POST", actions+"/schedule", `{"at":"2023-11-14T22:13:20Z"}`, nil), "",
			"schedule(at=2023-11-14T22:13:20.000Z, setpoint=21)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := thermostat(t)
			before := values(d.Values())
			o := d.HandleRequest(tt.req, t0)
			if o.Final() {
				t.Fatalf("final outcome %d %q, want changes or an invocation", o.Response.Response.StatusCode, o.Response.Response.Body)
			}
			if got := changes(o.Changes); got != tt.wantChanges {
				t.Errorf("changes = %s, want %s", got, tt.wantChanges)
			}
			if got := invocation(o.Invocation); got != tt.wantInvoke {
				t.Errorf("invocation = %s, want %s", got, tt.wantInvoke)
			}
			if o.Request != tt.req {
				t.Errorf("outcome does not carry the request")
			}
			if got := values(d.Values()); got != before {
				t.Errorf("HandleRequest committed: %s, was %s", got, before)
			}
		})
	}
}

func TestCompleteSet(t *testing.T) {
	d := thermostat(t)
	req := request("POST", attrs, `{"sp":22,"mode":"eco"}`, override)
	o := d.HandleRequest(req, t0)
	r := d.Complete(o, nil, t0)

	resp := r.Response
	if resp.Type != message.TypeResponse || resp.ClientID != "id-1" || resp.Source != ep || resp.Destination != "cloud" ||
		!resp.EventTime.Equal(t0) || resp.Response == nil {
		t.Fatalf("response envelope = %+v", resp)
	}
	if p := resp.Response; p.StatusCode != 200 || string(p.Body) != "OK" || p.RequestID != "req-1" || p.URL != attrs {
		t.Errorf("response payload = %+v, want 200 OK req-1 %s", p, attrs)
	}
	if r.Data == nil || r.Data.Type != message.TypeData || r.Data.Source != ep || r.Data.ClientID != "id-2" ||
		r.Data.Data.Format != "urn:test:thermostat:attributes" || !r.Data.EventTime.Equal(t0) {
		t.Fatalf("echo = %+v", r.Data)
	}
	if got := fields(r.Data.Data.Fields); got != `setpoint=22 mode="eco"` {
		t.Errorf("echo fields = %s", got)
	}
	if got := values(d.Values()); got != `mode="eco" setpoint=22` {
		t.Errorf("state = %s, want committed", got)
	}
}

func TestCompleteAction(t *testing.T) {
	d := thermostat(t)
	o := d.HandleRequest(request("POST", actions+"/boost", `{"value":3}`, nil), t0)
	r := d.Complete(o, nil, t0)
	if p := r.Response.Response; p.StatusCode != 200 || string(p.Body) != "OK" || r.Data != nil {
		t.Errorf("Complete = %+v data %v, want 200 OK and no data", p, r.Data)
	}
}

func TestCompleteHandlerError(t *testing.T) {
	tests := []struct {
		name string
		req  *message.Message
	}{
		{"set", request("PUT", attrs+"/sp", `{"value":9}`, nil)},
		{"action", request("POST", actions+"/reboot", ``, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := thermostat(t)
			o := d.HandleRequest(tt.req, t0)
			r := d.Complete(o, errors.New("relay stuck at 12V"), t0)
			if p := r.Response.Response; p.StatusCode != 500 || string(p.Body) != "relay stuck at 12V" || r.Data != nil {
				t.Errorf("Complete = %+v data %v, want 500 with the handler's text", p, r.Data)
			}
			if got := values(d.Values()); got != `mode="auto" setpoint=20` {
				t.Errorf("state = %s, want unchanged", got)
			}
		})
	}
}

func TestCompleteBadOutcome(t *testing.T) {
	const want = "complete: the outcome has no request or nothing to run, expected one returned by HandleRequest"
	tests := []struct {
		name string
		o    virtual.Outcome
	}{
		{"zero outcome", virtual.Outcome{}},
		{"nothing to run", virtual.Outcome{Request: request("PUT", attrs+"/sp", `{"value":9}`, nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := thermostat(t).Complete(tt.o, nil, t0)
			if p := r.Response.Response; p.StatusCode != 500 || string(p.Body) != want {
				t.Errorf("Complete = %d %q, want 500 %q", p.StatusCode, p.Body, want)
			}
		})
	}
}

func TestResponseEnvelope(t *testing.T) {
	noDest := request("PUT", attrs+"/nope", "", nil)
	noDest.Destination = ""
	tests := []struct {
		name       string
		req        *message.Message
		wantSource string
		wantDest   string
		wantReqID  string
		wantURL    string
	}{
		{"from the request", request("PUT", attrs+"/nope", "", nil), ep, "cloud", "req-1", attrs + "/nope"},
		{"no destination: the endpoint", noDest, ep, "cloud", "req-1", attrs + "/nope"},
		{"nil request", nil, ep, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := thermostat(t).HandleRequest(tt.req, t0).Response
			p := m.Response
			if m.Source != tt.wantSource || m.Destination != tt.wantDest || p.RequestID != tt.wantReqID || p.URL != tt.wantURL {
				t.Errorf("response = source %q destination %q requestId %q url %q, want %q %q %q %q",
					m.Source, m.Destination, p.RequestID, p.URL, tt.wantSource, tt.wantDest, tt.wantReqID, tt.wantURL)
			}
		})
	}
}

// TestResponsesEncode checks that what the device sends can go on the wire.
func TestResponsesEncode(t *testing.T) {
	d := thermostat(t)
	o := d.HandleRequest(request("PUT", attrs+"/sp", `{"value":9}`, nil), t0)
	r := d.Complete(o, nil, t0)
	bad := d.HandleRequest(request("PUT", attrs+"/sp", `{"value":99}`, nil), t0)
	if _, err := message.Encode([]message.Message{r.Response, *r.Data, *bad.Response}); err != nil {
		t.Fatal(err)
	}
}
