package mqtt_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	mqttadapter "github.com/iotnode/iotnode/adapters/mqtt"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports/porttest"
)

const (
	activationID = "act-1"
	endpointID   = "ep-1"
	sharedSecret = "s3cret-shared"
)

// t0 is the fake clock's start; whole seconds so that exp is exact.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// deviceKey and otherKey are RSA keys for the whole test binary
// (generating is slow); the cloud knows deviceKey as ep-1's.
var (
	deviceKey = sync.OnceValue(newRSAKey)
	otherKey  = sync.OnceValue(newRSAKey)
)

func newRSAKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

func keyDER(t testing.TB, k *rsa.PrivateKey) (pkcs8, spki []byte) {
	t.Helper()
	pkcs8, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	spki, err = x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pkcs8, spki
}

// connectRec is a CONNECT the fake cloud received, its password checked.
type connectRec struct {
	ClientID, Username string
	Clean              bool
	KeepAlive          uint16
	Header             string // JWT header JSON
	Claims             map[string]any
	Authentic          bool
}

// publishRec is a publish of a device under iotcs/{id}/.
type publishRec struct {
	ID, Path string
	Payload  []byte
	Corr     []byte
}

// reply is what the fake cloud publishes for a publish: on
// devices/{id}/PATH[/error] with the publish's correlation data, or Corr
// when set, or none with NoCorr.
type reply struct {
	Payload []byte
	Error   bool
	Corr    []byte
	NoCorr  bool
}

// handler answers a publish; no replies means no answer.
type handler func(p publishRec) []reply

// fakeCloud is an embedded mochi-mqtt broker with a small cloud in it: a
// hook that authenticates every client by its JWT password (protocol.md §1)
// and enforces the topic access of docs/mqtt.md, and an inline
// subscription to iotcs/+/# that answers per docs/mqtt.md.
type fakeCloud struct {
	t         *testing.T
	clock     *porttest.FakeClock
	tlsConfig *tls.Config // nil: plain TCP
	caDER     []byte
	addr      string

	mu        sync.Mutex
	srv       *mochi.Server
	cloud     *mochi.Client // the inline client the answers come from
	connects  []connectRec
	events    []string // "connect ID", "subscribe ID FILTER", "publish ID PATH", "disconnect ID"
	publishes []publishRec
	handlers  map[string]handler // by path
	refuse    map[string]byte    // PUBACK reason code by path, for publishes the broker refuses
	// hold delays the PUBACK of publishes on holdPath until it is closed;
	// held receives one value per publish held.
	holdPath   string
	hold, held chan struct{}
}

// newFakeCloud starts a broker on 127.0.0.1:0, with TLS from a test CA
// when tlsOn is set.
func newFakeCloud(t *testing.T, tlsOn bool) *fakeCloud {
	t.Helper()
	fc := &fakeCloud{t: t, clock: porttest.NewFakeClock(t0), addr: "127.0.0.1:0", handlers: defaultHandlers()}
	if tlsOn {
		der, key := selfSigned(t, "mqtt test CA")
		fc.caDER = der
		fc.tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12,
			Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	}
	fc.start()
	t.Cleanup(fc.stop)
	return fc
}

func (fc *fakeCloud) start() {
	fc.t.Helper()
	srv := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(&cloudHook{fc: fc}, nil); err != nil {
		fc.t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "t", Address: fc.addr, TLSConfig: fc.tlsConfig})
	if err := srv.AddListener(l); err != nil {
		fc.t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		fc.t.Fatal(err)
	}
	cloud := srv.NewClient(nil, "local", "fake-cloud", true)
	cloud.Properties.ProtocolVersion = 5
	fc.mu.Lock()
	fc.srv, fc.cloud, fc.addr = srv, cloud, l.Address()
	fc.mu.Unlock()
	if err := srv.Subscribe("iotcs/+/#", 1, fc.serve); err != nil {
		fc.t.Fatal(err)
	}
}

// stop closes the broker once its device clients have left (they close
// before it, by the order of the test's cleanups). mochi v2.7.9's Close
// takes a read lock twice while a leaving client may wait for the write
// lock, a deadlock that waiting avoids.
func (fc *fakeCloud) stop() {
	fc.mu.Lock()
	srv := fc.srv
	fc.srv = nil
	fc.mu.Unlock()
	if srv == nil {
		return
	}
	for deadline := time.Now().Add(2 * time.Second); srv.Clients.Len() > 1 && time.Now().Before(deadline); { // 1: mochi's inline client
		time.Sleep(5 * time.Millisecond)
	}
	_ = srv.Close()
}

// restart closes the broker under its connected clients (they are idle)
// and starts a new one on the same address.
func (fc *fakeCloud) restart() {
	fc.mu.Lock()
	srv := fc.srv
	fc.srv = nil
	fc.mu.Unlock()
	_ = srv.Close()
	fc.start()
}

func (fc *fakeCloud) uri() string {
	if fc.tlsConfig != nil {
		return "mqtts://" + fc.addr
	}
	return "mqtt://" + fc.addr
}

