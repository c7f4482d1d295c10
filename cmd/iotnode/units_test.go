package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

func TestLevels(t *testing.T) {
	lv := levels{base: slog.LevelInfo, byPrefix: map[string]slog.Level{
		"iotnode.http": slog.LevelDebug, "iotnode": slog.LevelWarn, "iotnode.http.token": slog.LevelError,
	}}
	tests := []struct {
		name string
		want slog.Level
	}{
		{"", slog.LevelInfo},
		{"other", slog.LevelInfo},
		{"iotnode", slog.LevelWarn},
		{"iotnode.node", slog.LevelWarn},
		{"iotnode.http", slog.LevelDebug},
		{"iotnode.http.retry", slog.LevelDebug},
		{"iotnode.https", slog.LevelWarn},
		{"iotnode.http.token", slog.LevelError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lv.of(tt.name); got != tt.want {
				t.Errorf("level of %q = %s, want %s", tt.name, got, tt.want)
			}
		})
	}
}

func TestNamedLogger(t *testing.T) {
	var buf bytes.Buffer
	root := newLogger(&buf, LoggingConfig{Level: "warn", Format: "text", Levels: map[string]string{"iotnode.http": "debug"}})
	replaceTime := func(s string) string {
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
			_, rest, _ := strings.Cut(l, " ")
			out = append(out, rest)
		}
		return strings.Join(out, "\n")
	}
	named(root, "iotnode.http").Debug("shown", "k", 1)
	named(root, "iotnode.node").Info("hidden")
	named(root, "iotnode.node").Warn("shown too")
	root.Info("hidden: unnamed at info")
	root.Debug("named on the record", slog.String("logger", "iotnode.http.x"))
	root.Debug("hidden: the record's logger is at warn", slog.String("logger", "iotnode.node"))
	named(root, "iotnode.http").WithGroup("g").Debug("grouped", "k", 2)
	want := `level=DEBUG msg=shown logger=iotnode.http k=1
level=WARN msg="shown too" logger=iotnode.node
level=DEBUG msg="named on the record" logger=iotnode.http.x
level=DEBUG msg=grouped logger=iotnode.http g.k=2`
	if got := replaceTime(buf.String()); got != want {
		t.Errorf("log:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteMetrics(t *testing.T) {
	var buf bytes.Buffer
	writeMetrics(&buf, nodeStatus{
		Stats: device.Stats{Queued: 5, Sent: 4, Received: 1, Retried: 2, ProtocolErrors: 3},
		Devices: []deviceStatus{
			{Name: `a"b`, Endpoint: "0-A", Healthy: true, Reads: 9, ReadErrors: 1, Published: 8, Commands: 2},
			{Name: "c", Endpoint: "0-C", Reads: 3, ReadErrors: 3},
		},
	})
	got := buf.String()
	for _, want := range []string{
		"# HELP iotnode_messages_sent_total Messages the cloud acknowledged.\n# TYPE iotnode_messages_sent_total counter\niotnode_messages_sent_total 4\n",
		"iotnode_messages_queued_total 5\n",
		"iotnode_protocol_errors_total 3\n",
		"# TYPE iotnode_outbox_messages gauge\niotnode_outbox_messages 0\n",
		"# TYPE iotnode_device_healthy gauge\n" +
			"iotnode_device_healthy{device=\"a\\\"b\",endpoint_id=\"0-A\"} 1\n" +
			"iotnode_device_healthy{device=\"c\",endpoint_id=\"0-C\"} 0\n",
		"iotnode_device_read_errors_total{device=\"c\",endpoint_id=\"0-C\"} 3\n",
		"iotnode_device_commands_total{device=\"a\\\"b\",endpoint_id=\"0-A\"} 2\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack:\n%s\nin:\n%s", want, got)
		}
	}
	if !strings.HasPrefix(got, "# HELP iotnode_build_info ") {
		t.Errorf("metrics start with %q", got[:40])
	}
}

