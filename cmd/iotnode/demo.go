package main

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/cloud/launch"
	"github.com/iotnode/iotnode/device"
)

// models holds the demo's device models.
//
//go:embed models/*.json
var demoModels embed.FS

// The demo's device models.
const (
	urnTemperature = "urn:com:oracle:iot:device:temperature_sensor"
	urnLight       = "urn:com:example:iot:device:light_switch"
	urnHumidity    = "urn:com:oracle:iot:device:humidity_sensor"
)

// demoKDFIterations is the PBKDF2 cost of the demo's provisioning files:
// they are throwaway files in a temporary directory, and the full cost
// (600,000) would make the demo start slowly on a Raspberry Pi.
const demoKDFIterations = 10_000

// demoOptions tune the demo; tests shorten the intervals.
type demoOptions struct {
	dataDir        string        // "" makes a temporary directory, removed at exit
	duration       time.Duration // 0 runs until ctx ends
	sampleInterval time.Duration // of every demo device
	statusInterval time.Duration // between status updates
	commandsAfter  time.Duration // when the demo sets an attribute and calls an action itself
	requestWait    time.Duration // how long it waits for their answers
	deviceOptions  []device.Option
	logLevel       string
}

func demoCommand() *command {
	o := demoOptions{sampleInterval: 2 * time.Second, statusInterval: time.Second, commandsAfter: 5 * time.Second,
		requestWait: 15 * time.Second}
	return &command{
		name:    "demo",
		summary: "Run a cloud and simulated devices on this machine, and show them talk",
		help: `
Starts an iotcloud on 127.0.0.1 (in a temporary directory unless --data),
registers and provisions a temperature sensor, a light switch and a gateway
with two humidity sensors, activates them and runs them on simulated
sensors and actuators. It prints the cloud's URL and iotcloud commands that
change the running devices, issues one attribute set and one action itself
after a few seconds, and shows a status line until Ctrl-C or --duration.
At the end it prints, per device, the values it published, the messages the
cloud stored and the commands it executed.`,
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, []string) error {
			fs.DurationVar(&o.duration, "duration", 0, "stop `D` after the devices started, such as 20s (default: run until Ctrl-C)")
			fs.StringVar(&o.dataDir, "data", "", "keep the cloud's and the devices' files in `DIR` (default: a temporary directory, removed at exit)")
			fs.DurationVar(&o.sampleInterval, "interval", o.sampleInterval, "sample interval `D` of the simulated sensors")
			fs.StringVar(&o.logLevel, "log-level", "warn", "level of the logs on stderr: debug, info, warn or error")
			return func(ctx context.Context, m *Main, pos []string) error {
				switch {
				case o.duration < 0:
					return usagef("--duration %s is negative (expected 0 to run until Ctrl-C, or a duration such as 20s)", o.duration)
				case o.sampleInterval < MinSampleInterval:
					return usagef("--interval %s is too short (expected at least %s)", o.sampleInterval, MinSampleInterval)
				case !slices.Contains(logLevels, o.logLevel):
					return usagef("--log-level %q: expected one of %s", o.logLevel, strings.Join(logLevels, ", "))
				}
				opts := o
				if m.demoTuning != nil {
					m.demoTuning(&opts)
				}
				return m.demo(ctx, opts)
			}
		},
	}
}

// demoNode is one of the demo's nodes with its config.
type demoNode struct {
	name    string // thermometer, light, gateway
	gateway bool
	yaml    string // the config, without the paths
	dir     string
	n       *node
}

