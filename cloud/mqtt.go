package cloud

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/auth"
	"github.com/iotnode/iotnode/cloud/store"
)

// MQTT topics (docs/mqtt.md): a device publishes to iotcs/{id}/PATH and the
// cloud answers on devices/{id}/PATH, errors on devices/{id}/PATH/error.
const (
	MQTTDevicePrefix = "iotcs/"    // topics devices publish to
	MQTTCloudPrefix  = "devices/"  // topics the cloud publishes to
	MQTTSubscription = "iotcs/+/#" // what a bridge subscribes to
	mqttErrorSuffix  = "/error"
)

// DefaultMQTTAcceptBytes is the room assumed in a device's request buffer
// until it publishes messages/acceptBytes (the request buffer of Oracle's JS
// library; HTTPS assumes DefaultAcceptBytes, Java's, when the query has none).
const DefaultMQTTAcceptBytes = 10000

// mqttPublishTimeout bounds one push (a bridge waits for the broker's PUBACK).
const mqttPublishTimeout = 10 * time.Second

// mqttRetry is how long a pusher waits after a store error before trying again.
const mqttRetry = time.Second

// MQTTMessage is one MQTT publish, from a device or to one.
type MQTTMessage struct {
	Topic   string
	Payload []byte
	// Correlation is the MQTT 5 Correlation Data property; nil when absent
	// (always for MQTT 3.1.1).
	Correlation []byte
}

// MQTTConfig configures an MQTT.
type MQTTConfig struct {
	// Publish sends one message to a device at QoS 1 (required). The MQTT
	// calls it from its pushers, concurrently for different devices; it must
	// return within its ctx. Handle's answers are returned, not published.
	Publish func(ctx context.Context, m MQTTMessage) error
	// Presence, when positive, makes every publish of a device count as the
	// device being connected and subscribed for that long, so that requests
	// are pushed to it: a bridge to another broker sees no connections. Zero:
	// only Connected and Disconnected count (an embedded broker).
	Presence time.Duration
	// IgnoreUnknown makes Handle answer nothing for a client this cloud does
	// not know, instead of a 401 on the error topic: several clouds may
	// share one broker through bridges, and each answers only for its own
	// devices. An embedded broker authenticates clients at CONNECT and
	// leaves it off.
	IgnoreUnknown bool
	// Logger is the component's logger (default: the Server's, named
	// iotcloud.mqtt).
	Logger *slog.Logger
}

// MQTT is the device API over MQTT, independent of the broker: it
// authenticates CONNECTs, answers the publishes of devices by the same code
// as the HTTPS API, and pushes the requests queued for connected devices.
// The broker side (cloud/mqttbroker) feeds it and publishes what it returns.
// Its methods are safe for concurrent use.
type MQTT struct {
	s        *Server
	publish  func(ctx context.Context, m MQTTMessage) error
	presence time.Duration
	ignore   bool // IgnoreUnknown
	log      *slog.Logger

	mu     sync.Mutex
	devs   map[string]*mqttDevice // by client id: the devices with a pusher or a connection
	closed bool
	done   chan struct{}  // closed by Close: pushers return
	wg     sync.WaitGroup // pushers and Handle calls in progress
}

// mqttDevice is what the MQTT knows of one client id. Guarded by MQTT.mu.
type mqttDevice struct {
	accept  int           // the last acceptBytes, or DefaultMQTTAcceptBytes
	conns   int           // Connected minus Disconnected
	until   time.Time     // presence lease (MQTTConfig.Presence)
	running bool          // a pusher runs
	kick    chan struct{} // capacity 1: accept or presence changed
}

func (d *mqttDevice) poke() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// NewMQTT returns the MQTT device API of s. It starts no goroutine: pushers
// start with Connected (or a publish, with Presence). Close it before s.
func (s *Server) NewMQTT(cfg MQTTConfig) (*MQTT, error) {
	if cfg.Publish == nil {
		return nil, errors.New("mqtt: MQTTConfig.Publish is nil, expected the function that publishes to devices")
	}
	if cfg.Presence < 0 {
		return nil, fmt.Errorf("mqtt: MQTTConfig.Presence is %s, expected a positive duration or 0", cfg.Presence)
	}
	log := cfg.Logger
	if log == nil {
		log = s.log.With(slog.String("logger", "iotcloud.mqtt"))
	}
	return &MQTT{
		s: s, publish: cfg.Publish, presence: cfg.Presence, ignore: cfg.IgnoreUnknown, log: log,
		devs: map[string]*mqttDevice{}, done: make(chan struct{}),
	}, nil
}

// Close stops every pusher and waits for them and for the Handle calls in
// progress. Later publishes are answered 503; later Connected calls do
// nothing. It is safe to call more than once.
func (m *MQTT) Close() error {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		close(m.done)
	}
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

