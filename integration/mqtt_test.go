package integration

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/client"
	"github.com/iotnode/iotnode/cloud/api"
	cloudclient "github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/cloud/launch"
	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
)

// The device library over MQTT (docs/mqtt.md), end to end: devices built
// through package client from provisioning files that name the cloud's
// broker, against
//
//   - the embedded broker of the in-process cloud (launch.Options.MQTTListen,
//     mqtts:// with the cloud's CA), and
//   - Mosquitto at 127.0.0.1:1883 with the cloud bridged to it
//     (launch.Options.MQTTBroker, plain mqtt:// on loopback); that subtest
//     is skipped when no broker answers there.
//
// The bridge subtests never run beside each other: two clouds bridged to
// one broker both answer every publish (docs/mqtt.md), and the one that
// does not know the device answers 401.

// mosquittoURL is the broker of project machines (anonymous, loopback).
const mosquittoURL = "mqtt://127.0.0.1:1883"

// mqttTimeout bounds each MQTT call (WithHTTPTimeout): through a bridge
// whose cloud is down, a publish gets no answer, and the dispatcher sends
// again after this.
const mqttTimeout = 3 * time.Second

// mqttCloud is a cloud that also serves the device API over MQTT: with its
// embedded broker (restarted on the same port), or bridged to broker.
type mqttCloud struct {
	*cloud
	mqttListen string // embedded broker: host:port ("127.0.0.1:0" before the first start)
	broker     string // bridge: the external broker's URL
}