// demo runs the demo; see demoCommand.
func (m *Main) demo(ctx context.Context, o demoOptions) (err error) {
	logger := newLogger(m.stderr, LoggingConfig{Level: o.logLevel, Format: "text"})
	dir := o.dataDir
	if dir == "" {
		dir, err = os.MkdirTemp("", "iotnode-demo-")
		if err != nil {
			return fmt.Errorf("demo: make a temporary directory: %w", err)
		}
		defer os.RemoveAll(dir)
	} else if dir, err = filepath.Abs(dir); err != nil {
		return fmt.Errorf("demo: --data: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("demo: create %s: %w", dir, err)
	}
	out := &printer{w: m.stdout, terminal: m.IsTerminal(m.stdout), now: m.Clock.Now}
	start := m.Clock.Now()
	out.linef("Starting iotcloud on 127.0.0.1 (data in %s)...", dir)

	cloudDir := filepath.Join(dir, "cloud")
	inst, err := launch.Start(ctx, launch.Options{DataDir: cloudDir, Listen: demoListen(dir), Logger: logger, KDFIterations: demoKDFIterations})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if serr := inst.Shutdown(sctx); serr != nil && err == nil {
			err = fmt.Errorf("demo: %w", serr)
		}
	}()
	if err := rememberListen(dir, inst.URL()); err != nil {
		return err
	}
	cl := inst.Client()
	setupCtx, cancelSetup := context.WithTimeout(ctx, time.Minute)
	defer cancelSetup()
	if err := addDemoModels(setupCtx, cl); err != nil {
		return err
	}
	nodes := demoNodes(o.sampleInterval)
	deps := nodeDeps{
		clock: m.Clock, logger: logger, deviceOptions: o.deviceOptions, kdfIterations: demoKDFIterations,
		onCommand: func(dev, what string, err error) {
			if err != nil {
				out.eventf("cloud -> %s: %s FAILED: %v", dev, what, err)
			} else {
				out.eventf("cloud -> %s: %s", dev, what)
			}
		},
	}
	defer func() {
		// Close every node that was opened, in parallel: each flushes its
		// outbox within shutdownGrace.
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		var wg sync.WaitGroup
		errs := make([]error, len(nodes))
		for i, dn := range nodes {
			if dn.n == nil {
				continue
			}
			wg.Go(func() { errs[i] = dn.n.close(sctx) })
		}
		wg.Wait()
		if cerr := errors.Join(errs...); cerr != nil && err == nil {
			err = fmt.Errorf("demo: %w", cerr)
		}
	}()
	for _, dn := range nodes {
		if err := m.startDemoNode(ctx, setupCtx, cl, dir, dn, deps); err != nil {
			if ctx.Err() != nil {
				return nil // interrupted while starting
			}
			return err
		}
	}
	cancelSetup()
	if o.duration > 0 {
		// --duration counts from here, when every device runs, so that a slow
		// start (a loaded machine, a Pi) never eats the time the demo shows.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	m.printDemoIntro(out, inst, cloudDir, nodes)
	var wg sync.WaitGroup
	wg.Go(func() { m.demoCommands(ctx, out, cl, nodes, o) })
	ticker := time.NewTicker(o.statusInterval)
	defer ticker.Stop()
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case <-ticker.C:
			out.status(demoStatusLine(nodes))
		}
	}
	wg.Wait()
	out.endStatus()
	elapsed := m.Clock.Now().Sub(start).Round(time.Second)
	out.linef("Stopping: sending what is queued (at most %s)...", shutdownGrace)
	// Stop the devices first, so that the summary counts what they sent.
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var cwg sync.WaitGroup
	for _, dn := range nodes {
		cwg.Go(func() {
			if cerr := dn.n.close(sctx); cerr != nil {
				out.linef("%s: %v", dn.name, cerr)
			}
		})
	}
	cwg.Wait()
	statuses := make(map[string]deviceStatus)
	for _, dn := range nodes {
		for _, ds := range dn.n.status().Devices {
			statuses[ds.Name] = ds
		}
		dn.n = nil // closed
	}
	return m.printDemoSummary(context.Background(), out, cl, statuses, start, elapsed)
}

// demoListenFile keeps the address of the demo's cloud in --data: the
// provisioning files name it, so a later demo with the same --data must
// listen there again.
const demoListenFile = "cloud-listen"

// demoListen returns where the demo's cloud listens: the address an earlier
// demo in dir chose, or a free port on 127.0.0.1.
func demoListen(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, demoListenFile))
	if err != nil {
		return "127.0.0.1:0"
	}
	return strings.TrimSpace(string(b))
}

// rememberListen writes the cloud's address for the next demo in dir.
func rememberListen(dir, cloudURL string) error {
	if _, err := os.Stat(filepath.Join(dir, demoListenFile)); err == nil {
		return nil
	}
	u, err := url.Parse(cloudURL)
	if err != nil {
		return fmt.Errorf("demo: the cloud's URL %q: %w", cloudURL, err)
	}
	return os.WriteFile(filepath.Join(dir, demoListenFile), []byte(u.Host+"\n"), 0o600)
}

