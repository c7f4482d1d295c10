package mqtt

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
)

// Topics (docs/mqtt.md): the device publishes to iotcs/{id}/PATH and
// subscribes to devices/{id}/#; errors come on devices/{id}/PATH/error.
const (
	publishRoot   = "iotcs/"
	subscribeRoot = "devices/"
	errorSuffix   = "/error"

	pathPolicy      = "activation/policy"
	pathDirect      = "activation/direct"
	pathIndirect    = "activation/indirect/device"
	pathModels      = "deviceModels"
	pathMessages    = "messages"
	pathAcceptBytes = "messages/acceptBytes"
)

// role is whom a call speaks for: the activation ID (activation policy
// and direct activation, HS256 password) or the endpoint ID (everything
// else, RS256 password).
type role int

const (
	roleActivation role = iota
	roleEndpoint
)

// identity is who the device connects as.
type identity struct {
	role   role
	id     string
	secret []byte          // HS256 when set
	key    *rsa.PrivateKey // RS256 when set
}

// errNotActivated: a call that needs the endpoint identity was made before
// activation.
var errNotActivated = errors.New("the device is not activated (the provisioning file has no endpoint ID); activate it first")

// identity reads the trusted assets and returns whom the device connects as
// for calls of role r.
func (c *Client) identity(op string, r role) (identity, error) {
	fail := func(permanent bool, format string, args ...any) (identity, error) {
		return identity{}, &ports.CloudError{Op: op, Permanent: permanent, Index: -1, Err: fmt.Errorf(format, args...)}
	}
	a, err := c.trust.Load()
	if err != nil {
		return fail(false, "load trusted assets: %w", err)
	}
	if r == roleActivation {
		if a.ClientID == "" || len(a.SharedSecret) == 0 {
			return fail(true, "the provisioning file lacks the client ID or the shared secret needed to activate")
		}
		return identity{role: r, id: a.ClientID, secret: a.SharedSecret}, nil
	}
	if a.EndpointID == "" {
		return identity{}, &ports.CloudError{Op: op, Permanent: true, Index: -1, Err: errNotActivated}
	}
	if len(a.PrivateKey) == 0 {
		return fail(true, "the provisioning file has endpoint ID %q but no device key; expected both after activation", a.EndpointID)
	}
	key, err := trust.ParseDeviceKey(a.PrivateKey)
	if err != nil {
		return fail(true, "%w", err)
	}
	return identity{role: r, id: a.EndpointID, key: key}, nil
}

// conn is one MQTT connection, as one identity.
type conn struct {
	role role
	id   string
	pc   *paho.Client
	nc   net.Conn
	done <-chan struct{} // closed when the connection has ended

	// acceptMu orders acceptBytes publishes; accept is the last value
	// published on this connection (0: none yet), acceptAt when (by
	// Client.clock, just before the publish).
	acceptMu sync.Mutex
	accept   int
	acceptAt time.Time
}

func (cn *conn) alive() bool {
	select {
	case <-cn.done:
		return false
	default:
		return true
	}
}

// disconnect sends DISCONNECT (bounded by disconnectTimeout) and waits for
// the connection's goroutines to end.
func (cn *conn) disconnect() {
	_ = cn.nc.SetWriteDeadline(time.Now().Add(disconnectTimeout))
	_ = cn.pc.Disconnect(&paho.Disconnect{ReasonCode: packets.DisconnectNormalDisconnection})
}

func (cn *conn) topic(path string) string { return publishRoot + cn.id + "/" + path }

// conn returns a live connection for calls of role r: the current one when
// it is alive and speaks for r, a new one otherwise. One connection attempt
// runs at a time; the others wait for it within their contexts.
func (c *Client) conn(ctx context.Context, op string, r role) (*conn, error) {
	if cn, err := c.current(op, r); cn != nil || err != nil {
		return cn, err
	}
	select {
	case c.connecting <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: wait for the connection: %w", op, ctx.Err())
	}
	defer func() { <-c.connecting }()
	if cn, err := c.current(op, r); cn != nil || err != nil {
		return cn, err
	}
	id, err := c.identity(op, r)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	old := c.cur
	c.cur = nil
	c.mu.Unlock()
	if old != nil && old.alive() {
		// The identity changes (activation): calls in flight on the old
		// connection fail as transient errors.
		c.log.Debug("reconnecting as another identity", slog.String("client_id", old.id), slog.String("new_client_id", id.id))
		old.disconnect()
	}
	cctx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	defer cancel()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errClosed(op)
	}
	c.cancelConnect = cancel
	c.mu.Unlock()
	cn, err := c.connect(cctx, op, id)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancelConnect = nil
	switch {
	case c.closed:
		if cn != nil {
			cn.disconnect()
		}
		return nil, errClosed(op)
	case err != nil && ctx.Err() != nil:
		return nil, fmt.Errorf("%s: connect to %s: %w", op, c.server, ctx.Err())
	case err != nil:
		return nil, err
	}
	c.cur = cn
	c.minAccept = 0
	return cn, nil
}

