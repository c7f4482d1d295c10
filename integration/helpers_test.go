package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/iotnode/iotnode/adapters/fsstore"
	cloudhttp "github.com/iotnode/iotnode/adapters/http"
	"github.com/iotnode/iotnode/client"
	"github.com/iotnode/iotnode/cloud/api"
	cloudclient "github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/cloud/launch"
	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/trust"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The device models of ../testdata/devicemodels.
const (
	humidityURN = "urn:com:oracle:iot:device:humidity_sensor"
	tempURN     = "urn:com:oracle:iot:device:temperature_sensor"
	lightURN    = "urn:com:example:iot:device:light_switch"
)

const (
	passphrase = "integration passphrase"
	// kdf keeps provisioning files cheap to decrypt and rewrite.
	kdf = trust.MinIterations
	// waitFor bounds every wait for the cloud or a callback.
	waitFor = 15 * time.Second
)

// skewClock is the real clock shifted by an offset the test moves forward:
// the cloud's clock (launch.Options.Now) and, where a test says so, the
// device's. Timers run in real time. Safe for concurrent use.
type skewClock struct{ offset atomic.Int64 }

func (c *skewClock) Now() time.Time                         { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *skewClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (c *skewClock) advance(d time.Duration)                { c.offset.Add(int64(d)) }

// cloud is the reference cloud running in-process over TLS on loopback,
// with the three example models registered. It can be stopped and started
// again on the same data directory and address (so provisioning files stay
// valid). The test's cleanup shuts it down.
type cloud struct {
	*launch.Instance
	dir   string
	addr  string // host:port it listens on
	clock *skewClock
	// storeURL and storeSchema, when set, keep the records in PostgreSQL.
	storeURL, storeSchema string
}

// startCloud starts a cloud with a fresh data directory and a skewClock.
func startCloud(t testing.TB) *cloud {
	t.Helper()
	c := &cloud{dir: t.TempDir(), addr: "127.0.0.1:0", clock: &skewClock{}}
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

// start starts the cloud on c.dir and c.addr, and arranges its shutdown.
func (c *cloud) start(t testing.TB) {
	t.Helper()
	inst, err := launch.Start(t.Context(), launch.Options{
		DataDir: c.dir, Listen: c.addr, KDFIterations: kdf, Now: c.clock.Now,
		StoreURL: c.storeURL, StoreSchema: c.storeSchema,
	})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(inst.URL())
	if err != nil {
		t.Fatal(err)
	}
	c.Instance, c.addr = inst, u.Host
	t.Cleanup(func() { c.stop(t) })
}

// stop shuts the cloud down; requests held longer than a second (long
// polls) have their connections closed. Stopping twice is harmless.
func (c *cloud) stop(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil {
		t.Errorf("shut down the cloud: %v", err)
	}
}

// provision registers a device of type typ (api.DeviceType*) and writes its
// provisioning file (format v2, mode 0600) into a new directory. It returns
// the path.
func provision(t testing.TB, c *cloud, typ, hardwareID string) string {
	t.Helper()
	path, _ := register(t, c, typ, hardwareID)
	return path
}

// register is provision that also returns the registered device.
func register(t testing.TB, c *cloud, typ, hardwareID string) (string, api.Device) {
	t.Helper()
	dev, err := c.Client().RegisterDevice(t.Context(), api.RegisterDevice{HardwareID: hardwareID, Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	file, err := c.Client().ProvisioningFile(t.Context(), dev.ID, api.ProvisioningFileRequest{Passphrase: passphrase})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), hardwareID+".conf")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, dev
}

// closer is what every device of these tests is.
type closer interface{ Close(context.Context) error }

// closeDevice closes d within 10 s and fails the test on an error.
func closeDevice(t testing.TB, d closer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
}

// openDevice opens a directly connected device through the library's front
// door (package client); the test's cleanup closes it (again).
func openDevice(t testing.TB, path string, opts ...client.Option) *client.DirectlyConnectedDevice {
	t.Helper()
	d, err := client.NewDirectlyConnectedDevice(path, passphrase, append([]client.Option{client.WithKDFIterations(kdf)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeDevice(t, d) })
	return d
}

// openGateway is openDevice for a gateway.
func openGateway(t testing.TB, path string, opts ...client.Option) *client.GatewayDevice {
	t.Helper()
	g, err := client.NewGatewayDevice(path, passphrase, append([]client.Option{client.WithKDFIterations(kdf)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeDevice(t, g) })
	return g
}

// activated opens the device at path, activates it with urn when needed
// and returns it with its virtual device for urn.
func activated(t testing.TB, path, urn string, opts ...client.Option) (*client.DirectlyConnectedDevice, *device.VirtualDevice) {
	t.Helper()
	d := openDevice(t, path, opts...)
	if !d.IsActivated() {
		if err := d.Activate(t.Context(), urn); err != nil {
			t.Fatal(err)
		}
	}
	return d, virtualDevice(t, d.DirectlyConnectedDevice, d.EndpointID(), urn)
}

// virtualDevice fetches the model urn through d and creates the virtual
// device of endpoint.
func virtualDevice(t testing.TB, d *device.DirectlyConnectedDevice, endpoint, urn string) *device.VirtualDevice {
	t.Helper()
	m, err := d.DeviceModel(t.Context(), urn)
	if err != nil {
		t.Fatal(err)
	}
	v, err := d.CreateVirtualDevice(endpoint, m)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// storedMessages returns the messages the cloud stored for q, decoded.
func storedMessages(ctx context.Context, c *cloudclient.Client, q cloudclient.MessageQuery) ([]message.Message, error) {
	list, err := c.Messages(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]message.Message, len(list.Items))
	for i, item := range list.Items {
		if err := json.Unmarshal(item.Message, &out[i]); err != nil {
			return nil, fmt.Errorf("stored message %s: %w", item.Message, err)
		}
	}
	return out, nil
}

// awaitMessages polls the cloud until at least n of the messages q selects
// (the newest 1000) satisfy match, and returns those. It fails the test
// after waitFor, listing what it saw.
func awaitMessages(t testing.TB, c *cloud, q cloudclient.MessageQuery, n int, match func(*message.Message) bool) []message.Message {
	t.Helper()
	if q.Limit == 0 {
		q.Limit = 1000
	}
	var got, all []message.Message
	var err error
	ok := eventually(t.Context(), waitFor, func() bool {
		all, err = storedMessages(t.Context(), c.Client(), q)
		got = got[:0]
		for i := range all {
			if match(&all[i]) {
				got = append(got, all[i])
			}
		}
		return len(got) >= n
	})
	if !ok {
		t.Fatalf("the cloud stored %d matching message(s) of %+v within %s, want %d (last error %v); saw:\n%s",
			len(got), q, waitFor, n, err, describe(all))
	}
	return got
}

// describe lists messages one per line, for failure reports.
func describe(msgs []message.Message) string {
	var b bytes.Buffer
	for i := range msgs {
		j, _ := json.Marshal(msgs[i])
		fmt.Fprintf(&b, "  %s\n", j)
	}
	return b.String()
}

// fields returns the fields of a DATA or ALERT payload by name.
func fields(m *message.Message) map[string]any {
	var fs []message.Field
	switch {
	case m.Data != nil:
		fs = m.Data.Fields
	case m.Alert != nil:
		fs = m.Alert.Fields
	}
	out := make(map[string]any, len(fs))
	for _, f := range fs {
		out[f.Name] = f.Value
	}
	return out
}

// dataWith matches DATA messages of format whose field name is want
// (compared as printed, so int 55 matches int64 55).
func dataWith(format, name string, want any) func(*message.Message) bool {
	return func(m *message.Message) bool {
		if m.Data == nil || m.Data.Format != format {
			return false
		}
		v, ok := fields(m)[name]
		return ok && fmt.Sprint(v) == fmt.Sprint(want)
	}
}

// eventually calls cond every 20 ms until it is true (true) or timeout or
// ctx ends (false).
func eventually(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return cond()
		case <-tick.C:
		}
	}
}

// receive returns the next value of ch, failing the test after waitFor.
func receive[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFor):
		t.Fatalf("no %s within %s", what, waitFor)
	case <-t.Context().Done():
		t.Fatalf("no %s: %v", what, t.Context().Err())
	}
	var zero T
	return zero
}

