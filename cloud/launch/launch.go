package launch

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/iotnode/iotnode/cloud"
	"github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/cloud/mqttbroker"
	"github.com/iotnode/iotnode/cloud/pki"
	"github.com/iotnode/iotnode/cloud/store/pgstore"
)

// DefaultListen is the address a cloud listens on when Options.Listen is empty.
const DefaultListen = "127.0.0.1:8443"

// BridgeConnectTimeout bounds Start's wait for the first connection to
// Options.MQTTBroker: a broker that cannot be reached is a start error.
const BridgeConnectTimeout = 10 * time.Second

// Files in the data directory, besides those of cloud/pki and of the store.
const (
	TokenFile = "admin.token" // the enterprise API's bearer token, 0600
	URLFile   = "url"         // the URL the cloud serves, written at each start
)

// Options configure Start. Zero values take the defaults shown.
type Options struct {
	// DataDir holds everything the cloud keeps (required). It is created
	// (0700) when missing.
	DataDir string
	// Listen is the TCP address to serve on (DefaultListen). Port 0 picks a
	// free port; URL() tells which.
	Listen string
	// Hostnames are extra DNS names or IP addresses for the server
	// certificate, besides localhost, 127.0.0.1, ::1 and the listening IP.
	Hostnames []string
	// PublicURL is the URL devices use to reach the cloud, written into
	// provisioning files. Empty: derived from the listener's real address
	// (or, when it listens on every interface, from the first of Hostnames).
	PublicURL string
	// InsecureHTTP serves plain HTTP, without TLS and without a CA. For local
	// experiments only: tokens and shared secrets then cross the network in
	// clear. Start logs a warning. An embedded MQTT broker is then plain MQTT.
	InsecureHTTP bool
	// MQTTListen, when set, also serves the device API over MQTT with an
	// embedded broker on this TCP address (HOST:PORT, port 0 picks a free
	// port), over TLS with the server certificate. MQTTURL() tells where.
	MQTTListen string
	// MQTTBroker, when set, serves the device API over MQTT through this
	// existing broker instead (mqtt://HOST[:PORT] or mqtts://...,
	// user:password@ optional): the cloud connects as a client and
	// subscribes to iotcs/+/#. The broker then owns authentication and
	// access control (see cloud/mqttbroker). Exclusive with MQTTListen.
	MQTTBroker string
	// MQTTPublicURL is the broker URL devices use, written into provisioning
	// files made with transport "mqtt". Empty: mqtts://HOST:PORT of
	// MQTTListen (HOST as for PublicURL), or MQTTBroker without credentials.
	MQTTPublicURL string
	// StoreURL, when set, keeps the cloud's records in PostgreSQL
	// (postgres://USER@HOST:PORT/DB?sslmode=...) instead of the embedded
	// bbolt file in DataDir; stored objects stay in DataDir. StoreSchema is
	// the PostgreSQL schema it uses (default "iotcloud").
	StoreURL, StoreSchema string
	// Logger receives the cloud's logs (nothing is logged when nil).
	Logger *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time

	// Passed to the cloud as is; zero means the cloud's default.
	KDFIterations    int
	MessageRetention time.Duration
	MaxMessages      int
	DedupWindow      time.Duration
	RequestTTL       time.Duration
}

