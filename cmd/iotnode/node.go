package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotnode/iotnode/adapters/fsstore"
	httpadapter "github.com/iotnode/iotnode/adapters/http"
	mqttadapter "github.com/iotnode/iotnode/adapters/mqtt"
	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
)

// Files and directories in the data directory.
const (
	outboxFile = "outbox" // the durable outbox directory (fsstore.OpenOutbox)
	modelsDir  = "models" // the device model store (dm-<urn>.json)
)

// Timing of the node.
const (
	// shutdownGrace bounds the flush of the outbox at shutdown: SIGTERM to
	// exit takes at most this, plus the sampling loops' current reads.
	shutdownGrace = 5 * time.Second
	// startBackoffMax caps the wait between attempts to activate, register
	// and fetch models while the cloud cannot be reached at start.
	startBackoffMax = time.Minute
	// readBackoffMax caps the wait between reads of a failing sensor.
	readBackoffMax = 5 * time.Minute
	// actuateTimeout bounds an output change for an attribute set.
	actuateTimeout = 10 * time.Second
)

// nodeDeps are what a node gets from the composition root.
type nodeDeps struct {
	clock  ports.Clock
	logger *slog.Logger
	// deviceOptions are passed to the device library (tests and the demo
	// shorten its intervals).
	deviceOptions []device.Option
	// onCommand, when set, is told of every cloud command a device ran
	// (the demo prints them). It runs on the device's callback goroutine.
	onCommand func(device, what string, err error)
	// kdfIterations, when > 0, is the PBKDF2 cost the provisioning file is
	// written with after activation (the demo lowers it; run keeps the
	// library's default).
	kdfIterations int
}

// node is one running device (directly connected or gateway) with the
// virtual devices of its config. Build it with openNode, start it with
// start, stop it with close.
type node struct {
	cfg   *Config
	deps  nodeDeps
	log   *slog.Logger
	clock ports.Clock

	trust   *fsstore.TrustStore
	models  *fsstore.ModelStore
	outbox  *fsstore.Outbox
	cloud   cloudTransport
	dcd     *device.DirectlyConnectedDevice
	gateway *device.GatewayDevice // nil in directly connected mode

	devices []*nodeDevice

	stop context.CancelFunc // stops the sampling loops
	wg   sync.WaitGroup     // the sampling loops
}

// cloudTransport is what the node needs of a cloud transport
// (adapters/http or adapters/mqtt): the device's ports, and Close, which the
// node calls after the device is closed.
type cloudTransport interface {
	ports.Messenger
	ports.Activator
	ports.ModelSource
	Close()
}

// nodeDevice is one configured device at run time.
type nodeDevice struct {
	cfg      *DeviceConfig
	key      string // devices[i]
	endpoint string
	vd       *device.VirtualDevice
	bindings []binding
	sensor   ports.Sensor
	actuator ports.Actuator
	log      *slog.Logger
	notify   func(device, what string, err error) // nil: nobody listens
	// pub hands values to the virtual device (nd.publish; tests replace it).
	pub func(values []attrValue) error

	reads, readErrors   atomic.Uint64
	published, rejected atomic.Uint64 // values queued / refused (by the model or the outbox)
	commands, cmdErrors atomic.Uint64 // cloud requests executed / failed
	asyncErrors         atomic.Uint64 // OnError events (messages refused for good...)
	healthy             atomic.Bool

	mu        sync.Mutex
	last      map[string]model.Value // last value published per attribute
	lastError string
}

