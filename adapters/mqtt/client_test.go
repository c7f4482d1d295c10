package mqtt_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqttadapter "github.com/iotnode/iotnode/adapters/mqtt"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
	"github.com/iotnode/iotnode/ports/porttest"
)

// TestConnect proves the first call connects as the endpoint ID with an
// RS256 client assertion as password (clean start, keep-alive 30 s) and
// subscribes to devices/{id}/# before it publishes, over plain TCP and TLS.
func TestConnect(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		name := map[bool]string{false: "mqtt", true: "mqtts"}[tlsOn]
		t.Run(name, func(t *testing.T) {
			fc := newFakeCloud(t, tlsOn)
			c, _ := fc.client(fc.assets(true))
			if got := fc.connectRecs(); len(got) != 0 {
				t.Fatalf("New connected: %+v", got)
			}
			in, err := c.Exchange(t.Context(), []message.Message{dataMessage("c-1")}, 0, 0)
			if err != nil || len(in) != 0 {
				t.Fatalf("Exchange = %v, %v; want no requests, nil", in, err)
			}
			recs := fc.connectRecs()
			if len(recs) != 1 {
				t.Fatalf("connects = %+v, want 1", recs)
			}
			r := recs[0]
			wantClaims := map[string]any{"iss": endpointID, "sub": endpointID, "aud": "oracle/iot/oauth2/token", "exp": float64(t0.Add(15 * time.Minute).Unix())}
			if r.ClientID != endpointID || r.Username != endpointID || !r.Clean || r.KeepAlive != 30 ||
				r.Header != `{"typ":"JWT","alg":"RS256"}` || !r.Authentic || !mapsEqual(r.Claims, wantClaims) {
				t.Errorf("connect = %+v\nwant client ID = user name = %s, clean start, keep-alive 30, RS256 claims %v, authentic", r, endpointID, wantClaims)
			}
			want := []string{"connect ep-1", "subscribe ep-1 devices/ep-1/#", "publish ep-1 messages"}
			if got := fc.eventLog(); !slices.Equal(got, want) {
				t.Errorf("events = %q, want %q", got, want)
			}
		})
	}
}

