package device

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strings"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/virtual"
	"github.com/iotnode/iotnode/ports"
)

// Config holds the adapters a device is built from. The composition root
// (cmd/iotnode, an application's main) builds them and keeps the ownership of
// their lifecycle: the device never closes an adapter.
type Config struct {
	// Trust holds the provisioning file's assets (required). Activation
	// stores the endpoint ID and the key pair in it.
	Trust ports.TrustStore
	// Messenger sends and receives messages (required).
	Messenger ports.Messenger
	// Activator performs direct and indirect activation (required).
	Activator ports.Activator
	// Models fetches device models from the cloud (required).
	Models ports.ModelSource
	// Policies fetches device policies (protocol.md §5); optional. When it
	// is set, every virtual device fetches its policy in the background
	// after CreateVirtualDevice, fetches it again when the cloud pushes a
	// change (policyChanged), and Offer runs the values through it. Nil
	// means no device policies: Offer behaves like Set. The HTTP transport
	// (adapters/http) implements it.
	Policies ports.PolicySource
	// Storage moves storage objects (protocol.md §7); optional:
	// CreateStorageObject fails without it. The HTTP transport
	// (adapters/http) implements it.
	Storage ports.Storage
	// ModelStore is the optional local store of device models (the
	// dm-<urn>.json files): DeviceModel reads it before asking the cloud and
	// writes what it fetched. A corrupt entry is reported through the logger
	// and fetched again.
	ModelStore ports.ModelStore
	// Outbox buffers outgoing messages until the cloud accepted them. Nil
	// means a small in-memory outbox (WithOutboxBytes, 1 MiB by default) that
	// keeps nothing across restarts; give a durable one (the fsstore outbox)
	// to keep GUARANTEED_DELIVERY messages through a crash.
	Outbox ports.Outbox
	// Clock tells the time for every wait of the dispatcher; nil means the
	// system clock.
	Clock ports.Clock
	// Logger receives the device's logs; nil discards them. The device
	// names its child loggers (attribute "logger") iotnode.device,
	// iotnode.dispatcher.transmitter, iotnode.dispatcher.receiver,
	// iotnode.requests and iotnode.policies. Payloads are logged only at debug level, secrets
	// never.
	Logger *slog.Logger
	// NewID makes the clientId of every message; it must return a new
	// value on every call, across restarts too. Nil means a time-ordered
	// UUID (version 7: the time in ms, then 74 random bits from crypto/rand).
	NewID func() string
	// DataDir is the directory whose file system the diagnostics resource
	// reports free and total space for; "" means the working directory.
	DataDir string
}

// Validate reports every missing required adapter at once (errors.Join), or
// nil.
func (c Config) Validate() error {
	var errs []error
	missing := func(field, want string) {
		errs = append(errs, fmt.Errorf("config: %s is nil, expected %s", field, want))
	}
	if c.Trust == nil {
		missing("Trust", "the device's trust store (the opened provisioning file)")
	}
	if c.Messenger == nil {
		missing("Messenger", "the cloud transport that sends and receives messages")
	}
	if c.Activator == nil {
		missing("Activator", "the cloud transport that activates devices")
	}
	if c.Models == nil {
		missing("Models", "the cloud transport that fetches device models")
	}
	return errors.Join(errs...)
}

// Defaults of the options. They are Oracle's (protocol.md §8) unless the
// option's doc says why not.
const (
	DefaultPollingInterval          = 3 * time.Second
	DefaultMaxMessagesPerConnection = 100
	DefaultMaxBatchBytes            = 256 << 10
	DefaultMaxInFlight              = 2
	DefaultSettleTime               = 10 * time.Second
	DefaultBackoffBase              = time.Second
	DefaultBackoffCap               = 30 * time.Second
	DefaultRequestBufferSize        = 10000
	DefaultLongPollTimeout          = 30 * time.Second
	DefaultBatchDelay               = 20 * time.Millisecond
	DefaultCloseTimeout             = 5 * time.Second
	DefaultAuthFailures             = 3
	DefaultAuthPause                = time.Minute
	DefaultOutboxBytes              = 1 << 20
	DefaultCallbackQueue            = 64
	DefaultAttributeHandlerTimeout  = 30 * time.Second
)

