package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/iotnode/iotnode/adapters/fsstore"
	httpadapter "github.com/iotnode/iotnode/adapters/http"
	mqttadapter "github.com/iotnode/iotnode/adapters/mqtt"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
)

// Limits of doctor's checks.
const (
	doctorTimeout = 5 * time.Second // per network check
	maxClockSkew  = time.Minute     // the device's tokens are valid 15 minutes
	minFreeBytes  = 64 << 20        // below this the outbox cannot reach its default bound
)

// earliestSaneTime is when no real clock can be earlier: the clock of a
// board without a real-time clock starts at 1970 until NTP sets it.
var earliestSaneTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

func doctorCommand() *command {
	var cf configFlags
	return &command{
		name:    "doctor",
		summary: "Check that the node can run: clock, network, TLS, credentials, data directory",
		help: `
Runs every check and prints one line per check:

  OK   name  what was found
  FAIL name  what is wrong — fix: what to do

A check that cannot run because an earlier one failed, or that does not
apply, prints SKIP. With an MQTT provisioning file (mqtts://), tcp and tls
check the broker's port, clock-skew is skipped (MQTT tells no time), and
credentials connects to the broker: before activation it asks the cloud for
the activation policy, after it connects as the endpoint without subscribing
(so it takes no request from the node), and not while an iotnode runs with
this data directory. The exit status is 1 when any check failed, 2 when the
config has problems.`,
		setup: func(fs *flag.FlagSet) func(context.Context, *Main, []string) error {
			cf.define(fs, false)
			return func(ctx context.Context, m *Main, pos []string) error {
				c, err := cf.load(m, m.drivers())
				if err != nil {
					return err
				}
				d := &doctor{m: m, cfg: c}
				if d.run(ctx) > 0 {
					return &exitError{code: ExitFailure}
				}
				return nil
			}
		},
	}
}

// doctor runs the checks in order; later checks use what earlier ones found.
type doctor struct {
	m   *Main
	cfg *Config

	failed int

	assets *trust.Assets
	store  *fsstore.TrustStore
	base   *url.URL // scheme://host:port of the server
	host   string   // host:port to dial
	tcpOK  bool
	tlsCfg *tls.Config // nil for plain http and mqtt
	tlsOK  bool

	// outbox is the outbox check's line, found before the credentials
	// check needs to know whether a node runs (outboxInUse).
	outbox      func()
	outboxInUse bool
}

// result prints one check's line.
func (d *doctor) ok(name, format string, args ...any) {
	fmt.Fprintf(d.m.stdout, "OK   %-12s %s\n", name, fmt.Sprintf(format, args...))
}

func (d *doctor) fail(name, detail, fix string) {
	d.failed++
	fmt.Fprintf(d.m.stdout, "FAIL %-12s %s — fix: %s\n", name, detail, fix)
}

func (d *doctor) skip(name, why string) {
	fmt.Fprintf(d.m.stdout, "SKIP %-12s %s\n", name, why)
}

// run runs every check and returns how many failed.
func (d *doctor) run(ctx context.Context) int {
	d.checkClock()
	d.checkProvisioning()
	d.checkDNS(ctx)
	d.checkTCP(ctx)
	d.checkTLS(ctx)
	d.checkSkew(ctx)
	d.probeOutbox()
	d.checkCredentials(ctx)
	d.checkDataDir()
	d.outbox()
	if d.store != nil {
		d.store.Close()
	}
	return d.failed
}

func (d *doctor) checkClock() {
	now := d.m.Clock.Now()
	if now.Before(earliestSaneTime) {
		d.fail("clock", fmt.Sprintf("the system time %s is before 2020, so certificates and tokens cannot be checked", now.UTC().Format(time.RFC3339)),
			"set the clock and keep it set with NTP (timedatectl set-ntp true)")
		return
	}
	d.ok("clock", "%s", now.UTC().Format(time.RFC3339))
}