// Validate reports every problem of o at once.
func (o Options) Validate() error {
	var errs []error
	if o.DataDir == "" {
		errs = append(errs, errors.New("data directory: none given (expected a directory for the cloud's data, such as ./iotcloud-data)"))
	}
	if o.Listen != "" {
		if _, port, err := net.SplitHostPort(o.Listen); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("listen address %q: expected HOST:PORT such as 127.0.0.1:8443 (port 0 picks a free port)", o.Listen))
		}
	}
	if o.StoreURL != "" && !strings.HasPrefix(o.StoreURL, "postgres://") && !strings.HasPrefix(o.StoreURL, "postgresql://") {
		errs = append(errs, errors.New("store: the URL must start with postgres:// or postgresql:// (leave it empty for the embedded store in the data directory)"))
	}
	if o.StoreSchema != "" && o.StoreURL == "" {
		errs = append(errs, errors.New("store schema: given without a PostgreSQL store URL"))
	}
	if o.MQTTListen != "" && o.MQTTBroker != "" {
		errs = append(errs, errors.New("mqtt: both an embedded broker address and an external broker URL given, expected one at most (the cloud runs its own broker or uses another)"))
	}
	if o.MQTTListen != "" {
		if _, port, err := net.SplitHostPort(o.MQTTListen); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("mqtt listen address %q: expected HOST:PORT such as 127.0.0.1:8883 (port 0 picks a free port)", o.MQTTListen))
		}
	}
	if o.MQTTBroker != "" {
		if _, err := mqttbroker.ParseBrokerURL(o.MQTTBroker); err != nil {
			errs = append(errs, err)
		}
	}
	if o.MQTTPublicURL != "" {
		u, err := url.Parse(o.MQTTPublicURL)
		switch {
		case o.MQTTListen == "" && o.MQTTBroker == "":
			errs = append(errs, fmt.Errorf("mqtt public url %q: given without an MQTT broker, expected an embedded broker address or an external broker URL too", o.MQTTPublicURL))
		case err != nil || (u.Scheme != "mqtts" && u.Scheme != "mqtt") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil:
			errs = append(errs, fmt.Errorf("mqtt public url %q: expected mqtts://HOST[:PORT]", o.MQTTPublicURL))
		}
	}
	if o.PublicURL != "" {
		u, err := url.Parse(o.PublicURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			errs = append(errs, fmt.Errorf("public url %q: expected https://HOST[:PORT]", o.PublicURL))
		}
	}
	for _, n := range []struct {
		name string
		v    int64
	}{
		{"KDF iterations", int64(o.KDFIterations)},
		{"message retention", int64(o.MessageRetention)},
		{"max messages", int64(o.MaxMessages)},
		{"dedup window", int64(o.DedupWindow)},
		{"request TTL", int64(o.RequestTTL)},
	} {
		if n.v < 0 {
			errs = append(errs, fmt.Errorf("%s: %d is negative (expected 0 for the default, or a positive value)", n.name, n.v))
		}
	}
	return errors.Join(errs...)
}

// Instance is a running cloud. Its accessors are safe for concurrent use.
// The caller owns it and must call Shutdown exactly when it no longer needs
// it, also after Done is closed by a failure.
type Instance struct {
	dataDir string
	url     string
	mqttURL string
	token   string
	caPEM   []byte
	caPool  *x509.CertPool
	client  *client.Client
	log     *slog.Logger

	srv    *http.Server
	cloud  *cloud.Server
	broker *mqttbroker.Broker // with MQTTListen
	bridge *mqttbroker.Bridge // with MQTTBroker

	done     chan struct{} // closed when the serving goroutine returned
	serveErr error         // set before done is closed

	shutdownOnce sync.Once
	shutdownErr  error
}

