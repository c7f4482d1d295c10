package mqttbroker_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mochipk "github.com/mochi-mqtt/server/v2/packets"
	"go.uber.org/goleak"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/cloud/launch"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// tlsTo trusts only the cloud's CA, as a provisioned device does.
func tlsTo(inst *launch.Instance) *tls.Config {
	return &tls.Config{RootCAs: inst.CAPool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

func embedded(t *testing.T) (*launch.Instance, *tls.Config) {
	t.Helper()
	inst := startCloud(t, launch.Options{MQTTListen: "127.0.0.1:0"})
	if !strings.HasPrefix(inst.MQTTURL(), "mqtts://127.0.0.1:") || strings.HasSuffix(inst.MQTTURL(), ":0") {
		t.Fatalf("MQTTURL() = %q, want mqtts://127.0.0.1:PORT", inst.MQTTURL())
	}
	return inst, tlsTo(inst)
}

func TestEmbeddedAuthentication(t *testing.T) {
	inst, tc := embedded(t)
	d := register(t, inst, inst.MQTTURL(), tc)
	wrong := d.clone()
	wrong.secret = "not the secret"

	if err := d.connect(wrong.assertion()); err == nil || !strings.Contains(err.Error(), "0x86") {
		t.Errorf("connect with an assertion signed by another secret: %v, want refused with 0x86 (bad user name or password)", err)
	}
	if err := d.connect([]byte("not a JWT")); err == nil {
		t.Error("connect with a password that is not a JWT: accepted")
	}
	other := register(t, inst, inst.MQTTURL(), tc)
	if err := d.connect(other.assertion()); err == nil {
		t.Error("connect with another device's valid assertion: accepted")
	}

	d.activate()
	old := d.clone()
	old.endpointID = ""
	if err := old.connect(nil); err == nil {
		t.Error("connect with the activation id of an activated device: accepted")
	}
	hs := d.clone()
	hs.endpointID = ""
	hs.activationID = d.endpointID // HS256 with the shared secret, as the endpoint
	if err := hs.connect(nil); err == nil {
		t.Error("an activated device connecting with HS256: accepted")
	}
	d.disconnect()
}

// flow is the core flow of docs/mqtt.md, for the embedded broker and the
// bridges: activation over MQTT, a reconnection as the endpoint, messages
// answered with their correlation and stored once, a request pushed
// unprompted and answered, a bad batch answered on /error with its index.
func flow(t *testing.T, inst *launch.Instance, d *device) {
	ctx := t.Context()
	d.activate(humidityURN)
	ep := d.endpointID
	defer d.disconnect()

	// Still activation id's topics? The messages topic wants the endpoint.
	if _, err := d.publish("iotcs/"+ep+"/messages/acceptBytes", binary.BigEndian.AppendUint32(nil, 8000), nil); err != nil {
		t.Fatal(err)
	}
	msgs := batch(dataMsg("c-1", ep, 40), dataMsg("c-2", ep, 41))
	if got := d.mustCall("messages", msgs); string(got) != "[]" {
		t.Errorf("messages answer %s, want []", got)
	}
	if got := d.mustCall("messages", msgs); string(got) != "[]" { // a replay: the answer was lost
		t.Errorf("replayed messages answer %s, want []", got)
	}
	list, err := inst.Client().Messages(ctx, client.MessageQuery{Source: ep})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 2 {
		t.Errorf("stored %d messages, want 2 (the replay dropped)", len(list.Items))
	}

	var dm struct{ URN string }
	if err := json.Unmarshal(d.mustCall("deviceModels", []byte(`{"urn":"`+humidityURN+`"}`)), &dm); err != nil || dm.URN != humidityURN {
		t.Errorf("deviceModels answer %+v (%v), want the model", dm, err)
	}

	reqID, err := inst.Client().SetAttribute(ctx, ep, humidityURN, "maxThreshold", 70)
	if err != nil {
		t.Fatal(err)
	}
	push := d.await("pushed request", func(p *paho.Publish) bool { return p.Topic == "devices/"+ep+"/messages" && corrOf(p) == nil })
	var reqs []struct{ ID, Destination string }
	if err := json.Unmarshal(push.Payload, &reqs); err != nil || len(reqs) != 1 || reqs[0].ID != reqID || reqs[0].Destination != ep {
		t.Fatalf("push %s (%v), want request %s for %s", push.Payload, err, reqID, ep)
	}
	if r, err := inst.Client().Request(ctx, reqID); err != nil || r.Status != api.RequestDelivered {
		t.Errorf("request after the push: %+v %v, want DELIVERED", r, err)
	}
	d.mustCall("messages", batch(responseMsg("c-3", ep, reqID, 200)))
	if r, err := inst.Client().Request(ctx, reqID); err != nil || r.Status != api.RequestCompleted {
		t.Errorf("request after the response: %+v %v, want COMPLETED", r, err)
	}

	bad := d.call("messages", batch(dataMsg("c-4", ep, 42), `{"clientId":"c-5","source":"`+ep+`","type":"DATA"}`))
	var e api.Error
	if err := json.Unmarshal(bad.Payload, &e); err != nil || bad.Topic != "devices/"+ep+"/messages/error" || e.Status != 400 || e.Index == nil || *e.Index != 1 {
		t.Errorf("bad batch: answer on %s: %s, want a 400 on devices/%s/messages/error with index 1", bad.Topic, bad.Payload, ep)
	}
}

func TestEmbeddedFlow(t *testing.T) {
	inst, tc := embedded(t)
	flow(t, inst, register(t, inst, inst.MQTTURL(), tc))
}

func TestEmbeddedErrors(t *testing.T) {
	inst, tc := embedded(t)
	d := register(t, inst, inst.MQTTURL(), tc)
	d.mustConnect()
	defer d.disconnect()
	tests := []struct {
		name, path, payload string
		status              int
		message             string
	}{
		{"messages before activation", "messages", "[]", 401, "is not activated"},
		{"unknown topic", "nothing/here", "", 404, "no such topic: iotcs/" + d.activationID + "/nothing/here"},
		{"bad acceptBytes", "messages/acceptBytes", "12", 400, "payload is 2 bytes, expected 4"},
		{"bad policy payload", "activation/policy", "[1]", 400, "activation/policy: payload is not"},
		{"bad activation", "activation/direct", "{}", 400, "direct activation: certificationRequestInfo.subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := d.call(tt.path, []byte(tt.payload))
			var e api.Error
			if err := json.Unmarshal(p.Payload, &e); err != nil || p.Topic != "devices/"+d.id()+"/"+tt.path+"/error" || e.Status != tt.status || !strings.Contains(e.Message, tt.message) {
				t.Errorf("answer on %s: %s, want %d %q on the /error topic", p.Topic, p.Payload, tt.status, tt.message)
			}
		})
	}
}

// TestEmbeddedAccess: a device can neither publish for another nor listen
// to another's topics.
func TestEmbeddedAccess(t *testing.T) {
	inst, tc := embedded(t)
	a := register(t, inst, inst.MQTTURL(), tc)
	b := register(t, inst, inst.MQTTURL(), tc)
	a.activate()
	b.activate()
	defer a.disconnect()
	defer b.disconnect()

	resp, err := a.publish("iotcs/"+b.endpointID+"/messages", batch(dataMsg("spoof-1", b.endpointID, 10)), []byte("x"))
	if err == nil && (resp == nil || resp.ReasonCode < 0x80) {
		t.Errorf("publish to another device's topic: acknowledged %+v, want refused (0x87)", resp)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	sa, err := a.cli.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "devices/" + b.endpointID + "/#", QoS: 1}, {Topic: "devices/+/messages", QoS: 1}, {Topic: "iotcs/#", QoS: 1}, {Topic: "#", QoS: 1},
	}})
	if sa == nil { // paho also reports the refusals as an error, with the SUBACK
		t.Fatalf("subscribe: %v", err)
	}
	for i, r := range sa.Reasons {
		if r < 0x80 {
			t.Errorf("subscription %d granted (0x%02x), want refused", i, r)
		}
	}
	// b's own exchange reaches b only.
	b.mustCall("messages", batch(dataMsg("b-1", b.endpointID, 11)))
	time.Sleep(100 * time.Millisecond)
	a.mu.Lock()
	for _, p := range a.got {
		t.Errorf("a received %s: %s", p.Topic, p.Payload)
	}
	a.mu.Unlock()
	list, err := inst.Client().Messages(t.Context(), client.MessageQuery{Source: b.endpointID})
	if err != nil || len(list.Items) != 1 {
		t.Errorf("b's messages: %d (%v), want only b's own", len(list.Items), err)
	}
}

