package cloud

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
)

// outbox records what an MQTT publishes (pushes).
type outbox struct {
	mu   sync.Mutex
	msgs []MQTTMessage
	kick chan struct{}
	fail error // returned by publish when set
}

func (o *outbox) publish(_ context.Context, m MQTTMessage) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fail != nil {
		return o.fail
	}
	o.msgs = append(o.msgs, m)
	select {
	case o.kick <- struct{}{}:
	default:
	}
	return nil
}

// await removes and returns the first message on topic.
func (o *outbox) await(t *testing.T, topic string) MQTTMessage {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		o.mu.Lock()
		for i, m := range o.msgs {
			if m.Topic == topic {
				o.msgs = append(o.msgs[:i], o.msgs[i+1:]...)
				o.mu.Unlock()
				return m
			}
		}
		o.mu.Unlock()
		select {
		case <-o.kick:
		case <-deadline:
			t.Fatalf("nothing published on %s", topic)
		}
	}
}

// none checks that nothing was published on topic within d.
func (o *outbox) none(t *testing.T, topic string, d time.Duration) {
	t.Helper()
	time.Sleep(d)
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range o.msgs {
		if m.Topic == topic {
			t.Errorf("published on %s: %s", topic, m.Payload)
		}
	}
}

func newMQTT(t *testing.T, e *env, presence time.Duration) (*MQTT, *outbox) {
	t.Helper()
	o := &outbox{kick: make(chan struct{}, 1)}
	m, err := e.srv.NewMQTT(MQTTConfig{Publish: o.publish, Presence: presence})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() }) // before the env's Server.Close (cleanups run last first)
	return m, o
}

// handle publishes payload on iotcs/{id}/path with correlation "c" and
// returns the single answer.
func handle(t *testing.T, m *MQTT, id, path, payload string) MQTTMessage {
	t.Helper()
	out := m.Handle(t.Context(), MQTTMessage{Topic: "iotcs/" + id + "/" + path, Payload: []byte(payload), Correlation: []byte("c")})
	if len(out) != 1 {
		t.Fatalf("%s: %d answers %+v, want 1", path, len(out), out)
	}
	if string(out[0].Correlation) != "c" {
		t.Errorf("%s: answer correlation %q, want \"c\"", path, out[0].Correlation)
	}
	return out[0]
}

func mustHandle(t *testing.T, m *MQTT, id, path, payload string) []byte {
	t.Helper()
	a := handle(t, m, id, path, payload)
	if want := "devices/" + id + "/" + path; a.Topic != want {
		t.Fatalf("%s: answer on %s: %s, want %s", path, a.Topic, a.Payload, want)
	}
	return a.Payload
}

// activateMQTT activates d over m as docs/mqtt.md does.
func activateMQTT(t *testing.T, m *MQTT, d *device, models ...string) {
	t.Helper()
	if err := m.Authenticate(d.activationID, d.activationID, []byte(d.assertion()), "test"); err != nil {
		t.Fatal(err)
	}
	mustHandle(t, m, d.activationID, "activation/policy", `{"OSName":"Linux","OSVersion":"6"}`)
	var ar activationResponse
	if err := json.Unmarshal(mustHandle(t, m, d.activationID, "activation/direct", d.activationBody(append(models, capDirect)...)), &ar); err != nil {
		t.Fatal(err)
	}
	d.endpointID = ar.EndpointID
	if err := m.Authenticate(d.endpointID, d.endpointID, []byte(d.assertion()), "test"); err != nil {
		t.Fatal(err)
	}
}

