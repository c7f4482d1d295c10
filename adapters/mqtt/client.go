package mqtt

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"runtime"
	"sync"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/ports"
)

// Defaults of Config.
const (
	// DefaultTimeout bounds one call: the publish, its PUBACK and the
	// cloud's answer (Oracle's JS httpConnectionTimeout, 15000 ms, as over
	// HTTPS).
	DefaultTimeout = 15 * time.Second
	// DefaultConnectTimeout bounds one connection: dial, TLS handshake,
	// CONNECT/CONNACK and the subscription (Oracle's JS MQTT connect
	// timeout, 30 s).
	DefaultConnectTimeout = 30 * time.Second
	// DefaultKeepAlive is the MQTT keep-alive (docs/mqtt.md): a connection
	// that carries nothing for 1.5 times as long is closed by either side.
	DefaultKeepAlive = 30 * time.Second
	// DefaultPushBuffer bounds the requests the cloud pushed that no
	// Exchange has returned yet, in encoded bytes (Config.PushBuffer).
	DefaultPushBuffer = 1 << 20
	// MaxAnswerBytes is the largest packet the client accepts (the MQTT 5
	// Maximum Packet Size it announces); the broker drops larger ones.
	MaxAnswerBytes = 4 << 20
	// DefaultPresenceRefresh is how often an idle receiver publishes its
	// unchanged acceptBytes again (Config.PresenceRefresh): well under the
	// 10 minutes a bridged cloud counts a device as present after each of
	// its publishes (docs/mqtt.md, mqttbroker.BridgePresence).
	DefaultPresenceRefresh = 4 * time.Minute

	// defaultPortTLS and defaultPortPlain are the ports of a server URI
	// without one.
	defaultPortTLS   = "8883"
	defaultPortPlain = "1883"
	// disconnectTimeout bounds writing the DISCONNECT packet, so that
	// closing never hangs on a dead link.
	disconnectTimeout = time.Second
)

// Config configures a Client. Only Trust is required.
type Config struct {
	// Trust holds the device's identity: ServerURI, ClientID and SharedSecret
	// before activation; EndpointID and PrivateKey (PKCS#8) after it; and the
	// TrustAnchors the broker's certificate must chain to. New reads the
	// server URI and the anchors once; the identity is read again at every
	// connection, so that what activation saves is used from then on.
	Trust ports.TrustStore
	// Logger receives debug lines per call, connection events and
	// warnings; nil discards. The client names it "iotnode.mqtt". Passwords
	// (client assertions), secrets and payloads are never logged.
	Logger *slog.Logger
	// Clock is used for the expiry of the client assertions; nil means the
	// system clock.
	Clock ports.Clock
	// Timeout bounds each call: the publish with its PUBACK and the wait
	// for the cloud's answer. 0 means DefaultTimeout.
	Timeout time.Duration
	// ConnectTimeout bounds each connection attempt (dial, TLS, CONNECT
	// and SUBSCRIBE); 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// KeepAlive is the MQTT keep-alive; 0 means DefaultKeepAlive. A dead
	// connection is noticed within about 1.5 times this, and the calls on it
	// fail as transient errors.
	KeepAlive time.Duration
	// OSName and OSVersion are sent with the activation policy query;
	// OSName defaults to runtime.GOOS, OSVersion to "".
	OSName, OSVersion string
	// AllowDraftModels lets Model return draft models. (Activation over
	// MQTT has no createDraft parameter: the cloud's default applies.)
	AllowDraftModels bool
	// PushBuffer bounds, in encoded bytes, the requests the cloud pushed
	// that no Exchange has returned yet; beyond it the oldest are dropped
	// (and logged). 0 means DefaultPushBuffer.
	PushBuffer int
	// PresenceRefresh is how long an unchanged acceptBytes stays published:
	// an Exchange without messages (the receiver's poll) publishes it again
	// when it was last published at least this long ago, by Clock. Through
	// a bridge the cloud counts a device as present, and pushes requests to
	// it, only for 10 minutes after each of its publishes (docs/mqtt.md),
	// so an idle device must publish now and then. It is checked when each
	// such Exchange begins, so a long-poll wait should stay well under 10
	// minutes minus this. 0 means DefaultPresenceRefresh; a negative value
	// never republishes (only a change or a new connection publishes).
	PresenceRefresh time.Duration
}

