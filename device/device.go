package device

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

// Sentinel errors callers branch on.
var (
	// ErrNotActivated: the call needs an activated device; call Activate
	// first. Nothing happened.
	ErrNotActivated = errors.New("device not activated")
	// ErrClosed: the device was closed; nothing was queued or started.
	ErrClosed = errors.New("device closed")
)

// DirectlyConnectedDevice is a device that talks to the cloud itself: it
// activates, fetches device models, creates virtual devices and runs the
// message dispatcher that carries their messages (Oracle's
// DirectlyConnectedDevice). Build one with NewDirectlyConnectedDevice.
//
// Its methods are safe for concurrent use. The dispatcher's goroutines start
// with Start or the first CreateVirtualDevice, never in the constructor, and
// Close stops them and waits for them.
type DirectlyConnectedDevice struct {
	cfg     Config
	set     settings
	log     *slog.Logger
	base    *slog.Logger // the injected logger, parent of every named one
	clock   ports.Clock
	outbox  ports.Outbox
	newID   func() string
	gateway bool

	activating chan struct{} // a one-slot semaphore: one Activate at a time

	mu       sync.Mutex
	endpoint string
	models   map[string]*model.DeviceModel
	disp     *dispatcher // nil until started
	closed   bool

	closing atomic.Bool // set by Close; public calls then fail with ErrClosed
	stats   counters
}

// NewDirectlyConnectedDevice returns a device built from cfg. It validates
// cfg and the options (every problem at once) and loads the trusted assets
// to learn whether the device is activated; it makes no network call and
// starts no goroutine.
func NewDirectlyConnectedDevice(cfg Config, opts ...Option) (*DirectlyConnectedDevice, error) {
	d, err := newDevice(cfg, false, opts)
	if err != nil {
		return nil, fmt.Errorf("new directly connected device: %w", err)
	}
	return d, nil
}

func newDevice(cfg Config, gateway bool, opts []Option) (*DirectlyConnectedDevice, error) {
	s := defaultSettings()
	for _, o := range opts {
		if o != nil {
			o(&s)
		}
	}
	if err := errors.Join(cfg.Validate(), s.validate()); err != nil {
		return nil, err
	}
	assets, err := cfg.Trust.Load()
	if err != nil {
		return nil, fmt.Errorf("load trusted assets: %w", err)
	}
	d := &DirectlyConnectedDevice{
		cfg:        cfg,
		set:        s,
		base:       cfg.Logger,
		clock:      cfg.Clock,
		outbox:     cfg.Outbox,
		newID:      cfg.NewID,
		gateway:    gateway,
		activating: make(chan struct{}, 1),
		endpoint:   assets.EndpointID,
		models:     map[string]*model.DeviceModel{},
	}
	if d.base == nil {
		d.base = slog.New(slog.DiscardHandler)
	}
	d.log = d.named("iotnode.device")
	if d.clock == nil {
		d.clock = systemClock{}
	}
	if d.outbox == nil {
		d.outbox = newMemOutbox(s.outboxBytes)
	}
	if d.newID == nil {
		d.newID = newUUID
	}
	return d, nil
}

// named returns the child logger called name.
func (d *DirectlyConnectedDevice) named(name string) *slog.Logger {
	return d.base.With(slog.String("logger", name))
}

// IsActivated reports whether the device has an endpoint ID (it was
// activated, now or in an earlier run).
func (d *DirectlyConnectedDevice) IsActivated() bool { return d.EndpointID() != "" }

// EndpointID returns the device's endpoint ID, or "" before activation.
func (d *DirectlyConnectedDevice) EndpointID() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.endpoint
}

// activeEndpoint returns the endpoint ID, or an error for op when the device
// is closed or not activated.
func (d *DirectlyConnectedDevice) activeEndpoint(op string) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return "", fmt.Errorf("%s: %w", op, ErrClosed)
	case d.endpoint == "":
		return "", fmt.Errorf("%s: %w: call Activate first", op, ErrNotActivated)
	}
	return d.endpoint, nil
}