// Start prepares the data directory (PKI unless InsecureHTTP, admin token),
// opens the cloud, starts serving and writes DATADIR/url. ctx bounds the
// start only; the instance then runs until Shutdown. On error nothing is left
// running.
func Start(ctx context.Context, o Options) (*Instance, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("start iotcloud: %w", err)
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	log := logger.With(slog.String("logger", "iotcloud.launch"))

	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("start iotcloud: create data directory: %w", err)
	}
	token, err := loadOrCreateToken(o.DataDir, log)
	if err != nil {
		return nil, fmt.Errorf("start iotcloud: %w", err)
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", o.Listen)
	if err != nil {
		hint := ""
		if errors.Is(err, syscall.EADDRINUSE) {
			hint = " (is another iotcloud running? choose another address with --listen)"
		}
		return nil, fmt.Errorf("start iotcloud: listen on %s: %w%s", o.Listen, err, hint)
	}
	addr := ln.Addr().(*net.TCPAddr)
	var mqttLn net.Listener
	var mqttAddr *net.TCPAddr
	if o.MQTTListen != "" {
		mqttLn, err = lc.Listen(ctx, "tcp", o.MQTTListen)
		if err != nil {
			ln.Close()
			hint := ""
			if errors.Is(err, syscall.EADDRINUSE) {
				hint = " (is another MQTT broker running? choose another address with --mqtt-listen)"
			}
			return nil, fmt.Errorf("start iotcloud: mqtt listen on %s: %w%s", o.MQTTListen, err, hint)
		}
		mqttAddr = mqttLn.Addr().(*net.TCPAddr)
	}
	closeListeners := func() {
		ln.Close()
		if mqttLn != nil {
			mqttLn.Close()
		}
	}

	inst := &Instance{dataDir: o.DataDir, token: token, log: log, done: make(chan struct{})}
	scheme := "https"
	var bundle *pki.Bundle
	if o.InsecureHTTP {
		scheme = "http"
	} else {
		names := append([]string(nil), o.Hostnames...)
		if !addr.IP.IsUnspecified() {
			names = append(names, addr.IP.String())
		}
		if mqttAddr != nil && !mqttAddr.IP.IsUnspecified() {
			names = append(names, mqttAddr.IP.String())
		}
		bundle, err = pki.Ensure(o.DataDir, names, o.Now())
		if err != nil {
			closeListeners()
			return nil, fmt.Errorf("start iotcloud: %w", err)
		}
		if bundle.CreatedCA {
			log.Info("created a new certificate authority", slog.String("file", filepath.Join(o.DataDir, pki.CACertFile)))
		}
		if bundle.Issued {
			log.Info("issued a server certificate", slog.String("file", filepath.Join(o.DataDir, pki.ServerCertFile)),
				slog.Any("dns_names", bundle.Leaf.DNSNames), slog.Any("ip_addresses", bundle.Leaf.IPAddresses),
				slog.Time("not_after", bundle.Leaf.NotAfter))
		}
		inst.caPEM = bundle.CACertPEM
		inst.caPool = bundle.CAPool
	}
	inst.url = o.PublicURL
	if inst.url == "" {
		inst.url = scheme + "://" + publicHostPort(addr, o.Hostnames)
	}
	inst.url = strings.TrimRight(inst.url, "/")
	switch {
	case o.MQTTPublicURL != "":
		inst.mqttURL = strings.TrimRight(o.MQTTPublicURL, "/")
	case mqttAddr != nil:
		mscheme := "mqtts"
		if o.InsecureHTTP {
			mscheme = "mqtt"
		}
		inst.mqttURL = mscheme + "://" + publicHostPort(mqttAddr, o.Hostnames)
	case o.MQTTBroker != "":
		u, _ := mqttbroker.ParseBrokerURL(o.MQTTBroker) // validated
		inst.mqttURL = u.Scheme + "://" + u.Host
	}

	cfg := cloud.Config{
		DataDir:          o.DataDir,
		PublicURL:        inst.url,
		MQTTURL:          inst.mqttURL,
		AdminToken:       token,
		Logger:           logger,
		Now:              o.Now,
		MessageRetention: o.MessageRetention,
		MaxMessages:      o.MaxMessages,
		DedupWindow:      o.DedupWindow,
		RequestTTL:       o.RequestTTL,
		KDFIterations:    o.KDFIterations,
	}
	if bundle != nil {
		cfg.TrustAnchors = [][]byte{bundle.CACertDER}
	}
	if o.StoreURL != "" {
		pg, err := pgstore.Open(ctx, o.StoreURL, pgstore.Options{Schema: o.StoreSchema})
		if err != nil {
			closeListeners()
			return nil, fmt.Errorf("start iotcloud: %w", err)
		}
		cfg.Store = pg // the cloud closes it
		logger.Info("store", "store", pg.String())
	}
	inst.cloud, err = cloud.Open(cfg)
	if err != nil {
		if cfg.Store != nil {
			cfg.Store.Close()
		}
		closeListeners()
		return nil, fmt.Errorf("start iotcloud: %w", err)
	}

	opts := []client.Option{}
	if inst.caPool != nil {
		opts = append(opts, client.WithCAPool(inst.caPool))
	}
	// The client talks to the listener itself, not to PublicURL, which may
	// name a proxy or a host name this machine does not resolve.
	inst.client, err = client.New(scheme+"://"+dialHostPort(addr), token, opts...)
	if err != nil {
		closeListeners()
		inst.cloud.Close()
		return nil, fmt.Errorf("start iotcloud: %w", err)
	}

	inst.srv = &http.Server{
		Handler: inst.cloud.Handler(),
		// No ReadTimeout or WriteTimeout: long polls (iot.sync) hold a
		// request for up to a minute, and the handlers bound bodies themselves.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.With(slog.String("logger", "iotcloud.http")).Handler(), slog.LevelWarn),
	}
	if bundle != nil {
		inst.srv.TLSConfig = bundle.TLSConfig()
	}
	go inst.serve(ln) // owned by inst: stopped and waited for by Shutdown

	if err := inst.startMQTT(ctx, o, mqttLn, bundle, logger); err != nil {
		inst.Shutdown(context.Background())
		return nil, fmt.Errorf("start iotcloud: %w", err)
	}

	if err := writeFileAtomic(filepath.Join(o.DataDir, URLFile), []byte(inst.url+"\n"), 0o644); err != nil {
		inst.Shutdown(context.Background())
		return nil, fmt.Errorf("start iotcloud: %w", err)
	}
	if o.InsecureHTTP {
		log.Warn("serving plain HTTP without TLS (--insecure-http): admin token, device tokens and shared secrets cross the network in clear; use it for local experiments only",
			slog.String("url", inst.url))
	}
	log.Info("iotcloud serving", slog.String("url", inst.url), slog.String("listen", addr.String()), slog.String("data_dir", o.DataDir))
	return inst, nil
}

