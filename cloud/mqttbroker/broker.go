package mqttbroker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotnode/iotnode/cloud"
)

// handleTimeout bounds the handling of one publish.
const handleTimeout = 30 * time.Second

// maxPacketBytes is the largest MQTT packet accepted: a body of the HTTPS API
// plus room for the topic and properties.
const maxPacketBytes = cloud.MaxBodyBytes + 64<<10

// Config configures a Broker.
type Config struct {
	// Listener is where devices connect (required). The Broker owns it from
	// New on: Close closes it, and so does a failed New.
	Listener net.Listener
	// TLS is the server side of TLS (the cloud's certificate). Nil serves
	// plain MQTT, for a cloud started with --insecure-http only.
	TLS *tls.Config
	// Logger is the parent logger; the Broker names its own loggers
	// iotcloud.mqtt.broker and iotcloud.mqtt.mochi. Nil: nothing logged.
	Logger *slog.Logger
}

// Broker is the embedded MQTT broker of iotcloud. New, then Start, then
// Close; its methods are safe for concurrent use.
type Broker struct {
	api    *cloud.MQTT
	srv    *mochi.Server
	inline *mochi.Client // publishes answers and pushes
	ln     net.Listener
	log    *slog.Logger

	mu     sync.Mutex
	online map[*mochi.Client]string // connections counted by api.Connected

	closeOnce sync.Once
	closeErr  error
}

// New prepares a broker for the device API of c on cfg.Listener. It starts
// nothing.
func New(c *cloud.Server, cfg Config) (*Broker, error) {
	if cfg.Listener == nil {
		return nil, errors.New("mqtt broker: Config.Listener is nil, expected the listener devices connect to")
	}
	parent := cfg.Logger
	if parent == nil {
		parent = slog.New(slog.DiscardHandler)
	}
	b := &Broker{
		ln:     cfg.Listener,
		log:    parent.With(slog.String("logger", "iotcloud.mqtt.broker")),
		online: map[*mochi.Client]string{},
	}
	var err error
	b.api, err = c.NewMQTT(cloud.MQTTConfig{
		Publish: b.publish,
		Logger:  parent.With(slog.String("logger", "iotcloud.mqtt")),
	})
	if err != nil {
		cfg.Listener.Close()
		return nil, err
	}
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = maxPacketBytes
	caps.MaximumSessionExpiryInterval = 0 // clean sessions only: requests wait in the cloud's queue, not in the broker
	caps.RetainAvailable = 0              // nothing a device publishes is for other clients
	caps.SharedSubAvailable = 0
	caps.MaximumMessageExpiryInterval = 0
	b.srv = mochi.New(&mochi.Options{
		Capabilities: caps,
		Logger:       slog.New(quiet{parent.With(slog.String("logger", "iotcloud.mqtt.mochi")).Handler()}),
	})
	b.inline = b.srv.NewClient(nil, mochi.LocalListener, "iotcloud", true)
	if err := b.srv.AddHook(&hook{b: b}, nil); err != nil {
		cfg.Listener.Close()
		return nil, err
	}
	ln := cfg.Listener
	if cfg.TLS != nil {
		tc := cfg.TLS.Clone()
		tc.NextProtos = nil // the HTTPS listener's ALPN (h2) would refuse MQTT clients that offer "mqtt"
		ln = tls.NewListener(ln, tc)
	}
	if err := b.srv.AddListener(listeners.NewNet("iotcloud", ln)); err != nil {
		cfg.Listener.Close()
		return nil, err
	}
	return b, nil
}

// Start serves devices; it does not block.
func (b *Broker) Start() error {
	if err := b.srv.Serve(); err != nil {
		return err
	}
	b.log.Debug("mqtt broker serving", slog.String("listen", b.ln.Addr().String()))
	return nil
}

// Addr is the listener's address (its real port when asked for port 0).
func (b *Broker) Addr() net.Addr { return b.ln.Addr() }

// Close stops accepting connections, disconnects every client, waits for the
// publishes being handled, then stops pushing. Call it before closing the
// cloud.Server. It returns the first call's result when called again.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		// mochi-mqtt v2.7.9's Server.Close can deadlock when a client is
		// leaving at that moment: bounded, so that a shutdown never hangs.
		done := make(chan error, 1)
		go func() { done <- b.srv.Close() }()
		var serr error
		select {
		case serr = <-done:
		case <-time.After(brokerCloseTimeout):
			serr = fmt.Errorf("mqtt broker: close did not finish within %s; going on without it", brokerCloseTimeout)
		}
		b.closeErr = errors.Join(serr, b.api.Close())
		b.log.Info("mqtt broker stopped")
	})
	return b.closeErr
}

// brokerCloseTimeout bounds Close's wait for the mochi server.
const brokerCloseTimeout = 5 * time.Second