// DeviceModel returns the device model urn: from memory when it was asked
// for before, else from the local model store (Config.ModelStore), else from
// the cloud, after which it is saved to the store. A corrupt store entry is
// logged and fetched again; a failed save is logged and does not fail the
// call. Fetching needs an activated device.
//
// Errors name the URN; an unknown URN wraps ports.ErrNotFound.
func (d *DirectlyConnectedDevice) DeviceModel(ctx context.Context, urn string) (*model.DeviceModel, error) {
	op := fmt.Sprintf("device model %q", urn)
	if urn == "" {
		return nil, errors.New("device model: the URN is empty, expected a device model URN such as urn:com:example:sensor")
	}
	d.mu.Lock()
	m, ok := d.models[urn]
	d.mu.Unlock()
	if ok {
		return m, nil
	}
	if m = d.loadStored(urn); m != nil {
		return d.remember(m), nil
	}
	if _, err := d.activeEndpoint(op); err != nil {
		return nil, err
	}
	m, err := d.cfg.Models.Model(ctx, urn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if m == nil || m.URN != urn {
		got := "no model"
		if m != nil {
			got = fmt.Sprintf("model %q", m.URN)
		}
		return nil, fmt.Errorf("%s: the cloud answered with %s, expected that URN", op, got)
	}
	if d.cfg.ModelStore != nil {
		if err := d.cfg.ModelStore.Save(m); err != nil {
			d.log.Warn("device model not saved to the local store; it will be fetched again next time",
				"urn", urn, "error", err)
		}
	}
	return d.remember(m), nil
}

// loadStored returns the model from the local store, or nil.
func (d *DirectlyConnectedDevice) loadStored(urn string) *model.DeviceModel {
	if d.cfg.ModelStore == nil {
		return nil
	}
	m, err := d.cfg.ModelStore.Load(urn)
	switch {
	case errors.Is(err, ports.ErrNotFound):
		return nil
	case err != nil:
		d.log.Warn("device model in the local store is unusable; fetching it again", "urn", urn, "error", err)
		return nil
	case m == nil || m.URN != urn:
		d.log.Warn("device model in the local store has another URN; fetching it again", "urn", urn)
		return nil
	}
	return m
}

// remember caches m and returns the cached model for its URN.
func (d *DirectlyConnectedDevice) remember(m *model.DeviceModel) *model.DeviceModel {
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, ok := d.models[m.URN]; ok {
		return old
	}
	d.models[m.URN] = m
	return m
}

// CreateVirtualDevice returns the virtual device of endpointID seen through
// device model m (from DeviceModel or model.Parse; it is only read). A
// directly connected device creates virtual devices for its own endpoint
// only; a gateway also for its indirectly connected devices. Asking twice
// for the same endpoint and model URN returns the same VirtualDevice.
//
// It starts the message dispatcher if it is not running (see Start), so it
// fails with ErrNotActivated before activation and ErrClosed after Close.
func (d *DirectlyConnectedDevice) CreateVirtualDevice(endpointID string, m *model.DeviceModel) (*VirtualDevice, error) {
	const op = "create virtual device"
	switch {
	case m == nil:
		return nil, fmt.Errorf("%s: the device model is nil, expected one from DeviceModel or model.Parse", op)
	case m.URN == "":
		return nil, fmt.Errorf("%s: the device model has no URN", op)
	case endpointID == "":
		return nil, fmt.Errorf("%s: the endpoint ID is empty, expected %s", op, d.endpointHint())
	}
	own, err := d.activeEndpoint(op)
	if err != nil {
		return nil, err
	}
	if !d.gateway && endpointID != own {
		return nil, fmt.Errorf("%s: endpoint %q is not this device's endpoint %q; only a GatewayDevice creates virtual devices for other endpoints",
			op, endpointID, own)
	}
	p, err := d.dispatcher(op)
	if err != nil {
		return nil, err
	}
	return p.addVirtual(endpointID, m)
}

func (d *DirectlyConnectedDevice) endpointHint() string {
	if d.gateway {
		return "the gateway's endpoint ID or one that RegisterDevice returned"
	}
	return "the device's own EndpointID()"
}

// Start starts the message dispatcher if it is not running: the
// transmitter, the receiver and the request dispatcher, after which the
// device answers the built-in capability resources and sends what a
// durable outbox kept from an earlier run. CreateVirtualDevice calls it, so
// most applications never need to. It does not block. It fails with
// ErrNotActivated before activation and ErrClosed after Close.
func (d *DirectlyConnectedDevice) Start() error {
	_, err := d.dispatcher("start")
	return err
}

// dispatcher returns the running dispatcher, starting it on first need.
func (d *DirectlyConnectedDevice) dispatcher(op string) (*dispatcher, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.closed:
		return nil, fmt.Errorf("%s: %w", op, ErrClosed)
	case d.endpoint == "":
		return nil, fmt.Errorf("%s: %w: call Activate first", op, ErrNotActivated)
	case d.disp == nil:
		d.disp = newDispatcher(d, d.endpoint)
		d.disp.start()
	}
	return d.disp, nil
}