// current returns the current connection when it is alive and speaks for
// r, or nil; an error after Close.
func (c *Client) current(op string, r role) (*conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errClosed(op)
	}
	if c.cur != nil && c.cur.role == r && c.cur.alive() {
		return c.cur, nil
	}
	return nil, nil
}

func errClosed(op string) error {
	return &ports.CloudError{Op: op, Permanent: true, Index: -1, Err: fmt.Errorf("the mqtt transport is closed (%w)", ports.ErrClosed)}
}

// connect makes one connection as id within ctx: dial, TLS, CONNECT with
// user name = client ID = id and a fresh client assertion as password,
// then SUBSCRIBE devices/{id}/# so that no answer can come before the
// subscription.
func (c *Client) connect(ctx context.Context, op string, id identity) (*conn, error) {
	op += ": connect"
	start := time.Now()
	password, err := trust.ClientAssertion(id.id, id.secret, id.key, c.clock.Now())
	if err != nil {
		return nil, &ports.CloudError{Op: op, Permanent: true, Index: -1, Err: err}
	}
	var nc net.Conn
	if c.tlsConfig != nil {
		d := tls.Dialer{Config: c.tlsConfig}
		nc, err = d.DialContext(ctx, "tcp", c.addr)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, "tcp", c.addr)
	}
	if err != nil {
		return nil, c.dialError(ctx, op, err)
	}
	cn := &conn{role: id.role, id: id.id, nc: nc}
	cn.pc = paho.NewClient(paho.ClientConfig{
		ClientID:          id.id,
		Conn:              packets.NewThreadSafeConn(nc),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){c.router(cn)},
		// Our contexts bound every wait; paho's own bound must not cut
		// them shorter.
		PacketTimeout: max(c.timeout, c.connectTimeout),
		OnClientError: func(err error) {
			c.connectionLost(cn, slog.Any("error", err))
		},
		OnServerDisconnect: func(d *paho.Disconnect) {
			attrs := []any{slog.Int("reason_code", int(d.ReasonCode))}
			if d.Properties != nil && d.Properties.ReasonString != "" {
				attrs = append(attrs, slog.String("reason", d.Properties.ReasonString))
			}
			c.connectionLost(cn, attrs...)
		},
	})
	maxPacket := uint32(MaxAnswerBytes)
	ca, err := cn.pc.Connect(ctx, &paho.Connect{
		ClientID:     id.id,
		Username:     id.id,
		UsernameFlag: true,
		Password:     []byte(password),
		PasswordFlag: true,
		CleanStart:   true,
		KeepAlive:    c.keepAlive,
		Properties:   &paho.ConnectProperties{MaximumPacketSize: &maxPacket},
	})
	if err != nil {
		_ = nc.Close()
		if ca != nil {
			return nil, c.connackError(op, id, ca)
		}
		return nil, c.dialError(ctx, op, err)
	}
	cn.done = cn.pc.Done()
	filter := subscribeRoot + id.id + "/#"
	sa, err := cn.pc.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if err != nil {
		cn.disconnect()
		if sa != nil && len(sa.Reasons) > 0 {
			ce := &ports.CloudError{Op: op, Index: -1, Err: fmt.Errorf("the broker refused the subscription to %s: %s", filter, reasonText(sa.Reasons[0]))}
			if sa.Reasons[0] == packets.SubackNotauthorized {
				ce.Permanent = true
				ce.Err = fmt.Errorf("%w; a device may subscribe only under devices/{its id}/ (%w)", ce.Err, ports.ErrUnauthorized)
			}
			return nil, ce
		}
		return nil, c.dialError(ctx, op, err)
	}
	c.log.Info("connected to the cloud", slog.String("server_uri", c.server), slog.String("client_id", id.id),
		slog.Duration("duration", time.Since(start)))
	return cn, nil
}

// connectionLost logs the end of a connection that nobody ended on
// purpose (paho reports it from its own goroutines).
func (c *Client) connectionLost(cn *conn, attrs ...any) {
	c.mu.Lock()
	current := c.cur == cn && !c.closed
	c.mu.Unlock()
	if current {
		c.log.Info("the connection to the cloud was lost; the next call connects again",
			append([]any{slog.String("client_id", cn.id)}, attrs...)...)
	}
}