// enter registers a Handle call; false after Close.
func (m *MQTT) enter() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	return true
}

// Authenticate checks the CONNECT of a device: the client id and the user
// name (when not empty) are the device's id, and the password is a client
// assertion (protocol.md §1) for it, verified exactly as the token endpoint
// does: HS256 with the shared secret before activation, RS256 with the
// device key after. Once activated, a device must connect as its endpoint
// id. The error says what was wrong (for logs: never send it to the client,
// it tells whether an id exists).
func (m *MQTT) Authenticate(clientID, username string, password []byte, remote string) error {
	const op = "mqtt connect"
	reject := func(format string, args ...any) error {
		msg := fmt.Sprintf(format, args...)
		m.log.Warn(op+" rejected", "client_id", clientID, "reason", msg, "remote", remote)
		return fmt.Errorf("%s: %s", op, msg)
	}
	if clientID == "" || strings.ContainsAny(clientID, "/+#") {
		return reject("client id %q is not a device id, expected the activation id or the endpoint id", clientID)
	}
	if username != "" && username != clientID {
		return reject("user name %q differs from client id %q, expected both to be the device's id", username, clientID)
	}
	if len(password) == 0 {
		return reject("no password, expected a client assertion (a JWT signed like that of the token call)")
	}
	a, err := auth.Parse(string(password))
	if err != nil {
		return reject("password: %v", err)
	}
	if a.Subject != clientID {
		return reject("password: claim \"sub\" is %q, expected the client id %q", a.Subject, clientID)
	}
	d, err := m.s.verifyAssertion(op, a, remote)
	if err != nil {
		return err
	}
	if d.State == api.StateActivated && clientID != d.EndpointID {
		return reject("device %q is activated as endpoint %q, expected client id %q with an RS256 assertion", d.ID, d.EndpointID, d.EndpointID)
	}
	m.log.Debug("mqtt client authenticated", "client_id", clientID, "activated", d.State == api.StateActivated, "remote", remote)
	return nil
}

// Connected records that the client id subscribed to its devices/{id}/
// topics on a connection: requests queued for it are pushed from now on.
// Call Disconnected once for each Connected when that connection ends. A
// first connection resets the device's acceptBytes to the default.
func (m *MQTT) Connected(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	d := m.deviceLocked(id)
	if d.conns == 0 && time.Now().After(d.until) {
		d.accept = DefaultMQTTAcceptBytes
	}
	d.conns++
	m.startLocked(id, d)
}

// Disconnected records the end of a connection counted by Connected.
func (m *MQTT) Disconnected(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := m.devs[id]; d != nil && d.conns > 0 {
		d.conns--
		d.poke()
	}
}

func (m *MQTT) deviceLocked(id string) *mqttDevice {
	d := m.devs[id]
	if d == nil {
		d = &mqttDevice{accept: DefaultMQTTAcceptBytes, kick: make(chan struct{}, 1)}
		m.devs[id] = d
	}
	return d
}

func (m *MQTT) startLocked(id string, d *mqttDevice) {
	if d.running {
		d.poke()
		return
	}
	d.running = true
	m.wg.Add(1)
	go m.push(id, d) // owned by m: stopped by Close (done) or when the device leaves, waited for by Close
}

// seen extends the presence lease of id (MQTTConfig.Presence).
func (m *MQTT) seen(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	d := m.deviceLocked(id)
	d.until = time.Now().Add(m.presence)
	m.startLocked(id, d)
}

// setAccept records a device's acceptBytes and wakes its pusher.
func (m *MQTT) setAccept(id string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.deviceLocked(id)
	d.accept = n
	d.poke()
	if d.conns == 0 && !d.running && time.Now().After(d.until) {
		delete(m.devs, id) // not connected: nothing to remember it for
	}
}

func (m *MQTT) acceptOf(id string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := m.devs[id]; d != nil {
		return d.accept
	}
	return DefaultMQTTAcceptBytes
}

