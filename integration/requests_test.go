package integration

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
	cloudclient "github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
)

// changes renders a ChangeEvent as "name:old->new ...".
func changes(ev device.ChangeEvent) string {
	var parts []string
	for _, c := range ev.Changes {
		old := "none"
		if c.Old.Valid() {
			old = c.Old.String()
		}
		parts = append(parts, c.Name+":"+old+"->"+c.New.String())
	}
	return strings.Join(parts, " ")
}

// checkResponse asserts that request id ended with status and body, and that
// the device's RESPONSE to it is stored at the cloud.
func checkResponse(t *testing.T, c *cloud, endpoint, id, status string, code int, body string) {
	t.Helper()
	r := awaitRequest(t, c, id)
	if r.Status != status || r.Response == nil || r.Response.StatusCode != code || r.Response.Body != body {
		t.Errorf("request %s: %+v (response %+v), want %s with %d %q", id, r, r.Response, status, code, body)
	}
	awaitMessages(t, c, cloudclient.MessageQuery{Source: endpoint, Type: string(message.TypeResponse)}, 1,
		func(m *message.Message) bool {
			return m.Response != nil && m.Response.RequestID == id && m.Response.StatusCode == code
		})
}

// apiError asserts that err is the enterprise API's answer status with the
// text want.
func apiError(t *testing.T, err error, status int, want string) {
	t.Helper()
	var ae *cloudclient.APIError
	if !errors.As(err, &ae) || ae.Status != status {
		t.Fatalf("error %v, want the cloud's %d", err, status)
	}
	if err.Error() != want {
		t.Errorf("error\n%s\nwant\n%s", err, want)
	}
}

func TestCloudSetsAttributes(t *testing.T) {
	c := startCloud(t)
	d, v := activated(t, provision(t, c, api.DeviceTypeDirect, "light-1"), lightURN)
	endpoint := d.EndpointID()
	events := make(chan device.ChangeEvent, 16)
	v.OnChange(func(ev device.ChangeEvent) { events <- ev })
	perAttr := make(chan device.ChangeEvent, 16)
	if err := v.OnChangeAttribute("brightness", func(ev device.ChangeEvent) { perAttr <- ev }); err != nil {
		t.Fatal(err)
	}

	id, err := c.Client().SetAttribute(t.Context(), endpoint, lightURN, "brightness", 55)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := changes(receive(t, perAttr, "OnChangeAttribute callback")), "brightness:100->55"; got != want {
		t.Errorf("OnChangeAttribute got %q, want %q", got, want)
	}
	ev := receive(t, events, "OnChange callback")
	if got, want := changes(ev), "brightness:100->55"; got != want || ev.Device != v {
		t.Errorf("OnChange got %q on %p, want %q on %p", got, ev.Device, want, v)
	}
	checkResponse(t, c, endpoint, id, api.RequestCompleted, 200, "OK")
	// The device echoes the new value in a DATA message and remembers it.
	awaitMessages(t, c, cloudclient.MessageQuery{Source: endpoint, Type: string(message.TypeData)}, 1,
		dataWith(lightURN+":attributes", "brightness", 55))
	if got, _ := v.Get("brightness"); got.String() != "55" {
		t.Errorf("Get(brightness) = %v after the cloud set it, want 55", got)
	}

	t.Run("refused by the cloud", func(t *testing.T) {
		// The enterprise API checks the value against the model before it
		// queues a request, so the device never sees it (the device's own
		// 400 for a bad value is proven in domain/virtual's and device's
		// unit tests).
		for _, tt := range []struct {
			attr  string
			value any
			want  string
		}{
			{"brightness", 140, `attribute "brightness": 140 is out of range 0..100`},
			{"power", "yes", `attribute "power": want BOOLEAN, got "yes"`},
			{"lastPressed", 1_700_000_000_000, `attribute "lastPressed" of "` + lightURN + `" is not writable`},
		} {
			_, err := c.Client().SetAttribute(t.Context(), endpoint, lightURN, tt.attr, tt.value)
			apiError(t, err, 400, fmt.Sprintf("set attribute %s of device %s: server answered 400 Bad Request: %s", tt.attr, endpoint, tt.want))
		}
		// No callback for the refused sets: the next event is the next valid set.
		id, err := c.Client().SetAttribute(t.Context(), endpoint, lightURN, "label", "porch")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := changes(receive(t, events, "OnChange callback")), `label:none->"porch"`; got != want {
			t.Errorf("OnChange got %q, want %q", got, want)
		}
		checkResponse(t, c, endpoint, id, api.RequestCompleted, 200, "OK")
		select {
		case ev := <-perAttr:
			t.Errorf("OnChangeAttribute(brightness) fired for %q", changes(ev))
		default:
		}
	})
}

