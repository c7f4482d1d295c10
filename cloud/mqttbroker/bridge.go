package mqttbroker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/iotnode/iotnode/cloud"
)

// BridgePresence is how long a device counts as connected after its last
// publish through a bridge: requests queued for it meanwhile are pushed.
const BridgePresence = 10 * time.Minute

// Bridge worker pool: a device's publishes go to one worker (hashed by id),
// so they are handled in order; a worker's queue holds bridgeQueue publishes,
// beyond which new ones are dropped (the device gets no answer and sends
// again after its timeout) rather than stalling the client's receive loop.
const (
	bridgeWorkers = 8
	bridgeQueue   = 64
)

// BridgeConfig configures a Bridge.
type BridgeConfig struct {
	// URL is the broker: mqtt://host[:1883] or mqtts://host[:8883], with
	// user:password@ when the broker wants them (anonymous otherwise).
	URL string
	// TLS is the client side of TLS for mqtts (nil: the system's roots).
	TLS *tls.Config
	// ClientID is the bridge's MQTT client id (default: iotcloud-bridge-
	// and 8 random hex digits).
	ClientID string
	// Logger is the parent logger; the Bridge names its own loggers
	// iotcloud.mqtt.bridge and iotcloud.mqtt. Nil: nothing logged.
	Logger *slog.Logger
}

// ParseBrokerURL checks a broker URL and returns it with an explicit port.
func ParseBrokerURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("mqtt broker url %q: %w", raw, err)
	}
	if (u.Scheme != "mqtt" && u.Scheme != "mqtts") || u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("mqtt broker url %q: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]", u.Redacted())
	}
	if u.Port() == "" {
		port := "1883"
		if u.Scheme == "mqtts" {
			port = "8883"
		}
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	u.Path = ""
	return u, nil
}

// Bridge serves the device API through an external broker. NewBridge, then
// Start, then Close; its methods are safe for concurrent use.
type Bridge struct {
	api   *cloud.MQTT
	url   *url.URL
	cfg   BridgeConfig
	log   *slog.Logger
	queue [bridgeWorkers]chan cloud.MQTTMessage

	mu         sync.Mutex
	cm         *autopaho.ConnectionManager // set by Start
	lastErr    error                       // of the last connection attempt
	subscribed chan struct{}               // closed at the first subscription
	once       sync.Once

	done      chan struct{} // closed by Close: workers return
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// NewBridge prepares a bridge for the device API of c. It starts nothing.
func NewBridge(c *cloud.Server, cfg BridgeConfig) (*Bridge, error) {
	u, err := ParseBrokerURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.ClientID == "" {
		b := make([]byte, 4)
		rand.Read(b)
		cfg.ClientID = "iotcloud-bridge-" + hex.EncodeToString(b)
	}
	parent := cfg.Logger
	if parent == nil {
		parent = slog.New(slog.DiscardHandler)
	}
	br := &Bridge{
		url: u, cfg: cfg,
		log:        parent.With(slog.String("logger", "iotcloud.mqtt.bridge")),
		subscribed: make(chan struct{}),
		done:       make(chan struct{}),
	}
	for i := range br.queue {
		br.queue[i] = make(chan cloud.MQTTMessage, bridgeQueue)
	}
	br.api, err = c.NewMQTT(cloud.MQTTConfig{
		Publish:       br.publish,
		Presence:      BridgePresence,
		IgnoreUnknown: true, // other clouds may be bridged to the same broker
		Logger:        parent.With(slog.String("logger", "iotcloud.mqtt")),
	})
	if err != nil {
		return nil, err
	}
	return br, nil
}

// URL is the broker's URL without credentials.
func (b *Bridge) URL() string { return b.url.Scheme + "://" + b.url.Host }

// Start connects to the broker and subscribes to iotcs/+/#. It returns once
// subscribed, or with ctx's end (the last connection error then says why,
// and nothing is left running: call Close all the same). Later connection
// losses are retried with backoff until Close.
func (b *Bridge) Start(ctx context.Context) error {
	cc := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{b.url},
		TlsCfg:                        b.cfg.TLS,
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		SessionExpiryInterval:         0,
		ReconnectBackoff:              autopaho.NewExponentialBackoff(time.Second, time.Minute, 2*time.Second, 2),
		ConnectTimeout:                10 * time.Second,
		OnConnectionUp:                b.connectionUp,
		OnConnectionDown: func() bool {
			b.log.Warn("connection to the mqtt broker lost: reconnecting", "url", b.URL())
			return true
		},
		OnConnectError: func(err error) {
			b.mu.Lock()
			b.lastErr = err
			b.mu.Unlock()
			b.log.Warn("cannot connect to the mqtt broker", "url", b.URL(), "err", err)
		},
		ClientConfig: paho.ClientConfig{
			ClientID:          b.cfg.ClientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){b.received},
		},
	}
	if u := b.url.User; u != nil {
		cc.ConnectUsername = u.Username()
		p, _ := u.Password()
		cc.ConnectPassword = []byte(p)
	}
	for i := range b.queue {
		b.wg.Add(1)
		go b.work(b.queue[i]) // owned by b: stopped by Close (done), waited for by Close
	}
	// The connection lives until Close, not until ctx (which bounds the start).
	cm, err := autopaho.NewConnection(context.Background(), cc)
	if err != nil {
		return fmt.Errorf("mqtt bridge to %s: %w", b.URL(), err)
	}
	b.mu.Lock()
	b.cm = cm
	b.mu.Unlock()
	select {
	case <-b.subscribed:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		last := b.lastErr
		b.mu.Unlock()
		if last == nil {
			last = ctx.Err()
		}
		return fmt.Errorf("mqtt bridge: cannot connect to %s and subscribe to %s: %w", b.URL(), cloud.MQTTSubscription, last)
	}
}