func mapsEqual(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestBadCredentials: a CONNACK refusing the password is an error wrapping
// ports.ErrUnauthorized, permanent, with a hint per identity.
func TestBadCredentials(t *testing.T) {
	fc := newFakeCloud(t, false)

	t.Run("endpoint", func(t *testing.T) {
		a := fc.assets(true)
		a.PrivateKey, a.PublicKey = keyDER(t, otherKey())
		c, _ := fc.client(a)
		_, err := c.Exchange(t.Context(), []message.Message{dataMessage("c-1")}, 0, 0)
		const want = `exchange messages: connect: the cloud refused the credentials of "ep-1": bad user name or password (0x86); check the endpoint ID and device key of the provisioning file (unauthorized)`
		if errText(err) != want || !errors.Is(err, ports.ErrUnauthorized) || !ports.IsPermanent(err) {
			t.Errorf("error = %s\n want %s", errText(err), want)
		}
	})
	t.Run("activation", func(t *testing.T) {
		a := fc.assets(false)
		a.SharedSecret = []byte("wrong")
		c, _ := fc.client(a)
		_, err := c.Policy(t.Context())
		const want = `get activation policy: connect: the cloud refused the credentials of "act-1": bad user name or password (0x86); check the client ID and shared secret of the provisioning file; a device that is already activated cannot use them any more (unauthorized)`
		if errText(err) != want || !errors.Is(err, ports.ErrUnauthorized) || !ports.IsPermanent(err) {
			t.Errorf("error = %s\n want %s", errText(err), want)
		}
	})
	t.Run("not activated", func(t *testing.T) {
		c, _ := fc.client(fc.assets(false))
		_, err := c.Exchange(t.Context(), nil, 0, 0)
		const want = "exchange messages: the device is not activated (the provisioning file has no endpoint ID); activate it first"
		if errText(err) != want || !ports.IsPermanent(err) {
			t.Errorf("error = %s\n want %s", errText(err), want)
		}
	})
	if n := len(fc.connectRecs()); n != 2 {
		t.Errorf("%d connects, want 2 (none without an endpoint ID)", n)
	}
}

// TestTLSErrors: an untrusted broker certificate, a server without TLS
// and a closed port are transient errors that say what to check. (Raw
// servers: mochi races with its own Close when a connection fails before
// CONNECT.)
func TestTLSErrors(t *testing.T) {
	trusted, key := selfSigned(t, "mqtt test CA")
	other, _ := selfSigned(t, "another CA")
	serverTLS := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{trusted}, PrivateKey: key}}}
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	tests := []struct {
		name    string
		addr    string
		anchor  []byte
		wantErr string // %[1]s is the address
	}{
		{name: "untrusted", addr: rawServer(t, serverTLS, nil), anchor: other,
			wantErr: "exchange messages: connect: the certificate of mqtts://%[1]s is not trusted: x509: certificate signed by unknown authority; expected a certificate for this host that chains to a trust anchor of the provisioning file"},
		{name: "no TLS", addr: rawServer(t, nil, []byte("HTTP/1.0 400 Bad Request\r\n\r\n")), anchor: trusted,
			wantErr: "exchange messages: connect: mqtts://%[1]s did not answer with TLS: tls: first record does not look like a TLS handshake; check the server URI's scheme and port"},
		{name: "nobody listens", addr: closedAddr, anchor: trusted,
			wantErr: "exchange messages: connect: cannot connect to mqtts://%[1]s: dial tcp %[1]s: connect: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := (&fakeCloud{t: t}).assets(true)
			a.ServerURI, a.TrustAnchors = "mqtts://"+tt.addr, [][]byte{tt.anchor}
			c, err := mqttadapter.New(mqttadapter.Config{Trust: porttest.NewMemTrustStore(a)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.Exchange(t.Context(), nil, 0, 0)
			want := fmt.Sprintf(tt.wantErr, tt.addr)
			if errText(err) != want || ports.IsPermanent(err) {
				t.Errorf("error = %s\n want %s", errText(err), want)
			}
		})
	}
}

// rawServer accepts connections on 127.0.0.1:0, does the TLS handshake
// when config is set, writes answer and closes them; it stops at the end
// of the test.
func rawServer(t *testing.T, config *tls.Config, answer []byte) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			if config != nil {
				tc := tls.Server(nc, config)
				_ = tc.Handshake()
				nc = tc
			}
			_, _ = nc.Write(answer)
			_ = nc.Close()
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return l.Addr().String()
}

func TestNew(t *testing.T) {
	anchor, _ := selfSigned(t, "CA")
	tests := []struct {
		name    string
		cfg     mqttadapter.Config
		uri     string
		anchors [][]byte
		wantErr string
	}{
		{name: "mqtts", uri: "mqtts://iot.example.com", anchors: [][]byte{anchor}, wantErr: "<nil>"},
		{name: "mqtt on loopback", uri: "mqtt://localhost:1883", wantErr: "<nil>"},
		{name: "no trust", cfg: mqttadapter.Config{Trust: nil},
			wantErr: "new mqtt transport: field Trust is nil; expected the device's trust store (the opened provisioning file)"},
		{name: "bad fields", uri: "mqtts://iot.example.com",
			cfg: mqttadapter.Config{Timeout: -1, ConnectTimeout: -1, KeepAlive: 1500 * time.Millisecond, PushBuffer: -1},
			wantErr: "new mqtt transport: field Timeout is -1ns; expected 0 (default 15s) or more\n" +
				"field ConnectTimeout is -1ns; expected 0 (default 30s) or more\n" +
				"field KeepAlive is 1.5s; expected whole seconds (MQTT counts it in seconds)\n" +
				"field PushBuffer is -1; expected 0 (default 1048576 bytes) or more"},
		{name: "https", uri: "https://iot.example.com",
			wantErr: `new mqtt transport: server URI "https://iot.example.com" of the provisioning file uses https: this is the MQTT transport; use the HTTPS transport for this file, or provision an mqtts URI`},
		{name: "plain mqtt elsewhere", uri: "mqtt://iot.example.com:1883",
			wantErr: `new mqtt transport: server URI "mqtt://iot.example.com:1883" of the provisioning file uses plain mqtt to iot.example.com, which is not a loopback address: the device's credentials would travel unencrypted; use mqtts`},
		{name: "other scheme", uri: "ws://iot.example.com",
			wantErr: `new mqtt transport: server URI "ws://iot.example.com" of the provisioning file: scheme "ws" is not supported; expected mqtts`},
		{name: "path", uri: "mqtts://iot.example.com/mqtt",
			wantErr: `new mqtt transport: server URI "mqtts://iot.example.com/mqtt" of the provisioning file has a user, path or query; expected scheme://host:port`},
		{name: "no host", uri: "mqtts:///x",
			wantErr: `new mqtt transport: server URI "mqtts:///x" of the provisioning file is not scheme://host:port`},
		{name: "bad anchor", uri: "mqtts://iot.example.com", anchors: [][]byte{{1, 2, 3}},
			wantErr: "new mqtt transport: trust anchor 1 of the provisioning file is not an X.509 DER certificate: x509: malformed certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if tt.uri != "" {
				cfg.Trust = porttest.NewMemTrustStore(&trust.Assets{ServerURI: tt.uri, ClientID: "a", SharedSecret: []byte("s"), TrustAnchors: tt.anchors})
			}
			c, err := mqttadapter.New(cfg)
			if errText(err) != tt.wantErr {
				t.Errorf("New error = %s\n want %s", errText(err), tt.wantErr)
			}
			if c != nil {
				c.Close()
				c.Close() // idempotent
			}
		})
	}
}