// addDemoModels adds the embedded models to the cloud (again is fine:
// the cloud accepts an identical model).
func addDemoModels(ctx context.Context, cl *client.Client) error {
	entries, err := fs.ReadDir(demoModels, "models")
	if err != nil {
		return fmt.Errorf("demo: read the embedded models: %w", err)
	}
	for _, e := range entries {
		data, err := demoModels.ReadFile("models/" + e.Name())
		if err != nil {
			return fmt.Errorf("demo: read the embedded model %s: %w", e.Name(), err)
		}
		if _, err := cl.AddModel(ctx, data); err != nil {
			return fmt.Errorf("demo: add device model %s: %w", e.Name(), err)
		}
	}
	return nil
}

// demoNodes are the demo's three nodes and their configs (the paths are
// added by startDemoNode).
func demoNodes(interval time.Duration) []*demoNode {
	iv := interval.String()
	return []*demoNode{
		{name: "thermometer", yaml: `
devices:
  - name: thermometer
    model: ` + urnTemperature + `
    driver: sim
    sample_interval: ` + iv + `
    settings:
      seed: 1
      signals:
        temperature: {waveform: sine, min: 18, max: 26, period: 2m, noise: 0.2}
      outputs:
        min_threshold: 0
        max_threshold: 70
        power: true
        calibration: 0.0
        resets: null
    bindings:
      temp: {reading: temperature}
      minThreshold: {reading: min_threshold}
      maxThreshold: {reading: max_threshold}
    writes:
      minThreshold: min_threshold
      maxThreshold: max_threshold
    actions:
      reset: resets
      power: power
      calibrate: calibration
`},
		{name: "light", yaml: `
devices:
  - name: light
    model: ` + urnLight + `
    driver: sim
    sample_interval: ` + iv + `
    offer: true
    settings:
      outputs:
        light: false
        dimmer: 100
        blinks: null
        toggles: null
    bindings:
      power: {reading: light}
      brightness: {reading: dimmer}
    writes:
      power: light
      brightness: dimmer
    actions:
      blink: blinks
      toggle: toggles
`},
		{name: "gateway", gateway: true, yaml: `
mode: gateway
devices:
  - name: humidity-1
    model: ` + urnHumidity + `
    hardware_id: demo-humidity-1
    metadata: {manufacturer: iotnode, modelNumber: SIM-H, serialNumber: "0001"}
    driver: sim
    sample_interval: ` + iv + `
    settings:
      seed: 2
      signals:
        humidity: {waveform: random_walk, min: 30, max: 70, step: 2}
      outputs:
        threshold: 80
    bindings:
      humidity: {}
      maxThreshold: {reading: threshold}
    writes:
      maxThreshold: threshold
  - name: humidity-2
    model: ` + urnHumidity + `
    hardware_id: demo-humidity-2
    metadata: {manufacturer: iotnode, modelNumber: SIM-H, serialNumber: "0002"}
    driver: sim
    sample_interval: ` + iv + `
    settings:
      seed: 3
      signals:
        humidity: {waveform: random_walk, min: 40, max: 60, step: 1}
      outputs:
        threshold: 75
    bindings:
      humidity: {}
      maxThreshold: {reading: threshold}
    writes:
      maxThreshold: threshold
`},
	}
}

