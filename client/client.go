package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/iotnode/iotnode/adapters/fsstore"
	cloudhttp "github.com/iotnode/iotnode/adapters/http"
	"github.com/iotnode/iotnode/device"
)

// DirectlyConnectedDevice is a device.DirectlyConnectedDevice together with
// the adapters NewDirectlyConnectedDevice opened for it. All methods of the
// embedded device are available; Close also closes the adapters.
type DirectlyConnectedDevice struct {
	*device.DirectlyConnectedDevice
	stack *stack
}

// GatewayDevice is a device.GatewayDevice together with the adapters
// NewGatewayDevice opened for it. All methods of the embedded gateway
// (RegisterDevice and those of DirectlyConnectedDevice) are available;
// Close also closes the adapters.
type GatewayDevice struct {
	*device.GatewayDevice
	stack *stack
}

// NewDirectlyConnectedDevice opens the provisioning file at path with
// passphrase, opens the data directory's model store and outbox, builds the
// HTTPS transport for the cloud the file names, and returns the device.
// It makes no network call and starts no goroutine: call IsActivated,
// Activate when needed, DeviceModel and CreateVirtualDevice next.
//
// Errors name the file and what was wrong: a missing file (wrapping
// fs.ErrNotExist), a file group or others may read (see
// WithInsecurePermissions), a wrong passphrase or damaged file (wrapping
// trust.ErrPassphrase), a data directory that cannot be made, an outbox that
// another process holds, or an invalid option. On error everything opened is
// closed again.
func NewDirectlyConnectedDevice(path, passphrase string, opts ...Option) (*DirectlyConnectedDevice, error) {
	s, cfg, devOpts, err := open("new directly connected device", path, passphrase, opts)
	if err != nil {
		return nil, err
	}
	d, err := device.NewDirectlyConnectedDevice(cfg, devOpts...)
	if err != nil {
		return nil, errors.Join(err, s.close())
	}
	return &DirectlyConnectedDevice{DirectlyConnectedDevice: d, stack: s}, nil
}

// NewGatewayDevice is NewDirectlyConnectedDevice for a gateway: the device
// it returns also registers indirectly connected devices (RegisterDevice)
// and creates their virtual devices.
func NewGatewayDevice(path, passphrase string, opts ...Option) (*GatewayDevice, error) {
	s, cfg, devOpts, err := open("new gateway device", path, passphrase, opts)
	if err != nil {
		return nil, err
	}
	g, err := device.NewGatewayDevice(cfg, devOpts...)
	if err != nil {
		return nil, errors.Join(err, s.close())
	}
	return &GatewayDevice{GatewayDevice: g, stack: s}, nil
}

// Close closes the device (device.DirectlyConnectedDevice.Close: it stops
// taking messages, sends what it can until ctx's deadline or the close
// timeout, and waits for its goroutines), then the transport, the outbox
// and the provisioning file. Messages still queued stay in the outbox file
// for the next start when they are GUARANTEED_DELIVERY. It returns every
// error at once (errors.Join), each naming what failed. It is safe for
// concurrent use: a second call waits until the first is done (or its own
// ctx ends) and returns nil.
func (d *DirectlyConnectedDevice) Close(ctx context.Context) error {
	return d.stack.closeWith(ctx, d.DirectlyConnectedDevice.Close)
}

// Close closes the gateway and its adapters, as
// DirectlyConnectedDevice.Close does.
func (g *GatewayDevice) Close(ctx context.Context) error {
	return g.stack.closeWith(ctx, g.GatewayDevice.Close)
}

// DataDir returns the data directory the device keeps its state in.
func (d *DirectlyConnectedDevice) DataDir() string { return d.stack.dataDir }

// DataDir returns the data directory the gateway keeps its state in.
func (g *GatewayDevice) DataDir() string { return g.stack.dataDir }

// OutboxStats returns the counters of the durable outbox: messages and
// bytes queued, in flight, and dropped for room.
func (d *DirectlyConnectedDevice) OutboxStats() fsstore.OutboxStats { return d.stack.outbox.Stats() }

// OutboxStats returns the counters of the gateway's durable outbox.
func (g *GatewayDevice) OutboxStats() fsstore.OutboxStats { return g.stack.outbox.Stats() }

// stack is what the constructors open, owned by the returned device.
type stack struct {
	dataDir string
	trust   *fsstore.TrustStore
	models  *fsstore.ModelStore
	outbox  *fsstore.Outbox
	http    *cloudhttp.Client

	mu      sync.Mutex
	closing bool          // Close was called
	done    chan struct{} // closed when the first Close returned
	closed  bool          // the adapters were closed
}