// publish is the cloud.MQTT's way out: a QoS 1 publish from the broker itself.
func (b *Broker) publish(_ context.Context, m cloud.MQTTMessage) error {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   m.Topic,
		Payload:     m.Payload,
		PacketID:    1, // required of a QoS 1 packet; the broker numbers the copies it sends
	}
	pk.Properties.CorrelationData = m.Correlation
	return b.srv.InjectPacket(b.inline, pk)
}

// hook connects the mochi server to the cloud.
type hook struct {
	mochi.HookBase
	b *Broker
}

func (h *hook) ID() string { return "iotcloud" }

func (h *hook) Provides(e byte) bool {
	switch e {
	case mochi.OnConnectAuthenticate, mochi.OnACLCheck, mochi.OnPublish, mochi.OnPublished, mochi.OnSubscribed, mochi.OnDisconnect:
		return true
	}
	return false
}

func (h *hook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	return h.b.api.Authenticate(cl.ID, string(pk.Connect.Username), pk.Connect.Password, cl.Net.Remote) == nil
}

// OnACLCheck lets a device publish only under iotcs/{its id}/ and subscribe
// to (and receive) only devices/{its id}/ topics.
func (h *hook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	if write {
		ok := strings.HasPrefix(topic, cloud.MQTTDevicePrefix+cl.ID+"/")
		if !ok {
			h.b.log.Warn("mqtt publish refused: not the client's topic", "client_id", cl.ID, "topic", topic, "remote", cl.Net.Remote)
		}
		return ok
	}
	ok := strings.HasPrefix(topic, cloud.MQTTCloudPrefix+cl.ID+"/") || topic == cloud.MQTTCloudPrefix+cl.ID
	if !ok {
		h.b.log.Warn("mqtt subscription refused: not the client's topic", "client_id", cl.ID, "filter", topic, "remote", cl.Net.Remote)
	}
	return ok
}

// OnPublish acknowledges a device's publish without forwarding it: only the
// cloud reads iotcs/ topics.
func (h *hook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if !cl.Net.Inline && strings.HasPrefix(pk.TopicName, cloud.MQTTDevicePrefix) {
		return pk, packets.CodeSuccessIgnore
	}
	return pk, nil
}

// OnPublished handles a device's publish, once the broker acknowledged it,
// in the connection's goroutine: a device's publishes are handled in order.
func (h *hook) OnPublished(cl *mochi.Client, pk packets.Packet) {
	if cl.Net.Inline || !strings.HasPrefix(pk.TopicName, cloud.MQTTDevicePrefix) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), handleTimeout)
	defer cancel()
	in := cloud.MQTTMessage{Topic: pk.TopicName, Payload: pk.Payload, Correlation: pk.Properties.CorrelationData}
	for _, out := range h.b.api.Handle(ctx, in) {
		if err := h.b.publish(ctx, out); err != nil {
			h.b.log.Warn("cannot publish an answer", "client_id", cl.ID, "topic", out.Topic, "err", err)
		}
	}
}

// OnSubscribed starts the pushes once the client listens on devices/{id}/messages.
func (h *hook) OnSubscribed(cl *mochi.Client, pk packets.Packet, codes []byte) {
	topic := cloud.MQTTCloudPrefix + cl.ID + "/messages"
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] < 0x80 && matches(f.Filter, topic) {
			h.b.mu.Lock()
			if _, ok := h.b.online[cl]; !ok {
				h.b.online[cl] = cl.ID
				h.b.api.Connected(cl.ID)
			}
			h.b.mu.Unlock()
			return
		}
	}
}

func (h *hook) OnDisconnect(cl *mochi.Client, err error, expire bool) {
	h.b.mu.Lock()
	defer h.b.mu.Unlock()
	if id, ok := h.b.online[cl]; ok {
		delete(h.b.online, cl)
		h.b.api.Disconnected(id)
	}
}

// matches reports whether the MQTT topic filter matches topic.
func matches(filter, topic string) bool {
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		switch {
		case f == "#":
			return true
		case i >= len(ts):
			return false
		case f != "+" && f != ts[i]:
			return false
		}
	}
	return len(fs) == len(ts)
}

// quiet tones mochi's logs down: its lifecycle messages become debug, and
// so do the nameless warnings its listener logs for every connection that
// ends (a device going away is not a problem). Warnings and errors with a
// message stay.
type quiet struct{ h slog.Handler }

func (q quiet) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || q.h.Enabled(ctx, slog.LevelDebug)
}

func (q quiet) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "" {
		r.Message = "mqtt connection ended"
		r.Level = slog.LevelDebug
	} else if r.Level < slog.LevelWarn {
		r.Level = slog.LevelDebug
	}
	if !q.h.Enabled(ctx, r.Level) {
		return nil
	}
	return q.h.Handle(ctx, r)
}

func (q quiet) WithAttrs(as []slog.Attr) slog.Handler { return quiet{q.h.WithAttrs(as)} }
func (q quiet) WithGroup(g string) slog.Handler       { return quiet{q.h.WithGroup(g)} }
