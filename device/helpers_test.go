package device

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
	"github.com/iotnode/iotnode/ports/porttest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	lightURN    = "urn:com:example:iot:device:light_switch"
	humidityURN = "urn:com:oracle:iot:device:humidity_sensor"
	testEP      = "dev-ep-1"
)

// loadModel parses testdata/devicemodels/<name>.json of the module.
func loadModel(t testing.TB, name string) *model.DeviceModel {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "devicemodels", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// testKey is one RSA key shared by the tests (generating one per test is slow).
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// fakeCloud is a ports.Messenger, Activator and ModelSource in memory. It
// records what the device sends, fails sends and polls on demand and
// delivers requests pushed to it (holding long polls until one comes).
type fakeCloud struct {
	mu         sync.Mutex
	batches    [][]message.Message // accepted
	sendCalls  int
	sendTimes  []time.Time                   // of every send attempt (on the bubble's clock in synctest)
	sendErrs   []error                       // next send attempts fail with these, in order
	sendErr    func([]message.Message) error // consulted when sendErrs is empty
	sendDelay  time.Duration                 // every send waits this long before its answer (a hanging cloud, a transport timeout); ctx cuts it short
	pollErr    error                         // every poll fails with it
	noHold     bool                          // answer long polls at once, like a transport that cannot hold calls
	polls      int
	requests   []message.Message // pending for the device
	bell       chan struct{}     // rung when requests are pushed
	policy     ports.ActivationPolicy
	policyErr  error
	direct     []ports.DirectActivation
	directErr  error
	signed     []byte // what Sign produced during ActivateDirect
	signedOK   bool
	indirect   []ports.IndirectActivation
	models     map[string]*model.DeviceModel
	modelCalls int
}

func newFakeCloud() *fakeCloud {
	return &fakeCloud{
		bell:   make(chan struct{}, 1),
		policy: ports.ActivationPolicy{KeyType: "RSA", HashAlgorithm: "SHA256withRSA", KeySize: 2048},
		models: map[string]*model.DeviceModel{},
	}
}

func (c *fakeCloud) Exchange(ctx context.Context, msgs []message.Message, acceptBytes int, wait time.Duration) ([]message.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	delay := c.sendDelay
	c.mu.Unlock()
	if len(msgs) > 0 && delay > 0 {
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		}
	}
	c.mu.Lock()
	if len(msgs) > 0 {
		c.sendCalls++
		c.sendTimes = append(c.sendTimes, time.Now())
		var err error
		switch {
		case len(c.sendErrs) > 0:
			err, c.sendErrs = c.sendErrs[0], c.sendErrs[1:]
		case c.sendErr != nil:
			err = c.sendErr(msgs)
		}
		if err != nil {
			c.mu.Unlock()
			return nil, err
		}
		c.batches = append(c.batches, slices.Clone(msgs))
		c.mu.Unlock()
		return nil, nil
	}
	c.polls++
	if c.pollErr != nil {
		err := c.pollErr
		c.mu.Unlock()
		return nil, err
	}
	if out := c.takeLocked(acceptBytes); len(out) > 0 || wait <= 0 || c.noHold {
		c.mu.Unlock()
		return out, nil
	}
	c.mu.Unlock()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			return nil, nil
		case <-c.bell:
			c.mu.Lock()
			out := c.takeLocked(acceptBytes)
			c.mu.Unlock()
			if len(out) > 0 {
				return out, nil
			}
		}
	}
}

func (c *fakeCloud) takeLocked(acceptBytes int) []message.Message {
	var out []message.Message
	sum := 0
	for len(c.requests) > 0 {
		size := message.EncodedSize(&c.requests[0])
		if message.ArraySize(len(out)+1, sum+size) > acceptBytes {
			break
		}
		sum += size
		out = append(out, c.requests[0])
		c.requests = c.requests[1:]
	}
	return out
}

// push queues requests for the device and wakes a long poll.
func (c *fakeCloud) push(reqs ...message.Message) {
	c.mu.Lock()
	c.requests = append(c.requests, reqs...)
	c.mu.Unlock()
	select {
	case c.bell <- struct{}{}:
	default:
	}
}

// sent returns every accepted message.
func (c *fakeCloud) sent() []message.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []message.Message
	for _, b := range c.batches {
		out = append(out, b...)
	}
	return out
}

// sentData returns the accepted DATA messages of format.
func (c *fakeCloud) sentData(format string) []message.Message {
	var out []message.Message
	for _, m := range c.sent() {
		if m.Type == message.TypeData && m.Data.Format == format {
			out = append(out, m)
		}
	}
	return out
}

// response returns the RESPONSE to the request id, or fails.
func (c *fakeCloud) response(t *testing.T, id string) *message.Response {
	t.Helper()
	for _, m := range c.sent() {
		if m.Type == message.TypeResponse && m.Response.RequestID == id {
			return m.Response
		}
	}
	t.Fatalf("no RESPONSE to request %q among %d sent messages", id, len(c.sent()))
	return nil
}

// hasResponse reports whether a RESPONSE to request id was sent.
func (c *fakeCloud) hasResponse(id string) bool {
	for _, m := range c.sent() {
		if m.Type == message.TypeResponse && m.Response.RequestID == id {
			return true
		}
	}
	return false
}

func (c *fakeCloud) Policy(context.Context) (ports.ActivationPolicy, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.policy, c.policyErr
}