func TestMQTTAuthenticate(t *testing.T) {
	e := newEnv(t)
	m, _ := newMQTT(t, e, 0)
	d := e.register(api.DeviceTypeDirect, 0)
	other := e.register(api.DeviceTypeDirect, 1)
	exp := d.exp()
	hsOf := func(id, secret string) string { return jwt("HS256", id, id, exp, hs256([]byte(secret)), false) }
	before := []struct {
		name, id, user, pw, want string
	}{
		{"HS256 before activation", d.activationID, d.activationID, d.assertion(), ""},
		{"no user name", d.activationID, "", d.assertion(), ""},
		{"user name differs", d.activationID, "someone", d.assertion(), `user name "someone" differs from client id`},
		{"no password", d.activationID, d.activationID, "", "no password"},
		{"not a JWT", d.activationID, d.activationID, "hunter2", "password: client assertion: 1 dot-separated segments"},
		{"another device's assertion", d.activationID, d.activationID, other.assertion(), `claim "sub" is "` + other.activationID + `", expected the client id`},
		{"wrong secret", d.activationID, d.activationID, hsOf(d.activationID, "guess"), "HS256 signature does not verify"},
		{"unknown client", "0-NOBODY", "0-NOBODY", hsOf("0-NOBODY", "x"), `unknown client "0-NOBODY"`},
		{"wildcard in the id", "a/#", "a/#", hsOf("a/#", "x"), "is not a device id"},
		{"expired", d.activationID, d.activationID, jwt("HS256", d.activationID, d.activationID, exp-3600, hs256([]byte(d.secret)), false), "expired at"},
	}
	for _, tt := range before {
		t.Run(tt.name, func(t *testing.T) {
			err := m.Authenticate(tt.id, tt.user, []byte(tt.pw), "test")
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Authenticate: %v, want %q", err, tt.want)
			}
		})
	}

	activateMQTT(t, m, d)
	rsAs := func(id string) string { return jwt("RS256", id, id, exp, rs256(d.key), false) }
	after := []struct {
		name, id, pw, want string
	}{
		{"RS256 as the endpoint", d.endpointID, rsAs(d.endpointID), ""},
		{"HS256 as the endpoint", d.endpointID, hsOf(d.endpointID, d.secret), `alg "HS256" is not accepted for an activated device`},
		{"HS256 as the activation id", d.activationID, hsOf(d.activationID, d.secret), `alg "HS256" is not accepted for an activated device`},
		{"RS256 as the activation id", d.activationID, rsAs(d.activationID), `is activated as endpoint "` + d.endpointID + `", expected client id`},
		{"another key", d.endpointID, jwt("RS256", d.endpointID, d.endpointID, exp, rs256(testKey(t, 2)), false), "RS256 signature does not verify"},
	}
	for _, tt := range after {
		t.Run(tt.name, func(t *testing.T) {
			err := m.Authenticate(tt.id, tt.id, []byte(tt.pw), "test")
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Authenticate: %v, want %q", err, tt.want)
			}
		})
	}
}