func (d *doctor) checkProvisioning() {
	ts, err := fsstore.OpenTrustStore(d.cfg.ProvisioningFile, d.cfg.passphrase)
	if err != nil {
		fix := "check the file and its passphrase (iotnode trust show FILE)"
		switch {
		case errors.Is(err, trust.ErrPassphrase):
			fix = "use the passphrase the file was written with (passphrase_file or " + EnvPassphrase + "), or provision the device again"
		case strings.Contains(err.Error(), "chmod"):
			fix = "chmod 600 " + d.cfg.ProvisioningFile
		}
		d.fail("provisioning", err.Error(), fix)
		return
	}
	a, err := ts.Load()
	if err != nil {
		ts.Close()
		d.fail("provisioning", err.Error(), "provision the device again")
		return
	}
	d.store, d.assets = ts, a
	u, err := url.Parse(a.ServerURI)
	if err != nil || u.Host == "" {
		d.fail("provisioning", fmt.Sprintf("the server URI %q is not scheme://host:port", a.ServerURI), "provision the device again")
		return
	}
	d.base = u
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "mqtts": "8883", "mqtt": "1883"}[u.Scheme]
		if port == "" {
			port = "443"
		}
	}
	d.host = net.JoinHostPort(u.Hostname(), port)
	state := "not activated yet"
	if a.EndpointID != "" {
		state = "activated as " + a.EndpointID
	}
	d.ok("provisioning", "%s: server %s, %s", d.cfg.ProvisioningFile, a.ServerURI, state)
}

func (d *doctor) checkDNS(ctx context.Context) {
	if d.base == nil {
		d.skip("dns", "no server URI (the provisioning file could not be read)")
		return
	}
	host := d.base.Hostname()
	if net.ParseIP(host) != nil {
		d.ok("dns", "%s is an IP address: nothing to resolve", host)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	addrs, err := d.m.LookupHost(ctx, host)
	if err != nil || len(addrs) == 0 {
		d.fail("dns", fmt.Sprintf("cannot resolve %s: %v", host, err), "check /etc/resolv.conf and the network, or the host name in the server URI")
		return
	}
	d.ok("dns", "%s is %s", host, strings.Join(addrs, ", "))
}

func (d *doctor) checkTCP(ctx context.Context) {
	if d.base == nil {
		d.skip("tcp", "no server address")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	start := time.Now()
	conn, err := d.m.Dial(ctx, "tcp", d.host)
	if err != nil {
		d.fail("tcp", fmt.Sprintf("cannot connect to %s: %v", d.host, shortNetError(err)),
			"check that the cloud runs and that a firewall or proxy lets this machine reach "+d.host)
		return
	}
	conn.Close()
	d.tcpOK = true
	d.ok("tcp", "connected to %s in %s", d.host, time.Since(start).Round(time.Millisecond))
}

// shortNetError drops the "dial tcp ADDR:" prefix that the caller already says.
func shortNetError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

func (d *doctor) checkTLS(ctx context.Context) {
	switch {
	case !d.tcpOK:
		d.skip("tls", "the server cannot be reached")
		return
	case d.base.Scheme == "http":
		d.ok("tls", "none: the server URI is plain http (tokens travel unencrypted; for local experiments only)")
		return
	case d.base.Scheme == "mqtt":
		d.ok("tls", "none: the server URI is plain mqtt (client assertions travel unencrypted; for local experiments only)")
		return
	}
	pool := x509.NewCertPool()
	for i, der := range d.assets.TrustAnchors {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			d.fail("tls", fmt.Sprintf("trust anchor %d of the provisioning file is not a certificate: %v", i+1, err), "provision the device again")
			return
		}
		pool.AddCert(cert)
	}
	anchors := fmt.Sprintf("%d provisioned trust anchor(s)", len(d.assets.TrustAnchors))
	if len(d.assets.TrustAnchors) == 0 {
		pool, anchors = nil, "the system's certificate pool (the provisioning file has no trust anchors)"
	}
	d.tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: d.base.Hostname(), Time: d.m.Clock.Now}
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	raw, err := d.m.Dial(ctx, "tcp", d.host)
	if err != nil {
		d.fail("tls", fmt.Sprintf("cannot connect to %s: %v", d.host, shortNetError(err)), "check the network")
		return
	}
	conn := tls.Client(raw, d.tlsCfg)
	defer conn.Close()
	if err := conn.HandshakeContext(ctx); err != nil {
		var verr *tls.CertificateVerificationError
		fix := "check that the server URI names a TLS port (TLS 1.2 or later)"
		if errors.As(err, &verr) {
			err = verr.Err
			fix = "the server's certificate must chain to a trust anchor of the provisioning file: provision the device again from this cloud, or check the clock"
		}
		d.fail("tls", fmt.Sprintf("handshake with %s against %s failed: %v", d.host, anchors, err), fix)
		return
	}
	d.tlsOK = true
	st := conn.ConnectionState()
	leaf := st.PeerCertificates[0]
	d.ok("tls", "%s verified against %s: %s, expires %s", tls.VersionName(st.Version), anchors, leaf.Subject, leaf.NotAfter.UTC().Format("2006-01-02"))
}