// openNode opens the stores and the cloud transport and builds the device.
// It makes no network call. On error everything opened is closed again.
func openNode(cfg *Config, deps nodeDeps) (_ *node, err error) {
	n := &node{cfg: cfg, deps: deps, clock: deps.clock, log: named(deps.logger, "iotnode.node")}
	defer func() {
		// n, not the result: a failing return has set the result to nil.
		if err != nil {
			n.closeAdapters()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	var topts []fsstore.TrustOption
	if deps.kdfIterations > 0 {
		topts = append(topts, fsstore.WithKDFIterations(deps.kdfIterations))
	}
	n.trust, err = fsstore.OpenTrustStore(cfg.ProvisioningFile, cfg.passphrase, topts...)
	if err != nil {
		return nil, err
	}
	assets, err := n.trust.Load()
	if err != nil {
		return nil, err
	}
	transport, err := pickTransport(cfg.Transport, assets.ServerURI)
	if err != nil {
		return nil, err
	}
	// Assigned only on success: a nil *Client in n.cloud would not be nil.
	if transport == TransportMQTT {
		// No device policies over MQTT (docs/mqtt.md): offer: true then
		// behaves like Set.
		cl, err := mqttadapter.New(mqttadapter.Config{Trust: n.trust, Logger: deps.logger, Clock: deps.clock})
		if err != nil {
			return nil, err
		}
		n.cloud = cl
	} else {
		cl, err := httpadapter.New(httpadapter.Config{Trust: n.trust, Logger: deps.logger, Clock: deps.clock})
		if err != nil {
			return nil, err
		}
		n.cloud = cl
	}
	n.log.Debug("cloud transport", slog.String("transport", transport), slog.String("server_uri", assets.ServerURI))
	n.models, err = fsstore.NewModelStore(filepath.Join(cfg.DataDir, modelsDir))
	if err != nil {
		return nil, err
	}
	local, err := cfg.loadModelFiles()
	if err != nil {
		return nil, err
	}
	for _, urn := range slices.Sorted(maps.Keys(local)) {
		if err := n.models.Save(local[urn]); err != nil {
			return nil, fmt.Errorf("store device model %s: %w", urn, err)
		}
	}
	n.outbox, err = fsstore.OpenOutbox(filepath.Join(cfg.DataDir, outboxFile), fsstore.OutboxOptions{
		MaxBytes: cfg.Outbox.MaxBytes,
		Logger:   named(deps.logger, "iotnode.outbox"),
	})
	if err != nil {
		return nil, err
	}
	dc := device.Config{
		Trust: n.trust, Messenger: n.cloud, Activator: n.cloud, Models: n.cloud,
		ModelStore: n.models, Outbox: n.outbox, Clock: deps.clock, Logger: deps.logger, DataDir: cfg.DataDir,
	}
	// Device policies come over HTTPS only (docs/mqtt.md): devices with
	// offer: true run their values through them.
	if ps, ok := n.cloud.(ports.PolicySource); ok {
		dc.Policies = ps
	}
	opts := deviceOptions(cfg, deps)
	if cfg.Mode == ModeGateway {
		n.gateway, err = device.NewGatewayDevice(dc, opts...)
		if n.gateway != nil {
			n.dcd = n.gateway.DirectlyConnectedDevice
		}
	} else {
		n.dcd, err = device.NewDirectlyConnectedDevice(dc, opts...)
	}
	if err != nil {
		return nil, err
	}
	return n, nil
}

// deviceOptions are the options of the node's device, each overriding the
// ones before: the node's own (close timeout, data QoS), the config's
// dispatcher keys that are set, then deps' (tests and the demo).
func deviceOptions(cfg *Config, deps nodeDeps) []device.Option {
	// Validate accepted cfg.Delivery; data keeps the library's priority (LOW)
	// so that alerts and responses go first.
	reliability, _ := dataReliability(cfg.Delivery)
	opts := []device.Option{device.WithCloseTimeout(shutdownGrace), device.WithDataQoS(message.PriorityLow, reliability)}
	opts = append(opts, cfg.Dispatcher.options()...)
	return append(opts, deps.deviceOptions...)
}

// options are the device options of the keys that are set; a key of a
// pair (backoff_base and backoff_cap, long_polling and long_poll_timeout)
// set alone passes the library's default for the other.
func (d DispatcherConfig) options() []device.Option {
	var opts []device.Option
	if d.BatchSize != nil {
		opts = append(opts, device.WithMaxMessagesPerConnection(*d.BatchSize))
	}
	if d.BatchBytes != nil {
		opts = append(opts, device.WithMaxBatchBytes(*d.BatchBytes))
	}
	if d.MaxInFlight != nil {
		opts = append(opts, device.WithMaxInFlight(*d.MaxInFlight))
	}
	if d.BatchDelay != nil {
		opts = append(opts, device.WithBatchDelay(*d.BatchDelay))
	}
	if d.BackoffBase != nil || d.BackoffCap != nil {
		opts = append(opts, device.WithBackoff(orDefault(d.BackoffBase, device.DefaultBackoffBase), orDefault(d.BackoffCap, device.DefaultBackoffCap)))
	}
	if d.LongPolling != nil || d.LongPollTimeout != nil {
		opts = append(opts, device.WithLongPolling(orDefault(d.LongPolling, true), orDefault(d.LongPollTimeout, device.DefaultLongPollTimeout)))
	}
	if d.PollingInterval != nil {
		opts = append(opts, device.WithPollingInterval(*d.PollingInterval))
	}
	return opts
}

// pickTransport returns the transport (TransportHTTP or TransportMQTT) that
// talks to the server URI, or an error when the configured transport
// cannot: auto follows the URI's scheme (https or loopback http: HTTPS;
// mqtts or loopback mqtt: MQTT; the adapters refuse what else they cannot
// use), https and mqtt insist on their own schemes.
func pickTransport(transport, serverURI string) (string, error) {
	u, err := url.Parse(serverURI)
	if err != nil {
		return "", fmt.Errorf("the provisioning file's server URI %q is not a URL", serverURI)
	}
	mqtt := trust.IsMQTT(serverURI)
	switch {
	case transport == TransportHTTP && u.Scheme != "https":
		return "", fmt.Errorf("transport is https, but the provisioning file's server URI is %s: provision an https URI (iotcloud device register) or set transport: auto", serverURI)
	case transport == TransportMQTT && !mqtt:
		return "", fmt.Errorf("transport is mqtt, but the provisioning file's server URI is %s: provision an mqtts URI (iotcloud device register --mqtt) or set transport: auto", serverURI)
	case mqtt:
		return TransportMQTT, nil
	}
	return TransportHTTP, nil
}

// prepare activates the device if needed, registers the indirectly
// connected devices, fetches the models, checks the bindings against them
// and creates the virtual devices with their drivers. While the cloud
// cannot be reached it retries with backoff until ctx ends; a permanent
// refusal ends it at once. Binding problems come back as a *ConfigError.
func (n *node) prepare(ctx context.Context) error {
	own := n.ownModels()
	if !n.dcd.IsActivated() {
		err := n.retry(ctx, "activate", func(ctx context.Context) error { return n.dcd.Activate(ctx, own...) })
		if err != nil {
			return err
		}
		n.log.Info("activated", slog.String("endpoint_id", n.dcd.EndpointID()), slog.Any("models", own))
	}
	models := map[string]*model.DeviceModel{}
	for i := range n.cfg.Devices {
		d := &n.cfg.Devices[i]
		if _, ok := models[d.Model]; ok {
			continue
		}
		var m *model.DeviceModel
		err := n.retry(ctx, "fetch device model "+d.Model, func(ctx context.Context) error {
			var err error
			m, err = n.dcd.DeviceModel(ctx, d.Model)
			return err
		})
		if err != nil {
			return err
		}
		models[d.Model] = m
	}
	if err := n.cfg.validateModels(models); err != nil {
		return err
	}
	for i := range n.cfg.Devices {
		d := &n.cfg.Devices[i]
		nd := &nodeDevice{cfg: d, key: fmt.Sprintf("devices[%d]", i), endpoint: n.dcd.EndpointID(), last: map[string]model.Value{},
			log: named(n.deps.logger, "iotnode.node.device").With(slog.String("device", d.Name)), notify: n.deps.onCommand}
		nd.healthy.Store(true)
		if d.HardwareID != "" {
			err := n.retry(ctx, "register device "+d.HardwareID, func(ctx context.Context) error {
				var err error
				nd.endpoint, err = n.gateway.RegisterDevice(ctx, d.HardwareID, d.Metadata, d.Model)
				return err
			})
			if err != nil {
				return err
			}
		}
		vd, err := n.dcd.CreateVirtualDevice(nd.endpoint, models[d.Model])
		if err != nil {
			return fmt.Errorf("%s (%s): %w", nd.key, d.Name, err)
		}
		nd.vd = vd
		nd.pub = nd.publish
		nd.bindings = compileBindings(d, models[d.Model])
		nd.sensor, nd.actuator, err = n.cfg.drivers[i].open(n.deps.logger)
		if err != nil {
			return fmt.Errorf("%s (%s): open driver %s: %w", nd.key, d.Name, d.Driver, err)
		}
		if err := nd.wire(); err != nil {
			return err
		}
		n.devices = append(n.devices, nd)
		n.log.Info("device ready", slog.String("device", d.Name), slog.String("endpoint_id", nd.endpoint), slog.String("model", d.Model),
			slog.String("driver", d.Driver), slog.Duration("sample_interval", d.SampleInterval))
	}
	return nil
}

// ownModels lists the models of the devices on the node's own endpoint.
func (n *node) ownModels() []string {
	var urns []string
	for _, d := range n.cfg.Devices {
		if d.HardwareID == "" && !slices.Contains(urns, d.Model) {
			urns = append(urns, d.Model)
		}
	}
	return urns
}

// retry runs fn until it succeeds, fails permanently or ctx ends, waiting
// 1s, 2s, 4s... (at most startBackoffMax) between attempts.
func (n *node) retry(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if ports.IsPermanent(err) || errors.Is(err, device.ErrClosed) || !isTransient(err) {
			return err
		}
		wait := backoff(attempt, time.Second, startBackoffMax)
		n.log.Warn("cannot reach the cloud; retrying", slog.String("step", what), slog.Int("attempt", attempt),
			slog.Duration("retry_in", wait), slog.Any("error", err))
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-n.clock.After(wait):
		}
	}
}