// TestEmbeddedPushOnConnect: a request queued while the device is away is
// pushed when it connects and subscribes; one larger than acceptBytes is
// announced on messages/acceptBytes.
func TestEmbeddedPushOnConnect(t *testing.T) {
	inst, tc := embedded(t)
	d := register(t, inst, inst.MQTTURL(), tc)
	d.activate(humidityURN)
	d.disconnect()
	reqID, err := inst.Client().SetAttribute(t.Context(), d.endpointID, humidityURN, "maxThreshold", 75)
	if err != nil {
		t.Fatal(err)
	}
	d.mustConnect()
	defer d.disconnect()
	p := d.await("push on connect", func(p *paho.Publish) bool { return p.Topic == "devices/"+d.endpointID+"/messages" })
	if !strings.Contains(string(p.Payload), reqID) {
		t.Errorf("push %s, want request %s", p.Payload, reqID)
	}

	if _, err := d.publish("iotcs/"+d.endpointID+"/messages/acceptBytes", []byte{0, 0, 0, 10}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := inst.Client().SetAttribute(t.Context(), d.endpointID, humidityURN, "maxThreshold", 76); err != nil {
		t.Fatal(err)
	}
	p = d.await("min acceptBytes", func(p *paho.Publish) bool { return p.Topic == "devices/"+d.endpointID+"/messages/acceptBytes" })
	if n := binary.BigEndian.Uint32(p.Payload); len(p.Payload) != 4 || n <= 10 {
		t.Errorf("min acceptBytes %x, want 4 bytes above 10", p.Payload)
	}
	if _, err := d.publish("iotcs/"+d.endpointID+"/messages/acceptBytes", []byte{0, 0, 0x27, 0x10}, nil); err != nil {
		t.Fatal(err)
	}
	d.await("push after more room", func(p *paho.Publish) bool { return p.Topic == "devices/"+d.endpointID+"/messages" })
}

// TestBridgeMosquitto runs the flow through the Mosquitto of project
// machines (127.0.0.1:1883, anonymous); skipped when none answers.
func TestBridgeMosquitto(t *testing.T) {
	const broker = "mqtt://127.0.0.1:1883"
	if c, err := (&netDialer).DialContext(t.Context(), "tcp", "127.0.0.1:1883"); err != nil {
		t.Skipf("no MQTT broker at %s: %v", broker, err)
	} else {
		c.Close()
	}
	inst := startCloud(t, launch.Options{MQTTBroker: broker})
	if inst.MQTTURL() != broker {
		t.Errorf("MQTTURL() = %q, want %q", inst.MQTTURL(), broker)
	}
	d := register(t, inst, broker, nil)
	// Another cloud bridged to the same broker (a test running beside this
	// one) answers our device's publishes too: "unknown client".
	d.ignore = func(p *paho.Publish) bool { return strings.Contains(string(p.Payload), `unknown client`) }
	flow(t, inst, d)
}

// TestBridgeStandIn runs the flow through a plain mochi broker with no
// authentication, standing in for Mosquitto.
func TestBridgeStandIn(t *testing.T) {
	addr := standIn(t)
	inst := startCloud(t, launch.Options{MQTTBroker: "mqtt://" + addr})
	flow(t, inst, register(t, inst, "mqtt://"+addr, nil))
}

// TestBridgeUnreachable: Start fails after BridgeConnectTimeout, with the
// connection error, and leaves nothing running.
func TestBridgeUnreachable(t *testing.T) {
	ln, err := (&netListen).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err = launch.Start(ctx, launch.Options{DataDir: t.TempDir(), Listen: "127.0.0.1:0", MQTTBroker: "mqtt://" + addr})
	if err == nil || !strings.Contains(err.Error(), "cannot connect to mqtt://"+addr) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Start: %v, want the connection refused", err)
	}
}

