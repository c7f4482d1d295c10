package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/adapters/fsstore"
	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/cloud/launch"
	"github.com/iotnode/iotnode/domain/trust"
)

func TestPickTransport(t *testing.T) {
	tests := []struct {
		transport, uri string
		want           string // the transport, or a part of the error
		fails          bool
	}{
		{TransportAuto, "https://iot.example.com", TransportHTTP, false},
		{TransportAuto, "http://127.0.0.1:8080", TransportHTTP, false},
		{TransportAuto, "mqtts://iot.example.com:8883", TransportMQTT, false},
		{TransportAuto, "mqtt://127.0.0.1:1883", TransportMQTT, false},
		{TransportHTTP, "https://iot.example.com", TransportHTTP, false},
		{TransportMQTT, "mqtts://iot.example.com", TransportMQTT, false},
		{TransportMQTT, "mqtt://127.0.0.1:1883", TransportMQTT, false},
		{TransportHTTP, "mqtts://iot.example.com", "transport is https, but the provisioning file's server URI is mqtts://iot.example.com: provision an https URI (iotcloud device register) or set transport: auto", true},
		{TransportHTTP, "http://127.0.0.1:8080", "transport is https, but the provisioning file's server URI is http://127.0.0.1:8080", true},
		{TransportMQTT, "https://iot.example.com", "transport is mqtt, but the provisioning file's server URI is https://iot.example.com: provision an mqtts URI (iotcloud device register --mqtt) or set transport: auto", true},
	}
	for _, tt := range tests {
		t.Run(tt.transport+" "+tt.uri, func(t *testing.T) {
			got, err := pickTransport(tt.transport, tt.uri)
			switch {
			case tt.fails && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("pickTransport: %q, %v; want an error saying %q", got, err, tt.want)
			case !tt.fails && (err != nil || got != tt.want):
				t.Errorf("pickTransport: %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// A transport that does not match the provisioning file is refused before
// anything connects, with the fix.
func TestTransportMismatch(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		cloud     func(t *testing.T) *testCloud
		transport string
		want      string
	}{
		{"https with an MQTT file", startMQTTCloud, "https", "transport is https, but the provisioning file's server URI is mqtts://127.0.0.1:"},
		{"mqtt with an HTTPS file", startCloud, "mqtt", "transport is mqtt, but the provisioning file's server URI is https://127.0.0.1:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cloud(t)
			dir := t.TempDir()
			c.provision(t, dir, false)
			cfg := write(t, dir, "iotnode.yaml", doctorConfig+"transport: "+tt.transport+"\n")
			r := runMain(t, t.Context(), nil, nil, "activate", "--config", cfg)
			if r.code != ExitFailure || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("activate: exit %d, stderr %q; want %d and %q", r.code, r.stderr, ExitFailure, tt.want)
			}
		})
	}
}

// TestRunOverMQTT runs a node whose provisioning file names the cloud's
// embedded MQTT broker: it activates, reports, obeys a set and an action
// over MQTT, and stops on cancel with an empty outbox.
func TestRunOverMQTT(t *testing.T) {
	t.Parallel()
	c := startMQTTCloud(t)
	dir := t.TempDir()
	c.provision(t, dir, false)
	cfg := write(t, dir, "iotnode.yaml", runConfig+"transport: mqtt\n")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	m := NewMain()
	m.testDrivers = map[string]driver{"sim_stuck_on": stuckOnDriver(m.Clock)}
	started := make(chan *node, 1)
	m.onRunning = func(n *node, addr net.Addr) { started <- n }
	done := make(chan result, 1)
	go func() { done <- runMain(t, ctx, m, nil, "run", "--config", cfg) }()
	var n *node
	select {
	case n = <-started:
	case r := <-done:
		t.Fatalf("run ended before it ran: exit %d\n%s", r.code, r.stderr)
	case <-time.After(60 * time.Second):
		t.Fatal("run did not start within 60s")
	}
	ep := n.dcd.EndpointID()
	for _, call := range []struct {
		name string
		send func() (string, error)
	}{
		{"set power", func() (string, error) { return c.cl.SetAttribute(ctx, ep, urnLight, "power", true) }},
		{"call blink", func() (string, error) { return c.cl.CallAction(ctx, ep, urnLight, "blink", map[string]any{"value": 2}) }},
	} {
		id, err := call.send()
		if err != nil {
			t.Fatalf("%s: %v", call.name, err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		req, err := c.cl.WaitRequest(wctx, id)
		wcancel()
		if err != nil || req.Status != api.RequestCompleted {
			t.Fatalf("%s: status %s, %v", call.name, req.Status, err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		list, err := c.cl.Messages(ctx, client.MessageQuery{Source: ep, Type: "DATA"})
		if err == nil && len(list.Items) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no DATA message from %s over MQTT within 20s (%v)", ep, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	select {
	case r := <-done:
		if r.code != ExitOK {
			t.Fatalf("run: exit %d\n%s", r.code, r.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop within 20s of the cancel")
	}
	ob, err := fsstore.OpenOutbox(filepath.Join(dir, "data", outboxFile), fsstore.OutboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	if st := ob.Stats(); st.Guaranteed != 0 {
		t.Errorf("%d guaranteed message(s) left in the outbox after the stop", st.Guaranteed)
	}
}

func TestDoctorMQTT(t *testing.T) {
	t.Parallel()
	c := startMQTTCloud(t)
	activate := func(t *testing.T, dir string) {
		if r := runMain(t, t.Context(), nil, nil, "activate", "--config", filepath.Join(dir, "iotnode.yaml")); r.code != 0 {
			t.Fatalf("activate: %d %s", r.code, r.stderr)
		}
	}
	tests := []struct {
		name  string
		cloud *testCloud
		setup func(t *testing.T, dir string, m *Main)
		want  []line
		code  int
	}{
		{
			name: "all well, not activated",
			want: []line{
				{"OK", "clock", ``},
				{"OK", "provisioning", `device\.prov: server mqtts://127\.0\.0\.1:\d+, not activated yet$`},
				{"OK", "dns", ``},
				{"OK", "tcp", `^connected to 127\.0\.0\.1:\d+ in `},
				{"OK", "tls", `^TLS 1\.3 verified against 1 provisioned trust anchor\(s\): CN=iotcloud server`},
				{"SKIP", "clock-skew", `^an MQTT server tells no time; keep the clock synchronised with NTP`},
				{"OK", "credentials", `^the MQTT server accepts the shared secret of \S+ and the cloud answers it \(activation pending: `},
				{"OK", "data-dir", ``},
				{"OK", "outbox", ``},
			},
		},
		{
			name:  "all well, activated",
			setup: func(t *testing.T, dir string, m *Main) { activate(t, dir) },
			want: []line{
				{"OK", "clock", ``},
				{"OK", "provisioning", `, activated as \S+$`},
				{"OK", "dns", ``},
				{"OK", "tcp", ``},
				{"OK", "tls", ``},
				{"SKIP", "clock-skew", ``},
				{"OK", "credentials", `^the MQTT server accepts endpoint \S+ \(a connection only: `},
				{"OK", "data-dir", ``},
				{"OK", "outbox", `: 0 message\(s\) waiting`},
			},
		},
		{
			name: "activated, a node runs",
			setup: func(t *testing.T, dir string, m *Main) {
				activate(t, dir)
				ob, err := fsstore.OpenOutbox(filepath.Join(dir, "data", outboxFile), fsstore.OutboxOptions{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ob.Close() })
			},
			want: []line{
				{"OK", "clock", ``},
				{"OK", "provisioning", ``},
				{"OK", "dns", ``},
				{"OK", "tcp", ``},
				{"OK", "tls", ``},
				{"SKIP", "clock-skew", ``},
				{"SKIP", "credentials", `^an iotnode runs with this data directory: a second MQTT connection as \S+ would take over its connection$`},
				{"OK", "data-dir", ``},
				{"OK", "outbox", `/outbox is in use by a running iotnode$`},
			},
		},
		{
			name: "device key the cloud does not know",
			setup: func(t *testing.T, dir string, m *Main) {
				activate(t, dir)
				other := t.TempDir()
				c.provision(t, other, false)
				writeConfigIn(t, other)
				activate(t, other)
				o := readAssets(t, other)
				rewriteAssets(t, dir, func(a *trust.Assets) { a.PrivateKey, a.PublicKey = o.PrivateKey, o.PublicKey })
			},
			code: ExitFailure,
			want: []line{
				{"OK", "clock", ``},
				{"OK", "provisioning", ``},
				{"OK", "dns", ``},
				{"OK", "tcp", ``},
				{"OK", "tls", ``},
				{"SKIP", "clock-skew", ``},
				{"FAIL", "credentials", `^endpoint \S+ was refused: the broker refused the connection: .*unauthorized — fix: the cloud no longer knows this device's key`},
				{"OK", "data-dir", ``},
				{"OK", "outbox", ``},
			},
		},
		{
			name: "shared secret the cloud does not know",
			setup: func(t *testing.T, dir string, m *Main) {
				rewriteAssets(t, dir, func(a *trust.Assets) { a.SharedSecret = []byte("not the secret the cloud made") })
			},
			code: ExitFailure,
			want: []line{
				{"OK", "clock", ``},
				{"OK", "provisioning", ``},
				{"OK", "dns", ``},
				{"OK", "tcp", ``},
				{"OK", "tls", ``},
				{"SKIP", "clock-skew", ``},
				{"FAIL", "credentials", `^the activation credentials were refused: .*unauthorized.* — fix: the shared secret does not match the cloud's`},
				{"OK", "data-dir", ``},
				{"OK", "outbox", ``},
			},
		},
		{
			name:  "plain mqtt on loopback",
			cloud: plainMQTTCloud(t),
			want: []line{
				{"OK", "clock", ``},
				{"OK", "provisioning", `server mqtt://127\.0\.0\.1:\d+, not activated yet$`},
				{"OK", "dns", ``},
				{"OK", "tcp", ``},
				{"OK", "tls", `^none: the server URI is plain mqtt`},
				{"SKIP", "clock-skew", ``},
				{"OK", "credentials", `^the MQTT server accepts the shared secret`},
				{"OK", "data-dir", ``},
				{"OK", "outbox", ``},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cloud := c
			if tt.cloud != nil {
				cloud = tt.cloud
			}
			cloud.provision(t, dir, false)
			f := writeConfigIn(t, dir)
			m := NewMain()
			if tt.setup != nil {
				tt.setup(t, dir, m)
			}
			r := runMain(t, t.Context(), m, nil, "doctor", "--config", f)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d; stderr %q", r.code, tt.code, r.stderr)
			}
			lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("%d lines, want %d:\n%s", len(lines), len(tt.want), r.stdout)
			}
			re := regexp.MustCompile(`^(OK|FAIL|SKIP) +(\S+) +(.*)$`)
			for i, w := range tt.want {
				m := re.FindStringSubmatch(lines[i])
				if m == nil || m[1] != w.status || m[2] != w.check || !regexp.MustCompile(w.detail).MatchString(m[3]) {
					t.Errorf("line %d:\n%s\nwant %s %s matching %s", i+1, lines[i], w.status, w.check, w.detail)
				}
			}
		})
	}
}

// plainMQTTCloud is a cloud without TLS whose provisioning files name its
// embedded broker as mqtt://127.0.0.1:PORT.
func plainMQTTCloud(t *testing.T) *testCloud {
	t.Helper()
	c := startCloudWith(t, launch.Options{InsecureHTTP: true, MQTTListen: "127.0.0.1:0"})
	c.transport = "mqtt"
	return c
}

// writeConfigIn writes doctorConfig to dir/iotnode.yaml and returns its
// path.
func writeConfigIn(t *testing.T, dir string) string {
	t.Helper()
	return write(t, dir, "iotnode.yaml", doctorConfig)
}

// readAssets decodes dir/device.prov.
func readAssets(t *testing.T, dir string) *trust.Assets {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "device.prov"))
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := trust.Decode(data, testPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