// Stats returns the dispatcher's counters. The message_dispatcher reset
// resource zeroes them.
func (d *DirectlyConnectedDevice) Stats() Stats { return d.stats.snapshot() }

// Close stops the device: new Set, Raise, Submit and CreateVirtualDevice
// calls fail with ErrClosed; the receiver and the request dispatcher stop
// (requests not yet dispatched are dropped: the cloud times them out); the
// callback goroutines finish the requests they hold; the transmitter sends
// what is queued until the outbox is empty. All of Close is bounded by one
// deadline, the earlier of ctx's deadline and the close timeout
// (WithCloseTimeout). The flush gets all of it but a reserve of a tenth (at
// most 1 s); when it ends, a send still in flight is canceled and its
// messages stay in the outbox. The reserve is for the callback goroutines
// to deliver their last error events (among them the report of what was
// left unsent; callables get a canceled context, requests still waiting
// are dropped). Close waits for every goroutine, the callback goroutines
// until the deadline only.
//
// It returns nil when everything was sent and stopped; otherwise an error
// saying how many messages were left in the outbox (a durable outbox keeps
// them for the next start) with the last send error, and, if a callback
// was still running at the deadline or when ctx was canceled, which
// callback goroutines (a blocking callback is left running). Closing again
// returns nil. Close does not close the adapters.
func (d *DirectlyConnectedDevice) Close(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.closing.Store(true)
	p := d.disp
	d.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.close(ctx); err != nil {
		return fmt.Errorf("close device %s: %w", p.endpoint, err)
	}
	return nil
}

// systemClock is the real clock.
type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// newUUID returns a time-ordered (version 7, RFC 9562) UUID: the Unix time
// in milliseconds, then 74 random bits from crypto/rand. Message clientIds
// are UUIDs so that the cloud can deduplicate a batch sent twice; ordered
// ones land next to each other in the cloud's index of recent clientIds
// (a B-tree: random keys dirty a page per message, ordered ones a few per
// batch).
func newUUID() string {
	var b [16]byte
	rand.Read(b[6:]) // never fails (crypto/rand crashes the program rather than return an error)
	ms := uint64(time.Now().UnixMilli())
	for i := range 6 {
		b[i] = byte(ms >> (40 - 8*i))
	}
	b[6] = b[6]&0x0f | 0x70
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	var sb strings.Builder
	sb.Grow(36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			sb.WriteByte('-')
		}
		sb.WriteByte(hex[c>>4])
		sb.WriteByte(hex[c&0x0f])
	}
	return sb.String()
}