// open builds the adapters and the device.Config for the provisioning file
// at path. op prefixes the errors.
func open(op, path, passphrase string, opts []Option) (*stack, device.Config, []device.Option, error) {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	fail := func(err error) (*stack, device.Config, []device.Option, error) {
		return nil, device.Config{}, nil, fmt.Errorf("%s: %w", op, err)
	}
	if err := o.validate(); err != nil {
		return fail(err)
	}
	devOpts, err := networkCostFromEnv(o.deviceOpts)
	if err != nil {
		return fail(err)
	}
	if path == "" {
		return fail(errors.New("the provisioning file path is empty, expected the file `iotcloud device register` wrote"))
	}
	if !o.dataDirSet {
		o.dataDir = path + DataDirSuffix
	}
	if !o.modelDirSet {
		o.modelDir = filepath.Join(o.dataDir, ModelsDir)
	}
	logger := o.logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	var topts []fsstore.TrustOption
	if o.insecurePerms {
		topts = append(topts, fsstore.WithInsecurePermissions())
	}
	if o.kdfIterations != 0 {
		topts = append(topts, fsstore.WithKDFIterations(o.kdfIterations))
	}
	s := &stack{dataDir: o.dataDir, done: make(chan struct{})}
	if s.trust, err = fsstore.OpenTrustStore(path, passphrase, topts...); err != nil {
		return fail(err)
	}
	// From here on, a failure closes what was opened.
	failClose := func(err error) (*stack, device.Config, []device.Option, error) {
		return nil, device.Config{}, nil, errors.Join(fmt.Errorf("%s: %w", op, err), s.close())
	}
	if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
		return failClose(fmt.Errorf("data directory %s: %w", s.dataDir, err))
	}
	if s.models, err = fsstore.NewModelStore(o.modelDir); err != nil {
		return failClose(err)
	}
	s.outbox, err = fsstore.OpenOutbox(filepath.Join(s.dataDir, OutboxFile), fsstore.OutboxOptions{
		MaxBytes:       o.outboxBytes,
		MaxMemoryBytes: o.outboxMemBytes,
		Logger:         logger.With(slog.String("logger", "iotnode.outbox")),
	})
	if err != nil {
		return failClose(err)
	}
	s.http, err = cloudhttp.New(cloudhttp.Config{
		Trust:            s.trust,
		Logger:           logger,
		Timeout:          o.httpTimeout,
		AllowDraftModels: o.allowDrafts,
	})
	if err != nil {
		return failClose(err)
	}
	cfg := device.Config{
		Trust:      s.trust,
		Messenger:  s.http,
		Activator:  s.http,
		Models:     s.http,
		Policies:   s.http,
		Storage:    s.http,
		ModelStore: s.models,
		Outbox:     s.outbox,
		Logger:     logger,
		DataDir:    s.dataDir,
	}
	return s, cfg, devOpts, nil
}

// NetworkCostEnv is the environment variable that sets the device's network
// cost for device policies (batchByCost), as in Oracle's libraries:
// ETHERNET, CELLULAR or SATELLITE, in any letter case. A
// device.WithNetworkCost option given with WithDeviceOptions wins over it.
const NetworkCostEnv = "oracle_iot_client_network_cost"

// networkCostFromEnv puts the network cost of NetworkCostEnv, when it is
// set, before opts.
func networkCostFromEnv(opts []device.Option) ([]device.Option, error) {
	cost := os.Getenv(NetworkCostEnv)
	if cost == "" {
		return opts, nil
	}
	switch strings.ToUpper(cost) {
	case device.NetworkEthernet, device.NetworkCellular, device.NetworkSatellite:
	default:
		return nil, fmt.Errorf("environment variable %s: %q, expected %s, %s or %s", NetworkCostEnv, cost,
			device.NetworkEthernet, device.NetworkCellular, device.NetworkSatellite)
	}
	return append([]device.Option{device.WithNetworkCost(cost)}, opts...), nil
}

// closeWith closes the device with closeDevice, then the adapters, once.
// A later call waits for the first one to finish (or for its own ctx) and
// returns nil, so that no caller sees the adapters closed under a device
// that is still flushing.
func (s *stack) closeWith(ctx context.Context, closeDevice func(context.Context) error) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		select {
		case <-s.done:
		case <-ctx.Done():
		}
		return nil
	}
	s.closing = true
	s.mu.Unlock()
	defer close(s.done)
	// The device first: it sends through the transport and takes from the
	// outbox until it has stopped.
	derr := closeDevice(ctx)
	return errors.Join(derr, s.close())
}

// close closes the adapters in reverse order of opening, once; nil ones are
// skipped.
func (s *stack) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.http != nil {
		s.http.Close()
	}
	if s.outbox != nil {
		if err := s.outbox.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close outbox: %w", err))
		}
	}
	if s.trust != nil {
		if err := s.trust.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close provisioning file: %w", err))
		}
	}
	return errors.Join(errs...)
}