// connackError maps a refused CONNECT. Bad credentials and "not
// authorized" wrap ports.ErrUnauthorized; a broker that cannot take the
// connection now is transient; the rest is permanent.
func (c *Client) connackError(op string, id identity, ca *paho.Connack) error {
	reason := reasonText(ca.ReasonCode)
	if ca.Properties != nil && ca.Properties.ReasonString != "" {
		reason += " (" + ca.Properties.ReasonString + ")"
	}
	ce := &ports.CloudError{Op: op, Index: -1}
	switch ca.ReasonCode {
	case packets.ConnackBadUsernameOrPassword, packets.ConnackNotAuthorized, packets.ConnackBanned:
		hint := "check the endpoint ID and device key of the provisioning file"
		if id.role == roleActivation {
			hint = "check the client ID and shared secret of the provisioning file; a device that is already activated cannot use them any more"
		}
		ce.Permanent = true
		ce.Err = fmt.Errorf("the cloud refused the credentials of %q: %s; %s (%w)", id.id, reason, hint, ports.ErrUnauthorized)
	case packets.ConnackServerUnavailable, packets.ConnackServerBusy, packets.ConnackQuotaExceeded,
		packets.ConnackConnectionRateExceeded, packets.ConnackUseAnotherServer, packets.ConnackUnspecifiedError,
		packets.ConnackImplementationSpecificError:
		ce.Err = fmt.Errorf("the broker at %s refused the connection: %s", c.server, reason)
	default:
		ce.Permanent = true
		ce.Err = fmt.Errorf("the broker at %s refused the connection: %s", c.server, reason)
	}
	return ce
}

// dialError maps a connection attempt that got no CONNACK. The caller's
// context wins (the caller wraps it); every other failure is transient: the
// network, the broker or its certificate may be fixed while the dispatcher
// retries.
func (c *Client) dialError(ctx context.Context, op string, err error) error {
	ce := &ports.CloudError{Op: op, Index: -1, Err: err}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verifyErr *tls.CertificateVerificationError
		recordErr tls.RecordHeaderError
		tlsAlert  tls.AlertError
	)
	switch {
	case ctx.Err() == context.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded):
		ce.Err = fmt.Errorf("no connection to %s within %s", c.server, c.connectTimeout)
	case errors.As(err, &verifyErr), errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid):
		ce.Err = fmt.Errorf("the certificate of %s is not trusted: %v; expected a certificate for this host that chains to a trust anchor of the provisioning file", c.server, certReason(err))
	case errors.As(err, &recordErr):
		ce.Err = fmt.Errorf("%s did not answer with TLS: %v; check the server URI's scheme and port", c.server, err)
	case errors.As(err, &tlsAlert):
		ce.Err = fmt.Errorf("TLS with %s failed: %v; the broker may not support TLS 1.2 or later", c.server, err)
	default:
		ce.Err = fmt.Errorf("cannot connect to %s: %v", c.server, err)
	}
	return ce
}

// certReason is the innermost certificate error.
func certReason(err error) error {
	var verifyErr *tls.CertificateVerificationError
	if errors.As(err, &verifyErr) {
		return verifyErr.Err
	}
	return err
}

// reasonText names an MQTT 5 reason code for users: "bad user name or
// password (0x86)".
func reasonText(code byte) string {
	text, ok := reasonNames[code]
	if !ok {
		text = "reason code"
	}
	return fmt.Sprintf("%s (0x%02X)", text, code)
}

var reasonNames = map[byte]string{
	0x80: "unspecified error",
	0x81: "malformed packet",
	0x82: "protocol error",
	0x83: "implementation specific error",
	0x84: "unsupported protocol version",
	0x85: "client identifier not valid",
	0x86: "bad user name or password",
	0x87: "not authorized",
	0x88: "server unavailable",
	0x89: "server busy",
	0x8A: "banned",
	0x8C: "bad authentication method",
	0x8F: "topic filter invalid",
	0x90: "topic name invalid",
	0x91: "packet identifier in use",
	0x95: "packet too large",
	0x97: "quota exceeded",
	0x99: "payload format invalid",
	0x9C: "use another server",
	0x9D: "server moved",
	0x9F: "connection rate exceeded",
}

// shortError drops the Go struct dump that encoding/asn1 appends to its
// structure errors, which means nothing to a user.
func shortError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, " ("); i > 0 && strings.HasPrefix(msg, "asn1: ") {
		msg = msg[:i]
	}
	return msg
}