// isTransient reports whether err comes from a cloud call that may succeed
// later (the network, a 5xx): anything else (a bad model, a store error) is
// reported at once.
func isTransient(err error) bool {
	var ce *ports.CloudError
	return errors.As(err, &ce) && !ce.Permanent
}

// backoff is base * 2^(attempt-1), at most max.
func backoff(attempt int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// wire connects the writable attributes and actions to the actuator.
func (nd *nodeDevice) wire() error {
	for _, attr := range slices.Sorted(maps.Keys(nd.cfg.Writes)) {
		output := cmpOr(nd.cfg.Writes[attr], attr)
		// The output changes before the set is committed: when it fails,
		// the cloud's request answers 500 with the driver's error and the
		// attribute keeps its value (no echo). In a PATCH, an output that
		// changed before another one failed stays changed; the next sample
		// reports the outputs' real state.
		err := nd.vd.SetAttributeHandler(attr, func(ctx context.Context, ch device.Change) error {
			ctx, cancel := context.WithTimeout(ctx, actuateTimeout)
			defer cancel()
			return nd.actuate(ctx, "set "+ch.Name, output, map[string]model.Value{"value": ch.New})
		})
		if err != nil {
			return fmt.Errorf("%s.writes.%s: %w", nd.key, attr, err)
		}
	}
	for _, action := range slices.Sorted(maps.Keys(nd.cfg.Actions)) {
		output := cmpOr(nd.cfg.Actions[action], action)
		err := nd.vd.SetCallable(action, func(ctx context.Context, args map[string]model.Value) error {
			return nd.actuate(ctx, "call "+action, output, args)
		})
		if err != nil {
			return fmt.Errorf("%s.actions.%s: %w", nd.key, action, err)
		}
	}
	nd.vd.OnError(func(ev device.ErrorEvent) {
		if ce := (*commandError)(nil); errors.As(ev.Err, &ce) {
			return // a refused attribute set: actuate counted and logged it
		}
		nd.asyncErrors.Add(1)
		nd.setError(ev.Err.Error())
		nd.log.Warn("the cloud refused or could not take messages", slog.Int("messages", len(ev.Messages)), slog.Any("error", ev.Err))
	})
	return nil
}

// commandError is an output that failed for a cloud request. actuate has
// counted and logged it; the device also hands a failed attribute set to
// OnError, which recognises it by this type and does not count it again.
type commandError struct{ err error }

func (e *commandError) Error() string { return e.err.Error() }
func (e *commandError) Unwrap() error { return e.err }

// actuate drives an output for a cloud request and counts the outcome. Its
// error, a *commandError, is the driver's (the request answers 500 with its
// text).
func (nd *nodeDevice) actuate(ctx context.Context, what, output string, args map[string]model.Value) error {
	what = describeCommand(what, args)
	err := fmt.Errorf("%s: driver %s has no actuator", what, nd.cfg.Driver)
	if nd.actuator != nil {
		err = nd.actuator.Actuate(ctx, output, args)
	}
	if nd.notify != nil {
		nd.notify(nd.cfg.Name, what, err)
	}
	if err != nil {
		nd.cmdErrors.Add(1)
		nd.setError(err.Error())
		nd.log.Warn("command failed", slog.String("command", what), slog.String("output", output), slog.Any("error", err))
		return &commandError{err: err}
	}
	nd.commands.Add(1)
	nd.log.Info("command executed", slog.String("command", what), slog.String("output", output))
	return nil
}

// describeCommand is "set power = true" or "call blink(value=3)".
func describeCommand(what string, args map[string]model.Value) string {
	if strings.HasPrefix(what, "set ") {
		if v, ok := args["value"]; ok {
			return what + " = " + v.String()
		}
		return what
	}
	parts := make([]string, 0, len(args))
	for _, k := range slices.Sorted(maps.Keys(args)) {
		parts = append(parts, k+"="+args[k].String())
	}
	return what + "(" + strings.Join(parts, ", ") + ")"
}

func (nd *nodeDevice) setError(msg string) {
	nd.mu.Lock()
	nd.lastError = msg
	nd.mu.Unlock()
}

// start starts one sampling loop per device that has a sensor and
// bindings. The loops run until close.
func (n *node) start() {
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	for _, nd := range n.devices {
		if nd.sensor == nil || len(nd.bindings) == 0 {
			continue
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			nd.sampleLoop(ctx, n.clock)
		}()
	}
}

// sampleLoop reads the sensor every sample interval and publishes the bound
// values. A failing read marks the device unhealthy and is retried after
// 1s, 2s, 4s... (at most readBackoffMax); it never stops the loop. It
// returns when ctx ends.
func (nd *nodeDevice) sampleLoop(ctx context.Context, clock ports.Clock) {
	failures := 0
	for {
		wait := nd.cfg.SampleInterval
		if err := nd.sampleOnce(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			wait = backoff(failures, time.Second, readBackoffMax)
			if nd.healthy.Swap(false) {
				nd.log.Warn("sensor failed: device unhealthy, retrying with backoff", slog.Any("error", err), slog.Duration("retry_in", wait))
			} else {
				nd.log.Debug("sensor still failing", slog.Any("error", err), slog.Int("failures", failures), slog.Duration("retry_in", wait))
			}
		} else {
			if failures > 0 {
				nd.log.Info("sensor recovered: device healthy", slog.Int("failures", failures))
			}
			failures = 0
			nd.healthy.Store(true)
		}
		select {
		case <-ctx.Done():
			return
		case <-clock.After(wait):
		}
	}
}

// sampleOnce reads the sensor once and publishes what the bindings make of
// it. Only a failed read is an error (the device's health); values the model
// or the outbox refuse are counted and logged.
func (nd *nodeDevice) sampleOnce(ctx context.Context) error {
	nd.reads.Add(1)
	readings, err := nd.sensor.Read(ctx)
	if err != nil {
		nd.readErrors.Add(1)
		nd.setError(err.Error())
		return err
	}
	values, errs := applyBindings(nd.bindings, readings)
	for _, err := range errs {
		nd.rejected.Add(1)
		nd.setError(err.Error())
		nd.log.Warn("value not published", slog.Any("error", err))
	}
	if len(values) == 0 {
		return nil
	}
	if err := nd.pub(values); err != nil {
		nd.rejected.Add(uint64(len(values)))
		nd.setError(err.Error())
		if !errors.Is(err, device.ErrClosed) {
			nd.log.Warn("values not queued", slog.Any("error", err))
		}
		return nil
	}
	nd.published.Add(uint64(len(values)))
	nd.mu.Lock()
	for _, v := range values {
		nd.last[v.name] = v.value
	}
	nd.mu.Unlock()
	return nil
}

// publish hands values to the virtual device: one update (one message) with
// Set, or one Offer each.
func (nd *nodeDevice) publish(values []attrValue) error {
	if nd.cfg.Offer {
		var errs []error
		for _, v := range values {
			if err := nd.vd.Offer(v.name, v.value); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	u := nd.vd.Update()
	for _, v := range values {
		u.Set(v.name, v.value)
	}
	return u.Finish()
}

// close stops the sampling loops, then closes the device (which sends what
// is queued for at most ctx's deadline or shutdownGrace), the drivers and
// the adapters. What could not be sent stays in the durable outbox for the
// next start and is only logged; the error reports drivers and adapters
// that failed to close (an outbox that could not be closed cleanly).
func (n *node) close(ctx context.Context) error {
	if n.stop != nil {
		n.stop()
		n.wg.Wait()
	}
	var errs []error
	if n.dcd != nil {
		// Messages not sent now stay in the durable outbox: that is not a
		// failure of the shutdown, and the next start sends them.
		if err := n.dcd.Close(ctx); err != nil {
			n.log.Warn("stopped before everything was sent; the outbox keeps the rest for the next start", slog.Any("error", err))
		}
	}
	for _, nd := range n.devices {
		for _, c := range []any{nd.sensor, nd.actuator} {
			if cl, ok := c.(interface{ Close() error }); ok {
				if err := cl.Close(); err != nil {
					errs = append(errs, fmt.Errorf("close driver of %s: %w", nd.cfg.Name, err))
				}
			}
		}
	}
	errs = append(errs, n.closeAdapters())
	return errors.Join(errs...)
}

func (n *node) closeAdapters() error {
	var errs []error
	if n.cloud != nil {
		n.cloud.Close()
	}
	if n.outbox != nil {
		if err := n.outbox.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.trust != nil {
		if err := n.trust.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deviceStatus is a snapshot of one device, for the demo, metrics and logs.
type deviceStatus struct {
	Name, Endpoint, Model string
	Healthy               bool
	Reads, ReadErrors     uint64
	Published, Rejected   uint64
	Commands, CmdErrors   uint64
	AsyncErrors           uint64
	Last                  map[string]model.Value
	LastError             string
}

// nodeStatus is a snapshot of the node.
type nodeStatus struct {
	Endpoint string
	Stats    device.Stats
	Outbox   fsstore.OutboxStats
	Devices  []deviceStatus
}

func (n *node) status() nodeStatus {
	st := nodeStatus{Endpoint: n.dcd.EndpointID(), Stats: n.dcd.Stats(), Outbox: n.outbox.Stats()}
	for _, nd := range n.devices {
		nd.mu.Lock()
		ds := deviceStatus{
			Name: nd.cfg.Name, Endpoint: nd.endpoint, Model: nd.cfg.Model, Healthy: nd.healthy.Load(),
			Reads: nd.reads.Load(), ReadErrors: nd.readErrors.Load(), Published: nd.published.Load(), Rejected: nd.rejected.Load(),
			Commands: nd.commands.Load(), CmdErrors: nd.cmdErrors.Load(), AsyncErrors: nd.asyncErrors.Load(),
			Last: maps.Clone(nd.last), LastError: nd.lastError,
		}
		nd.mu.Unlock()
		st.Devices = append(st.Devices, ds)
	}
	return st
}