// httpClient is a client for the doctor's HTTP calls: the same dialer and
// TLS settings as the checks.
func (d *doctor) httpClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DialContext: d.m.Dial, TLSClientConfig: d.tlsCfg, ForceAttemptHTTP2: true},
		Timeout:   doctorTimeout,
	}
}

func (d *doctor) networkReady() bool {
	return d.tcpOK && (d.tlsOK || d.base.Scheme == "http" || d.base.Scheme == "mqtt")
}

// mqtt reports whether the provisioning file names an MQTT server.
func (d *doctor) mqtt() bool {
	return d.base != nil && (d.base.Scheme == "mqtts" || d.base.Scheme == "mqtt")
}

func (d *doctor) checkSkew(ctx context.Context) {
	if !d.networkReady() {
		d.skip("clock-skew", "no connection to the server")
		return
	}
	if d.mqtt() {
		d.skip("clock-skew", "an MQTT server tells no time; keep the clock synchronised with NTP (client assertions are valid 15 minutes)")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, d.base.Scheme+"://"+d.base.Host+"/iot/api/v2/", nil)
	hc := d.httpClient()
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		d.fail("clock-skew", fmt.Sprintf("cannot ask %s for its time: %v", d.base.Host, err), "check the network")
		return
	}
	resp.Body.Close()
	local := d.m.Clock.Now()
	server, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		d.ok("clock-skew", "the server sent no Date header: skew unknown")
		return
	}
	// Date has whole seconds: the server's clock read between server and
	// server+1s, so the skew is local's distance from that second (a
	// plain difference reads 1s off a clock that is right half the time).
	skew := local.Sub(server)
	switch {
	case skew >= time.Second:
		skew -= time.Second
	case skew > 0:
		skew = 0
	}
	skew = skew.Round(time.Second)
	if skew > maxClockSkew || skew < -maxClockSkew {
		d.fail("clock-skew", fmt.Sprintf("this clock is %s off the server's (%s here, %s there)", skew, local.UTC().Format(time.RFC3339), server.UTC().Format(time.RFC3339)),
			"synchronise the clock with NTP (timedatectl set-ntp true)")
		return
	}
	d.ok("clock-skew", "within %s of the server's clock (%s)", maxClockSkew, skew)
}