// minPollingInterval is the floor the cloud may set the polling interval to
// through the pollingInterval resource (Oracle's monitor floor, 1000 ms).
const minPollingInterval = time.Second

// settings are the tunables, set by Options.
type settings struct {
	pollingInterval   time.Duration
	maxMessages       int
	maxBatchBytes     int
	maxInFlight       int
	settleTime        time.Duration
	backoffBase       time.Duration
	backoffCap        time.Duration
	requestBufferSize int
	longPolling       bool
	longPollTimeout   time.Duration
	batchDelay        time.Duration
	closeTimeout      time.Duration
	authFailures      int
	authPause         time.Duration
	outboxBytes       int
	callbackQueue     int
	handlerTimeout    time.Duration
	dataQoS           virtual.QoS
	alertQoS          virtual.QoS
	networkCost       string

	// Seams for tests; production code uses the defaults.
	genKey func(bits int) (*rsa.PrivateKey, error)
	jitter func(limit time.Duration) time.Duration
}

func defaultSettings() settings {
	return settings{
		pollingInterval:   DefaultPollingInterval,
		maxMessages:       DefaultMaxMessagesPerConnection,
		maxBatchBytes:     DefaultMaxBatchBytes,
		maxInFlight:       DefaultMaxInFlight,
		settleTime:        DefaultSettleTime,
		backoffBase:       DefaultBackoffBase,
		backoffCap:        DefaultBackoffCap,
		requestBufferSize: DefaultRequestBufferSize,
		longPolling:       true,
		longPollTimeout:   DefaultLongPollTimeout,
		batchDelay:        DefaultBatchDelay,
		closeTimeout:      DefaultCloseTimeout,
		authFailures:      DefaultAuthFailures,
		authPause:         DefaultAuthPause,
		outboxBytes:       DefaultOutboxBytes,
		callbackQueue:     DefaultCallbackQueue,
		handlerTimeout:    DefaultAttributeHandlerTimeout,
		dataQoS:           virtual.QoS{Priority: message.PriorityLow, Reliability: message.BestEffort},
		alertQoS:          virtual.QoS{Priority: message.PriorityHighest, Reliability: message.GuaranteedDelivery},
		genKey:            func(bits int) (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, bits) },
		jitter:            fullJitter,
	}
}

// fullJitter returns a random duration in [0, limit).
func fullJitter(limit time.Duration) time.Duration {
	if limit <= 0 {
		return 0
	}
	return mrand.N(limit)
}

// validate reports every out-of-range setting at once.
func (s *settings) validate() error {
	var errs []error
	positive := func(option string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("option %s: %s, expected more than 0", option, d))
		}
	}
	atLeast := func(option string, n, least int) {
		if n < least {
			errs = append(errs, fmt.Errorf("option %s: %d, expected at least %d", option, n, least))
		}
	}
	positive("WithPollingInterval", s.pollingInterval)
	atLeast("WithMaxMessagesPerConnection", s.maxMessages, 1)
	atLeast("WithMaxBatchBytes", s.maxBatchBytes, 1024)
	atLeast("WithMaxInFlight", s.maxInFlight, 1)
	if s.settleTime < 0 {
		errs = append(errs, fmt.Errorf("option WithSettleTime: %s, expected 0 or more", s.settleTime))
	}
	positive("WithBackoff base", s.backoffBase)
	if s.backoffCap < s.backoffBase {
		errs = append(errs, fmt.Errorf("option WithBackoff: limit %s is below base %s, expected limit >= base", s.backoffCap, s.backoffBase))
	}
	atLeast("WithRequestBufferSize", s.requestBufferSize, 256)
	if s.longPolling {
		positive("WithLongPolling timeout", s.longPollTimeout)
	}
	if s.batchDelay < 0 {
		errs = append(errs, fmt.Errorf("option WithBatchDelay: %s, expected 0 or more", s.batchDelay))
	}
	positive("WithCloseTimeout", s.closeTimeout)
	atLeast("WithAuthBreaker failures", s.authFailures, 1)
	positive("WithAuthBreaker pause", s.authPause)
	atLeast("WithOutboxBytes", s.outboxBytes, 1024)
	atLeast("WithCallbackQueue", s.callbackQueue, 1)
	positive("WithAttributeHandlerTimeout", s.handlerTimeout)
	switch s.networkCost {
	case "", NetworkEthernet, NetworkCellular, NetworkSatellite:
	default:
		errs = append(errs, fmt.Errorf("option WithNetworkCost: %q, expected %s, %s or %s",
			s.networkCost, NetworkEthernet, NetworkCellular, NetworkSatellite))
	}
	for _, q := range []struct {
		option string
		qos    virtual.QoS
	}{{"WithDataQoS", s.dataQoS}, {"WithAlertQoS", s.alertQoS}} {
		if !q.qos.Priority.Valid() || !q.qos.Reliability.Valid() {
			errs = append(errs, fmt.Errorf("option %s: priority %s, reliability %s, expected one of the message package's constants",
				q.option, q.qos.Priority, q.qos.Reliability))
		}
	}
	return errors.Join(errs...)
}

