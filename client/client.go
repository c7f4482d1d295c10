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
	cloudmqtt "github.com/iotnode/iotnode/adapters/mqtt"
	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/trust"
)

// The transports the constructors build, as Transport reports them.
const (
	TransportHTTPS = "https" // adapters/http, for https:// (and loopback http://) server URIs
	TransportMQTT  = "mqtt"  // adapters/mqtt, for mqtts:// (and loopback mqtt://) server URIs
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
// transport for the cloud the file names, and returns the device.
// It makes no network call and starts no goroutine: call IsActivated,
// Activate when needed, DeviceModel and CreateVirtualDevice next.
//
// The server URI's scheme picks the transport: https (http on loopback)
// builds the HTTPS transport, adapters/http, which also carries device
// policies and storage objects; mqtts (mqtt on loopback) builds the MQTT
// transport, adapters/mqtt, which carries messages, activation and device
// models only, as in Oracle's service (docs/mqtt.md): Offer then behaves
// like Set, and CreateStorageObject fails (Transport tells which transport
// a device got).
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

// CreateStorageObject is device.DirectlyConnectedDevice.CreateStorageObject
// over the HTTPS transport. Over MQTT, which has no storage topics, it fails
// with an error that says so.
func (d *DirectlyConnectedDevice) CreateStorageObject(name, contentType string, opts ...device.StorageObjectOption) (*device.StorageObject, error) {
	if err := d.stack.storageErr(name); err != nil {
		return nil, err
	}
	return d.DirectlyConnectedDevice.CreateStorageObject(name, contentType, opts...)
}

// CreateStorageObject is DirectlyConnectedDevice.CreateStorageObject for the
// gateway.
func (g *GatewayDevice) CreateStorageObject(name, contentType string, opts ...device.StorageObjectOption) (*device.StorageObject, error) {
	if err := g.stack.storageErr(name); err != nil {
		return nil, err
	}
	return g.GatewayDevice.CreateStorageObject(name, contentType, opts...)
}

// Transport returns the transport the device talks to the cloud through:
// TransportHTTPS or TransportMQTT, as the provisioning file's server URI
// decided.
func (d *DirectlyConnectedDevice) Transport() string { return d.stack.transport() }

// Transport returns the gateway's transport, as
// DirectlyConnectedDevice.Transport does.
func (g *GatewayDevice) Transport() string { return g.stack.transport() }

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
	http    *cloudhttp.Client // set for an https (or http) server URI
	mqtt    *cloudmqtt.Client // set for an mqtts (or mqtt) server URI
	server  string            // the server URI, for messages

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
	cfg := device.Config{
		Trust:      s.trust,
		ModelStore: s.models,
		Outbox:     s.outbox,
		Logger:     logger,
		DataDir:    s.dataDir,
	}
	assets, err := s.trust.Load()
	if err != nil {
		return failClose(err)
	}
	s.server = assets.ServerURI
	// mqtt:// is allowed on loopback only, which the MQTT transport checks;
	// anything not MQTT goes to the HTTPS transport, whose constructor
	// explains what it refuses.
	if trust.IsMQTT(assets.ServerURI) {
		// No device policies and no storage over MQTT (docs/mqtt.md):
		// Policies and Storage stay nil, so Offer behaves like Set and
		// CreateStorageObject is refused (see storageErr).
		s.mqtt, err = cloudmqtt.New(cloudmqtt.Config{
			Trust:            s.trust,
			Logger:           logger,
			Timeout:          o.httpTimeout,
			AllowDraftModels: o.allowDrafts,
		})
		if err != nil {
			return failClose(err)
		}
		cfg.Messenger, cfg.Activator, cfg.Models = s.mqtt, s.mqtt, s.mqtt
		return s, cfg, devOpts, nil
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
	cfg.Messenger, cfg.Activator, cfg.Models = s.http, s.http, s.http
	cfg.Policies, cfg.Storage = s.http, s.http
	return s, cfg, devOpts, nil
}

func (s *stack) transport() string {
	if s.mqtt != nil {
		return TransportMQTT
	}
	return TransportHTTPS
}

// storageErr is the error of CreateStorageObject over MQTT, nil over HTTPS.
func (s *stack) storageErr(name string) error {
	if s.mqtt == nil {
		return nil
	}
	return fmt.Errorf("create storage object %q: storage objects need the HTTPS transport, and the provisioning file names the MQTT server %s (MQTT has no storage topics, docs/mqtt.md); provision the device with an https server URI to use them",
		name, s.server)
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
	if s.mqtt != nil {
		s.mqtt.Close()
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