// push is the pusher of one client id: while the device is connected (or
// present), it takes the requests queued for it that fit in its acceptBytes
// and publishes them on devices/{id}/messages, as a long poll would answer
// them; when the first one alone does not fit, it publishes its size on
// devices/{id}/messages/acceptBytes, once per acceptBytes value.
func (m *MQTT) push(id string, d *mqttDevice) {
	defer m.wg.Done()
	reported := 0
	lastAccept := -1
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		woken, stop := m.s.wake.subscribe(id)
		now := time.Now()
		m.mu.Lock()
		active := d.conns > 0 || now.Before(d.until)
		accept, lease, conns := d.accept, d.until.Sub(now), d.conns
		if !active || m.closed {
			d.running = false
			if d.conns == 0 && m.devs[id] == d {
				delete(m.devs, id)
			}
			m.mu.Unlock()
			stop()
			return
		}
		m.mu.Unlock()
		if accept != lastAccept {
			lastAccept, reported = accept, 0
		}
		wait := time.Duration(-1) // until woken
		if conns == 0 {
			wait = lease
		}
		out, minAccept, err := m.s.take(id, accept)
		switch {
		case err != nil:
			m.log.Error("cannot take the requests of a device", "client_id", id, "err", err)
			wait = mqttRetry
		case len(out) > 2:
			m.send(id, MQTTMessage{Topic: MQTTCloudPrefix + id + "/messages", Payload: out})
			stop()
			continue // more may be pending
		case minAccept > 0 && minAccept != reported:
			reported = minAccept
			m.send(id, MQTTMessage{Topic: MQTTCloudPrefix + id + "/messages/acceptBytes", Payload: beUint32(minAccept)})
		}
		var expired <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			expired = timer.C
		}
		select {
		case <-woken:
		case <-d.kick:
		case <-expired:
		case <-m.done:
		}
		stop()
	}
}

// send publishes one push; a request lost on the way expires as over HTTPS.
func (m *MQTT) send(id string, msg MQTTMessage) {
	ctx, cancel := context.WithTimeout(context.Background(), mqttPublishTimeout)
	defer cancel()
	if err := m.publish(ctx, msg); err != nil {
		m.log.Warn("cannot push to a device: delivered requests expire unanswered", "client_id", id, "topic", msg.Topic, "err", err)
		return
	}
	m.log.Debug("pushed to a device", "client_id", id, "topic", msg.Topic, "bytes", len(msg.Payload))
}

func beUint32(n int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(n)) }

// mqttRoute is how one device topic maps to the HTTPS API.
type mqttRoute struct {
	method, path string
	activation   bool // activation scope (else the device scope, activated devices only)
}

var mqttRoutes = map[string]mqttRoute{
	"activation/policy":          {method: http.MethodGet, path: api.Root + "/activation/policy", activation: true},
	"activation/direct":          {method: http.MethodPost, path: api.Root + "/activation/direct", activation: true},
	"activation/indirect/device": {method: http.MethodPost, path: api.Root + "/activation/indirect/device"},
	"deviceModels":               {method: http.MethodGet, path: api.Root + "/deviceModels/"},
	"messages":                   {method: http.MethodPost, path: api.Root + "/messages"},
	"messages/acceptBytes":       {},
}