// connectionUp subscribes on each (re)connection; autopaho calls it from its
// connection goroutine, which waits for it (a clean start loses the
// subscription with the connection).
func (b *Bridge) connectionUp(cm *autopaho.ConnectionManager, _ *paho.Connack) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: cloud.MQTTSubscription, QoS: 1}}})
	if err == nil && (len(ack.Reasons) != 1 || ack.Reasons[0] >= 0x80) {
		err = fmt.Errorf("the broker refused the subscription (reason codes %v): check its ACL", ack.Reasons)
	}
	if err != nil {
		b.mu.Lock()
		b.lastErr = fmt.Errorf("subscribe to %s: %w", cloud.MQTTSubscription, err)
		b.mu.Unlock()
		b.log.Error("cannot subscribe on the mqtt broker: devices get no answer", "url", b.URL(), "filter", cloud.MQTTSubscription, "err", err)
		return
	}
	b.log.Info("mqtt bridge connected", "url", b.URL(), "client_id", b.cfg.ClientID, "filter", cloud.MQTTSubscription)
	b.once.Do(func() { close(b.subscribed) })
}

// received hands a publish to the worker of its device; it never blocks
// (autopaho delivers publishes one at a time, and the acknowledgments of our
// own publishes wait behind them).
func (b *Bridge) received(pr paho.PublishReceived) (bool, error) {
	p := pr.Packet
	id, _, _ := strings.Cut(strings.TrimPrefix(p.Topic, cloud.MQTTDevicePrefix), "/")
	m := cloud.MQTTMessage{Topic: p.Topic, Payload: p.Payload}
	if p.Properties != nil {
		m.Correlation = p.Properties.CorrelationData
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	select {
	case b.queue[h.Sum32()%bridgeWorkers] <- m:
	default:
		b.log.Warn("mqtt publish dropped: the bridge is overloaded", "client_id", id, "topic", p.Topic, "queue", bridgeQueue)
	}
	return true, nil
}

func (b *Bridge) work(q <-chan cloud.MQTTMessage) {
	defer b.wg.Done()
	for {
		select {
		case m := <-q:
			ctx, cancel := context.WithTimeout(context.Background(), handleTimeout)
			for _, out := range b.api.Handle(ctx, m) {
				if err := b.publish(ctx, out); err != nil {
					b.log.Warn("cannot publish an answer", "topic", out.Topic, "err", err)
				}
			}
			cancel()
		case <-b.done:
			return
		}
	}
}

// publish is a QoS 1 publish that waits for the broker's acknowledgment.
func (b *Bridge) publish(ctx context.Context, m cloud.MQTTMessage) error {
	b.mu.Lock()
	cm := b.cm
	b.mu.Unlock()
	if cm == nil {
		return errors.New("mqtt bridge not started")
	}
	p := &paho.Publish{QoS: 1, Topic: m.Topic, Payload: m.Payload}
	if m.Correlation != nil {
		p.Properties = &paho.PublishProperties{CorrelationData: m.Correlation}
	}
	_, err := cm.Publish(ctx, p)
	return err
}

// Close stops the workers (after the publish each is handling), then the
// pushes, then disconnects from the broker. Call it before closing the
// cloud.Server. It returns the first call's result when called again.
func (b *Bridge) Close() error {
	b.closeOnce.Do(func() {
		close(b.done)
		b.wg.Wait()
		err := b.api.Close()
		b.mu.Lock()
		cm := b.cm
		b.mu.Unlock()
		if cm != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = errors.Join(err, cm.Disconnect(ctx))
			cancel()
		}
		b.closeErr = err
		b.log.Info("mqtt bridge stopped", "url", b.URL())
	})
	return b.closeErr
}
