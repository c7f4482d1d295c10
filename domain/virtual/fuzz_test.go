package virtual_test

import (
	"testing"

	"github.com/iotnode/iotnode/domain/message"
)

// FuzzHandleRequest feeds arbitrary requests to a device: it must never
// panic, must answer every refusal with a known status and a reason, and
// must commit nothing before Complete.
func FuzzHandleRequest(f *testing.F) {
	f.Add("PUT", attrs+"/sp", `{"value":25}`, "")
	f.Add("POST", attrs, `{"sp":22,"mode":"eco","since":"2023-11-14T22:13:20Z"}`, "PATCH")
	f.Add("POST", actions+"/schedule", `{"at":1700000000000,"setpoint":18}`, "")
	f.Add("POST", actions+"/boost", `{"value":1e400}`, "")
	f.Add("PATCH", attrs, `{"enabled":true,"enabled":false}`, "")
	f.Add("GET", "/deviceModels//attributes/", `[`, "")
	m := loadModel(f, "thermostat.json")
	f.Fuzz(func(t *testing.T, method, url, body, override string) {
		d := newDevice(m)
		var headers map[string][]string
		if override != "" {
			headers = map[string][]string{"x-http-method-override": {override}}
		}
		before := values(d.Values())
		o := d.HandleRequest(request(method, url, body, headers), t0)
		if values(d.Values()) != before {
			t.Fatalf("HandleRequest changed the state")
		}
		if o.Final() {
			switch r := o.Response.Response; r.StatusCode {
			case 400, 404, 405:
				if len(r.Body) == 0 {
					t.Fatalf("status %d without a reason", r.StatusCode)
				}
			default:
				t.Fatalf("final status %d", r.StatusCode)
			}
			return
		}
		if (len(o.Changes) == 0) == (o.Invocation == nil) {
			t.Fatalf("outcome has changes %v and invocation %v, want exactly one", o.Changes, o.Invocation)
		}
		r := d.Complete(o, nil, t0)
		if r.Response.Response.StatusCode != 200 {
			t.Fatalf("Complete status %d", r.Response.Response.StatusCode)
		}
		msgs := []message.Message{r.Response}
		if r.Data != nil {
			msgs = append(msgs, *r.Data)
		}
		if _, err := message.Encode(msgs); err != nil {
			t.Fatalf("encode: %v", err)
		}
	})
}