// Option changes a tunable of a device (protocol.md §8). Out-of-range values
// make the constructor fail with an error naming the option.
type Option func(*settings)

// WithPollingInterval sets how often the receiver asks the cloud for
// requests when long polling is off, and how long it waits after a long
// poll that the transport answered at once (it cannot hold calls). Default
// 3 s (Oracle's). The cloud may change it at run time through the
// message_dispatcher pollingInterval resource, down to 1 s.
func WithPollingInterval(d time.Duration) Option {
	return func(s *settings) { s.pollingInterval = d }
}

// WithMaxMessagesPerConnection caps the messages sent in one call. Default
// 100 (Oracle's JS library; Java uses 1000).
func WithMaxMessagesPerConnection(n int) Option {
	return func(s *settings) { s.maxMessages = n }
}

// WithMaxBatchBytes caps the encoded size of one call's message array, at
// least 1024. Default 256 KiB: Oracle has no such cap, but clouds cap the
// body (the reference cloud at 1 MiB); a single larger message is sent alone.
func WithMaxBatchBytes(n int) Option {
	return func(s *settings) { s.maxBatchBytes = n }
}

// WithMaxInFlight sets how many sends may be in flight at once while the
// cloud answers, at least 1. Default 2: a second batch travels while the
// cloud stores the first, which hides a round trip (on a 100 ms link one
// batch at a time caps a device at maxMessages per 100 ms). While the cloud
// fails, one attempt at a time probes it. Batches in flight together may be
// stored in either order, and a failed one is sent again after the other;
// 1 keeps the cloud's receive order equal to the order of the outbox.
func WithMaxInFlight(n int) Option {
	return func(s *settings) { s.maxInFlight = n }
}

// WithSettleTime sets how long after the dispatcher starts a request for an
// unknown resource waits for its handler (a virtual device not created yet)
// before it is answered 404. Default 10 s (Oracle's).
func WithSettleTime(d time.Duration) Option {
	return func(s *settings) { s.settleTime = d }
}

// WithBackoff sets the full-jitter exponential backoff after a failed
// exchange: the n-th consecutive failure waits a random time below
// min(limit, base*2^n), or the cloud's Retry-After when that is longer.
// Default base 1 s (Oracle's 503 backoff), limit 30 s.
func WithBackoff(base, limit time.Duration) Option {
	return func(s *settings) { s.backoffBase, s.backoffCap = base, limit }
}

// WithRequestBufferSize sets the bytes of requests the device holds at once
// (the acceptBytes it offers the cloud), at least 256. Default 10000
// (Oracle's JS library; Java uses 4192).
func WithRequestBufferSize(n int) Option {
	return func(s *settings) { s.requestBufferSize = n }
}

