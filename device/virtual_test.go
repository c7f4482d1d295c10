package device

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
)

func TestVirtualDeviceSends(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		d := r.device(t)
		v := virtualDevice(t, d, "light_switch")
		if v2 := virtualDevice(t, d, "light_switch"); v2 != v {
			t.Fatal("a second CreateVirtualDevice made another virtual device")
		}
		if v.EndpointID() != testEP || v.Model().URN != lightURN {
			t.Fatalf("virtual device of %q, %q", v.EndpointID(), v.Model().URN)
		}
		at := time.UnixMilli(1700000000000).UTC()
		if err := v.Set("brightness", 40); err != nil {
			t.Fatal(err)
		}
		if err := v.Offer("power", true); err != nil {
			t.Fatal(err)
		}
		if err := v.Update().Set("label", "hall").Set("lastPressed", at).Finish(); err != nil {
			t.Fatal(err)
		}
		if err := v.CreateAlert(lightURN+":button_pressed").Set("presses", 2).Severity(message.SeverityCritical).
			Description("pressed twice").Raise(); err != nil {
			t.Fatal(err)
		}
		if err := v.CreateData(lightURN+":energy").Set("wattHours", 1.5).Set("since", at).Submit(); err != nil {
			t.Fatal(err)
		}
		settle(time.Second)

		attrs := r.cloud.sentData(lightURN + ":attributes")
		if len(attrs) != 3 {
			t.Fatalf("%d attribute messages, want 3: %+v", len(attrs), attrs)
		}
		if got := field(attrs[0], "brightness"); got != int64(40) {
			t.Errorf("brightness %v", got)
		}
		if got := field(attrs[1], "power"); got != true {
			t.Errorf("power %v", got)
		}
		if len(attrs[2].Data.Fields) != 2 || field(attrs[2], "label") != "hall" || !field(attrs[2], "lastPressed").(time.Time).Equal(at) {
			t.Errorf("update fields %+v", attrs[2].Data.Fields)
		}
		for _, m := range attrs {
			if m.Source != testEP || m.Priority != message.PriorityLow || m.Reliability != message.BestEffort {
				t.Errorf("envelope %+v", m)
			}
		}
		var alert *message.Message
		for _, m := range r.cloud.sent() {
			if m.Type == message.TypeAlert {
				alert = &m
			}
		}
		if alert == nil || alert.Alert.Format != lightURN+":button_pressed" || alert.Alert.Severity != message.SeverityCritical ||
			alert.Alert.Description != "pressed twice" || alert.Priority != message.PriorityHighest ||
			alert.Reliability != message.GuaranteedDelivery || alert.Alert.Fields[0].Value != int64(2) {
			t.Errorf("alert %+v", alert)
		}
		energy := r.cloud.sentData(lightURN + ":energy")
		if len(energy) != 1 || field(energy[0], "wattHours") != 1.5 {
			t.Errorf("custom data %+v", energy)
		}
		if got, ok := v.Get("brightness"); !ok || got.Int() != 40 {
			t.Errorf("Get(brightness) = %v, %v", got, ok)
		}
		s := d.Stats()
		if s.Sent != s.Queued || s.Sent < 6 || s.BytesSent == 0 {
			t.Errorf("stats %+v", s)
		}
		closeDevice(t, d)
	})
}

func TestMessageQoS(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		d := r.device(t, WithDataQoS(message.PriorityMedium, message.GuaranteedDelivery), WithAlertQoS(message.PriorityHigh, message.BestEffort))
		v := virtualDevice(t, d, "humidity_sensor")
		if err := v.Set("humidity", 3); err != nil {
			t.Fatal(err)
		}
		if err := v.CreateAlert(humidityURN+":too_humid").Set("humidity", 99).Raise(); err != nil {
			t.Fatal(err)
		}
		settle(time.Second)
		for _, m := range r.cloud.sent() {
			switch {
			case m.Type == message.TypeData && (m.Priority != message.PriorityMedium || m.Reliability != message.GuaranteedDelivery):
				t.Errorf("data sent %s %s", m.Priority, m.Reliability)
			case m.Type == message.TypeAlert && (m.Priority != message.PriorityHigh || m.Reliability != message.BestEffort):
				t.Errorf("alert sent %s %s", m.Priority, m.Reliability)
			}
		}
		closeDevice(t, d)
	})
}