func (c *fakeCloud) ActivateDirect(_ context.Context, req ports.DirectActivation) (ports.Activation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.direct = append(c.direct, req)
	if c.directErr != nil {
		return ports.Activation{}, c.directErr
	}
	pub, err := x509.ParsePKIXPublicKey(req.PublicKey)
	if err != nil {
		return ports.Activation{}, err
	}
	data := []byte("proof of possession")
	sig, err := req.Sign(data)
	if err != nil {
		return ports.Activation{}, err
	}
	sum := sha256.Sum256(data)
	c.signed = sig
	c.signedOK = rsa.VerifyPKCS1v15(pub.(*rsa.PublicKey), crypto.SHA256, sum[:], sig) == nil
	return ports.Activation{EndpointID: testEP, ActivationTime: time.UnixMilli(1)}, nil
}

func (c *fakeCloud) ActivateIndirect(_ context.Context, req ports.IndirectActivation) (ports.Activation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.indirect = append(c.indirect, req)
	return ports.Activation{EndpointID: "icd-" + req.HardwareID}, nil
}

func (c *fakeCloud) Model(_ context.Context, urn string) (*model.DeviceModel, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.modelCalls++
	if m, ok := c.models[urn]; ok {
		return m, nil
	}
	return nil, &ports.CloudError{Op: "get device model", Status: 404, Permanent: true, Index: -1,
		Err: fmt.Errorf("device model %q: %w", urn, ports.ErrNotFound)}
}

// ids makes clientIds id-1, id-2, ...; safe for concurrent use.
func ids() func() string {
	var mu sync.Mutex
	n := 0
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return fmt.Sprintf("id-%d", n)
	}
}

// syncBuffer is a log sink safe for concurrent use.
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

// rig is a device wired to a fake cloud.
type rig struct {
	cloud *fakeCloud
	trust *porttest.MemTrustStore
	logs  *syncBuffer
	cfg   Config
}

// newRig returns a rig whose trust store holds an activated device when
// activated is true.
func newRig(activated bool) *rig {
	a := &trust.Assets{ServerURI: "https://127.0.0.1:8443", ClientID: "dev-1", SharedSecret: []byte("s3cret")}
	if activated {
		a.EndpointID = testEP
	}
	r := &rig{cloud: newFakeCloud(), trust: porttest.NewMemTrustStore(a), logs: &syncBuffer{}}
	r.cfg = Config{
		Trust:     r.trust,
		Messenger: r.cloud,
		Activator: r.cloud,
		Models:    r.cloud,
		Logger:    slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		NewID:     ids(),
		DataDir:   os.TempDir(),
	}
	return r
}

// testOpts are the options of most tests: deterministic backoff (the full
// ceiling) and a test key.
func testOpts(extra ...Option) []Option {
	return append([]Option{func(s *settings) {
		s.jitter = func(limit time.Duration) time.Duration { return limit }
		s.genKey = func(int) (*rsa.PrivateKey, error) { return testKey(), nil }
	}}, extra...)
}

func (r *rig) device(t *testing.T, opts ...Option) *DirectlyConnectedDevice {
	t.Helper()
	d, err := NewDirectlyConnectedDevice(r.cfg, testOpts(opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(context.Background()) }) // after a failed test; Close again is a no-op
	return d
}

func (r *rig) gateway(t *testing.T, opts ...Option) *GatewayDevice {
	t.Helper()
	g, err := NewGatewayDevice(r.cfg, testOpts(opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close(context.Background()) })
	return g
}

// closeDevice closes d and fails the test on an error.
func closeDevice(t *testing.T, d *DirectlyConnectedDevice) {
	t.Helper()
	if err := d.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// virtualDevice creates the virtual device of the device's own endpoint for
// the named test model.
func virtualDevice(t *testing.T, d *DirectlyConnectedDevice, name string) *VirtualDevice {
	t.Helper()
	v, err := d.CreateVirtualDevice(d.EndpointID(), loadModel(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// request returns a REQUEST from the cloud.
func newRequest(id, dest, method, url, body string, headers map[string][]string) message.Message {
	return message.Message{
		ID:          id,
		ClientID:    "c-" + id,
		Source:      "iotserver",
		Destination: dest,
		Priority:    message.PriorityHigh,
		Reliability: message.BestEffort,
		EventTime:   time.UnixMilli(1700000000000),
		Type:        message.TypeRequest,
		Request:     &message.Request{Method: method, URL: url, Headers: headers, Body: []byte(body)},
	}
}

// patch returns a PATCH of attributes as the reference cloud sends it
// (POST with x-http-method-override).
func patch(id, urn, body string) message.Message {
	return newRequest(id, testEP, "POST", "deviceModels/"+urn+"/attributes", body,
		map[string][]string{"x-http-method-override": {"PATCH"}})
}

// settle lets fake time pass and waits until every goroutine of the bubble
// is blocked.
func settle(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// errorSink collects ErrorEvents.
type errorSink struct {
	mu     sync.Mutex
	events []ErrorEvent
}

func (s *errorSink) add(ev ErrorEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, ev)
}

func (s *errorSink) all() []ErrorEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

func (s *errorSink) texts() []string {
	var out []string
	for _, ev := range s.all() {
		out = append(out, ev.Err.Error())
	}
	return out
}

// field returns the value of the named field of a DATA message, or nil.
func field(m message.Message, name string) any {
	for _, f := range m.Data.Fields {
		if f.Name == name {
			return f.Value
		}
	}
	return nil
}

// failingTrust is a trust store whose Save fails.
type failingTrust struct {
	*porttest.MemTrustStore
}

func (failingTrust) Save(*trust.Assets) error { return errors.New("write /x/dev.conf: disk full") }

// contains reports whether s contains sub, for messages.
func contains(s, sub string) bool { return strings.Contains(s, sub) }

// memHeld returns how many messages the default in-memory outbox of d
// holds queued and in open batches.
func memHeld(d *DirectlyConnectedDevice) (queued, open int) {
	o := d.outbox.(*memOutbox)
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, q := range o.queues {
		queued += len(q)
	}
	for _, b := range o.open {
		open += len(b)
	}
	return queued, open
}