// Validate reports every problem of the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Trust == nil {
		errs = append(errs, errors.New("field Trust is nil; expected the device's trust store (the opened provisioning file)"))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("field Timeout is %s; expected 0 (default %s) or more", c.Timeout, DefaultTimeout))
	}
	if c.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("field ConnectTimeout is %s; expected 0 (default %s) or more", c.ConnectTimeout, DefaultConnectTimeout))
	}
	if c.KeepAlive < 0 || c.KeepAlive > 65535*time.Second {
		errs = append(errs, fmt.Errorf("field KeepAlive is %s; expected 0 (default %s) to 65535s", c.KeepAlive, DefaultKeepAlive))
	} else if c.KeepAlive%time.Second != 0 {
		errs = append(errs, fmt.Errorf("field KeepAlive is %s; expected whole seconds (MQTT counts it in seconds)", c.KeepAlive))
	}
	if c.PushBuffer < 0 {
		errs = append(errs, fmt.Errorf("field PushBuffer is %d; expected 0 (default %d bytes) or more", c.PushBuffer, DefaultPushBuffer))
	}
	return errors.Join(errs...)
}

// Client is the device's cloud transport over MQTT 5. It implements
// ports.Messenger, ports.Activator and ports.ModelSource.
//
// It connects on first use and again, on the next call, after the
// connection was lost; every method makes one attempt (one connection
// attempt when there is no connection, one publish) within its context and
// Config.Timeout. Errors are *ports.CloudError, except for context errors,
// which are wrapped as they are. Safe for concurrent use. The goroutines it
// runs are those of the MQTT connection, stopped by Close, and a watcher
// per publish, stopped before the publish returns.
type Client struct {
	server    string // scheme://host:port, for messages
	addr      string // host:port
	tlsConfig *tls.Config
	trust     ports.TrustStore
	log       *slog.Logger
	clock     ports.Clock

	timeout        time.Duration
	connectTimeout time.Duration
	keepAlive      uint16
	osName         string
	osVersion      string
	allowDrafts    bool
	pushLimit      int
	refresh        time.Duration // Config.PresenceRefresh; <= 0: never

	// connecting holds one slot: one connection attempt at a time, and
	// waiting for it honours the caller's context. Close takes it to wait
	// for an attempt in progress.
	connecting chan struct{}
	// closing is closed by Close: it wakes the calls waiting for answers.
	closing chan struct{}

	mu            sync.Mutex
	closed        bool
	cur           *conn              // nil: not connected
	cancelConnect context.CancelFunc // of the attempt in progress, nil if none
	pending       map[string]*waiter // calls waiting for their answers, by correlation data
	hashAlg       string             // from the last activation policy
	pushes        []pushed           // requests pushed by the cloud, oldest first
	pushBytes     int                // their encoded size
	bell          chan struct{}      // closed and replaced when a push or a notice arrives
	minAccept     int                // the cloud's last min-accept-bytes notice; 0 if none
}

// pushed is one request the cloud pushed, with its encoded size.
type pushed struct {
	msg  message.Message
	size int
}

