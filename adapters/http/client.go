package http

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-resty/resty/v2"

	"github.com/iotnode/iotnode/ports"
)

// Defaults of Config.
const (
	// DefaultTimeout bounds one call without long polling (Oracle's JS
	// httpConnectionTimeout, 15000 ms).
	DefaultTimeout = 15 * time.Second
	// DefaultLongPollOffset is added to a long poll's wait to make the socket
	// timeout (Oracle's long_polling_timeout_offset, 100 ms).
	DefaultLongPollOffset = 100 * time.Millisecond
	// DefaultPingAfter is how long an HTTP/2 connection may go without
	// receiving a frame before it is pinged (Config.PingAfter).
	// 10 s: a long poll (30 s) costs two or three small pings, a few MB a
	// month on a metered link, while a dead connection is still noticed in
	// about 15 s instead of the long poll's 30 s.
	DefaultPingAfter = 10 * time.Second
	// DefaultPingTimeout is how long a ping may go unanswered before its
	// connection is closed (Config.PingTimeout).
	DefaultPingTimeout = 5 * time.Second
	// MaxTLSHandshakeTimeout bounds a TLS handshake; a shorter Timeout
	// bounds it instead.
	MaxTLSHandshakeTimeout = 5 * time.Second
	// DefaultUserAgent is sent when Config.UserAgent is empty.
	DefaultUserAgent = "iotnode"
	// MaxAnswerBytes bounds the body of any answer the client reads; a larger
	// answer is an error (a device has no use for more).
	MaxAnswerBytes = 4 << 20
)

// Config configures a Client. Only Trust is required.
type Config struct {
	// Trust holds the device's identity: ServerURI, ClientID and SharedSecret
	// before activation; EndpointID and PrivateKey (PKCS#8) after it; and the
	// TrustAnchors the server certificate must chain to. New reads the server
	// URI and the anchors once; the identity is read again whenever a token is
	// needed, so that what activation saves is used from then on.
	Trust ports.TrustStore
	// Logger receives debug lines per call and warnings; nil discards. The
	// client names it "iotnode.http". Tokens, assertions and secrets are
	// never logged.
	Logger *slog.Logger
	// Clock is used for JWT expiry, token lifetimes and Retry-After dates;
	// nil means the system clock.
	Clock ports.Clock
	// Timeout bounds each call without long polling, token calls included;
	// 0 means DefaultTimeout.
	Timeout time.Duration
	// LongPollOffset is added to a long poll's wait to make its timeout;
	// 0 means DefaultLongPollOffset.
	LongPollOffset time.Duration
	// PingAfter and PingTimeout are the health check of HTTP/2 connections:
	// a connection that has received no frame for PingAfter is pinged, and
	// closed if the ping is not answered within PingTimeout. Closing fails
	// the calls in flight on it (transient errors the dispatcher retries),
	// so a dead connection holds a call for about PingAfter + PingTimeout
	// rather than its whole Timeout. A live server answers pings, so long
	// polls are not cut. 0 means DefaultPingAfter and DefaultPingTimeout.
	// They apply to the transport New builds, not to HTTPClient, and not to
	// HTTP/1.1 (a plain http URI, or a server without h2), where only the
	// call's timeout bounds a dead connection.
	PingAfter, PingTimeout time.Duration
	// OSName and OSVersion are sent with the activation policy query;
	// OSName defaults to runtime.GOOS, OSVersion to "".
	OSName, OSVersion string
	// AllowDraftModels lets activation create draft models for unknown URNs
	// (createDraft=false is sent otherwise) and lets Model return drafts.
	AllowDraftModels bool
	// UserAgent is sent on every call; "" means DefaultUserAgent.
	UserAgent string
	// HTTPClient replaces the client built from the trust anchors (for
	// tests). It is copied, not modified; redirects are never followed.
	HTTPClient *http.Client
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
	if c.LongPollOffset < 0 {
		errs = append(errs, fmt.Errorf("field LongPollOffset is %s; expected 0 (default %s) or more", c.LongPollOffset, DefaultLongPollOffset))
	}
	if c.PingAfter < 0 {
		errs = append(errs, fmt.Errorf("field PingAfter is %s; expected 0 (default %s) or more", c.PingAfter, DefaultPingAfter))
	}
	if c.PingTimeout < 0 {
		errs = append(errs, fmt.Errorf("field PingTimeout is %s; expected 0 (default %s) or more", c.PingTimeout, DefaultPingTimeout))
	}
	return errors.Join(errs...)
}

// Client is the device's cloud transport over HTTPS. It implements
// ports.Messenger, ports.Activator and ports.ModelSource, plus the device
// policy and storage calls.
//
// Every method makes one attempt within its context (plus the single
// token refresh after a 401), is safe for concurrent use and starts no
// goroutine. Errors are *ports.CloudError, except for context errors,
// which are wrapped as they are.
type Client struct {
	rc    *resty.Client
	hc    *http.Client
	base  string // scheme://host:port
	trust ports.TrustStore
	log   *slog.Logger
	clock ports.Clock

	timeout        time.Duration
	longPollOffset time.Duration
	osName         string
	osVersion      string
	allowDrafts    bool
	userAgent      string

	offset atomic.Int64 // server time minus device time, in nanoseconds
	closed atomic.Bool

	mu      sync.Mutex
	tokens  map[string]*token // by scope
	gen     uint64            // bumped when activation changes the identity
	hashAlg string            // from the last activation policy

	// fetching holds one slot per scope: one token call at a time per scope,
	// and waiting for it honours the caller's context.
	fetching map[string]chan struct{}
}

