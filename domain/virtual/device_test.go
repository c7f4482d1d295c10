package virtual_test

import (
	"testing"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/domain/virtual"
)

func TestNewSeedsDefaults(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"thermostat.json", `mode="auto" setpoint=20`},
		{"temperature_sensor.json", `maxThreshold=70 minThreshold=0 unit="C"`},
		{"light_switch.json", `brightness=100 power=false`},
		{"humidity_sensor.json", `maxThreshold=80`},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			d := virtual.New(ep, loadModel(t, tt.file), seq())
			if got := values(d.Values()); got != tt.want {
				t.Errorf("Values() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestGet(t *testing.T) {
	d := thermostat(t)
	tests := []struct {
		name   string
		key    string
		want   string
		wantOK bool
	}{
		{"by name", "setpoint", "20", true},
		{"by alias", "sp", "20", true},
		{"no value yet", "temperature", "<no value>", false},
		{"unknown", "nope", "<no value>", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := d.Get(tt.key)
			if v.String() != tt.want || ok != tt.wantOK {
				t.Errorf("Get(%q) = %v, %v, want %s, %v", tt.key, v, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestValuesIsACopy(t *testing.T) {
	d := thermostat(t)
	vs := d.Values()
	vs["setpoint"] = model.Integer(5)
	delete(vs, "mode")
	if got := values(d.Values()); got != `mode="auto" setpoint=20` {
		t.Errorf("Values() after changing the copy = %s", got)
	}
}

func TestSet(t *testing.T) {
	tests := []struct {
		name       string
		key        string
		value      any
		wantFields string
		wantErr    string
	}{
		{"writable by name", "setpoint", 25, "setpoint=25", ""},
		{"by alias, real name on the wire", "sp", int64(6), "setpoint=6", ""},
		{"read-only sensor value from the device", "temp", 21.5, "temperature=21.5", ""},
		{"string", "mode", "eco", `mode="eco"`, ""},
		{"datetime", "since", t0, "since=1772600767000", ""},
		{"unknown attribute", "foo", 1, "", `attribute "foo": not in device model "urn:test:thermostat"`},
		{"out of range", "setpoint", 31, "", `attribute "setpoint": 31 is out of range 5..30`},
		{"wrong type", "enabled", "yes", "", `attribute "enabled": want BOOLEAN, got "yes"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := thermostat(t)
			before := values(d.Values())
			m, err := d.Set(tt.key, tt.value, t0)
			if errText(err) != tt.wantErr {
				t.Fatalf("Set error = %q, want %q", errText(err), tt.wantErr)
			}
			if err != nil {
				if got := values(d.Values()); got != before {
					t.Errorf("state changed on error: %s, was %s", got, before)
				}
				return
			}
			want := message.Message{ClientID: "id-1", Source: ep, Priority: message.PriorityLow,
				Reliability: message.BestEffort, EventTime: t0, Type: message.TypeData}
			if m.ClientID != want.ClientID || m.Source != want.Source || m.Destination != "" ||
				m.Priority != want.Priority || m.Reliability != want.Reliability ||
				!m.EventTime.Equal(want.EventTime) || m.Type != want.Type || m.Data == nil {
				t.Fatalf("envelope = %+v, want %+v", m, want)
			}
			if m.Data.Format != "urn:test:thermostat:attributes" {
				t.Errorf("format = %q, want urn:test:thermostat:attributes", m.Data.Format)
			}
			if got := fields(m.Data.Fields); got != tt.wantFields {
				t.Errorf("fields = %s, want %s", got, tt.wantFields)
			}
			v, ok := d.Get(tt.key)
			if !ok || fields([]message.Field{{Name: m.Data.Fields[0].Name, Value: v.Any()}}) != tt.wantFields {
				t.Errorf("Get(%q) after Set = %v, %v, want the value sent", tt.key, v, ok)
			}
		})
	}
}

func TestNilNewID(t *testing.T) {
	d := virtual.New(ep, loadModel(t, "thermostat.json"), nil)
	const want = `device "ep-1": no clientId generator (newID is nil)`
	if _, err := d.Set("setpoint", 10, t0); errText(err) != want {
		t.Errorf("Set error = %q, want %q", errText(err), want)
	}
	if v, _ := d.Get("setpoint"); v.Int() != 20 {
		t.Errorf("Set without a message changed the state to %v", v)
	}
	if _, err := d.Update().Set("mode", "eco").Finish(t0); errText(err) != want {
		t.Errorf("Finish error = %q, want %q", errText(err), want)
	}
	a, _ := d.NewAlert("urn:test:thermostat:overheat")
	if _, err := a.Set("temperature", 99).Build(t0); errText(err) != want {
		t.Errorf("alert Build error = %q, want %q", errText(err), want)
	}
	b, _ := d.NewData("urn:test:thermostat:usage")
	if _, err := b.Set("kwh", 1).Build(t0); errText(err) != want {
		t.Errorf("data Build error = %q, want %q", errText(err), want)
	}
	// Requests are still answered, with an empty clientId, and the set is committed.
	o := d.HandleRequest(request("PUT", "deviceModels/urn:test:thermostat/attributes/setpoint", `{"value":7}`, nil), t0)
	r := d.Complete(o, nil, t0)
	if r.Response.Response.StatusCode != 200 || r.Response.ClientID != "" || r.Data != nil {
		t.Errorf("Complete = status %d clientId %q data %v, want 200, empty, nil",
			r.Response.Response.StatusCode, r.Response.ClientID, r.Data)
	}
	if v, _ := d.Get("setpoint"); v.Int() != 7 {
		t.Errorf("setpoint = %v after Complete, want 7", v)
	}
}

func TestNilModel(t *testing.T) {
	d := virtual.New(ep, nil, seq())
	if _, err := d.Set("x", 1, t0); errText(err) != `attribute "x": not in device model ""` {
		t.Errorf("Set error = %q", errText(err))
	}
	if len(d.Values()) != 0 || d.Model() == nil || d.EndpointID() != ep {
		t.Errorf("nil model: Values %v, Model %v, EndpointID %q", d.Values(), d.Model(), d.EndpointID())
	}
}

func TestUpdate(t *testing.T) {
	tests := []struct {
		name       string
		sets       [][2]any // key, value
		wantFields string
		wantState  string
		wantErr    string
	}{
		{
			name:       "several attributes, last set wins in first place",
			sets:       [][2]any{{"sp", 10}, {"mode", "eco"}, {"setpoint", 12}, {"temp", -3}},
			wantFields: `setpoint=12 mode="eco" temperature=-3`,
			wantState:  `mode="eco" setpoint=12 temperature=-3`,
		},
		{
			name:      "errors are joined and nothing is applied",
			sets:      [][2]any{{"mode", "off"}, {"nope", 1}, {"setpoint", 99}},
			wantState: `mode="auto" setpoint=20`,
			wantErr: `attribute "nope": not in device model "urn:test:thermostat"` + "\n" +
				`attribute "setpoint": 99 is out of range 5..30`,
		},
		{
			name:      "empty update",
			wantState: `mode="auto" setpoint=20`,
			wantErr:   `update of device "ep-1": no attribute set, expected at least one`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := thermostat(t)
			u := d.Update()
			for _, s := range tt.sets {
				u = u.Set(s[0].(string), s[1])
			}
			m, err := u.Finish(t0)
			if errText(err) != tt.wantErr {
				t.Fatalf("Finish error = %q, want %q", errText(err), tt.wantErr)
			}
			if got := values(d.Values()); got != tt.wantState {
				t.Errorf("state = %s, want %s", got, tt.wantState)
			}
			if err != nil {
				return
			}
			if m.Type != message.TypeData || m.Data.Format != "urn:test:thermostat:attributes" || m.ClientID != "id-1" {
				t.Errorf("message = %+v", m)
			}
			if got := fields(m.Data.Fields); got != tt.wantFields {
				t.Errorf("fields = %s, want %s", got, tt.wantFields)
			}
		})
	}
}

func TestUpdateFinishTwice(t *testing.T) {
	u := thermostat(t).Update().Set("mode", "eco")
	if _, err := u.Finish(t0); err != nil {
		t.Fatal(err)
	}
	const want = `update of device "ep-1": already finished`
	if _, err := u.Finish(t0); errText(err) != want {
		t.Errorf("second Finish error = %q, want %q", errText(err), want)
	}
}

func TestOptions(t *testing.T) {
	d := thermostat(t,
		virtual.WithDataQoS(virtual.QoS{Priority: message.PriorityMedium, Reliability: message.GuaranteedDelivery}),
		virtual.WithAlertQoS(virtual.QoS{Priority: message.PriorityHigh, Reliability: message.NoGuarantee}),
		virtual.WithResponseQoS(virtual.QoS{Priority: message.PriorityLowest, Reliability: message.GuaranteedDelivery}),
		nil, // ignored
	)
	data, _ := d.Set("mode", "eco", t0)
	b, _ := d.NewAlert("urn:test:thermostat:overheat")
	alert, _ := b.Set("temperature", 90).Build(t0)
	o := d.HandleRequest(request("GET", "deviceModels/urn:test:thermostat/attributes/mode", "", nil), t0)
	tests := []struct {
		name string
		m    message.Message
		want virtual.QoS
	}{
		{"data", data, virtual.QoS{Priority: message.PriorityMedium, Reliability: message.GuaranteedDelivery}},
		{"alert", alert, virtual.QoS{Priority: message.PriorityHigh, Reliability: message.NoGuarantee}},
		{"response", *o.Response, virtual.QoS{Priority: message.PriorityLowest, Reliability: message.GuaranteedDelivery}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (virtual.QoS{Priority: tt.m.Priority, Reliability: tt.m.Reliability}); got != tt.want {
				t.Errorf("QoS = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDefaultQoS(t *testing.T) {
	d := thermostat(t)
	data, _ := d.Set("mode", "eco", t0)
	b, _ := d.NewAlert("urn:test:thermostat:overheat")
	alert, _ := b.Set("temperature", 90).Build(t0.Add(time.Second))
	resp := d.HandleRequest(request("GET", "deviceModels/urn:test:thermostat/attributes/mode", "", nil), t0).Response
	if data.Priority != message.PriorityLow || data.Reliability != message.BestEffort {
		t.Errorf("data QoS = %v/%v, want LOW/BEST_EFFORT", data.Priority, data.Reliability)
	}
	if alert.Priority != message.PriorityHighest || alert.Reliability != message.GuaranteedDelivery {
		t.Errorf("alert QoS = %v/%v, want HIGHEST/GUARANTEED_DELIVERY", alert.Priority, alert.Reliability)
	}
	if resp.Priority != message.PriorityHigh || resp.Reliability != message.BestEffort {
		t.Errorf("response QoS = %v/%v, want HIGH/BEST_EFFORT", resp.Priority, resp.Reliability)
	}
}