// New builds a client for the cloud named in the trusted assets. It reads
// the assets once for the server URI and the trust anchors and makes no
// network call.
//
// The server URI must be mqtts://host[:port] (port 8883 by default); plain
// mqtt://host[:port] (port 1883) is accepted only for a loopback host, with
// a logged warning, and an https URI is an error that points to the HTTPS
// transport. TLS 1.2 or later is required, and the broker's certificate
// must chain to one of the provisioned trust anchors (the system pool is
// used only when the provisioning file has none).
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new mqtt transport: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	log := logger.With(slog.String("logger", "iotnode.mqtt"))

	assets, err := cfg.Trust.Load()
	if err != nil {
		return nil, fmt.Errorf("new mqtt transport: load trusted assets: %w", err)
	}
	u, err := serverURL(assets.ServerURI)
	if err != nil {
		return nil, fmt.Errorf("new mqtt transport: %w", err)
	}
	c := &Client{
		server:         u.Scheme + "://" + u.Host,
		addr:           u.Host,
		trust:          cfg.Trust,
		log:            log,
		clock:          cfg.Clock,
		timeout:        cmp.Or(cfg.Timeout, DefaultTimeout),
		connectTimeout: cmp.Or(cfg.ConnectTimeout, DefaultConnectTimeout),
		keepAlive:      uint16(cmp.Or(cfg.KeepAlive, DefaultKeepAlive) / time.Second),
		osName:         cmp.Or(cfg.OSName, runtime.GOOS),
		osVersion:      cfg.OSVersion,
		allowDrafts:    cfg.AllowDraftModels,
		pushLimit:      cmp.Or(cfg.PushBuffer, DefaultPushBuffer),
		refresh:        cmp.Or(cfg.PresenceRefresh, DefaultPresenceRefresh),
		connecting:     make(chan struct{}, 1),
		closing:        make(chan struct{}),
		pending:        map[string]*waiter{},
		bell:           make(chan struct{}),
	}
	if c.clock == nil {
		c.clock = systemClock{}
	}
	if u.Scheme == "mqtt" {
		log.Warn("the server URI uses plain mqtt: the device's credentials and data travel unencrypted; use it only on loopback for local experiments",
			slog.String("server_uri", c.server))
		return c, nil
	}
	pool, err := anchorPool(assets.TrustAnchors)
	if err != nil {
		return nil, fmt.Errorf("new mqtt transport: %w", err)
	}
	if pool == nil {
		log.Info("the provisioning file has no trust anchors: verifying the broker with the system certificate pool")
	}
	c.tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: u.Hostname()}
	return c, nil
}

// serverURL checks the provisioned server URI and returns it with the
// default port filled in.
func serverURL(uri string) (*url.URL, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("server URI %q of the provisioning file is not scheme://host:port", uri)
	}
	port := defaultPortTLS
	switch u.Scheme {
	case "mqtts":
	case "mqtt":
		port = defaultPortPlain
		if !isLoopback(u.Hostname()) {
			return nil, fmt.Errorf("server URI %q of the provisioning file uses plain mqtt to %s, which is not a loopback address: the device's credentials would travel unencrypted; use mqtts", uri, u.Hostname())
		}
	case "https", "http":
		return nil, fmt.Errorf("server URI %q of the provisioning file uses %s: this is the MQTT transport; use the HTTPS transport for this file, or provision an mqtts URI", uri, u.Scheme)
	default:
		return nil, fmt.Errorf("server URI %q of the provisioning file: scheme %q is not supported; expected mqtts", uri, u.Scheme)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("server URI %q of the provisioning file has a user, path or query; expected scheme://host:port", uri)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	u.Path = ""
	return u, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// anchorPool returns a pool of the provisioned anchors, or nil (the system
// pool) when there are none.
func anchorPool(anchors [][]byte) (*x509.CertPool, error) {
	if len(anchors) == 0 {
		return nil, nil
	}
	pool := x509.NewCertPool()
	for i, der := range anchors {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("trust anchor %d of the provisioning file is not an X.509 DER certificate: %s", i+1, shortError(err))
		}
		pool.AddCert(cert)
	}
	return pool, nil
}

// Close disconnects from the broker and stops the connection's goroutines;
// it waits for a connection attempt in progress, which it cuts short.
// Calls waiting for an answer fail at once with a transient error wrapping
// ports.ErrClosed (their messages may or may not have arrived); calls made
// after Close fail with a permanent one. Close is idempotent.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.closing)
	if c.cancelConnect != nil {
		c.cancelConnect()
	}
	cur := c.cur
	c.cur = nil
	c.mu.Unlock()
	if cur != nil {
		cur.disconnect()
	}
	c.connecting <- struct{}{} // an attempt in progress has ended and cleaned up
	<-c.connecting
	c.log.Debug("closed")
}

// systemClock is the real clock, used when Config.Clock is nil.
type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

var (
	_ ports.Messenger   = (*Client)(nil)
	_ ports.Activator   = (*Client)(nil)
	_ ports.ModelSource = (*Client)(nil)
)