// WithLongPolling turns long polling on or off and sets how long the cloud
// may hold one poll. Default on, 30 s: Oracle's clients leave the timeout to
// the server; 30 s stays below the idle timeouts of common proxies and the
// reference cloud's 60 s cap.
func WithLongPolling(enabled bool, timeout time.Duration) Option {
	return func(s *settings) { s.longPolling, s.longPollTimeout = enabled, timeout }
}

// WithBatchDelay sets how long the transmitter waits after the first
// message is queued so that messages queued together leave in one call.
// Default 20 ms: small next to a network round trip, long enough to group
// an Update's neighbours; 0 sends at once. A backlog is sent without delay.
func WithBatchDelay(d time.Duration) Option {
	return func(s *settings) { s.batchDelay = d }
}

// WithCloseTimeout bounds how long Close takes when its context has no
// earlier deadline: sending what is queued (a send in flight is canceled
// when the flush's share ends) and then delivering the last callbacks (see
// DirectlyConnectedDevice.Close). Default 5 s.
func WithCloseTimeout(d time.Duration) Option {
	return func(s *settings) { s.closeTimeout = d }
}

// WithAuthBreaker sets the circuit breaker for refused credentials: after
// failures consecutive ErrUnauthorized answers, sends and polls pause for
// pause, then one call probes. Default 3 failures, 1 minute.
func WithAuthBreaker(failures int, pause time.Duration) Option {
	return func(s *settings) { s.authFailures, s.authPause = failures, pause }
}

// WithOutboxBytes bounds the default in-memory outbox (used when
// Config.Outbox is nil), at least 1024. Default 1 MiB.
func WithOutboxBytes(n int) Option {
	return func(s *settings) { s.outboxBytes = n }
}

// WithCallbackQueue bounds the events waiting for one virtual device's
// callback goroutine. Default 64. When it is full, requests for that device
// wait (and hold the request buffer, so the cloud holds further requests)
// and error events are logged and dropped.
func WithCallbackQueue(n int) Option {
	return func(s *settings) { s.callbackQueue = n }
}

// WithAttributeHandlerTimeout bounds how long the attribute handlers of
// one cloud request (VirtualDevice.SetAttributeHandler) may run: their
// context is canceled when it passes, and a handler that returns the
// context's error refuses the set. Default 30 s: long enough for a slow
// actuator, short enough that one that hangs does not hold the virtual
// device's later requests for long, and the cloud gets the device's 500
// rather than an expired request. Callables are not bounded by it (an
// action, such as a firmware update, may rightly take longer).
func WithAttributeHandlerTimeout(d time.Duration) Option {
	return func(s *settings) { s.handlerTimeout = d }
}

// WithDataQoS sets the priority and reliability of the DATA messages of
// virtual devices: attribute values (Set, Update, Offer, the echo of a
// cloud set) and custom data. Default LOW, BEST_EFFORT (Oracle's); use
// message.GuaranteedDelivery with a durable outbox for data that must
// survive a crash.
func WithDataQoS(p message.Priority, r message.Reliability) Option {
	return func(s *settings) { s.dataQoS = virtual.QoS{Priority: p, Reliability: r} }
}

// WithAlertQoS sets the priority and reliability of alerts. Default
// HIGHEST, GUARANTEED_DELIVERY (Oracle's).
func WithAlertQoS(p message.Priority, r message.Reliability) Option {
	return func(s *settings) { s.alertQoS = virtual.QoS{Priority: p, Reliability: r} }
}

// Network costs for WithNetworkCost, cheapest first.
const (
	NetworkEthernet  = "ETHERNET"
	NetworkCellular  = "CELLULAR"
	NetworkSatellite = "SATELLITE"
)

// WithNetworkCost sets the cost of the device's network link, which the
// batchByCost function of device policies compares with its networkCost
// parameter: NetworkEthernet (the default), NetworkCellular or
// NetworkSatellite, in any letter case (Oracle's
// oracle_iot_client_network_cost; package client reads that variable).
func WithNetworkCost(cost string) Option {
	return func(s *settings) { s.networkCost = strings.ToUpper(cost) }
}