// TestBrokerRestart: after the broker went away the next call connects
// again, subscribes again, offers acceptBytes again and works.
func TestBrokerRestart(t *testing.T) {
	fc := newFakeCloud(t, true)
	fc.handle("messages", answer(requestJSON("r-1")))
	c, logs := fc.client(fc.assets(true))
	if _, err := c.Exchange(t.Context(), []message.Message{dataMessage("c-1")}, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exchange(t.Context(), nil, 5000, 0); err != nil {
		t.Fatal(err)
	}
	fc.restart()
	eventually(t, "the lost connection", func() bool {
		return strings.Contains(logs.String(), "the connection to the cloud was lost; the next call connects again")
	})
	in, err := c.Exchange(t.Context(), []message.Message{dataMessage("c-2")}, 5000, 0)
	if got := ids(in); err != nil || !slices.Equal(got, []string{"r-1"}) {
		t.Fatalf("Exchange after the restart = %q, %v", got, err)
	}
	want := []string{"connect ep-1", "subscribe ep-1 devices/ep-1/#", "publish ep-1 messages", "publish ep-1 messages/acceptBytes",
		"connect ep-1", "subscribe ep-1 devices/ep-1/#", "publish ep-1 messages/acceptBytes", "publish ep-1 messages"}
	if got := slices.DeleteFunc(fc.eventLog(), func(e string) bool { return strings.HasPrefix(e, "disconnect") }); !slices.Equal(got, want) {
		t.Errorf("events = %q\n want %q", got, want)
	}
}

// TestClose: Close cuts the calls waiting for answers or PUBACKs
// (transient, ErrClosed), disconnects, and later calls fail permanently.
func TestClose(t *testing.T) {
	for _, waitFor := range []string{"answer", "PUBACK"} {
		t.Run(waitFor, func(t *testing.T) {
			fc := newFakeCloud(t, false)
			fc.handle("messages", noAnswer)
			if waitFor == "PUBACK" {
				fc.holdPath, fc.hold, fc.held = "messages", make(chan struct{}), make(chan struct{}, 1)
				defer close(fc.hold) // before the broker stops
			}
			c, _ := fc.client(fc.assets(true))
			errs := make(chan error, 2)
			calls := 1
			go func() {
				_, err := c.Exchange(t.Context(), []message.Message{dataMessage("c-1")}, 0, 0)
				errs <- err
			}()
			if waitFor == "PUBACK" {
				<-fc.held // the broker holds this client's packets from here
			} else {
				calls++ // and a poll waiting for a push
				go func() {
					_, err := c.Exchange(t.Context(), nil, 1000, time.Minute)
					errs <- err
				}()
				eventually(t, "both calls", func() bool {
					return len(fc.published("messages")) == 1 && len(fc.published("messages/acceptBytes")) == 1
				})
			}
			start := time.Now()
			c.Close()
			for range calls {
				err := <-errs
				const want = "exchange messages: the mqtt transport was closed while the call waited for its answer (closed)"
				if errText(err) != want || ports.IsPermanent(err) || !errors.Is(err, ports.ErrClosed) {
					t.Errorf("call in flight: %s (permanent %v)\n want %s, transient", errText(err), ports.IsPermanent(err), want)
				}
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Close and the calls took %s", d)
			}
			if waitFor == "answer" {
				eventually(t, "the disconnect", func() bool { return slices.Contains(fc.eventLog(), "disconnect ep-1") })
			}
			_, err := c.Model(t.Context(), humidityURN)
			const want = `fetch device model "urn:com:oracle:iot:device:humidity_sensor": the mqtt transport is closed (closed)`
			if errText(err) != want || !ports.IsPermanent(err) {
				t.Errorf("call after Close: %s\n want %s", errText(err), want)
			}
		})
	}
}

// TestCloseWhileConnecting: Close cuts a connection attempt short (a
// server that never answers CONNECT) and waits for it.
func TestCloseWhileConnecting(t *testing.T) {
	addr, accepted := silentServer(t)
	a := (&fakeCloud{t: t}).assets(true)
	a.ServerURI = "mqtt://" + addr
	c, err := mqttadapter.New(mqttadapter.Config{Trust: porttest.NewMemTrustStore(a)})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 1)
	go func() {
		_, err := c.Exchange(t.Context(), nil, 0, 0)
		errs <- err
	}()
	<-accepted
	c.Close()
	const want = "exchange messages: the mqtt transport is closed (closed)"
	if err := <-errs; errText(err) != want {
		t.Errorf("error = %s\n want %s", errText(err), want)
	}
}