func (d *doctor) checkCredentials(ctx context.Context) {
	if !d.networkReady() {
		d.skip("credentials", "no connection to the server")
		return
	}
	if d.mqtt() {
		d.checkMQTTCredentials(ctx)
		return
	}
	cl, err := httpadapter.New(httpadapter.Config{Trust: d.store, Clock: d.m.Clock, HTTPClient: d.httpClient(), Timeout: doctorTimeout,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		d.fail("credentials", err.Error(), "provision the device again")
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	if d.assets.EndpointID == "" {
		if _, err := cl.Policy(ctx); err != nil {
			d.fail("credentials", fmt.Sprintf("the activation token was refused: %v", err), credentialsFix(err, false))
			return
		}
		d.ok("credentials", "the cloud accepts the shared secret of %s (activation pending: 'iotnode activate' or 'iotnode run' activates)", d.assets.ClientID)
		return
	}
	// A poll that accepts no requests: it proves the token without taking
	// anything meant for a running node.
	if _, err := cl.Exchange(ctx, nil, 0, 0); err != nil {
		d.fail("credentials", fmt.Sprintf("endpoint %s was refused: %v", d.assets.EndpointID, err), credentialsFix(err, true))
		return
	}
	d.ok("credentials", "the cloud accepts endpoint %s", d.assets.EndpointID)
}

// checkMQTTCredentials checks the credentials over MQTT. Before activation
// the MQTT transport asks for the activation policy as the activation ID
// (nothing else uses that ID). After activation a full call would
// subscribe to devices/{endpoint}/#, which makes the cloud push the
// requests queued for the node to the doctor; so it only connects as the
// endpoint, without subscribing, and not while a node runs: a second
// connection with the node's client ID would take over the node's.
func (d *doctor) checkMQTTCredentials(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	if d.assets.EndpointID == "" {
		cl, err := mqttadapter.New(mqttadapter.Config{Trust: d.store, Clock: d.m.Clock, Timeout: doctorTimeout, ConnectTimeout: doctorTimeout,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			d.fail("credentials", err.Error(), "provision the device again")
			return
		}
		defer cl.Close()
		if _, err := cl.Policy(ctx); err != nil {
			d.fail("credentials", fmt.Sprintf("the activation credentials were refused: %v", err), credentialsFix(err, false))
			return
		}
		d.ok("credentials", "the MQTT server accepts the shared secret of %s and the cloud answers it (activation pending: 'iotnode activate' or 'iotnode run' activates)", d.assets.ClientID)
		return
	}
	if d.outboxInUse {
		d.skip("credentials", fmt.Sprintf("an iotnode runs with this data directory: a second MQTT connection as %s would take over its connection", d.assets.EndpointID))
		return
	}
	if err := d.mqttConnect(ctx); err != nil {
		d.fail("credentials", fmt.Sprintf("endpoint %s was refused: %v", d.assets.EndpointID, err), credentialsFix(err, true))
		return
	}
	d.ok("credentials", "the MQTT server accepts endpoint %s (a connection only: a broker bridged to the cloud checks its own credentials, not the device key)", d.assets.EndpointID)
}

// mqttConnect connects to the MQTT server as the endpoint, with the client
// assertion signed by the device key as password (docs/mqtt.md), and
// disconnects at once. A refused connection wraps ports.ErrUnauthorized.
func (d *doctor) mqttConnect(ctx context.Context) error {
	key, err := trust.ParseDeviceKey(d.assets.PrivateKey)
	if err != nil {
		return err
	}
	id := d.assets.EndpointID
	password, err := trust.ClientAssertion(id, nil, key, d.m.Clock.Now())
	if err != nil {
		return err
	}
	nc, err := d.m.Dial(ctx, "tcp", d.host)
	if err != nil {
		return shortNetError(err)
	}
	if d.tlsCfg != nil {
		tc := tls.Client(nc, d.tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return err
		}
		nc = tc
	}
	pc := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: packets.NewThreadSafeConn(nc), PacketTimeout: doctorTimeout})
	ca, err := pc.Connect(ctx, &paho.Connect{ClientID: id, Username: id, UsernameFlag: true, Password: []byte(password), PasswordFlag: true,
		CleanStart: true, KeepAlive: 30})
	if err != nil {
		nc.Close()
		if ca == nil {
			return err
		}
		reason := fmt.Sprintf("reason code 0x%02X", ca.ReasonCode)
		if ca.Properties != nil && ca.Properties.ReasonString != "" {
			reason += " (" + ca.Properties.ReasonString + ")"
		}
		switch ca.ReasonCode {
		case packets.ConnackBadUsernameOrPassword, packets.ConnackNotAuthorized:
			return fmt.Errorf("the broker refused the connection: bad user name or password, or not authorized, %s: %w", reason, ports.ErrUnauthorized)
		}
		return fmt.Errorf("the broker refused the connection: %s", reason)
	}
	_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
	_ = pc.Disconnect(&paho.Disconnect{ReasonCode: packets.DisconnectNormalDisconnection})
	return nil
}

func credentialsFix(err error, activated bool) string {
	switch {
	case errors.Is(err, ports.ErrUnauthorized) && activated:
		return "the cloud no longer knows this device's key: register and provision it again (iotcloud device register)"
	case errors.Is(err, ports.ErrUnauthorized):
		return "the shared secret does not match the cloud's, or the device is already activated elsewhere: provision the device again"
	}
	return "see the error; run with --log-level debug for details"
}

func (d *doctor) checkDataDir() {
	dir := d.cfg.DataDir
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		parent := filepath.Dir(dir)
		if err := probeWrite(parent); err != nil {
			d.fail("data-dir", fmt.Sprintf("%s does not exist and cannot be created: %v", dir, err), "mkdir -p "+dir+" && chmod 700 "+dir)
			return
		}
		d.ok("data-dir", "%s does not exist yet; it will be created (mode 0700)", dir)
		return
	case err != nil:
		d.fail("data-dir", err.Error(), "check the path of data_dir")
		return
	case !fi.IsDir():
		d.fail("data-dir", dir+" is not a directory", "point data_dir at a directory")
		return
	}
	mode := fi.Mode().Perm()
	if mode&0o700 != 0o700 {
		d.fail("data-dir", fmt.Sprintf("%s is not readable, writable and searchable by its owner (mode %s)", dir, fi.Mode()), "chmod 700 "+dir)
		return
	}
	if mode&0o002 != 0 {
		d.fail("data-dir", fmt.Sprintf("%s is writable by every user (mode %s)", dir, fi.Mode()), "chmod 700 "+dir)
		return
	}
	if err := probeWrite(dir); err != nil {
		d.fail("data-dir", fmt.Sprintf("cannot write in %s: %v", dir, err), "make it writable by the node's user (chown, chmod 700) and check that the file system is not read-only")
		return
	}
	free, ok := freeBytes(dir)
	switch {
	case !ok:
		d.ok("data-dir", "%s is writable (mode %s; free space unknown on this system)", dir, fi.Mode())
	case free < minFreeBytes:
		d.fail("data-dir", fmt.Sprintf("%s has only %s free", dir, mib(free)), fmt.Sprintf("free at least %s on its file system", mib(minFreeBytes)))
	default:
		d.ok("data-dir", "%s is writable (mode %s), %s free", dir, fi.Mode(), mib(free))
	}
}