func TestBindingValue(t *testing.T) {
	m, err := model.Parse(mustModel(t, "temperature_sensor.json"))
	if err != nil {
		t.Fatal(err)
	}
	hum, err := model.Parse(mustModel(t, "humidity_sensor.json"))
	if err != nil {
		t.Fatal(err)
	}
	attr := func(m *model.DeviceModel, name string) *model.Attribute {
		a, ok := m.Attribute(name)
		if !ok {
			t.Fatalf("no attribute %s", name)
		}
		return a
	}
	tests := []struct {
		name    string
		b       binding
		raw     any
		want    string
		wantErr string
	}{
		{"number scaled", binding{attr: attr(m, "temp"), reading: "f", scale: 0.5, offset: -10}, 100.0, "40", ""},
		{"integer rounded", binding{attr: attr(hum, "humidity"), reading: "h", scale: 0.1}, int64(456), "46", ""},
		{"integer from float", binding{attr: attr(hum, "humidity"), reading: "h", scale: 1}, 49.5, "50", ""},
		{"out of range", binding{attr: attr(hum, "humidity"), reading: "h", scale: 1}, 140.0, "",
			`attribute "humidity": 140 is out of range 0..100`},
		{"string passes", binding{attr: attr(m, "unit"), reading: "u", scale: 1}, "F", `"F"`, ""},
		{"wrong type", binding{attr: attr(m, "unit"), reading: "u", scale: 1}, 3.0, "",
			`reading "u": attribute "unit": want STRING, got 3`},
		{"boolean for a number", binding{attr: attr(m, "temp"), reading: "t", scale: 1}, true, "",
			`reading "t": attribute "temp": want NUMBER, got true`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := tt.b.value(tt.raw)
			switch {
			case tt.wantErr != "":
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("error %v, want %q", err, tt.wantErr)
				}
			case err != nil:
				t.Errorf("error %v", err)
			case v.String() != tt.want:
				t.Errorf("value %s, want %s", v, tt.want)
			}
		})
	}
	vals, errs := applyBindings([]binding{{attr: attr(m, "temp"), reading: "t", scale: 1}, {attr: attr(m, "maxTemp"), reading: "gone", scale: 1}},
		[]ports.Reading{{Name: "t", Value: 21.5}})
	if len(vals) != 1 || vals[0].name != "temp" || len(errs) != 1 || errs[0].Error() != `attribute "maxTemp": the driver returned no reading "gone"` {
		t.Errorf("applyBindings = %v, %v", vals, errs)
	}
}