// A gateway receives the requests for its indirectly connected devices and
// hands them to their virtual devices.
func TestCloudSetsAttributeOfIndirectDevice(t *testing.T) {
	c := startCloud(t)
	g := openGateway(t, provision(t, c, api.DeviceTypeGateway, "gateway-1"))
	if err := g.Activate(t.Context()); err != nil {
		t.Fatal(err)
	}
	var vds []*device.VirtualDevice
	var eps []string
	for _, hw := range []string{"icd-a", "icd-b"} {
		ep, err := g.RegisterDevice(t.Context(), hw, nil, humidityURN)
		if err != nil {
			t.Fatal(err)
		}
		eps = append(eps, ep)
		vds = append(vds, virtualDevice(t, g.DirectlyConnectedDevice, ep, humidityURN))
	}
	events := make(chan string, 4)
	for i, v := range vds {
		v.OnChange(func(ev device.ChangeEvent) { events <- fmt.Sprintf("%d %s %s", i, ev.Device.EndpointID(), changes(ev)) })
	}
	id, err := c.Client().SetAttribute(t.Context(), eps[1], humidityURN, "maxThreshold", 90)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := receive(t, events, "OnChange callback"), "1 "+eps[1]+" maxThreshold:80->90"; got != want {
		t.Errorf("OnChange got %q, want %q", got, want)
	}
	checkResponse(t, c, eps[1], id, api.RequestCompleted, 200, "OK")
	awaitMessages(t, c, cloudclient.MessageQuery{Source: eps[1], Type: string(message.TypeData)}, 1,
		dataWith(humidityURN+":attributes", "maxThreshold", 90))
	select {
	case ev := <-events:
		t.Errorf("another OnChange fired: %s", ev)
	default:
	}
}

func TestCloudCallsActions(t *testing.T) {
	c := startCloud(t)
	d, v := activated(t, provision(t, c, api.DeviceTypeDirect, "light-1"), lightURN)
	endpoint := d.EndpointID()
	calls := make(chan string, 8)
	callable := func(name string, err error) device.Callable {
		return func(ctx context.Context, args map[string]model.Value) error {
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(args)) {
				parts = append(parts, k+"="+args[k].String())
			}
			calls <- name + "(" + strings.Join(parts, ",") + ")"
			return err
		}
	}
	for _, a := range []string{"toggle", "blink", "schedule"} {
		if err := v.SetCallable(a, callable(a, nil)); err != nil {
			t.Fatal(err)
		}
	}
	at := time.UnixMilli(1_700_000_000_000)

	for _, tt := range []struct {
		name, action string
		args         any
		want         string
	}{
		{"no argument", "toggle", nil, "toggle()"},
		{"one argument", "blink", map[string]any{"value": 3}, "blink(value=3)"},
		{"two arguments", "schedule", map[string]any{"at": at.UnixMilli(), "seconds": 60},
			"schedule(at=" + model.DateTime(at).String() + ",seconds=60)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, err := c.Client().CallAction(t.Context(), endpoint, lightURN, tt.action, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if got := receive(t, calls, "callable call"); got != tt.want {
				t.Errorf("callable got %s, want %s", got, tt.want)
			}
			checkResponse(t, c, endpoint, id, api.RequestCompleted, 200, "OK")
		})
	}

	t.Run("refused by the cloud", func(t *testing.T) {
		// The enterprise API answers 404 for an action the model does not
		// have and 400 for bad arguments; nothing reaches the device. The
		// device's own 404 for an unknown action URL is proven in
		// device/virtual_test.go (TestCloudInvokesActions, request a3); its
		// 404 for a known action without a callable is the next subtest.
		_, err := c.Client().CallAction(t.Context(), endpoint, lightURN, "explode", nil)
		apiError(t, err, 404, fmt.Sprintf(`call action explode of device %s: server answered 404 Not Found: device model %q has no action "explode"`, endpoint, lightURN))
		_, err = c.Client().CallAction(t.Context(), endpoint, lightURN, "blink", map[string]any{"value": 99})
		apiError(t, err, 400, fmt.Sprintf(`call action blink of device %s: server answered 400 Bad Request: action "blink": argument "value": 99 is out of range 1..20`, endpoint))
	})

	t.Run("no callable: the device answers 404", func(t *testing.T) {
		if err := v.SetCallable("blink", nil); err != nil {
			t.Fatal(err)
		}
		id, err := c.Client().CallAction(t.Context(), endpoint, lightURN, "blink", map[string]any{"value": 2})
		if err != nil {
			t.Fatal(err)
		}
		checkResponse(t, c, endpoint, id, api.RequestFailed, 404,
			fmt.Sprintf(`action "blink": no callable set on the virtual device of %s for %s`, endpoint, lightURN))
	})

	t.Run("failing callable: the device answers 500", func(t *testing.T) {
		if err := v.SetCallable("toggle", callable("toggle", errors.New("relay stuck"))); err != nil {
			t.Fatal(err)
		}
		id, err := c.Client().CallAction(t.Context(), endpoint, lightURN, "toggle", nil)
		if err != nil {
			t.Fatal(err)
		}
		receive(t, calls, "callable call")
		checkResponse(t, c, endpoint, id, api.RequestFailed, 500, "relay stuck")
	})

	select {
	case call := <-calls:
		t.Errorf("unexpected callable call %s", call)
	default:
	}
}