// awaitRequest waits until the cloud's request id is final and returns it.
func awaitRequest(t testing.TB, c *cloud, id string) api.Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	r, err := c.Client().WaitRequest(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// call is one HTTP exchange the recording transport saw.
type call struct {
	method, path string
	status       int // 0: no answer
	body         []byte
}

// recorder is an http.RoundTripper that trusts only the cloud's CA (as the
// provisioning file's trust anchors make the default transport do) and
// records every exchange. Safe for concurrent use.
type recorder struct {
	tr *http.Transport

	mu    sync.Mutex
	calls []call
}

func newRecorder(c *cloud) *recorder {
	return &recorder{tr: &http.Transport{
		TLSClientConfig:   &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.CAPool()},
		ForceAttemptHTTP2: true,
		DialContext:       (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}}
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	resp, err := r.tr.RoundTrip(req)
	c := call{method: req.Method, path: req.URL.Path, body: body}
	if err == nil {
		c.status = resp.StatusCode
	}
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	return resp, err
}

// CloseIdleConnections lets the adapter's Close release the connections.
func (r *recorder) CloseIdleConnections() { r.tr.CloseIdleConnections() }

// since returns the calls recorded after the first n, and the count now.
func (r *recorder) since(n int) ([]call, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls[n:]...), len(r.calls)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// wired is a device built from the adapters by hand, the way a composition
// root other than package client does: the seams of device.Config with a
// clock and a recording HTTP transport injected.
type wired struct {
	*device.DirectlyConnectedDevice
	trust  *fsstore.TrustStore
	outbox *fsstore.Outbox
	http   *cloudhttp.Client
}

// wireDevice opens the provisioning file at path and builds a device whose
// transport goes through rec and whose clocks (the transport's for tokens,
// the dispatcher's) are clock. The test's cleanup closes it.
func wireDevice(t testing.TB, path string, rec *recorder, clock *skewClock, opts ...device.Option) *wired {
	t.Helper()
	ts, err := fsstore.OpenTrustStore(path, passphrase, fsstore.WithKDFIterations(kdf))
	if err != nil {
		t.Fatal(err)
	}
	w := &wired{trust: ts}
	t.Cleanup(func() { closeDevice(t, w) })
	dir := t.TempDir()
	models, err := fsstore.NewModelStore(filepath.Join(dir, "models"))
	if err != nil {
		t.Fatal(err)
	}
	if w.outbox, err = fsstore.OpenOutbox(filepath.Join(dir, "outbox.db"), fsstore.OutboxOptions{}); err != nil {
		t.Fatal(err)
	}
	if w.http, err = cloudhttp.New(cloudhttp.Config{Trust: ts, Clock: clock, HTTPClient: &http.Client{Transport: rec}}); err != nil {
		t.Fatal(err)
	}
	w.DirectlyConnectedDevice, err = device.NewDirectlyConnectedDevice(device.Config{
		Trust: ts, Messenger: w.http, Activator: w.http, Models: w.http,
		ModelStore: models, Outbox: w.outbox, Clock: clock, DataDir: dir,
	}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// Close closes the device, then the adapters; closing again is harmless.
func (w *wired) Close(ctx context.Context) error {
	var errs []error
	if w.DirectlyConnectedDevice != nil {
		errs = append(errs, w.DirectlyConnectedDevice.Close(ctx))
	}
	if w.http != nil {
		w.http.Close()
	}
	if w.outbox != nil {
		errs = append(errs, w.outbox.Close())
		w.outbox = nil
	}
	if w.trust != nil {
		errs = append(errs, w.trust.Close())
		w.trust = nil
	}
	return errors.Join(errs...)
}