// startMQTT starts the embedded broker on ln, or the bridge to o.MQTTBroker,
// or nothing. On error the broker owns ln (it is closed).
func (i *Instance) startMQTT(ctx context.Context, o Options, ln net.Listener, bundle *pki.Bundle, logger *slog.Logger) error {
	switch {
	case ln != nil:
		cfg := mqttbroker.Config{Listener: ln, Logger: logger}
		if bundle != nil {
			cfg.TLS = bundle.TLSConfig()
		} else {
			i.log.Warn("serving plain MQTT without TLS (--insecure-http): device assertions cross the network in clear; use it for local experiments only",
				slog.String("mqtt_url", i.mqttURL))
		}
		b, err := mqttbroker.New(i.cloud, cfg)
		if err != nil {
			return err
		}
		i.broker = b
		if err := b.Start(); err != nil {
			return err
		}
		i.log.Info("iotcloud serving MQTT", slog.String("mqtt_url", i.mqttURL), slog.String("listen", ln.Addr().String()))
	case o.MQTTBroker != "":
		cfg := mqttbroker.BridgeConfig{URL: o.MQTTBroker, Logger: logger}
		if strings.HasPrefix(o.MQTTBroker, "mqtts:") {
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			if bundle != nil {
				pool.AppendCertsFromPEM(bundle.CACertPEM)
			}
			cfg.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		b, err := mqttbroker.NewBridge(i.cloud, cfg)
		if err != nil {
			return err
		}
		i.bridge = b
		ctx, cancel := context.WithTimeout(ctx, BridgeConnectTimeout)
		defer cancel()
		if err := b.Start(ctx); err != nil {
			return err
		}
		i.log.Info("iotcloud serving MQTT through a broker", slog.String("broker", b.URL()), slog.String("mqtt_url", i.mqttURL))
	}
	return nil
}

// serve runs the HTTP server until Shutdown or a listener failure.
func (i *Instance) serve(ln net.Listener) {
	defer close(i.done)
	var err error
	if i.srv.TLSConfig != nil {
		err = i.srv.ServeTLS(ln, "", "")
	} else {
		err = i.srv.Serve(ln)
	}
	if !errors.Is(err, http.ErrServerClosed) {
		i.serveErr = fmt.Errorf("serve: %w", err)
		i.log.Error("iotcloud stopped serving", slog.Any("error", err))
	}
}

// publicHostPort is HOST:PORT for the URL devices use.
func publicHostPort(addr *net.TCPAddr, hostnames []string) string {
	port := fmt.Sprint(addr.Port)
	if addr.IP.IsUnspecified() {
		if len(hostnames) > 0 {
			return net.JoinHostPort(strings.Trim(hostnames[0], "[]"), port)
		}
		return net.JoinHostPort("127.0.0.1", port)
	}
	return net.JoinHostPort(addr.IP.String(), port)
}

// dialHostPort is HOST:PORT for a client on this machine.
func dialHostPort(addr *net.TCPAddr) string {
	port := fmt.Sprint(addr.Port)
	if addr.IP.IsUnspecified() { // "0.0.0.0" or a dual-stack "::" also accept 127.0.0.1
		return net.JoinHostPort("127.0.0.1", port)
	}
	return net.JoinHostPort(addr.IP.String(), port)
}

// URL is where the cloud serves, such as https://127.0.0.1:8443 (no trailing
// slash): the server URI of provisioning files.
func (i *Instance) URL() string { return i.url }

// MQTTURL is the URL devices use to reach the cloud over MQTT, such as
// mqtts://127.0.0.1:8883 (the server URI of provisioning files made with
// transport "mqtt"); "" when the cloud serves no MQTT.
func (i *Instance) MQTTURL() string { return i.mqttURL }

// AdminToken is the bearer token of the enterprise API. It is a secret.
func (i *Instance) AdminToken() string { return i.token }

// CACert is the CA certificate (PEM) that signs the server certificate; nil
// with InsecureHTTP.
func (i *Instance) CACert() []byte { return i.caPEM }

// CAPool holds only the CA certificate; nil with InsecureHTTP.
func (i *Instance) CAPool() *x509.CertPool { return i.caPool }

// Client is an enterprise API client configured for this cloud (its URL,
// token and CA).
func (i *Instance) Client() *client.Client { return i.client }

// DataDir is the data directory.
func (i *Instance) DataDir() string { return i.dataDir }

// TokenPath is the file that holds the admin token.
func (i *Instance) TokenPath() string { return filepath.Join(i.dataDir, TokenFile) }

// CACertPath is the file that holds the CA certificate ("" with InsecureHTTP).
func (i *Instance) CACertPath() string {
	if i.caPEM == nil {
		return ""
	}
	return filepath.Join(i.dataDir, pki.CACertFile)
}

// Done is closed when the cloud stopped serving: after Shutdown, or earlier
// when serving failed (Err then tells why, and Shutdown must still be called).
func (i *Instance) Done() <-chan struct{} { return i.done }

// Err returns why serving stopped before Shutdown, once Done is closed; nil
// while serving and after a clean Shutdown.
func (i *Instance) Err() error {
	select {
	case <-i.done:
		return i.serveErr
	default:
		return nil
	}
}

// Shutdown stops accepting connections, waits for requests in flight until
// they end or ctx ends (then it closes the remaining connections), and
// closes the cloud (its store). It blocks until all of that is done. Calling
// it again returns the first call's result.
func (i *Instance) Shutdown(ctx context.Context) error {
	i.shutdownOnce.Do(func() {
		var errs []error
		// An idle HTTP/2 connection of our own client would hold the
		// graceful shutdown for a second (the GOAWAY grace).
		i.client.CloseIdleConnections()
		// Long polls last up to a minute: answer them now so that the
		// graceful shutdown waits only for real work.
		i.cloud.Drain()
		if err := i.srv.Shutdown(ctx); err != nil {
			i.log.Warn("requests still running at the end of the shutdown grace period: closing their connections", slog.Any("error", err))
			if err := i.srv.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close connections: %w", err))
			}
		}
		<-i.done
		// MQTT after HTTP: the broker (or bridge) waits for the publishes it
		// is handling and stops its pushes, before the store closes.
		if i.broker != nil {
			if err := i.broker.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close mqtt broker: %w", err))
			}
		}
		if i.bridge != nil {
			if err := i.bridge.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close mqtt bridge: %w", err))
			}
		}
		if err := i.cloud.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close cloud: %w", err))
		}
		if len(errs) > 0 {
			i.shutdownErr = fmt.Errorf("shut down iotcloud: %w", errors.Join(errs...))
		} else {
			i.log.Info("iotcloud stopped")
		}
	})
	return i.shutdownErr
}