func mib(n uint64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// probeWrite creates and removes a file in dir.
func probeWrite(dir string) error {
	f, err := os.CreateTemp(dir, ".iotnode-doctor-*")
	if err != nil {
		return unwrapPath(err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// probeOutbox opens the outbox once, notes whether a running iotnode holds
// it, and keeps the outbox check's line in d.outbox for its turn.
func (d *doctor) probeOutbox() {
	path := filepath.Join(d.cfg.DataDir, outboxFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		d.outbox = func() { d.ok("outbox", "%s does not exist yet (the first run creates it)", path) }
		return
	}
	ob, err := fsstore.OpenOutbox(path, fsstore.OutboxOptions{MaxBytes: d.cfg.Outbox.MaxBytes})
	if err != nil {
		if errors.Is(err, fsstore.ErrLocked) {
			d.outboxInUse = true
			d.outbox = func() { d.ok("outbox", "%s is in use by a running iotnode", path) }
			return
		}
		d.outbox = func() {
			d.fail("outbox", err.Error(), "move the directory away to start with an empty outbox (its messages are then lost)")
		}
		return
	}
	st := ob.Stats()
	ob.Close()
	if st.Corrupt > 0 {
		d.outbox = func() {
			d.fail("outbox", fmt.Sprintf("%s had %d corrupt record(s), now removed; %d message(s) queued", path, st.Corrupt, st.Guaranteed),
				"check the storage (SD card) for errors: dmesg | grep -i mmc")
		}
		return
	}
	d.outbox = func() {
		d.ok("outbox", "%s: %d message(s) waiting (%d bytes)", path, st.Guaranteed, st.GuaranteedBytes)
	}
}