func TestVirtualDeviceErrors(t *testing.T) {
	r := newRig(true)
	d := r.device(t)
	v := virtualDevice(t, d, "humidity_sensor")
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"out of range", func() error { return v.Set("humidity", 140) }, `attribute "humidity": 140 is out of range 0..100`},
		{"wrong type", func() error { return v.Set("humidity", "wet") }, `attribute "humidity": want INTEGER, got "wet"`},
		{"unknown attribute", func() error { return v.Set("colour", 1) }, `attribute "colour": not in device model "urn:com:oracle:iot:device:humidity_sensor"`},
		{"update", func() error { return v.Update().Set("humidity", 101).Set("maxThreshold", 10).Finish() },
			"attribute \"humidity\": 101 is out of range 0..100\nattribute \"maxThreshold\": 10 is out of range 60..100"},
		{"empty update", func() error { return v.Update().Finish() }, `update of device "dev-ep-1": no attribute set, expected at least one`},
		{"unknown alert", func() error { return v.CreateAlert("urn:x").Set("a", 1).Severity("LOW").Description("d").Raise() },
			`alert format "urn:x": not in device model "urn:com:oracle:iot:device:humidity_sensor"`},
		{"missing field", func() error { return v.CreateAlert(humidityURN + ":too_humid").Raise() },
			`alert "urn:com:oracle:iot:device:humidity_sensor:too_humid": field "humidity" is required`},
		{"alert field of the wrong type", func() error { return v.CreateAlert(humidityURN+":too_humid").Set("humidity", "wet").Raise() },
			`alert "urn:com:oracle:iot:device:humidity_sensor:too_humid": field "humidity": want INTEGER, got "wet"`},
		{"unknown data", func() error { return v.CreateData("urn:y").Set("a", 1).Submit() },
			`data format "urn:y": not in device model "urn:com:oracle:iot:device:humidity_sensor"`},
		{"alert as data", func() error { return v.CreateData(humidityURN + ":too_humid").Submit() },
			`data format "urn:com:oracle:iot:device:humidity_sensor:too_humid": has type ALERT, expected DATA`},
		{"on change", func() error { return v.OnChangeAttribute("colour", func(ChangeEvent) {}) },
			`on change: attribute "colour": not in device model "urn:com:oracle:iot:device:humidity_sensor"`},
		{"callable", func() error { return v.SetCallable("reboot", nil) },
			`set callable: action "reboot": not in device model "urn:com:oracle:iot:device:humidity_sensor"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err == nil || err.Error() != tt.want {
				t.Fatalf("error %v\nwant  %s", err, tt.want)
			}
		})
	}
	closeDevice(t, d)
	closedTests := []struct {
		call func() error
		want string
	}{
		{func() error { return v.Set("humidity", 1) }, `set attribute "humidity": device closed`},
		{func() error { return v.Update().Set("humidity", 1).Finish() }, "update: device closed"},
		{func() error { return v.CreateAlert(humidityURN+":too_humid").Set("humidity", 1).Raise() },
			`raise alert "urn:com:oracle:iot:device:humidity_sensor:too_humid": device closed`},
	}
	for _, tt := range closedTests {
		if err := tt.call(); !errors.Is(err, ErrClosed) || err.Error() != tt.want {
			t.Errorf("after Close: %v, want %s", err, tt.want)
		}
	}
	if err := d.Close(t.Context()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestVirtualDeviceDataAfterClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newRig(true).device(t)
		v := virtualDevice(t, d, "light_switch")
		closeDevice(t, d)
		err := v.CreateData(lightURN+":energy").Set("wattHours", 1).Set("since", time.Now()).Submit()
		if !errors.Is(err, ErrClosed) || err.Error() != `submit data "urn:com:example:iot:device:light_switch:energy": device closed` {
			t.Fatalf("Submit after Close: %v", err)
		}
	})
}

// changes records change events.
type changes struct {
	mu  sync.Mutex
	evs []string
}

func (c *changes) record(prefix string) func(ChangeEvent) {
	return func(ev ChangeEvent) {
		c.mu.Lock()
		defer c.mu.Unlock()
		var parts []string
		for _, ch := range ev.Changes {
			parts = append(parts, fmt.Sprintf("%s:%v->%v", ch.Name, ch.Old, ch.New))
		}
		c.evs = append(c.evs, prefix+" "+strings.Join(parts, ","))
	}
}

func (c *changes) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.evs)
}

func TestCloudSetsAttributes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		d := r.device(t)
		v := virtualDevice(t, d, "light_switch")
		var got changes
		v.OnChange(got.record("all"))
		if err := v.OnChangeAttribute("power", got.record("power")); err != nil {
			t.Fatal(err)
		}
		r.cloud.push(
			patch("r1", lightURN, `{"power":true,"brightness":30}`),
			patch("r2", lightURN, `{"brightness":140}`),
			newRequest("r3", testEP, "PUT", "deviceModels/"+lightURN+"/attributes/label", `{"value":"porch"}`, nil),
		)
		settle(time.Second)

		want := []string{
			"power power:false->true",
			"all power:false->true,brightness:100->30",
			`all label:<no value>->"porch"`,
		}
		if !slices.Equal(got.all(), want) {
			t.Errorf("change events\n%q\nwant\n%q", got.all(), want)
		}
		if resp := r.cloud.response(t, "r1"); resp.StatusCode != 200 || string(resp.Body) != "OK" {
			t.Errorf("r1 answered %d %q", resp.StatusCode, resp.Body)
		}
		if resp := r.cloud.response(t, "r2"); resp.StatusCode != 400 || string(resp.Body) != `attribute "brightness": 140 is out of range 0..100` {
			t.Errorf("r2 answered %d %q", resp.StatusCode, resp.Body)
		}
		echoes := r.cloud.sentData(lightURN + ":attributes")
		if len(echoes) != 2 || field(echoes[0], "power") != true || field(echoes[0], "brightness") != int64(30) || field(echoes[1], "label") != "porch" {
			t.Errorf("echoed data %+v", echoes)
		}
		if b, _ := v.Get("brightness"); b.Int() != 30 {
			t.Errorf("brightness is %v after the set", b)
		}

		// Removing callbacks: the set is still applied and answered.
		v.OnChange(nil)
		if err := v.OnChangeAttribute("power", nil); err != nil {
			t.Fatal(err)
		}
		r.cloud.push(patch("r4", lightURN, `{"power":false}`))
		settle(time.Second)
		if resp := r.cloud.response(t, "r4"); resp.StatusCode != 200 || len(got.all()) != 3 {
			t.Errorf("r4 answered %d with %d events", resp.StatusCode, len(got.all()))
		}
		closeDevice(t, d)
	})
}

func TestCloudInvokesActions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		d := r.device(t)
		v := virtualDevice(t, d, "light_switch")
		var mu sync.Mutex
		var calls []string
		record := func(name string) Callable {
			return func(ctx context.Context, args map[string]model.Value) error {
				mu.Lock()
				defer mu.Unlock()
				var parts []string
				for _, k := range slices.Sorted(func(yield func(string) bool) {
					for k := range args {
						if !yield(k) {
							return
						}
					}
				}) {
					parts = append(parts, k+"="+args[k].String())
				}
				calls = append(calls, name+"("+strings.Join(parts, ",")+")")
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return nil
			}
		}
		for _, a := range []string{"toggle", "blink", "schedule"} {
			if err := v.SetCallable(a, record(a)); err != nil {
				t.Fatal(err)
			}
		}
		actions := "deviceModels/" + lightURN + "/actions/"
		r.cloud.push(
			newRequest("a0", testEP, "POST", actions+"toggle", "", nil),
			newRequest("a1", testEP, "POST", actions+"blink", `{"value":3}`, nil),
			newRequest("a2", testEP, "POST", actions+"schedule", `{"at":1700000000000,"seconds":60}`, nil),
			newRequest("a3", testEP, "POST", actions+"explode", "", nil),
			newRequest("a4", testEP, "POST", actions+"blink", `{"value":99}`, nil),
		)
		settle(time.Second)
		want := []string{"toggle()", "blink(value=3)", `schedule(at=2023-11-14T22:13:20.000Z,seconds=60)`}
		mu.Lock()
		if !slices.Equal(calls, want) {
			t.Errorf("calls %q, want %q", calls, want)
		}
		mu.Unlock()
		for id, status := range map[string]int{"a0": 200, "a1": 200, "a2": 200, "a3": 404, "a4": 400} {
			if resp := r.cloud.response(t, id); resp.StatusCode != status {
				t.Errorf("%s answered %d %q, want %d", id, resp.StatusCode, resp.Body, status)
			}
		}

		// A failing callable answers 500; a removed one 404.
		if err := v.SetCallable("toggle", func(context.Context, map[string]model.Value) error { return errors.New("relay stuck") }); err != nil {
			t.Fatal(err)
		}
		if err := v.SetCallable("blink", nil); err != nil {
			t.Fatal(err)
		}
		r.cloud.push(newRequest("a5", testEP, "POST", actions+"toggle", "", nil), newRequest("a6", testEP, "POST", actions+"blink", `{"value":1}`, nil))
		settle(time.Second)
		if resp := r.cloud.response(t, "a5"); resp.StatusCode != 500 || string(resp.Body) != "relay stuck" {
			t.Errorf("a5 answered %d %q", resp.StatusCode, resp.Body)
		}
		wantBody := `action "blink": no callable set on the virtual device of dev-ep-1 for urn:com:example:iot:device:light_switch`
		if resp := r.cloud.response(t, "a6"); resp.StatusCode != 404 || string(resp.Body) != wantBody {
			t.Errorf("a6 answered %d %q", resp.StatusCode, resp.Body)
		}
		closeDevice(t, d)
	})
}

func TestPanickingCallbacks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		d := r.device(t)
		v := virtualDevice(t, d, "light_switch")
		var sink errorSink
		v.OnError(sink.add)
		v.OnChange(func(ev ChangeEvent) {
			if ev.Changes[0].New.Bool() {
				panic("boom")
			}
		})
		if err := v.OnChangeAttribute("brightness", func(ChangeEvent) { panic("dim") }); err != nil {
			t.Fatal(err)
		}
		if err := v.SetCallable("toggle", func(context.Context, map[string]model.Value) error { panic(errors.New("bad relay")) }); err != nil {
			t.Fatal(err)
		}
		r.cloud.push(
			patch("p1", lightURN, `{"power":true}`),
			patch("p2", lightURN, `{"brightness":5}`),
			newRequest("p3", testEP, "POST", "deviceModels/"+lightURN+"/actions/toggle", "", nil),
			patch("p4", lightURN, `{"power":false}`),
		)
		settle(time.Second)
		wantBodies := map[string]string{
			"p1": "OnChange callback panicked: boom",
			"p2": `OnChangeAttribute callback of attribute "brightness" panicked: dim`,
			"p3": `callable of action "toggle" panicked: bad relay`,
		}
		for id, body := range wantBodies {
			if resp := r.cloud.response(t, id); resp.StatusCode != 500 || string(resp.Body) != body {
				t.Errorf("%s answered %d %q, want 500 %q", id, resp.StatusCode, resp.Body, body)
			}
		}
		if resp := r.cloud.response(t, "p4"); resp.StatusCode != 200 {
			t.Errorf("after the panics p4 answered %d %q", resp.StatusCode, resp.Body)
		}
		if got := sink.texts(); len(got) != 3 || got[0] != wantBodies["p1"] || got[1] != wantBodies["p2"] || got[2] != wantBodies["p3"] {
			t.Errorf("OnError got %q", got)
		}
		if p, _ := v.Get("power"); p.Bool() {
			t.Error("a set whose callback panicked was applied")
		}
		// A panicking OnError is logged, nothing more.
		v.OnError(func(ErrorEvent) { panic("again") })
		r.cloud.push(patch("p5", lightURN, `{"power":true}`))
		settle(time.Second)
		if resp := r.cloud.response(t, "p5"); resp.StatusCode != 500 || !contains(r.logs.String(), "OnError callback panicked") {
			t.Errorf("p5 answered %d; logs:\n%s", resp.StatusCode, r.logs)
		}
		if err := v.Set("brightness", 7); err != nil {
			t.Fatalf("Set after the panics: %v", err)
		}
		closeDevice(t, d)
	})
}

func TestCallbacksRunSerially(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		d := r.device(t)
		v := virtualDevice(t, d, "light_switch")
		var mu sync.Mutex
		running, most := 0, 0
		v.OnChange(func(ChangeEvent) {
			mu.Lock()
			running++
			most = max(most, running)
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
			mu.Lock()
			running--
			mu.Unlock()
		})
		for i := range 20 {
			r.cloud.push(patch(fmt.Sprint("s", i), lightURN, fmt.Sprintf(`{"brightness":%d}`, i)))
		}
		settle(2 * time.Second)
		if most != 1 {
			t.Errorf("%d callbacks ran at once, want 1", most)
		}
		for i := range 20 {
			if resp := r.cloud.response(t, fmt.Sprint("s", i)); resp.StatusCode != 200 {
				t.Errorf("s%d answered %d", i, resp.StatusCode)
			}
		}
		closeDevice(t, d)
	})
}

// errDimmer is the error of the test's failing dimmer.
var errDimmer = errors.New("dimmer: channel 2 not responding")

func TestAttributeHandlers(t *testing.T) {
	putURL := "deviceModels/" + lightURN + "/attributes/"
	tests := []struct {
		name   string
		req    message.Message
		status int
		body   string
		calls  []string       // handler calls, in order
		events []string       // OnChangeAttribute("power") and OnChange events
		errs   []string       // OnError events
		values map[string]any // Get after the request; nil: no value
		echo   []message.Field
	}{
		{
			name:   "a set the handler applies commits and echoes",
			req:    newRequest("h1", testEP, "PUT", putURL+"power", `{"value":true}`, nil),
			status: 200, body: "OK",
			calls:  []string{"power:false->true"},
			events: []string{"power power:false->true", "all power:false->true"},
			values: map[string]any{"power": true},
			echo:   []message.Field{{Name: "power", Value: true}},
		},
		{
			name:   "a failing handler answers 500 and commits nothing",
			req:    newRequest("h2", testEP, "PUT", putURL+"brightness", `{"value":5}`, nil),
			status: 500, body: `attribute "brightness": dimmer: channel 2 not responding`,
			calls:  []string{"brightness:100->5"},
			errs:   []string{`attribute "brightness": dimmer: channel 2 not responding`},
			values: map[string]any{"brightness": int64(100)},
		},
		{
			name:   "a patch is all or nothing",
			req:    patch("h3", lightURN, `{"power":true,"brightness":5}`),
			status: 500, body: `attribute "brightness": dimmer: channel 2 not responding`,
			calls:  []string{"power:false->true", "brightness:100->5"},
			errs:   []string{`attribute "brightness": dimmer: channel 2 not responding`},
			values: map[string]any{"power": false, "brightness": int64(100)},
		},
		{
			name:   "the handlers after a failing one do not run",
			req:    patch("h4", lightURN, `{"brightness":5,"power":true}`),
			status: 500, body: `attribute "brightness": dimmer: channel 2 not responding`,
			calls:  []string{"brightness:100->5"},
			errs:   []string{`attribute "brightness": dimmer: channel 2 not responding`},
			values: map[string]any{"power": false, "brightness": int64(100)},
		},
		{
			name:   "a panicking handler answers 500",
			req:    newRequest("h5", testEP, "PUT", putURL+"label", `{"value":"boom"}`, nil),
			status: 500, body: `handler of attribute "label" panicked: boom`,
			calls:  []string{`label:<no value>->"boom"`},
			errs:   []string{`handler of attribute "label" panicked: boom`},
			values: map[string]any{"label": nil},
		},
		{
			name:   "a patch whose handlers all succeed commits every attribute",
			req:    patch("h6", lightURN, `{"power":true,"label":"hall","brightness":40}`),
			status: 200, body: "OK",
			calls:  []string{"power:false->true", `label:<no value>->"hall"`, "brightness:100->40"},
			events: []string{"power power:false->true", `all power:false->true,label:<no value>->"hall",brightness:100->40`},
			values: map[string]any{"power": true, "label": "hall", "brightness": int64(40)},
			echo:   []message.Field{{Name: "power", Value: true}, {Name: "label", Value: "hall"}, {Name: "brightness", Value: int64(40)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(true)
				d := r.device(t)
				v := virtualDevice(t, d, "light_switch")
				var mu sync.Mutex
				var calls []string
				record := func(c Change) {
					mu.Lock()
					defer mu.Unlock()
					calls = append(calls, fmt.Sprintf("%s:%v->%v", c.Name, c.Old, c.New))
				}
				handlers := map[string]AttributeHandler{
					"power": func(_ context.Context, c Change) error { record(c); return nil },
					"brightness": func(_ context.Context, c Change) error {
						record(c)
						if c.New.Int() == 5 {
							return errDimmer
						}
						return nil
					},
					"label": func(_ context.Context, c Change) error {
						record(c)
						if c.New.Any() == "boom" {
							panic("boom")
						}
						return nil
					},
				}
				for name, fn := range handlers {
					if err := v.SetAttributeHandler(name, fn); err != nil {
						t.Fatal(err)
					}
				}
				var events changes
				v.OnChange(events.record("all"))
				if err := v.OnChangeAttribute("power", events.record("power")); err != nil {
					t.Fatal(err)
				}
				var sink errorSink
				v.OnError(sink.add)
				r.cloud.push(tt.req)
				settle(time.Second)

				resp := r.cloud.response(t, tt.req.ID)
				if resp.StatusCode != tt.status || string(resp.Body) != tt.body {
					t.Errorf("answered %d %q\nwant     %d %q", resp.StatusCode, resp.Body, tt.status, tt.body)
				}
				mu.Lock()
				if !slices.Equal(calls, tt.calls) {
					t.Errorf("handler calls %q, want %q", calls, tt.calls)
				}
				mu.Unlock()
				if got := events.all(); !slices.Equal(got, tt.events) {
					t.Errorf("change events %q, want %q", got, tt.events)
				}
				if got := sink.texts(); !slices.Equal(got, tt.errs) {
					t.Errorf("OnError got %q, want %q", got, tt.errs)
				}
				for _, ev := range sink.all() {
					if ev.Device != v || len(ev.Messages) != 0 {
						t.Errorf("error event of %p with %d messages, want %p and none", ev.Device, len(ev.Messages), v)
					}
				}
				for name, want := range tt.values {
					got, ok := v.Get(name)
					switch {
					case want == nil && ok:
						t.Errorf("Get(%q) = %v, want no value", name, got)
					case want != nil && (!ok || got.Any() != want):
						t.Errorf("Get(%q) = %v, %v, want %v", name, got, ok, want)
					}
				}
				echoes := r.cloud.sentData(lightURN + ":attributes")
				switch {
				case tt.echo == nil && len(echoes) != 0:
					t.Errorf("echoed %+v, want no DATA", echoes)
				case tt.echo != nil && (len(echoes) != 1 || !slices.Equal(echoes[0].Data.Fields, tt.echo)):
					t.Errorf("echoed %+v, want one DATA with %+v", echoes, tt.echo)
				}
				closeDevice(t, d)
			})
		})
	}
}

func TestAttributeHandlerErrorWraps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		d := r.device(t)
		v := virtualDevice(t, d, "light_switch")
		if err := v.SetAttributeHandler("power", func(context.Context, Change) error { return errDimmer }); err != nil {
			t.Fatal(err)
		}
		var sink errorSink
		v.OnError(sink.add)
		r.cloud.push(patch("w1", lightURN, `{"power":true}`))
		settle(time.Second)
		evs := sink.all()
		if len(evs) != 1 || !errors.Is(evs[0].Err, errDimmer) {
			t.Fatalf("OnError got %v, want one error wrapping %v", sink.texts(), errDimmer)
		}
		// Removing the handler: the set is applied again.
		if err := v.SetAttributeHandler("power", nil); err != nil {
			t.Fatal(err)
		}
		r.cloud.push(patch("w2", lightURN, `{"power":true}`))
		settle(time.Second)
		if resp := r.cloud.response(t, "w2"); resp.StatusCode != 200 {
			t.Errorf("w2 answered %d %q after the handler was removed", resp.StatusCode, resp.Body)
		}
		if p, _ := v.Get("power"); !p.Bool() {
			t.Error("power not set after the handler was removed")
		}
		closeDevice(t, d)
	})
}

func TestSetAttributeHandlerErrors(t *testing.T) {
	r := newRig(true)
	d := r.device(t)
	v := virtualDevice(t, d, "light_switch")
	ok := func(context.Context, Change) error { return nil }
	tests := []struct {
		name, attr string
		fn         AttributeHandler
		want       string
	}{
		{"unknown attribute", "colour", ok, `set attribute handler: attribute "colour": not in device model "urn:com:example:iot:device:light_switch"`},
		{"read-only attribute", "lastPressed", ok,
			`set attribute handler: attribute "lastPressed": read-only in device model "urn:com:example:iot:device:light_switch", the cloud cannot set it`},
		{"removing from an unknown attribute", "colour", nil, `set attribute handler: attribute "colour": not in device model "urn:com:example:iot:device:light_switch"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := v.SetAttributeHandler(tt.attr, tt.fn); err == nil || err.Error() != tt.want {
				t.Fatalf("error %v\nwant  %s", err, tt.want)
			}
		})
	}
	closeDevice(t, d)
}