// New builds a client for the cloud named in the trusted assets. It reads
// the assets once for the server URI and the trust anchors and makes no
// network call.
//
// The server URI must be https; an http URI is accepted for local
// experiments with a logged warning, and an mqtts URI is an error that points
// to the MQTT transport. TLS 1.2 or later is required, and the server
// certificate must chain to one of the provisioned trust anchors (the system
// pool is used only when the provisioning file has none).
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new https transport: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	log := logger.With(slog.String("logger", "iotnode.http"))

	assets, err := cfg.Trust.Load()
	if err != nil {
		return nil, fmt.Errorf("new https transport: load trusted assets: %w", err)
	}
	base, err := serverBase(assets.ServerURI)
	if err != nil {
		return nil, fmt.Errorf("new https transport: %w", err)
	}
	if u, _ := url.Parse(base); u.Scheme == "http" {
		log.Warn("the server URI uses plain http: tokens and data travel unencrypted; use it only for local experiments",
			slog.String("server_uri", base))
	}

	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	} else {
		pool, err := anchorPool(assets.TrustAnchors)
		if err != nil {
			return nil, fmt.Errorf("new https transport: %w", err)
		}
		if pool == nil {
			log.Info("the provisioning file has no trust anchors: verifying the server with the system certificate pool")
		}
		hc.Transport = newTransport(pool, health{
			handshake:   min(cmp.Or(cfg.Timeout, DefaultTimeout), MaxTLSHandshakeTimeout),
			pingAfter:   cmp.Or(cfg.PingAfter, DefaultPingAfter),
			pingTimeout: cmp.Or(cfg.PingTimeout, DefaultPingTimeout),
		})
	}
	// A redirect would carry the bearer token elsewhere and hides a wrong
	// server URI: the 3xx answer is returned as it is and reported.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	c := &Client{
		hc:             &hc,
		base:           base,
		trust:          cfg.Trust,
		log:            log,
		clock:          cfg.Clock,
		timeout:        cfg.Timeout,
		longPollOffset: cfg.LongPollOffset,
		osName:         cfg.OSName,
		osVersion:      cfg.OSVersion,
		allowDrafts:    cfg.AllowDraftModels,
		userAgent:      cfg.UserAgent,
		tokens:         map[string]*token{},
		fetching: map[string]chan struct{}{
			scopeActivation: make(chan struct{}, 1),
			scopeDefault:    make(chan struct{}, 1),
		},
	}
	if c.clock == nil {
		c.clock = systemClock{}
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.longPollOffset == 0 {
		c.longPollOffset = DefaultLongPollOffset
	}
	if c.osName == "" {
		c.osName = runtime.GOOS
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	c.rc = resty.NewWithClient(c.hc).
		SetRetryCount(0). // one attempt per call: retries belong to the dispatcher
		SetDisableWarn(true).
		SetLogger(restyLogger{log}).
		SetResponseBodyLimit(MaxAnswerBytes)
	return c, nil
}

// serverBase checks the provisioned server URI and returns scheme://host[:port].
func serverBase(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("server URI %q of the provisioning file is not scheme://host:port", uri)
	}
	switch u.Scheme {
	case "https", "http":
	case "mqtts", "mqtt":
		return "", fmt.Errorf("server URI %q of the provisioning file uses %s: this is the HTTPS transport; use the MQTT transport for this file, or provision an https URI", uri, u.Scheme)
	default:
		return "", fmt.Errorf("server URI %q of the provisioning file: scheme %q is not supported; expected https", uri, u.Scheme)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", fmt.Errorf("server URI %q of the provisioning file has a path or query; expected scheme://host:port", uri)
	}
	return u.Scheme + "://" + u.Host, nil
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

// health bounds how long a dead connection can hold a call.
type health struct {
	handshake              time.Duration // TLS handshake
	pingAfter, pingTimeout time.Duration // HTTP/2 health check
}

// newTransport returns the HTTP transport: TLS 1.2 or later against roots
// (nil = system pool), proxies from the environment, keep-alive, HTTP/2
// (which a custom TLS config turns off unless forced) with health checks.
func newTransport(roots *x509.CertPool, h health) *http.Transport {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots},
		TLSHandshakeTimeout: h.handshake,
		ForceAttemptHTTP2:   true,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: h.pingAfter,
			PingTimeout:     h.pingTimeout,
		},
		MaxIdleConns:          4,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// ClockOffset returns what the cloud's clock is ahead of the device's (it
// may be negative), learnt from a 403 currentTime answer of the token call;
// 0 until then. JWT expiries are shifted by it; callers may shift event
// times likewise.
func (c *Client) ClockOffset() time.Duration { return time.Duration(c.offset.Load()) }

// Close closes idle connections. Calls made after Close fail with an error
// wrapping ports.ErrClosed; calls in flight finish within their contexts.
// Close is idempotent.
func (c *Client) Close() {
	c.closed.Store(true)
	c.hc.CloseIdleConnections()
}

// systemClock is the real clock, used when Config.Clock is nil.
type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// restyLogger sends resty's own messages to the debug level: every failure
// resty sees is also returned to our caller, who decides what to log.
type restyLogger struct{ log *slog.Logger }

func (l restyLogger) Errorf(format string, v ...any) {
	l.log.Debug("resty: " + fmt.Sprintf(format, v...))
}
func (l restyLogger) Warnf(format string, v ...any) {
	l.log.Debug("resty: " + fmt.Sprintf(format, v...))
}
func (l restyLogger) Debugf(format string, v ...any) {
	l.log.Debug("resty: " + fmt.Sprintf(format, v...))
}

var (
	_ ports.Messenger   = (*Client)(nil)
	_ ports.Activator   = (*Client)(nil)
	_ ports.ModelSource = (*Client)(nil)
	_ resty.Logger      = restyLogger{}
)