func (fc *fakeCloud) handle(path string, h handler) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.handlers[path] = h
}

// assets returns the trusted assets of a device of this cloud.
func (fc *fakeCloud) assets(activated bool) *trust.Assets {
	a := &trust.Assets{ServerURI: fc.uri(), ClientID: activationID, SharedSecret: []byte(sharedSecret)}
	if fc.caDER != nil {
		a.TrustAnchors = [][]byte{fc.caDER}
	}
	if activated {
		a.EndpointID = endpointID
		a.PrivateKey, a.PublicKey = keyDER(fc.t, deviceKey())
	}
	return a
}

// client returns a client for a (or this cloud's device) with its logs.
func (fc *fakeCloud) client(a *trust.Assets, edit ...func(*mqttadapter.Config)) (*mqttadapter.Client, *syncBuffer) {
	fc.t.Helper()
	logs := &syncBuffer{}
	cfg := mqttadapter.Config{Trust: porttest.NewMemTrustStore(a), Clock: fc.clock,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, e := range edit {
		e(&cfg)
	}
	c, err := mqttadapter.New(cfg)
	if err != nil {
		fc.t.Fatalf("New: %v", err)
	}
	fc.t.Cleanup(c.Close)
	return c, logs
}

func (fc *fakeCloud) record(event string) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.events = append(fc.events, event)
}

func (fc *fakeCloud) eventLog() []string {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return append([]string(nil), fc.events...)
}

func (fc *fakeCloud) connectRecs() []connectRec {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return append([]connectRec(nil), fc.connects...)
}

func (fc *fakeCloud) published(path string) []publishRec {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	var out []publishRec
	for _, p := range fc.publishes {
		if p.Path == path {
			out = append(out, p)
		}
	}
	return out
}

// serve is the cloud: it records what a device published under iotcs/ and
// answers with the handler of its path.
func (fc *fakeCloud) serve(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
	id, path, ok := strings.Cut(strings.TrimPrefix(pk.TopicName, "iotcs/"), "/")
	if !ok {
		return
	}
	p := publishRec{ID: id, Path: path, Payload: bytes.Clone(pk.Payload), Corr: bytes.Clone(pk.Properties.CorrelationData)}
	fc.mu.Lock()
	fc.publishes = append(fc.publishes, p)
	fc.events = append(fc.events, "publish "+id+" "+path)
	h := fc.handlers[path]
	fc.mu.Unlock()
	if h == nil {
		return
	}
	for _, r := range h(p) {
		corr := p.Corr
		if r.Corr != nil {
			corr = r.Corr
		}
		if r.NoCorr {
			corr = nil
		}
		topic := "devices/" + id + "/" + path
		if r.Error {
			topic += "/error"
		}
		fc.publish(topic, r.Payload, corr)
	}
}

// publish publishes as the cloud (QoS 1).
func (fc *fakeCloud) publish(topic string, payload, corr []byte) {
	fc.mu.Lock()
	srv, cloud := fc.srv, fc.cloud
	fc.mu.Unlock()
	err := srv.InjectPacket(cloud, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   topic,
		Payload:     payload,
		PacketID:    1,
		Properties:  packets.Properties{CorrelationData: corr},
	})
	if err != nil {
		fc.t.Errorf("publish %s: %v", topic, err)
	}
}

// push publishes requests for a device without correlation data.
func (fc *fakeCloud) push(id, payload string) {
	fc.publish("devices/"+id+"/messages", []byte(payload), nil)
}

func answer(payload string) handler {
	return func(publishRec) []reply { return []reply{{Payload: []byte(payload)}} }
}

func errorAnswer(doc string) handler {
	return func(publishRec) []reply { return []reply{{Payload: []byte(doc), Error: true}} }
}

func noAnswer(publishRec) []reply { return nil }

func defaultHandlers() map[string]handler {
	return map[string]handler{
		"activation/policy":          answer(`{"keyType":"RSA","hashAlgorithm":"SHA256withRSA","keySize":2048}`),
		"activation/direct":          answer(`{"endpointId":"ep-1","endpointState":"ACTIVATED","activationTime":1740830400000}`),
		"activation/indirect/device": answer(`{"endpointId":"icd-ep-1","endpointState":"ACTIVATED","activationTime":1740830400000}`),
		"messages":                   answer(`[]`),
	}
}

// cloudHook authenticates clients by their JWT password and enforces the
// topic access of docs/mqtt.md.
type cloudHook struct {
	mochi.HookBase
	fc *fakeCloud
}

func (h *cloudHook) ID() string { return "fake-cloud" }

func (h *cloudHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck || b == mochi.OnSubscribed || b == mochi.OnDisconnect ||
		b == mochi.OnPublish
}