// startMQTTCloud starts a cloud with the three example models and MQTT:
// its embedded broker when broker is "", else bridged to broker.
func startMQTTCloud(t testing.TB, broker string) *mqttCloud {
	t.Helper()
	c := &mqttCloud{cloud: &cloud{dir: t.TempDir(), addr: "127.0.0.1:0", clock: &skewClock{}}, broker: broker}
	if broker == "" {
		c.mqttListen = "127.0.0.1:0"
	}
	c.start(t)
	for _, name := range []string{"humidity_sensor", "temperature_sensor", "light_switch"} {
		m, err := os.ReadFile(filepath.Join("..", "testdata", "devicemodels", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Client().AddModel(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// start starts the cloud on its data directory, HTTPS address and MQTT
// address (or bridge), and arranges its shutdown.
func (c *mqttCloud) start(t testing.TB) {
	t.Helper()
	inst, err := launch.Start(t.Context(), launch.Options{
		DataDir: c.dir, Listen: c.addr, MQTTListen: c.mqttListen, MQTTBroker: c.broker, KDFIterations: kdf, Now: c.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(inst.URL())
	if err != nil {
		t.Fatal(err)
	}
	c.Instance, c.addr = inst, u.Host
	if c.mqttListen != "" {
		mu, err := url.Parse(inst.MQTTURL())
		if err != nil {
			t.Fatal(err)
		}
		c.mqttListen = mu.Host
	}
	t.Cleanup(func() { c.stop(t) })
}

// provisionMQTT registers a device of type typ and writes its provisioning
// file with the cloud's MQTT URL as server URI. It returns the path.
func provisionMQTT(t testing.TB, c *mqttCloud, typ, hardwareID string) string {
	t.Helper()
	dev, err := c.Client().RegisterDevice(t.Context(), api.RegisterDevice{HardwareID: hardwareID, Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	file, err := c.Client().ProvisioningFile(t.Context(), dev.ID, api.ProvisioningFileRequest{Passphrase: passphrase, Transport: "mqtt"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), hardwareID+".conf")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// mqttModes runs fn against the embedded broker, then through Mosquitto
// (skipped, with the reason, when it does not answer).
func mqttModes(t *testing.T, fn func(t *testing.T, c *mqttCloud)) {
	t.Run("embedded broker", func(t *testing.T) {
		c := startMQTTCloud(t, "")
		if !strings.HasPrefix(c.MQTTURL(), "mqtts://127.0.0.1:") {
			t.Fatalf("MQTTURL() = %q, want mqtts on loopback", c.MQTTURL())
		}
		fn(t, c)
	})
	t.Run("Mosquitto bridge", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(mosquittoURL, "mqtt://"), time.Second)
		if err != nil {
			t.Skipf("no MQTT broker at %s (%v): the bridge subtest needs Mosquitto there", mosquittoURL, err)
		}
		conn.Close()
		c := startMQTTCloud(t, mosquittoURL)
		if c.MQTTURL() != mosquittoURL {
			t.Fatalf("MQTTURL() = %q, want %q", c.MQTTURL(), mosquittoURL)
		}
		fn(t, c)
	})
}

// mqttOptions are the client options of every MQTT device here.
func mqttOptions(opts ...client.Option) []client.Option {
	return append([]client.Option{client.WithHTTPTimeout(mqttTimeout)}, opts...)
}

func TestMQTTEndToEnd(t *testing.T) {
	mqttModes(t, func(t *testing.T, c *mqttCloud) {
		ctx := t.Context()
		path := provisionMQTT(t, c, api.DeviceTypeDirect, "mqtt-light")
		d, v := activated(t, path, lightURN, mqttOptions()...)
		if d.Transport() != client.TransportMQTT {
			t.Fatalf("Transport() = %q, want mqtt", d.Transport())
		}
		endpoint := d.EndpointID()
		mode := strings.ReplaceAll(t.Name()[strings.LastIndex(t.Name(), "/")+1:], "_", " ")

		// A Set and an alert arrive once each.
		label := "once over " + mode
		if err := v.Set("label", label); err != nil {
			t.Fatal(err)
		}
		if err := v.CreateAlert(lightURN+":button_pressed").Set("presses", 7).Raise(); err != nil {
			t.Fatal(err)
		}
		isSet := dataWith(lightURN+":attributes", "label", label)
		isAlert := func(m *message.Message) bool {
			return m.Alert != nil && m.Alert.Format == lightURN+":button_pressed" && fmt.Sprint(fields(m)["presses"]) == "7"
		}
		awaitMessages(t, c.cloud, cloudclient.MessageQuery{Source: endpoint}, 1, isSet)
		awaitMessages(t, c.cloud, cloudclient.MessageQuery{Source: endpoint}, 1, isAlert)
		if !eventually(ctx, waitFor, func() bool { return d.OutboxStats().Queued == 0 }) {
			t.Fatalf("the outbox did not drain: %+v", d.OutboxStats())
		}
		all, err := storedMessages(ctx, c.Client(), cloudclient.MessageQuery{Source: endpoint, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		setsStored, alertsStored := 0, 0
		for i := range all {
			if isSet(&all[i]) {
				setsStored++
			}
			if isAlert(&all[i]) {
				alertsStored++
			}
		}
		if setsStored != 1 || alertsStored != 1 {
			t.Errorf("the cloud stored the Set %d times and the alert %d times, want once each:\n%s", setsStored, alertsStored, describe(all))
		}

		// The cloud sets an attribute: OnChange, the request completes.
		events := make(chan device.ChangeEvent, 4)
		v.OnChange(func(ev device.ChangeEvent) { events <- ev })
		id, err := c.Client().SetAttribute(ctx, endpoint, lightURN, "brightness", 55)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := changes(receive(t, events, "OnChange callback")), "brightness:100->55"; got != want {
			t.Errorf("OnChange got %q, want %q", got, want)
		}
		checkResponse(t, c.cloud, endpoint, id, api.RequestCompleted, 200, "OK")
		v.OnChange(nil)

		// The cloud calls an action with an argument.
		calls := make(chan string, 4)
		err = v.SetCallable("blink", func(ctx context.Context, args map[string]model.Value) error {
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(args)) {
				parts = append(parts, k+"="+args[k].String())
			}
			calls <- "blink(" + strings.Join(parts, ",") + ")"
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		id, err = c.Client().CallAction(ctx, endpoint, lightURN, "blink", map[string]any{"value": 3})
		if err != nil {
			t.Fatal(err)
		}
		if got := receive(t, calls, "callable call"); got != "blink(value=3)" {
			t.Errorf("callable got %s, want blink(value=3)", got)
		}
		checkResponse(t, c.cloud, endpoint, id, api.RequestCompleted, 200, "OK")

		// A gateway registers an indirectly connected device, sends for it
		// and hands it the cloud's set.
		g := openGateway(t, provisionMQTT(t, c, api.DeviceTypeGateway, "mqtt-gateway"), mqttOptions()...)
		if err := g.Activate(ctx); err != nil {
			t.Fatal(err)
		}
		icd, err := g.RegisterDevice(ctx, "mqtt-icd", map[string]string{device.MetaManufacturer: "Acme"}, humidityURN)
		if err != nil {
			t.Fatal(err)
		}
		hv := virtualDevice(t, g.DirectlyConnectedDevice, icd, humidityURN)
		if err := hv.Set("humidity", 42); err != nil {
			t.Fatal(err)
		}
		awaitMessages(t, c.cloud, cloudclient.MessageQuery{Source: icd, Type: string(message.TypeData)}, 1,
			dataWith(humidityURN+":attributes", "humidity", 42))
		if dev, err := c.Client().Device(ctx, icd); err != nil || dev.Gateway != g.EndpointID() {
			t.Errorf("device %s at the cloud: %+v, %v; want gateway %s", icd, dev, err, g.EndpointID())
		}
		icdEvents := make(chan string, 2)
		hv.OnChange(func(ev device.ChangeEvent) { icdEvents <- changes(ev) })
		id, err = c.Client().SetAttribute(ctx, icd, humidityURN, "maxThreshold", 90)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := receive(t, icdEvents, "OnChange of the indirectly connected device"), "maxThreshold:80->90"; got != want {
			t.Errorf("OnChange got %q, want %q", got, want)
		}
		checkResponse(t, c.cloud, icd, id, api.RequestCompleted, 200, "OK")
		closeDevice(t, g)

		// Close and reopen: the device connects as its endpoint and sends.
		closeDevice(t, d)
		d, v = activated(t, path, lightURN, mqttOptions()...)
		if d.EndpointID() != endpoint {
			t.Fatalf("after reopening: endpoint %q, want %q", d.EndpointID(), endpoint)
		}
		if err := v.Set("label", "after reopening"); err != nil {
			t.Fatal(err)
		}
		awaitMessages(t, c.cloud, cloudclient.MessageQuery{Source: endpoint, Type: string(message.TypeData)}, 1,
			dataWith(lightURN+":attributes", "label", "after reopening"))

		// Figures.
		const sets, msgs = 200, 10000
		lat := setToOnChange(t, c.cloud, endpoint, v, sets)
		slices.Sort(lat)
		r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
		t.Logf("%s: cloud set -> OnChange over %d sets: p50 %s, p90 %s, p99 %s, max %s", mode, sets,
			r(percentile(lat, 50)), r(percentile(lat, 90)), r(percentile(lat, 99)), r(lat[sets-1]))
		elapsed, check := setThroughput(t, c.cloud, d, v, msgs)
		t.Logf("%s: Set -> stored at the cloud: %d messages in %s, %.0f msgs/s", mode, msgs, elapsed.Round(time.Millisecond), float64(msgs)/elapsed.Seconds())
		check(1000)
	})
}

// Guaranteed values Set while the cloud is down arrive once each when it
// is back: over the embedded broker the connection is gone and comes back
// on the same port; through the bridge the device stays connected to
// Mosquitto and its publishes go unanswered until the cloud resubscribes.
func TestMQTTGuaranteedDeliveryOverCloudRestart(t *testing.T) {
	mqttModes(t, func(t *testing.T, c *mqttCloud) {
		const n = 200
		d, v := activated(t, provisionMQTT(t, c, api.DeviceTypeDirect, "mqtt-gd-light"), lightURN, mqttOptions(
			client.WithDeviceOptions(
				device.WithDataQoS(message.PriorityLow, message.GuaranteedDelivery),
				device.WithBackoff(20*time.Millisecond, 200*time.Millisecond)))...)
		endpoint := d.EndpointID()
		if !eventually(t.Context(), waitFor, func() bool { return d.OutboxStats().Queued == 0 && d.Stats().Sent > 0 }) {
			t.Fatalf("the resources report was not sent: %+v", d.OutboxStats())
		}

		c.stop(t)
		since := time.Now()
		prefix := fmt.Sprintf("gd-%d-", since.UnixNano())
		for i := range n {
			if err := v.Set("label", fmt.Sprintf("%s%03d", prefix, i)); err != nil {
				t.Fatalf("Set %d while the cloud is down: %v", i, err)
			}
		}
		if st := d.OutboxStats(); st.Guaranteed == 0 {
			t.Fatalf("nothing waits in the outbox while the cloud is down: %+v", st)
		}
		time.Sleep(500 * time.Millisecond) // a few failed attempts
		up := time.Now()
		c.start(t)
		if !eventually(t.Context(), time.Minute, func() bool { return d.OutboxStats().Queued == 0 }) {
			t.Fatalf("the outbox did not drain within a minute of the restart: %+v, %+v", d.OutboxStats(), d.Stats())
		}
		drained := time.Since(up)
		seen := map[string]int{}
		q := cloudclient.MessageQuery{Source: endpoint, Type: string(message.TypeData), Limit: 1000}
		for item, err := range c.Client().AllMessages(t.Context(), q) {
			if err != nil {
				t.Fatal(err)
			}
			var m message.Message
			if err := m.UnmarshalJSON(item.Message); err != nil {
				t.Fatal(err)
			}
			if label, ok := fields(&m)["label"].(string); ok && strings.HasPrefix(label, prefix) {
				seen[label]++
				if m.Reliability != message.GuaranteedDelivery {
					t.Errorf("%s stored as %s, want GUARANTEED_DELIVERY", label, m.Reliability)
				}
			}
		}
		var missing, twice []string
		for i := range n {
			label := fmt.Sprintf("%s%03d", prefix, i)
			switch seen[label] {
			case 0:
				missing = append(missing, label)
			case 1:
			default:
				twice = append(twice, label)
			}
		}
		if len(missing) > 0 || len(twice) > 0 {
			t.Fatalf("of %d guaranteed Sets, the cloud is missing %d %.5v and stored %d more than once %.5v", n, len(missing), missing, len(twice), twice)
		}
		st := d.Stats()
		t.Logf("%d guaranteed Sets during the outage: all stored once, the outbox empty %s after the restart (retried %d, protocol errors %d)",
			n, drained.Round(time.Millisecond), st.Retried, st.ProtocolErrors)
	})
}