// TestLostConnection: a call whose connection ends before the answer fails
// at once as a transient error, and the next call connects again.
func TestLostConnection(t *testing.T) {
	fc := newFakeCloud(t, false)
	fc.handle("messages", noAnswer)
	c, _ := fc.client(fc.assets(true))
	errs := make(chan error, 1)
	go func() {
		_, err := c.Exchange(t.Context(), []message.Message{dataMessage("c-1")}, 0, 0)
		errs <- err
	}()
	eventually(t, "the publish", func() bool { return len(fc.published("messages")) == 1 })
	fc.restart()
	err := <-errs
	want := "exchange messages: the connection to " + fc.uri() + " was lost before the answer came"
	if errText(err) != want || ports.IsPermanent(err) {
		t.Errorf("error = %s\n want %s", errText(err), want)
	}
	fc.handle("messages", answer("[]"))
	if _, err := c.Exchange(t.Context(), []message.Message{dataMessage("c-1")}, 0, 0); err != nil {
		t.Errorf("the next call: %v", err)
	}
}

// TestConnectTimeout: a broker that never answers CONNECT fails the call
// after ConnectTimeout, as a transient error.
func TestConnectTimeout(t *testing.T) {
	addr, _ := silentServer(t)
	a := (&fakeCloud{t: t}).assets(true)
	a.ServerURI = "mqtt://" + addr
	c, err := mqttadapter.New(mqttadapter.Config{Trust: porttest.NewMemTrustStore(a), ConnectTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Exchange(t.Context(), nil, 0, 0)
	want := "exchange messages: connect: no connection to mqtt://" + addr + " within 200ms"
	if errText(err) != want || ports.IsPermanent(err) {
		t.Errorf("error = %s\n want %s", errText(err), want)
	}
}

// silentServer accepts connections on 127.0.0.1:0 and never answers; it
// signals each accept on the channel and closes everything at the end of
// the test.
func silentServer(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 16)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			accepted <- struct{}{}
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		for _, nc := range conns {
			nc.Close()
		}
	})
	return l.Addr().String(), accepted
}