// startDemoNode registers and provisions the node's device (unless its
// files exist from an earlier demo with the same --data), writes its config
// file, loads it as run does, and starts the node.
func (m *Main) startDemoNode(ctx, setupCtx context.Context, cl *client.Client, dir string, dn *demoNode, deps nodeDeps) error {
	dn.dir = filepath.Join(dir, "nodes", dn.name)
	if err := os.MkdirAll(dn.dir, 0o700); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	prov := filepath.Join(dn.dir, "device.prov")
	passFile := filepath.Join(dn.dir, "passphrase")
	cfgFile := filepath.Join(dn.dir, "iotnode.yaml")
	if _, err := os.Stat(prov); errors.Is(err, fs.ErrNotExist) {
		req := api.RegisterDevice{HardwareID: "demo-" + dn.name, Type: api.DeviceTypeDirect}
		if dn.gateway {
			req.Type = api.DeviceTypeGateway
		}
		dev, err := cl.RegisterDevice(setupCtx, req)
		if err != nil {
			return fmt.Errorf("demo: register %s: %w", dn.name, err)
		}
		pass := randomPassphrase()
		file, err := cl.ProvisioningFile(setupCtx, dev.ID, api.ProvisioningFileRequest{Passphrase: pass, Format: "v2"})
		if err != nil {
			return fmt.Errorf("demo: provisioning file of %s: %w", dn.name, err)
		}
		if err := os.WriteFile(passFile, []byte(pass+"\n"), 0o600); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if err := os.WriteFile(prov, file, 0o600); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	text := "# Written by iotnode demo. Run this node alone with:\n#   iotnode run --config " + cfgFile + "\n" +
		"provisioning_file: device.prov\npassphrase_file: passphrase\ndata_dir: data\n" + dn.yaml
	if err := os.WriteFile(cfgFile, []byte(text), 0o600); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	c, err := loadConfig(cfgFile, nil, nil)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	c.applyDefaults()
	if err := c.Validate(builtinDrivers(driverDeps{clock: m.Clock}), ""); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	n, err := openNode(c, deps)
	if err != nil {
		return fmt.Errorf("demo: %s: %w", dn.name, err)
	}
	dn.n = n
	if err := n.prepare(ctx); err != nil {
		return fmt.Errorf("demo: %s: %w", dn.name, err)
	}
	n.start()
	return nil
}

func randomPassphrase() string {
	b := make([]byte, 18)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// iotcloudCommand is how the user runs iotcloud: the installed binary, or
// go run from the repository.
func iotcloudCommand() string {
	if _, err := exec.LookPath("iotcloud"); err == nil {
		return "iotcloud"
	}
	return "go run ./cmd/iotcloud"
}

// endpointOf returns the endpoint of the named demo device.
func endpointOf(nodes []*demoNode, name string) string {
	for _, dn := range nodes {
		for _, nd := range dn.n.devices {
			if nd.cfg.Name == name {
				return nd.endpoint
			}
		}
	}
	return ""
}

func (m *Main) printDemoIntro(out *printer, inst *launch.Instance, cloudDir string, nodes []*demoNode) {
	var b strings.Builder
	fmt.Fprintf(&b, "\niotcloud is running at %s\n\nDevices:\n", inst.URL())
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, dn := range nodes {
		if dn.gateway {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", dn.name, dn.n.dcd.EndpointID(), "gateway")
		}
		for _, nd := range dn.n.devices {
			via := ""
			if nd.cfg.HardwareID != "" {
				via = " (behind the gateway)"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s%s\n", nd.cfg.Name, nd.endpoint, nd.cfg.Model, via)
		}
	}
	tw.Flush()
	ic := iotcloudCommand()
	light, thermo, hum := endpointOf(nodes, "light"), endpointOf(nodes, "thermometer"), endpointOf(nodes, "humidity-1")
	fmt.Fprintf(&b, "\nChange the running devices from another terminal:\n")
	fmt.Fprintf(&b, "  %s device set %s %s power true --data %s\n", ic, light, urnLight, cloudDir)
	fmt.Fprintf(&b, "  %s device set %s %s brightness 40 --data %s\n", ic, light, urnLight, cloudDir)
	fmt.Fprintf(&b, "  %s device call %s %s blink 3 --data %s\n", ic, light, urnLight, cloudDir)
	fmt.Fprintf(&b, "  %s device call %s %s reset --data %s\n", ic, thermo, urnTemperature, cloudDir)
	fmt.Fprintf(&b, "  %s device set %s %s maxThreshold 90 --data %s\n", ic, hum, urnHumidity, cloudDir)
	fmt.Fprintf(&b, "  %s messages --device %s --data %s\n\n", ic, thermo, cloudDir)
	out.block(b.String())
}

// demoCommands sets an attribute and calls an action after
// o.commandsAfter, to show that commands reach the devices.
func (m *Main) demoCommands(ctx context.Context, out *printer, cl *client.Client, nodes []*demoNode, o demoOptions) {
	select {
	case <-ctx.Done():
		return
	case <-m.Clock.After(o.commandsAfter):
	}
	light := endpointOf(nodes, "light")
	calls := []struct {
		what string
		send func(ctx context.Context) (string, error)
	}{
		{"set light power = true", func(ctx context.Context) (string, error) {
			return cl.SetAttribute(ctx, light, urnLight, "power", true)
		}},
		{"call light blink(3)", func(ctx context.Context) (string, error) {
			return cl.CallAction(ctx, light, urnLight, "blink", map[string]any{"value": 3})
		}},
	}
	for _, c := range calls {
		rctx, cancel := context.WithTimeout(ctx, o.requestWait)
		id, err := c.send(rctx)
		var r api.Request
		if err == nil {
			out.eventf("demo: %s (request %s)", c.what, id)
			r, err = cl.WaitRequest(rctx, id)
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			out.eventf("demo: %s failed: %v", c.what, err)
		case r.Response != nil:
			out.eventf("demo: %s: %s, the device answered %d", c.what, r.Status, r.Response.StatusCode)
		default:
			out.eventf("demo: %s: %s", c.what, r.Status)
		}
	}
}

// demoStatusLine sums up the nodes: sent and acknowledged messages, the
// outbox, errors and the last values.
func demoStatusLine(nodes []*demoNode) string {
	var queued, sent, depth, errs uint64
	var values []string
	for _, dn := range nodes {
		st := dn.n.status()
		queued += st.Stats.Queued
		sent += st.Stats.Sent
		depth += uint64(st.Outbox.Queued)
		errs += st.Stats.ProtocolErrors + st.Stats.DeadLettered
		for _, d := range st.Devices {
			errs += d.ReadErrors + d.Rejected + d.CmdErrors + d.AsyncErrors
			var kv []string
			for _, k := range slices.Sorted(maps.Keys(d.Last)) {
				if k == "minThreshold" || k == "maxThreshold" {
					continue // only the measurements, to keep the line short
				}
				kv = append(kv, k+"="+shortValue(d.Last[k].Any()))
			}
			if len(kv) > 0 {
				values = append(values, d.Name+" "+strings.Join(kv, " "))
			}
		}
	}
	return fmt.Sprintf("sent %d, acked %d, queue %d, errors %d | %s", queued, sent, depth, errs, strings.Join(values, " | "))
}

func shortValue(v any) string {
	if f, ok := v.(float64); ok {
		return fmt.Sprintf("%.1f", f)
	}
	return fmt.Sprint(v)
}

// printDemoSummary prints per device what it published, what the cloud
// stored from it (asked through the enterprise API) and the commands it ran.
func (m *Main) printDemoSummary(ctx context.Context, out *printer, cl *client.Client, st map[string]deviceStatus, since time.Time, elapsed time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var b strings.Builder
	fmt.Fprintf(&b, "\nSummary after %s:\n", elapsed)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  DEVICE\tENDPOINT\tVALUES PUBLISHED\tMESSAGES ACKNOWLEDGED\tCOMMANDS EXECUTED\tERRORS")
	names := slices.Sorted(maps.Keys(st))
	var errs []error
	for _, name := range names {
		ds := st[name]
		acked, err := countMessages(ctx, cl, ds.Endpoint, since.UnixMilli())
		if err != nil {
			errs = append(errs, fmt.Errorf("count the messages of %s: %w", name, err))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\n", name, ds.Endpoint, ds.Published, acked, ds.Commands,
			ds.ReadErrors+ds.Rejected+ds.CmdErrors+ds.AsyncErrors)
	}
	tw.Flush()
	out.block(b.String())
	if len(errs) > 0 {
		return fmt.Errorf("demo: %w", errors.Join(errs...))
	}
	return nil
}

// countMessages counts the messages the cloud stored from endpoint since
// (epoch ms), paging
// through the enterprise API (oldest first) and counting each clientId once.
func countMessages(ctx context.Context, cl *client.Client, endpoint string, since int64) (int, error) {
	seen := map[string]bool{}
	for msg, err := range cl.AllMessages(ctx, client.MessageQuery{Source: endpoint, Since: since, Limit: 1000}) {
		if err != nil {
			return len(seen), err
		}
		var env struct {
			ClientID string `json:"clientId"`
		}
		if json.Unmarshal(msg.Message, &env) == nil && env.ClientID != "" {
			seen[env.ClientID] = true
		}
	}
	return len(seen), nil
}

// printer writes the demo's output: a status line that is redrawn in place
// on a terminal (a new line per update otherwise), and event lines that
// appear above it. Safe for concurrent use.
type printer struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
	now      func() time.Time
	shown    bool // a status line is on screen (terminal only)
}

func (p *printer) clear() {
	if p.terminal && p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}

func (p *printer) linef(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	fmt.Fprintf(p.w, format+"\n", args...)
}

func (p *printer) eventf(format string, args ...any) {
	p.linef("%s  "+format, append([]any{p.now().Format("15:04:05")}, args...)...)
}

func (p *printer) block(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	fmt.Fprint(p.w, s)
}

func (p *printer) status(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal {
		p.clear()
		fmt.Fprint(p.w, s)
		p.shown = true
		return
	}
	fmt.Fprintln(p.w, s)
}

func (p *printer) endStatus() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.terminal && p.shown {
		fmt.Fprintln(p.w)
		p.shown = false
	}
}