// loadOrCreateToken reads DIR/admin.token, or creates it with 32 random
// bytes (base64url, no padding) and mode 0600.
func loadOrCreateToken(dir string, log *slog.Logger) (string, error) {
	path := filepath.Join(dir, TokenFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		tok := strings.TrimSpace(string(data))
		if tok == "" {
			return "", fmt.Errorf("admin token file %s is empty: delete it to create a new token", path)
		}
		if strings.ContainsAny(tok, " \t\r\n") {
			return "", fmt.Errorf("admin token file %s: expected one token on one line", path)
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("the admin token file is readable by other users: chmod 600 it", slog.String("file", path), slog.String("mode", fi.Mode().Perm().String()))
		}
		return tok, nil
	case errors.Is(err, fs.ErrNotExist):
		b := make([]byte, 32)
		rand.Read(b) // never fails (crypto/rand)
		tok := base64.RawURLEncoding.EncodeToString(b)
		if err := writeFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
			return "", err
		}
		log.Info("created the admin token", slog.String("file", path))
		return tok, nil
	default:
		return "", fmt.Errorf("read admin token: %w", err)
	}
}

// writeFileAtomic is WriteFileAtomic with the path in its errors.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := WriteFileAtomic(path, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteFileAtomic writes data to a temporary file with the final mode in the
// same directory, syncs it and renames it over path, so a reader sees the
// old content or the new, never a part. On failure the temporary file is
// removed and path is unchanged; the error is that of the step that failed.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
