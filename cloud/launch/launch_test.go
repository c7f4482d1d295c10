package launch

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/pki"
)

// start starts a cloud on a free loopback port and shuts it down at the end
// of the test.
func start(t *testing.T, o Options) *Instance {
	t.Helper()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.KDFIterations == 0 {
		o.KDFIterations = 1000 // fast provisioning files in tests
	}
	inst, err := Start(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Shutdown(context.Background()) })
	return inst
}

func TestStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	inst := start(t, Options{DataDir: dir})

	if !regexp.MustCompile(`^https://127\.0\.0\.1:[0-9]+$`).MatchString(inst.URL()) || strings.HasSuffix(inst.URL(), ":0") {
		t.Errorf("URL = %q, want https://127.0.0.1:PORT with the real port", inst.URL())
	}
	if b, _ := os.ReadFile(filepath.Join(dir, URLFile)); string(b) != inst.URL()+"\n" {
		t.Errorf("url file = %q, want %q", b, inst.URL()+"\n")
	}
	tok, _ := os.ReadFile(inst.TokenPath())
	if string(tok) != inst.AdminToken()+"\n" || len(inst.AdminToken()) != 43 {
		t.Errorf("token file %q, AdminToken %q: want the same 43-character token", tok, inst.AdminToken())
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700}, {inst.TokenPath(), 0o600}, {filepath.Join(dir, pki.CAKeyFile), 0o600}, {filepath.Join(dir, pki.ServerKeyFile), 0o600}} {
		fi, err := os.Stat(f.path)
		if err != nil || fi.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %v (err %v), want %v", f.path, fi.Mode().Perm(), err, f.mode)
		}
	}
	caFile, _ := os.ReadFile(inst.CACertPath())
	if len(inst.CACert()) == 0 || !bytes.Equal(caFile, inst.CACert()) {
		t.Error("CACert() differs from ca.pem")
	}

	// Only the CA pool is trusted: the server certificate must verify.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: inst.CAPool()}}}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", inst.URL()+api.Root+"/devices", nil)
	req.Header.Set("Authorization", "Bearer "+inst.AdminToken())
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET over TLS with only the CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("GET /devices: %d over %v", resp.StatusCode, resp.TLS)
	}
	hc.CloseIdleConnections()
	if _, err := inst.Client().Devices(t.Context()); err != nil {
		t.Errorf("Client().Devices: %v", err)
	}

	if err := inst.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-inst.Done():
	default:
		t.Fatal("Done not closed after Shutdown")
	}
	if inst.Err() != nil || inst.Shutdown(t.Context()) != nil {
		t.Errorf("Err() = %v after a clean shutdown", inst.Err())
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(inst.URL(), "https://"), time.Second); err == nil {
		t.Error("the port still accepts connections after Shutdown")
	}
}

// TestRestart registers a device, stops the cloud and starts it again on the
// same directory: the device, the admin token and the CA are unchanged.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	first := start(t, Options{DataDir: dir})
	dev, err := first.Client().RegisterDevice(t.Context(), api.RegisterDevice{HardwareID: "restart-hw-1"})
	if err != nil {
		t.Fatal(err)
	}
	token, ca := first.AdminToken(), first.CACert()
	if err := first.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}

	second := start(t, Options{DataDir: dir})
	if second.AdminToken() != token {
		t.Error("the admin token changed across a restart")
	}
	if !bytes.Equal(second.CACert(), ca) {
		t.Error("the CA changed across a restart")
	}
	got, err := second.Client().Device(t.Context(), dev.ID)
	if err != nil {
		t.Fatalf("the device registered before the restart: %v", err)
	}
	if got.HardwareID != "restart-hw-1" || got.State != api.StateRegistered {
		t.Errorf("device after restart = %+v", got)
	}
}

func TestInsecureHTTP(t *testing.T) {
	var logs bytes.Buffer
	inst := start(t, Options{DataDir: t.TempDir(), InsecureHTTP: true, Logger: slogTo(&logs)})
	if !strings.HasPrefix(inst.URL(), "http://127.0.0.1:") || inst.CACert() != nil || inst.CAPool() != nil || inst.CACertPath() != "" {
		t.Errorf("URL %q, CA %v: want plain http and no CA", inst.URL(), inst.CACert())
	}
	if _, err := os.Stat(filepath.Join(inst.DataDir(), pki.CACertFile)); err == nil {
		t.Error("a CA was created with InsecureHTTP")
	}
	if _, err := inst.Client().Devices(t.Context()); err != nil {
		t.Errorf("Client().Devices over http: %v", err)
	}
	if !strings.Contains(logs.String(), `level=WARN msg="serving plain HTTP without TLS`) {
		t.Errorf("no warning logged; logs:\n%s", logs.String())
	}
}

func TestStartErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{
			name: "everything wrong",
			o:    Options{Listen: "8443", PublicURL: "ftp://x", MaxMessages: -1, RequestTTL: -time.Second},
			want: "start iotcloud: data directory: none given (expected a directory for the cloud's data, such as ./iotcloud-data)\n" +
				`listen address "8443": expected HOST:PORT such as 127.0.0.1:8443 (port 0 picks a free port)` + "\n" +
				`public url "ftp://x": expected https://HOST[:PORT]` + "\n" +
				"max messages: -1 is negative (expected 0 for the default, or a positive value)\n" +
				"request TTL: -1000000000 is negative (expected 0 for the default, or a positive value)",
		},
		{
			name: "bad host name",
			o:    Options{DataDir: "DIR", Listen: "127.0.0.1:0", Hostnames: []string{"a b"}},
			want: `start iotcloud: pki: host name "a b": character ' ' is not allowed (expected a DNS name such as iot.example.com or an IP address)`,
		},
		{
			name: "empty token file",
			o:    Options{DataDir: "DIR/empty-token", Listen: "127.0.0.1:0"},
			want: "start iotcloud: admin token file DIR/empty-token/admin.token is empty: delete it to create a new token",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, "empty-token"), 0o700)
			os.WriteFile(filepath.Join(dir, "empty-token", TokenFile), []byte("\n"), 0o600)
			tt.o.DataDir = strings.ReplaceAll(tt.o.DataDir, "DIR", dir)
			inst, err := Start(t.Context(), tt.o)
			if err == nil {
				inst.Shutdown(context.Background())
			}
			want := strings.ReplaceAll(tt.want, "DIR", dir)
			if err == nil || err.Error() != want {
				t.Fatalf("err = %v\nwant %s", err, want)
			}
		})
	}
}

func TestListenInUse(t *testing.T) {
	first := start(t, Options{DataDir: t.TempDir()})
	addr := strings.TrimPrefix(first.URL(), "https://")
	_, err := Start(t.Context(), Options{DataDir: t.TempDir(), Listen: addr})
	want := "start iotcloud: listen on " + addr + ": listen tcp " + addr + ": bind: address already in use (is another iotcloud running? choose another address with --listen)"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
}

func TestExtraHostnameAndPublicURL(t *testing.T) {
	inst := start(t, Options{DataDir: t.TempDir(), Hostnames: []string{"iot.example.com"}, PublicURL: "https://iot.example.com:443/"})
	if inst.URL() != "https://iot.example.com:443" {
		t.Errorf("URL = %q", inst.URL())
	}
	// The client still reaches the listener itself, with the server name
	// taken from the listener's address.
	if _, err := inst.Client().Devices(t.Context()); err != nil {
		t.Fatal(err)
	}
	leaf, err := os.ReadFile(filepath.Join(inst.DataDir(), pki.ServerCertFile))
	if err != nil || !bytes.Contains(leaf, []byte("CERTIFICATE")) {
		t.Fatal("no server certificate")
	}
	b, err := pki.Ensure(inst.DataDir(), []string{"iot.example.com"}, time.Now())
	if err != nil || b.Issued {
		t.Errorf("the server certificate does not already cover iot.example.com (re-issued: %v, err %v)", b != nil && b.Issued, err)
	}
}

// TestShutdownLeavesNoGoroutine checks that Shutdown stops and waits for
// everything Start started (the serving goroutine, connections, the cloud).
func TestShutdownLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	inst, err := Start(t.Context(), Options{DataDir: t.TempDir(), Listen: "127.0.0.1:0", KDFIterations: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inst.Client().RegisterDevice(t.Context(), api.RegisterDevice{HardwareID: "g"}); err != nil {
		t.Fatal(err)
	}
	if err := inst.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before Start, %d after Shutdown:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
