package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/adapters/fsstore"
	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

const runConfig = `
provisioning_file: device.prov
passphrase_file: passphrase
data_dir: data
delivery: guaranteed
devices:
  - name: light
    model: urn:com:example:iot:device:light_switch
    driver: sim_stuck_on
    sample_interval: 100ms
    settings:
      fail_every: 3
      signals:
        dim: {waveform: steps, values: [10, 20], every: 1s}
      outputs: {light: false, blinks: null}
    bindings:
      power: {reading: light}
      brightness: {reading: dim}
    writes: {power: light}
    actions: {blink: blinks}
metrics: {listen: "127.0.0.1:0"}
logging: {level: error}
`

type running struct {
	n       *node
	metrics net.Addr
}

// TestRun runs a node against an in-process cloud: it activates, reports,
// obeys a set and an action, answers a set its output cannot apply with the
// driver's error (500), survives a failing sensor, serves metrics and stops
// within the shutdown grace on cancel with an empty outbox. With delivery:
// guaranteed, its attribute data reaches the cloud as GUARANTEED_DELIVERY.
//
// It runs alone (not parallel) so that it can check that the node left no
// goroutine behind.
func TestRun(t *testing.T) {
	c := startCloud(t)
	dir := t.TempDir()
	c.provision(t, dir, false)
	cfg := write(t, dir, "iotnode.yaml", runConfig)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	m := NewMain()
	m.testDrivers = map[string]driver{"sim_stuck_on": stuckOnDriver(m.Clock)}
	started := make(chan running, 1)
	m.onRunning = func(n *node, addr net.Addr) { started <- running{n, addr} }
	done := make(chan result, 1)
	go func() { done <- runMain(t, ctx, m, nil, "run", "--config", cfg) }()
	var rn running
	select {
	case rn = <-started:
	case r := <-done:
		t.Fatalf("run ended before it ran: exit %d\n%s", r.code, r.stderr)
	case <-time.After(60 * time.Second):
		t.Fatal("run did not start within 60s")
	}
	ep := rn.n.dcd.EndpointID()

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
	// The light's power follows the output the cloud set: the next samples
	// report it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		attrs, err := c.cl.Attributes(ctx, ep, urnLight)
		if err == nil && attrs["power"] == true && attrs["brightness"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cloud never saw power=true: %v %v", attrs, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The relay is stuck on: switching the light off fails, the cloud's
	// request ends FAILED with the device's 500 and the driver's error, and
	// the attribute keeps its value.
	id, err := c.cl.SetAttribute(ctx, ep, urnLight, "power", false)
	if err != nil {
		t.Fatalf("set power false: %v", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	req, err := c.cl.WaitRequest(wctx, id)
	wcancel()
	wantBody := `attribute "power": ` + errStuckOn
	if err != nil || req.Status != api.RequestFailed || req.Response == nil ||
		req.Response.StatusCode != 500 || req.Response.Body != wantBody {
		t.Fatalf("set power false: status %s, response %+v, %v\nwant FAILED, 500 %q", req.Status, req.Response, err, wantBody)
	}
	if got, ok := rn.n.devices[0].vd.Get("power"); !ok || !got.Bool() {
		t.Errorf("power is %v after the failed set, want true", got)
	}

	// delivery: guaranteed makes every DATA message (samples and the echo
	// of the cloud's set) GUARANTEED_DELIVERY.
	list, err := c.cl.Messages(ctx, client.MessageQuery{Source: ep, Type: "DATA", Oldest: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) == 0 {
		t.Error("the cloud stored no DATA message of the light")
	}
	for _, sm := range list.Items {
		var w struct {
			ClientID    string `json:"clientId"`
			Reliability string `json:"reliability"`
		}
		if err := json.Unmarshal(sm.Message, &w); err != nil {
			t.Fatal(err)
		}
		if w.Reliability != "GUARANTEED_DELIVERY" {
			t.Errorf("DATA message %s: reliability %s, want GUARANTEED_DELIVERY (delivery: guaranteed)", w.ClientID, w.Reliability)
		}
	}

	metrics := scrape(t, rn.metrics)
	for _, want := range []string{
		`iotnode_device_commands_total{device="light",endpoint_id="` + ep + `"} 2`,
		`iotnode_device_command_errors_total{device="light",endpoint_id="` + ep + `"} 1`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	// fail_every 3: reads fail, and the node keeps going.
	if v := metric(t, metrics, `iotnode_device_read_errors_total{device="light",endpoint_id="`+ep+`"}`); v < 1 {
		t.Errorf("read errors %d, want at least 1", v)
	}
	if v := metric(t, metrics, `iotnode_device_values_published_total{device="light",endpoint_id="`+ep+`"}`); v < 4 {
		t.Errorf("values published %d, want at least 4", v)
	}
	if v := metric(t, metrics, "iotnode_messages_sent_total"); v < 2 {
		t.Errorf("messages acknowledged %d, want at least 2", v)
	}
	if st := rn.n.status(); st.Devices[0].AsyncErrors != 0 {
		t.Errorf("%d asynchronous errors, want 0: the failed set is a command error only (last error %q)", st.Devices[0].AsyncErrors, st.Devices[0].LastError)
	}

	cancel()
	start := time.Now()
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop within 10s of the cancel")
	}
	if took := time.Since(start); took > shutdownGrace+time.Second {
		t.Errorf("shutdown took %s, want at most %s", took, shutdownGrace)
	}
	if r.code != ExitOK {
		t.Fatalf("exit %d, want 0\n%s", r.code, r.stderr)
	}
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		left := leftovers()
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after run returned:\n%s", len(left), strings.Join(left, "\n\n"))
		}
	}
	ob, err := fsstore.OpenOutbox(filepath.Join(dir, "data", outboxFile), fsstore.OutboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	if st := ob.Stats(); st.Guaranteed != 0 {
		t.Errorf("%d guaranteed messages left in the outbox after a clean shutdown with the cloud up", st.Guaranteed)
	}
}

// errStuckOn is the error of the stuck relay of stuckOnDriver.
const errStuckOn = `GPIO 17 (output "light"): relay stuck on, cannot switch off`

// stuckOnDriver is the sim driver with a relay stuck on: switching its
// output "light" off fails, as a broken GPIO output would; everything else
// is the simulator's.
func stuckOnDriver(clock ports.Clock) driver {
	deps := driverDeps{clock: clock}
	return driver{prepare: func(key, device string, settings map[string]any) (prepared, problems) {
		p, ps := deps.prepareSim(key, device, settings)
		if len(ps) > 0 {
			return p, ps
		}
		open := p.open
		p.open = func(logger *slog.Logger) (ports.Sensor, ports.Actuator, error) {
			s, a, err := open(logger)
			if err != nil {
				return nil, nil, err
			}
			return s, stuckOn{a}, nil
		}
		return p, nil
	}}
}

// stuckOn is an actuator whose output "light" cannot be switched off.
type stuckOn struct{ ports.Actuator }

func (a stuckOn) Actuate(ctx context.Context, output string, args map[string]model.Value) error {
	if v, ok := args["value"]; ok && output == "light" && v.Valid() && !v.Bool() {
		return errors.New(errStuckOn)
	}
	return a.Actuator.Actuate(ctx, output, args)
}

func scrape(t *testing.T, addr net.Addr) string {
	t.Helper()
	if addr == nil {
		t.Fatal("no metrics address")
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	return string(b)
}

// metric returns the value of the sample named series (name and labels).
func metric(t *testing.T, text, series string) int {
	t.Helper()
	re := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(series) + ` (\d+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no sample %s in:\n%s", series, text)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestDemo runs the demo, shortened, and checks its summary: every demo
// device has messages the cloud acknowledged, and the commands the demo sent
// itself were executed.
func TestDemo(t *testing.T) {
	t.Parallel()
	m := NewMain()
	m.demoTuning = func(o *demoOptions) {
		o.sampleInterval = 250 * time.Millisecond
		o.statusInterval = time.Second
		o.commandsAfter = 500 * time.Millisecond
	}
	r := runMain(t, t.Context(), m, nil, "demo", "--duration", "5s")
	if r.code != ExitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"iotcloud is running at https://127.0.0.1:",
		" device set ", " device call ", " --data ",
		"cloud -> light: set power = true\n",
		"demo: set light power = true: COMPLETED, the device answered 200\n",
		"demo: call light blink(3): COMPLETED, the device answered 200\n",
		"\nSummary after ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	_, summary, _ := strings.Cut(r.stdout, "\nSummary after ")
	row := regexp.MustCompile(`(?m)^  (\S+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$`)
	acked := map[string]int{}
	commands := 0
	for _, m := range row.FindAllStringSubmatch(summary, -1) {
		n, _ := strconv.Atoi(m[4])
		acked[m[1]] = n
		c, _ := strconv.Atoi(m[5])
		commands += c
	}
	for _, dev := range []string{"thermometer", "light", "humidity-1", "humidity-2"} {
		if acked[dev] == 0 {
			t.Errorf("device %s: no acknowledged messages in the summary:\n%s", dev, summary)
		}
	}
	if commands < 1 {
		t.Errorf("no command executed:\n%s", summary)
	}
}

// activate, then models pull, then run --check finds a binding the pulled
// model does not have, before anything connects.
func TestActivateAndModelsPull(t *testing.T) {
	t.Parallel()
	c := startCloud(t)
	dir := t.TempDir()
	c.provision(t, dir, false)
	cfg := write(t, dir, "iotnode.yaml", doctorConfig)

	r := runMain(t, t.Context(), nil, nil, "models", "pull", "--config", cfg)
	if want := "iotnode models pull: the device is not activated: run 'iotnode activate --config " + cfg + "' first\n"; r.code != ExitFailure || r.stderr != want {
		t.Errorf("pull before activation: exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
	r = runMain(t, t.Context(), nil, nil, "activate", "--config", cfg)
	ep := regexp.MustCompile(`^Activated as endpoint (\S+) \(provisioning file \S+device\.prov updated\)\n$`).FindStringSubmatch(r.stdout)
	if r.code != ExitOK || ep == nil {
		t.Fatalf("activate: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = runMain(t, t.Context(), nil, nil, "activate", "--config", cfg)
	if want := "Already activated as endpoint " + ep[1] + "\n"; r.code != ExitOK || r.stdout != want {
		t.Errorf("activate again: exit %d, stdout %q, want %q", r.code, r.stdout, want)
	}
	r = runMain(t, t.Context(), nil, nil, "models", "pull", "--config", cfg)
	want := "Pulled " + urnTemperature + " (Temperature Sensor) into " + filepath.Join(dir, "data", modelsDir, fsstore.ModelFileName(urnTemperature)) + "\n"
	if r.code != ExitOK || r.stdout != want {
		t.Fatalf("models pull: exit %d, stdout %q, want %q; stderr %q", r.code, r.stdout, want, r.stderr)
	}
	write(t, dir, "iotnode.yaml", strings.Replace(doctorConfig, "temp: {reading: temperature}", "temperature: {}", 1))
	r = runMain(t, t.Context(), nil, nil, "run", "--check", "--config", cfg)
	want = "iotnode run: config " + cfg + ": devices[0].bindings.temperature: attribute \"temperature\" is not in device model \"" + urnTemperature +
		"\" (it has: temp, unit, minTemp, maxTemp, minThreshold, maxThreshold, startTime)\n"
	if r.code != ExitUsage || r.stderr != want {
		t.Errorf("run --check: exit %d, stderr:\n%s\nwant:\n%s", r.code, r.stderr, want)
	}
}

// leftovers lists the goroutines still running in the node's code: the
// device library, the adapters and this command.
func leftovers() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "iotnode/iotnode/device.") || strings.Contains(g, "iotnode/iotnode/adapters/") ||
			(strings.Contains(g, "iotnode/iotnode/cmd/iotnode.") && !strings.Contains(g, "cmd/iotnode.Test")) {
			out = append(out, g)
		}
	}
	return out
}