// TestMQTTHandle: every topic answers what its HTTPS call answers.
func TestMQTTHandle(t *testing.T) {
	e := newEnv(t)
	e.addModels()
	m, out := newMQTT(t, e, 0)
	d := e.register(api.DeviceTypeDirect, 0)

	// Before activation, the device API wants the endpoint.
	if a := handle(t, m, d.activationID, "messages", "[]"); a.Topic != "devices/"+d.activationID+"/messages/error" || !strings.Contains(string(a.Payload), `"status":401`) {
		t.Errorf("messages before activation: %s %s, want a 401 on the error topic", a.Topic, a.Payload)
	}
	pol := mustHandle(t, m, d.activationID, "activation/policy", `{"OSName":"Linux","OSVersion":"6"}`)
	d.getToken("oracle/iot/activation")
	if r := d.call("GET", "/iot/api/v2/activation/policy?OSName=Linux&OSVersion=6", ""); !bytes.Equal(r.body, pol) {
		t.Errorf("policy over MQTT %s, over HTTPS %s: want the same bytes", pol, r.body)
	}
	activateMQTT(t, m, d, humidityURN)
	ep := d.endpointID
	if a := handle(t, m, d.activationID, "activation/direct", d.activationBody(capDirect)); !strings.Contains(string(a.Payload), "is already activated") || !strings.HasSuffix(a.Topic, "/error") {
		t.Errorf("second activation: %s %s, want 401 already activated", a.Topic, a.Payload)
	}
	if a := handle(t, m, d.activationID, "messages", "[]"); !strings.Contains(string(a.Payload), `is activated as endpoint \"`+ep+`\"`) {
		t.Errorf("messages as the activation id: %s", a.Payload)
	}

	model := mustHandle(t, m, ep, "deviceModels", `{"urn":"`+humidityURN+`"}`)
	d.getToken("")
	if r := d.call("GET", "/iot/api/v2/deviceModels/"+humidityURN, ""); !bytes.Equal(r.body, model) {
		t.Errorf("model over MQTT differs from HTTPS")
	}
	msgs := "[" + dataMsg("m-1", ep, humidityURN+":attributes", `{"humidity":50}`) + "]"
	for range 2 {
		if got := mustHandle(t, m, ep, "messages", msgs); string(got) != "[]" {
			t.Errorf("messages answer %s, want []", got)
		}
	}
	var list api.MessageList
	e.mustAdmin(200, "GET", api.Root+"/messages?source="+ep, nil, &list)
	if len(list.Items) != 1 {
		t.Errorf("%d messages stored, want 1 (replay dropped)", len(list.Items))
	}

	errs := []struct {
		name, topic, payload string
		status               int
		msg                  string
	}{
		{"unknown path", "iotcs/" + ep + "/foo", "", 404, "no such topic: iotcs/" + ep + "/foo"},
		{"model payload not an object", "iotcs/" + ep + "/deviceModels", `"x"`, 400, `deviceModels: payload is not {"urn":"..."}`},
		{"no such model", "iotcs/" + ep + "/deviceModels", `{"urn":"urn:x"}`, 404, `device model "urn:x" is not registered`},
		{"bad batch", "iotcs/" + ep + "/messages", "[" + dataMsg("m-2", ep, humidityURN+":attributes", `{"humidity":1}`) + `,{"clientId":"m-3"}]`, 400, "message 1:"},
		{"acceptBytes too short", "iotcs/" + ep + "/messages/acceptBytes", "\x00\x01", 400, "payload is 2 bytes, expected 4"},
		{"acceptBytes negative", "iotcs/" + ep + "/messages/acceptBytes", "\xff\xff\xff\xff", 400, "-1 is negative"},
		{"unknown client", "iotcs/0-NOBODY/messages", "[]", 401, `unknown client "0-NOBODY"`},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			got := m.Handle(t.Context(), MQTTMessage{Topic: tt.topic, Payload: []byte(tt.payload), Correlation: []byte{1}})
			if len(got) != 1 || got[0].Topic != strings.Replace(tt.topic, "iotcs/", "devices/", 1)+"/error" || !bytes.Equal(got[0].Correlation, []byte{1}) {
				t.Fatalf("answers %+v, want one on the error topic with the correlation", got)
			}
			var ae api.Error
			if err := json.Unmarshal(got[0].Payload, &ae); err != nil || ae.Status != tt.status || !strings.Contains(ae.Message, tt.msg) {
				t.Errorf("error %s, want %d %q", got[0].Payload, tt.status, tt.msg)
			}
			if tt.name == "bad batch" && (ae.Index == nil || *ae.Index != 1) {
				t.Errorf("bad batch: index %v, want 1", ae.Index)
			}
		})
	}
	if got := m.Handle(t.Context(), MQTTMessage{Topic: "iotcs/" + ep + "/messages/acceptBytes", Payload: []byte{0, 0, 1, 0}}); got != nil {
		t.Errorf("acceptBytes answered %+v, want nothing", got)
	}
	for _, topic := range []string{"devices/" + ep + "/messages", "iotcs/" + ep, "iotcs//messages", "other"} {
		if got := m.Handle(t.Context(), MQTTMessage{Topic: topic}); got != nil {
			t.Errorf("%s answered %+v, want nothing", topic, got)
		}
	}
	out.none(t, "devices/"+ep+"/messages", 0)

	// A bridged cloud shares its broker with other clouds: it leaves the
	// clients it does not know to them, and still answers its own.
	bridged, err := e.srv.NewMQTT(MQTTConfig{Publish: func(context.Context, MQTTMessage) error { return nil }, Presence: time.Minute, IgnoreUnknown: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bridged.Close()
	if got := bridged.Handle(t.Context(), MQTTMessage{Topic: "iotcs/0-NOBODY/messages", Payload: []byte("[]"), Correlation: []byte{1}}); got != nil {
		t.Errorf("IgnoreUnknown: an unknown client was answered %+v, want nothing", got)
	}
	if got := bridged.Handle(t.Context(), MQTTMessage{Topic: "iotcs/" + ep + "/messages", Payload: []byte("[]"), Correlation: []byte{2}}); len(got) != 1 || string(got[0].Payload) != "[]" {
		t.Errorf("IgnoreUnknown: the cloud's own device was answered %+v, want one answer []", got)
	}
}

// TestMQTTPush: requests are pushed to connected devices only, within their
// acceptBytes; the ones for a gateway's devices go to the gateway.
func TestMQTTPush(t *testing.T) {
	e := newEnv(t)
	e.addModels()
	m, out := newMQTT(t, e, 0)
	d := e.register(api.DeviceTypeDirect, 0)
	activateMQTT(t, m, d, humidityURN)
	ep := d.endpointID
	topic := "devices/" + ep + "/messages"
	set := func(v int) string {
		var acc api.Accepted
		e.mustAdmin(202, "PUT", api.Root+"/devices/"+ep+"/deviceModels/"+humidityURN+"/attributes/maxThreshold", api.SetAttribute{Value: v}, &acc)
		return acc.RequestID
	}
	status := func(id string) string {
		var r api.Request
		e.mustAdmin(200, "GET", api.Root+"/requests/"+id, nil, &r)
		return r.Status
	}

	early := set(70) // queued before the device listens
	m.Connected(ep)
	if p := out.await(t, topic); !strings.Contains(string(p.Payload), early) || p.Correlation != nil {
		t.Errorf("push on connect %s (correlation %q), want request %s and no correlation", p.Payload, p.Correlation, early)
	}
	now := set(71)
	if p := out.await(t, topic); !strings.Contains(string(p.Payload), now) || !strings.HasPrefix(string(p.Payload), `[{"id":`) {
		t.Errorf("push %s, want request %s as a compact array", p.Payload, now)
	}
	if s := status(now); s != api.RequestDelivered {
		t.Errorf("pushed request is %s, want DELIVERED", s)
	}

	m.Handle(t.Context(), MQTTMessage{Topic: "iotcs/" + ep + "/messages/acceptBytes", Payload: binary.BigEndian.AppendUint32(nil, 20)})
	big := set(72)
	p := out.await(t, topic+"/acceptBytes")
	if n := binary.BigEndian.Uint32(p.Payload); n <= 20 || status(big) != api.RequestPending {
		t.Errorf("min acceptBytes %d, request %s: want > 20 and the request still PENDING", n, status(big))
	}
	// The messages answer reports it too, with an empty array.
	ans := m.Handle(t.Context(), MQTTMessage{Topic: "iotcs/" + ep + "/messages", Payload: []byte("[]"), Correlation: []byte("q")})
	if len(ans) != 2 || string(ans[0].Payload) != "[]" || ans[1].Topic != topic+"/acceptBytes" || ans[1].Correlation != nil {
		t.Errorf("messages answer with a request too large: %+v", ans)
	}
	m.Handle(t.Context(), MQTTMessage{Topic: "iotcs/" + ep + "/messages/acceptBytes", Payload: binary.BigEndian.AppendUint32(nil, 10000)})
	if p := out.await(t, topic); !strings.Contains(string(p.Payload), big) {
		t.Errorf("push after more room %s, want %s", p.Payload, big)
	}

	m.Disconnected(ep)
	later := set(73)
	out.none(t, topic, 200*time.Millisecond)
	if s := status(later); s != api.RequestPending {
		t.Errorf("request for a disconnected device is %s, want PENDING", s)
	}
	m.Connected(ep) // accept back to the default
	if p := out.await(t, topic); !strings.Contains(string(p.Payload), later) {
		t.Errorf("push on reconnect %s, want %s", p.Payload, later)
	}
	m.Disconnected(ep)

	// A gateway gets the requests of its devices.
	gw := e.register(api.DeviceTypeGateway, 1)
	activateMQTT(t, m, gw, capIndirect)
	var icd activationResponse
	if err := json.Unmarshal(mustHandle(t, m, gw.endpointID, "activation/indirect/device", `{"hardwareId":"icd-mqtt","deviceModels":["`+humidityURN+`"]}`), &icd); err != nil || icd.EndpointID == "" {
		t.Fatalf("indirect activation: %+v %v", icd, err)
	}
	m.Connected(gw.endpointID)
	var acc api.Accepted
	e.mustAdmin(202, "PUT", api.Root+"/devices/"+icd.EndpointID+"/deviceModels/"+humidityURN+"/attributes/maxThreshold", api.SetAttribute{Value: 80}, &acc)
	if p := out.await(t, "devices/"+gw.endpointID+"/messages"); !strings.Contains(string(p.Payload), `"destination":"`+icd.EndpointID+`"`) {
		t.Errorf("push to the gateway %s, want the request for %s", p.Payload, icd.EndpointID)
	}
	m.Disconnected(gw.endpointID)
}

// TestMQTTPresence: through a bridge, a device counts as connected for
// Presence after each publish.
func TestMQTTPresence(t *testing.T) {
	e := newEnv(t)
	e.addModels()
	m, out := newMQTT(t, e, 300*time.Millisecond)
	d := e.register(api.DeviceTypeDirect, 0)
	activateMQTT(t, m, d, humidityURN)
	ep := d.endpointID
	set := func() string {
		var acc api.Accepted
		e.mustAdmin(202, "PUT", api.Root+"/devices/"+ep+"/deviceModels/"+humidityURN+"/attributes/maxThreshold", api.SetAttribute{Value: 70}, &acc)
		return acc.RequestID
	}
	mustHandle(t, m, ep, "messages", "[]")
	id := set()
	if p := out.await(t, "devices/"+ep+"/messages"); !strings.Contains(string(p.Payload), id) {
		t.Errorf("push while present %s, want %s", p.Payload, id)
	}
	time.Sleep(500 * time.Millisecond) // the lease ends
	id = set()
	out.none(t, "devices/"+ep+"/messages", 200*time.Millisecond)
	// The next publish renews the lease: the request is pushed.
	m.Handle(t.Context(), MQTTMessage{Topic: "iotcs/" + ep + "/messages/acceptBytes", Payload: []byte{0, 0, 0x27, 0x10}})
	if p := out.await(t, "devices/"+ep+"/messages"); !strings.Contains(string(p.Payload), id) {
		t.Errorf("push after a new publish %s, want %s", p.Payload, id)
	}
}

func TestMQTTClose(t *testing.T) {
	e := newEnv(t)
	m, out := newMQTT(t, e, 0)
	d := e.register(api.DeviceTypeDirect, 0)
	activateMQTT(t, m, d)
	m.Connected(d.endpointID)
	out.fail = errors.New("broker gone")
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	a := handle(t, m, d.endpointID, "messages", "[]")
	if !strings.HasSuffix(a.Topic, "/error") || !strings.Contains(string(a.Payload), `"status":503`) {
		t.Errorf("after Close: %s %s, want 503", a.Topic, a.Payload)
	}
	m.Connected(d.endpointID) // ignored
	if _, err := e.srv.NewMQTT(MQTTConfig{}); err == nil {
		t.Error("NewMQTT without Publish: no error")
	}
}

func TestConfigMQTTURL(t *testing.T) {
	base := Config{DataDir: "d", PublicURL: "https://h", AdminToken: adminToken}
	for url, want := range map[string]string{
		"mqtts://h:8883": "",
		"mqtt://h":       "",
		"https://h":      `cloud config: MQTTURL "https://h": expected scheme://host[:port] with scheme mqtts or mqtt and nothing after the host`,
		"mqtts://u:p@h":  `cloud config: MQTTURL "mqtts://u:p@h": expected scheme://host[:port] with scheme mqtts or mqtt and nothing after the host`,
	} {
		c := base
		c.MQTTURL = url
		if err := c.Validate(); want == "" && err != nil || want != "" && (err == nil || err.Error() != want) {
			t.Errorf("%s: %v, want %q", url, err, want)
		}
	}
	if got := withPort("mqtts://h"); got != "mqtts://h:8883" {
		t.Errorf("withPort = %s", got)
	}
}