// Handle answers one publish of a device on iotcs/{id}/PATH and returns what
// to publish: the answer on devices/{id}/PATH, or the error document
// (api.Error, as the HTTPS API answers) on devices/{id}/PATH/error, both with
// in's correlation data. A messages/acceptBytes publish has no answer unless
// it is malformed. A topic outside iotcs/ returns nothing. The id in the
// topic is trusted: the broker checked that the publisher owns it.
//
// PATH and payload are those of docs/mqtt.md; each is served by the handler
// of the matching HTTPS call (createDraft is the server default, true).
func (m *MQTT) Handle(ctx context.Context, in MQTTMessage) []MQTTMessage {
	rest, ok := strings.CutPrefix(in.Topic, MQTTDevicePrefix)
	id, path, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || id == "" || path == "" {
		return nil
	}
	answer := MQTTMessage{Topic: MQTTCloudPrefix + id + "/" + path, Correlation: in.Correlation}
	fail := func(status int, format string, args ...any) []MQTTMessage {
		doc, _ := json.Marshal(api.Error{Status: status, Message: fmt.Sprintf(format, args...)})
		answer.Topic += mqttErrorSuffix
		answer.Payload = doc
		return []MQTTMessage{answer}
	}
	if !m.enter() {
		return fail(http.StatusServiceUnavailable, "iotcloud is shutting down")
	}
	defer m.wg.Done()
	start := time.Now()
	route, ok := mqttRoutes[path]
	if !ok {
		return fail(http.StatusNotFound, "no such topic: %s, expected iotcs/{id}/ followed by activation/policy, activation/direct, activation/indirect/device, deviceModels, messages or messages/acceptBytes", in.Topic)
	}
	var d *store.Device
	err := m.s.store.View(func(tx store.Tx) error {
		var err error
		d, err = tx.Device(id)
		return err
	})
	switch {
	case errors.Is(err, store.ErrNotFound) && m.ignore:
		m.log.Debug("publish of an unknown client ignored", "topic", in.Topic)
		return nil
	case errors.Is(err, store.ErrNotFound):
		return fail(http.StatusUnauthorized, "unknown client %q, expected a registered activation id or endpoint id", id)
	case err != nil:
		m.log.Error("internal error", "topic", in.Topic, "err", err)
		return fail(http.StatusInternalServerError, "internal error (logged by the server)")
	case d.Type == api.DeviceTypeIndirect:
		return fail(http.StatusUnauthorized, "client %q is an indirectly connected device: its gateway publishes for it", id)
	}
	endpoint := d.State == api.StateActivated && id == d.EndpointID
	if m.presence > 0 && endpoint {
		m.seen(id) // requests are queued for endpoint ids only
	}
	if path == "messages/acceptBytes" {
		if len(in.Payload) != 4 {
			return fail(http.StatusBadRequest, "messages/acceptBytes: payload is %d bytes, expected 4 (a big-endian integer)", len(in.Payload))
		}
		n := int(int32(binary.BigEndian.Uint32(in.Payload)))
		if n < 0 {
			return fail(http.StatusBadRequest, "messages/acceptBytes: %d is negative, expected the free bytes of the request buffer", n)
		}
		m.setAccept(id, n)
		m.log.Debug("mqtt acceptBytes", "client_id", id, "accept_bytes", n)
		return nil
	}
	tok := auth.Token{Scope: auth.ScopeActivation, Subject: d.ID, Expiry: m.s.now().Add(time.Minute)}
	if !route.activation {
		switch {
		case d.State != api.StateActivated:
			return fail(http.StatusUnauthorized, "device %q is not activated, expected direct activation on iotcs/%s/activation/direct first, then a new connection as the endpoint", d.ID, id)
		case id != d.EndpointID:
			return fail(http.StatusUnauthorized, "device %q is activated as endpoint %q, expected a new connection with client id %q", d.ID, d.EndpointID, d.EndpointID)
		}
		tok.Scope, tok.Subject = auth.ScopeDevice, d.EndpointID
	}

	target, query := route.path, url.Values{}
	switch path {
	case "activation/policy":
		var p struct{ OSName, OSVersion string }
		if len(bytes.TrimSpace(in.Payload)) > 0 {
			if err := json.Unmarshal(in.Payload, &p); err != nil {
				return fail(http.StatusBadRequest, "activation/policy: payload is not {\"OSName\":\"...\",\"OSVersion\":\"...\"}: %v", err)
			}
		}
		query.Set("OSName", p.OSName)
		query.Set("OSVersion", p.OSVersion)
	case "deviceModels":
		var p struct {
			URN string `json:"urn"`
		}
		if err := json.Unmarshal(in.Payload, &p); err != nil || p.URN == "" {
			return fail(http.StatusBadRequest, "deviceModels: payload is not {\"urn\":\"...\"} with a device model URN (%s)", errOr(err, "urn is empty"))
		}
		target += url.PathEscape(p.URN)
	case "messages":
		query.Set("acceptBytes", strconv.Itoa(m.acceptOf(id)))
	}
	status, header, body := m.serve(ctx, route.method, target, query, in.Payload, tok, id)
	m.log.Debug("mqtt publish handled", "client_id", id, "path", path, "status", status, "duration", time.Since(start))
	if status < 200 || status > 299 {
		answer.Topic += mqttErrorSuffix
		answer.Payload = body
		return []MQTTMessage{answer}
	}
	answer.Payload = body
	out := []MQTTMessage{answer}
	if path == "messages" {
		if n, err := strconv.Atoi(header.Get("X-min-acceptBytes")); err == nil && n > 0 {
			out[0].Payload = []byte("[]")
			out = append(out, MQTTMessage{Topic: MQTTCloudPrefix + id + "/messages/acceptBytes", Payload: beUint32(n)})
		}
	}
	return out
}

func errOr(err error, msg string) string {
	if err != nil {
		return err.Error()
	}
	return msg
}

// serve runs one HTTPS API call in process, as the device identified by an
// access token minted for tok, and returns its status, header and body.
func (m *MQTT) serve(ctx context.Context, method, path string, query url.Values, body []byte, tok auth.Token, id string) (int, http.Header, []byte) {
	target := path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var rd io.Reader
	if method != http.MethodGet {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		doc, _ := json.Marshal(api.Error{Status: http.StatusBadRequest, Message: fmt.Sprintf("mqtt: %v", err)})
		return http.StatusBadRequest, http.Header{}, doc
	}
	req.RemoteAddr = "mqtt:" + id
	req.Header.Set("Authorization", "Bearer "+m.s.tokens.Issue(tok))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	rec := &recorder{header: http.Header{}}
	m.s.Handler().ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.status, rec.header, rec.body.Bytes()
}

// recorder is the http.ResponseWriter of in-process calls.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