// OnPublish refuses the publishes of the paths in fc.refuse.
func (h *cloudHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	_, path, _ := strings.Cut(strings.TrimPrefix(pk.TopicName, "iotcs/"), "/")
	h.fc.mu.Lock()
	code, refused := h.fc.refuse[path]
	hold, held := h.fc.hold, h.fc.held
	if path != h.fc.holdPath {
		hold = nil
	}
	h.fc.mu.Unlock()
	if hold != nil && !cl.Net.Inline {
		held <- struct{}{}
		<-hold
	}
	if refused && !cl.Net.Inline {
		return pk, packets.Code{Code: code, Reason: "refused by the test"}
	}
	return pk, nil
}

func (h *cloudHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	rec := h.fc.verify(pk.Connect)
	h.fc.mu.Lock()
	h.fc.connects = append(h.fc.connects, rec)
	h.fc.events = append(h.fc.events, "connect "+rec.ClientID)
	h.fc.mu.Unlock()
	return rec.Authentic
}

func (h *cloudHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	if write {
		return strings.HasPrefix(topic, "iotcs/"+cl.ID+"/")
	}
	return strings.HasPrefix(topic, "devices/"+cl.ID+"/")
}

func (h *cloudHook) OnSubscribed(cl *mochi.Client, pk packets.Packet, codes []byte) {
	if cl.Net.Inline {
		return
	}
	for _, f := range pk.Filters {
		h.fc.record("subscribe " + cl.ID + " " + f.Filter)
	}
}

func (h *cloudHook) OnDisconnect(cl *mochi.Client, err error, expire bool) {
	h.fc.record("disconnect " + cl.ID)
}

// verify checks a CONNECT as a strict cloud would: user name = client ID
// = iss = sub, unpadded base64url, the exact claims and the signature.
func (fc *fakeCloud) verify(c packets.ConnectParams) connectRec {
	rec := connectRec{ClientID: c.ClientIdentifier, Username: string(c.Username), Clean: c.Clean, KeepAlive: c.Keepalive}
	jwt := string(c.Password)
	seg := strings.Split(jwt, ".")
	if len(seg) != 3 || strings.Contains(jwt, "=") || !c.PasswordFlag || !c.UsernameFlag {
		return rec
	}
	dec := func(s string) []byte {
		b, _ := base64.RawURLEncoding.DecodeString(s)
		return b
	}
	rec.Header = string(dec(seg[0]))
	if json.Unmarshal(dec(seg[1]), &rec.Claims) != nil {
		return rec
	}
	var hdr struct{ Typ, Alg string }
	if json.Unmarshal([]byte(rec.Header), &hdr) != nil || hdr.Typ != "JWT" {
		return rec
	}
	iss, _ := rec.Claims["iss"].(string)
	sub, _ := rec.Claims["sub"].(string)
	exp, _ := rec.Claims["exp"].(float64)
	if iss != sub || iss != rec.Username || iss != rec.ClientID || rec.Claims["aud"] != "oracle/iot/oauth2/token" || len(rec.Claims) != 4 {
		return rec
	}
	now := fc.clock.Now()
	if e := time.Unix(int64(exp), 0); e.Before(now) || e.After(now.Add(15*time.Minute+time.Second)) {
		return rec
	}
	input := []byte(seg[0] + "." + seg[1])
	sig := dec(seg[2])
	switch hdr.Alg {
	case "HS256":
		mac := hmac.New(sha256.New, []byte(sharedSecret))
		mac.Write(input)
		rec.Authentic = iss == activationID && hmac.Equal(sig, mac.Sum(nil))
	case "RS256":
		sum := sha256.Sum256(input)
		rec.Authentic = iss == endpointID && rsa.VerifyPKCS1v15(&deviceKey().PublicKey, crypto.SHA256, sum[:], sig) == nil
	}
	return rec
}

// syncBuffer is a log sink safe for paho's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually waits up to 5 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// errText returns err's text, "<nil>" for nil.
func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func dataMessage(clientID string) message.Message {
	return message.Message{
		ClientID: clientID, Source: endpointID, Priority: message.PriorityLow, Reliability: message.BestEffort,
		EventTime: t0, Type: message.TypeData,
		Data: &message.Data{Format: "urn:com:example:thing:attributes", Fields: []message.Field{{Name: "humidity", Value: int64(40)}}},
	}
}

// requestJSON is a message array with one request whose id is id.
func requestJSON(id string) string {
	return fmt.Sprintf(`[{"id":%q,"clientId":"rc-%s","source":"app","destination":"ep-1","priority":"HIGH","reliability":"BEST_EFFORT","eventTime":1740830400000,"type":"REQUEST","payload":{"method":"PUT","url":"deviceModels/urn:com:example:thing/attributes/x","headers":{},"params":{},"body":"eyJ2YWx1ZSI6MX0="}}]`, id, id)
}

func ids(msgs []message.Message) []string {
	out := []string{}
	for _, m := range msgs {
		out = append(out, m.ID)
	}
	return out
}

// selfSigned returns a self-signed CA certificate (DER) for 127.0.0.1 and
// its key.
func selfSigned(t testing.TB, cn string) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}