func TestAttributeHandlerTimeout(t *testing.T) {
	tests := []struct {
		name string
		opts []Option
		want time.Duration
	}{
		{"default", nil, DefaultAttributeHandlerTimeout},
		{"option", []Option{WithAttributeHandlerTimeout(2 * time.Second)}, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(true)
				d := r.device(t, tt.opts...)
				v := virtualDevice(t, d, "light_switch")
				var waited time.Duration
				err := v.SetAttributeHandler("brightness", func(ctx context.Context, c Change) error {
					start := time.Now()
					<-ctx.Done()
					waited = time.Since(start)
					return ctx.Err()
				})
				if err != nil {
					t.Fatal(err)
				}
				r.cloud.push(patch("t1", lightURN, `{"brightness":20}`))
				settle(tt.want + time.Second)
				resp := r.cloud.response(t, "t1")
				if want := `attribute "brightness": context deadline exceeded`; resp.StatusCode != 500 || string(resp.Body) != want {
					t.Errorf("answered %d %q, want 500 %q", resp.StatusCode, resp.Body, want)
				}
				if waited != tt.want {
					t.Errorf("the handler's context ended after %s, want %s", waited, tt.want)
				}
				if b, _ := v.Get("brightness"); b.Int() != 100 {
					t.Errorf("brightness %v after a timed-out set, want 100", b)
				}
				closeDevice(t, d)
			})
		})
	}
}

func TestAttributeHandlerCanceledAtClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		d := r.device(t, WithCloseTimeout(2*time.Second))
		v := virtualDevice(t, d, "light_switch")
		got := make(chan error, 1)
		err := v.SetAttributeHandler("power", func(ctx context.Context, c Change) error {
			<-ctx.Done()
			got <- ctx.Err()
			return ctx.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		r.cloud.push(patch("c1", lightURN, `{"power":true}`))
		settle(time.Second)
		start := time.Now()
		if err := d.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-got; !errors.Is(err, context.Canceled) {
			t.Errorf("the handler's context ended with %v, want context.Canceled", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Close took %s, want at most the close timeout 2s", took)
		}
		if p, _ := v.Get("power"); p.Bool() {
			t.Error("a set whose handler was canceled at close was applied")
		}
	})
}