func TestProvisioningFileMQTT(t *testing.T) {
	inst, _ := embedded(t)
	dev, err := inst.Client().RegisterDevice(t.Context(), api.RegisterDevice{HardwareID: "prov-mqtt"})
	if err != nil {
		t.Fatal(err)
	}
	file, err := inst.Client().ProvisioningFile(t.Context(), dev.ID, api.ProvisioningFileRequest{Passphrase: "correct horse", Transport: "mqtt"})
	if err != nil || len(file) == 0 {
		t.Fatalf("provisioning file with transport mqtt: %v", err)
	}
	_, err = inst.Client().ProvisioningFile(t.Context(), dev.ID, api.ProvisioningFileRequest{Passphrase: "correct horse", Transport: "carrier pigeon"})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 400 {
		t.Errorf("transport carrier pigeon: %v, want a 400", err)
	}
}

// TestEmbeddedMQTT311 speaks MQTT 3.1.1, as Oracle's libraries do: no
// correlation, the answer is the next publish on the topic.
func TestEmbeddedMQTT311(t *testing.T) {
	inst, tc := embedded(t)
	d := register(t, inst, inst.MQTTURL(), tc)
	c := dial311(t, d)
	id := d.activationID
	c.send(mochipk.Packet{FixedHeader: mochipk.FixedHeader{Type: mochipk.Subscribe, Qos: 1}, PacketID: 1,
		Filters: mochipk.Subscriptions{{Filter: "devices/" + id + "/#", Qos: 1}}})
	if ack := c.next(); ack.FixedHeader.Type != mochipk.Suback || len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] != 1 {
		t.Fatalf("SUBACK %+v", ack)
	}
	c.send(mochipk.Packet{FixedHeader: mochipk.FixedHeader{Type: mochipk.Publish, Qos: 1}, PacketID: 2,
		TopicName: "iotcs/" + id + "/activation/policy", Payload: []byte(`{"OSName":"Linux","OSVersion":"6"}`)})
	var answer mochipk.Packet
	for answer.FixedHeader.Type != mochipk.Publish {
		answer = c.next()
	}
	if answer.TopicName != "devices/"+id+"/activation/policy" || string(answer.Payload) != `{"keyType":"RSA","hashAlgorithm":"SHA256withRSA","keySize":2048}` {
		t.Errorf("answer on %s: %s", answer.TopicName, answer.Payload)
	}
	c.send(mochipk.Packet{FixedHeader: mochipk.FixedHeader{Type: mochipk.Disconnect}})
}