func mustModel(t *testing.T, name string) []byte {
	b, err := demoModels.ReadFile("models/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBackoff(t *testing.T) {
	var got []string
	for attempt := 1; attempt <= 10; attempt++ {
		got = append(got, backoff(attempt, time.Second, time.Minute).String())
	}
	if s := strings.Join(got, " "); s != "1s 2s 4s 8s 16s 32s 1m0s 1m0s 1m0s 1m0s" {
		t.Errorf("backoff: %s", s)
	}
}

// flakySensor fails while failing is set.
type flakySensor struct {
	mu      sync.Mutex
	failing bool
	reads   []time.Duration // since start, of every read
	start   time.Time
}

func (s *flakySensor) Read(ctx context.Context) ([]ports.Reading, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads = append(s.reads, time.Since(s.start))
	if s.failing {
		return nil, errors.New("i2c: no ACK from 0x40")
	}
	return []ports.Reading{{Name: "t", Value: 20.0}}, nil
}

// A failing sensor marks the device unhealthy and is read again after 1s,
// 2s, 4s...; once it works again the device is healthy and sampled at its
// interval. The loop never stops on its own.
func TestSampleLoopBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, err := model.Parse(mustModel(t, "temperature_sensor.json"))
		if err != nil {
			t.Fatal(err)
		}
		temp, _ := m.Attribute("temp")
		sensor := &flakySensor{failing: true, start: time.Now()}
		var published []string
		nd := &nodeDevice{
			cfg:      &DeviceConfig{Name: "t", SampleInterval: 10 * time.Second},
			sensor:   sensor,
			bindings: []binding{{attr: temp, reading: "t", scale: 1}},
			last:     map[string]model.Value{},
			log:      slog.New(slog.DiscardHandler),
			pub: func(vs []attrValue) error {
				published = append(published, vs[0].name+"="+vs[0].value.String())
				return nil
			},
		}
		nd.healthy.Store(true)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); nd.sampleLoop(ctx, systemClock{}) }()

		time.Sleep(10 * time.Second) // reads at 0, 1, 3, 7 fail
		synctest.Wait()
		if nd.healthy.Load() {
			t.Error("healthy while the sensor fails")
		}
		sensor.mu.Lock()
		sensor.failing = false
		sensor.mu.Unlock()
		time.Sleep(30 * time.Second) // read at 15 works; then 25, 35
		synctest.Wait()
		if !nd.healthy.Load() {
			t.Error("unhealthy after the sensor recovered")
		}
		cancel()
		<-done
		var at []string
		for _, d := range sensor.reads {
			at = append(at, d.String())
		}
		if s := strings.Join(at, " "); s != "0s 1s 3s 7s 15s 25s 35s" {
			t.Errorf("reads at %s", s)
		}
		if n := nd.readErrors.Load(); n != 4 {
			t.Errorf("read errors %d, want 4", n)
		}
		if s := strings.Join(published, " "); s != "temp=20 temp=20 temp=20" {
			t.Errorf("published %s", s)
		}
	})
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no command", nil, ExitUsage, "iotnode connects sensors"},
		{"unknown command", []string{"fly"}, ExitUsage, "iotnode: unknown command \"fly\"\nRun 'iotnode help' for usage.\n"},
		{"group without subcommand", []string{"models"}, ExitUsage, "iotnode models: expected a subcommand (pull)\n"},
		{"unknown flag", []string{"run", "--colour"}, ExitUsage, "iotnode run: unknown flag --colour\nRun 'iotnode run --help' for usage.\n"},
		{"passphrase flag", []string{"trust", "show", "f", "--passphrase", "x"}, ExitUsage,
			"iotnode trust show: there is no --passphrase flag: a passphrase on the command line is visible to every user of the machine; use --passphrase-file FILE or the environment variable IOTNODE_PASSPHRASE\n"},
		{"no config", []string{"run"}, ExitUsage, "iotnode run: no config: give --config FILE or set IOTNODE_CONFIG (docs/config.md describes the file)\n"},
		{"bad duration", []string{"demo", "--duration", "soon"}, ExitUsage, "iotnode demo: flag --duration: invalid value \"soon\": expected a duration such as 30s or 5m\n"},
		{"extra argument", []string{"version", "x"}, ExitUsage, "iotnode version: unexpected argument \"x\"\n"},
		{"missing file", []string{"trust", "show"}, ExitUsage, "iotnode trust show: missing the provisioning FILE\n"},
		{"no passphrase", []string{"trust", "show", "f"}, ExitUsage, "iotnode trust show: no passphrase: give --passphrase-file FILE or set IOTNODE_PASSPHRASE (a passphrase is never taken from the command line)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runMain(t, t.Context(), nil, nil, tt.args...)
			if r.code != tt.code || !strings.HasPrefix(r.stderr, tt.stderr) {
				t.Errorf("exit %d, stderr:\n%s\nwant %d, stderr starting:\n%s", r.code, r.stderr, tt.code, tt.stderr)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	r := runMain(t, t.Context(), nil, nil, "help")
	if r.code != 0 || !strings.Contains(r.stdout, "iotnode demo") || !strings.Contains(r.stdout, "iotnode trust show FILE") {
		t.Errorf("help: %d %q", r.code, r.stdout)
	}
	r = runMain(t, t.Context(), nil, nil, "run", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "--metrics-listen HOST:PORT") || !strings.Contains(r.stdout, "--check") {
		t.Errorf("run --help: %d %q", r.code, r.stdout)
	}
	r = runMain(t, t.Context(), nil, nil, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "iotnode ") {
		t.Errorf("version: %d %q", r.code, r.stdout)
	}
}

func TestTrustShow(t *testing.T) {
	c := startCloud(t)
	dir := t.TempDir()
	dev := c.provision(t, dir, false)
	r := runMain(t, t.Context(), nil, []string{EnvPassphrase + "=" + testPassphrase}, "trust", "show", dir+"/device.prov")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"file:          " + dir + "/device.prov (format v2)\n",
		"client ID:     " + dev.ID + "\n",
		"shared secret: set (hidden)\n",
		"endpoint ID:   none (not activated)\n",
		"trust anchors: 1\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("trust show lacks %q:\n%s", want, r.stdout)
		}
	}
	r = runMain(t, t.Context(), nil, []string{EnvPassphrase + "=wrong"}, "trust", "show", dir+"/device.prov")
	if want := "iotnode trust show: provisioning file " + dir + "/device.prov: wrong passphrase or damaged file\n"; r.code != 1 || r.stderr != want {
		t.Errorf("wrong passphrase: exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
}
