package mqttbroker_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/launch"
)

const (
	capDirect   = "urn:oracle:iot:dcd:capability:direct_activation"
	humidityURN = "urn:com:oracle:iot:device:humidity_sensor"
	waitFor     = 10 * time.Second
)

var (
	keyOnce sync.Once
	key     *rsa.PrivateKey
)

// deviceKey is one 2048-bit key per test binary.
func deviceKey() *rsa.PrivateKey {
	keyOnce.Do(func() {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return key
}

// startCloud starts a cloud with o (on free loopback ports) and the example
// humidity model.
func startCloud(t *testing.T, o launch.Options) *launch.Instance {
	t.Helper()
	o.DataDir = t.TempDir()
	o.Listen = "127.0.0.1:0"
	o.KDFIterations = 1000
	if os.Getenv("MQTT_TEST_LOG") != "" {
		o.Logger = testLogger(t)
	}
	inst, err := launch.Start(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := inst.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	model, err := os.ReadFile("../../testdata/devicemodels/humidity_sensor.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inst.Client().AddModel(t.Context(), model); err != nil {
		t.Fatal(err)
	}
	return inst
}

// device is a test device speaking docs/mqtt.md with paho.golang (MQTT 5).
type device struct {
	t            *testing.T
	activationID string
	secret       string
	endpointID   string
	key          *rsa.PrivateKey
	broker       *url.URL
	tls          *tls.Config // nil: plain TCP
	// ignore, when set, drops answers it matches (see TestBridgeMosquitto).
	ignore func(*paho.Publish) bool

	cli  *paho.Client
	mu   sync.Mutex
	got  []*paho.Publish
	kick chan struct{}
	seq  int
}

func register(t *testing.T, inst *launch.Instance, broker string, tc *tls.Config) *device {
	t.Helper()
	d, err := inst.Client().RegisterDevice(t.Context(), api.RegisterDevice{HardwareID: "mqtt-" + t.Name() + "-" + fmt.Sprint(time.Now().UnixNano())})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(broker)
	if err != nil {
		t.Fatal(err)
	}
	return &device{t: t, activationID: d.ID, secret: d.SharedSecret, key: deviceKey(), broker: u, tls: tc, kick: make(chan struct{}, 1)}
}

// clone is a new, unconnected device with d's identity.
func (d *device) clone() *device {
	return &device{t: d.t, activationID: d.activationID, secret: d.secret, endpointID: d.endpointID,
		key: d.key, broker: d.broker, tls: d.tls, ignore: d.ignore, kick: make(chan struct{}, 1)}
}

// id is the client id: the endpoint id once activated.
func (d *device) id() string {
	if d.endpointID != "" {
		return d.endpointID
	}
	return d.activationID
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// assertion is the password of protocol.md §1 for the current id.
func (d *device) assertion() []byte {
	alg := "HS256"
	if d.endpointID != "" {
		alg = "RS256"
	}
	id := d.id()
	in := b64url([]byte(`{"typ":"JWT","alg":"`+alg+`"}`)) + "." +
		b64url(fmt.Appendf(nil, `{"iss":%q,"sub":%q,"aud":"oracle/iot/oauth2/token","exp":%d}`, id, id, time.Now().Add(15*time.Minute).Unix()))
	var sig []byte
	if d.endpointID == "" {
		m := hmac.New(sha256.New, []byte(d.secret))
		m.Write([]byte(in))
		sig = m.Sum(nil)
	} else {
		h := sha256.Sum256([]byte(in))
		var err error
		if sig, err = rsa.SignPKCS1v15(nil, d.key, crypto.SHA256, h[:]); err != nil {
			panic(err)
		}
	}
	return []byte(in + "." + b64url(sig))
}

// dial opens the transport to the broker.
func (d *device) dial(ctx context.Context) (net.Conn, error) {
	var nd net.Dialer
	if d.tls == nil {
		return nd.DialContext(ctx, "tcp", d.broker.Host)
	}
	td := tls.Dialer{NetDialer: &nd, Config: d.tls}
	return td.DialContext(ctx, "tcp", d.broker.Host)
}

// connect connects as id() with password pw (nil: the right assertion) and
// subscribes to devices/{id}/#.
func (d *device) connect(pw []byte) error {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(d.t.Context(), waitFor)
	defer cancel()
	if pw == nil {
		pw = d.assertion()
	}
	conn, err := d.dial(ctx)
	if err != nil {
		return err
	}
	cli := paho.NewClient(paho.ClientConfig{
		ClientID: d.id(),
		Conn:     packets.NewThreadSafeConn(conn), // a tls.Conn is not safe for concurrent writes
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			if d.ignore != nil && d.ignore(pr.Packet) {
				return true, nil
			}
			d.mu.Lock()
			d.got = append(d.got, pr.Packet)
			d.mu.Unlock()
			select {
			case d.kick <- struct{}{}:
			default:
			}
			return true, nil
		}},
	})
	ack, err := cli.Connect(ctx, &paho.Connect{
		ClientID: d.id(), Username: d.id(), UsernameFlag: true, Password: pw, PasswordFlag: true,
		KeepAlive: 30, CleanStart: true,
	})
	if err != nil {
		if ack != nil {
			return fmt.Errorf("%w (reason 0x%02x)", err, ack.ReasonCode)
		}
		return err
	}
	d.cli = cli
	sa, err := cli.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "devices/" + d.id() + "/#", QoS: 1}}})
	if err != nil {
		return err
	}
	if sa.Reasons[0] >= 0x80 {
		return fmt.Errorf("subscription refused: 0x%02x", sa.Reasons[0])
	}
	return nil
}

func (d *device) mustConnect() {
	d.t.Helper()
	if err := d.connect(nil); err != nil {
		d.t.Fatalf("connect as %s: %v", d.id(), err)
	}
}

func (d *device) disconnect() {
	if d.cli != nil {
		d.cli.Disconnect(&paho.Disconnect{ReasonCode: 0})
		d.cli = nil
	}
}

// publish publishes at QoS 1 with correlation data corr (nil: none).
func (d *device) publish(topic string, payload, corr []byte) (*paho.PublishResponse, error) {
	ctx, cancel := context.WithTimeout(d.t.Context(), waitFor)
	defer cancel()
	p := &paho.Publish{QoS: 1, Topic: topic, Payload: payload}
	if corr != nil {
		p.Properties = &paho.PublishProperties{CorrelationData: corr}
	}
	return d.cli.Publish(ctx, p)
}

// await removes and returns the first received publish that match accepts.
func (d *device) await(what string, match func(*paho.Publish) bool) *paho.Publish {
	d.t.Helper()
	deadline := time.After(waitFor)
	for {
		d.mu.Lock()
		for i, p := range d.got {
			if match(p) {
				d.got = append(d.got[:i], d.got[i+1:]...)
				d.mu.Unlock()
				return p
			}
		}
		d.mu.Unlock()
		select {
		case <-d.kick:
		case <-deadline:
			d.t.Fatalf("%s: nothing received in %s", what, waitFor)
		}
	}
}

func corrOf(p *paho.Publish) []byte {
	if p.Properties == nil {
		return nil
	}
	return p.Properties.CorrelationData
}

// call publishes payload on iotcs/{id}/path with fresh correlation data and
// returns the answer with the same correlation (on the path or its /error).
func (d *device) call(path string, payload []byte) *paho.Publish {
	d.t.Helper()
	d.seq++
	corr := fmt.Appendf(nil, "corr-%d", d.seq)
	if _, err := d.publish("iotcs/"+d.id()+"/"+path, payload, corr); err != nil {
		d.t.Fatalf("publish %s: %v", path, err)
	}
	return d.await(path+" answer", func(p *paho.Publish) bool { return bytes.Equal(corrOf(p), corr) })
}

// mustCall is call expecting a success answer on devices/{id}/path.
func (d *device) mustCall(path string, payload []byte) []byte {
	d.t.Helper()
	p := d.call(path, payload)
	if want := "devices/" + d.id() + "/" + path; p.Topic != want {
		d.t.Fatalf("%s: answer on %s: %s, want one on %s", path, p.Topic, p.Payload, want)
	}
	return p.Payload
}

// activationBody is the direct activation request of protocol.md §2b.
func (d *device) activationBody(models ...string) []byte {
	der, err := x509.MarshalPKIXPublicKey(&d.key.PublicKey)
	if err != nil {
		panic(err)
	}
	mac := hmac.New(sha256.New, []byte(d.secret))
	mac.Write([]byte(d.activationID))
	in := []byte(d.activationID + "\nRSA\nX.509\nHmacSHA256\n")
	in = append(in, mac.Sum(nil)...)
	in = append(in, der...)
	h := sha256.Sum256(in)
	sig, err := rsa.SignPKCS1v15(nil, d.key, crypto.SHA256, h[:])
	if err != nil {
		panic(err)
	}
	body, _ := json.Marshal(map[string]any{
		"certificationRequestInfo": map[string]any{
			"subject": d.activationID,
			"subjectPublicKeyInfo": map[string]any{"algorithm": "RSA", "publicKey": base64.StdEncoding.EncodeToString(der),
				"format": "X.509", "secretHashAlgorithm": "HmacSHA256"},
			"attributes": map[string]any{},
		},
		"signatureAlgorithm": "SHA256withRSA",
		"signature":          base64.StdEncoding.EncodeToString(sig),
		"deviceModels":       models,
	})
	return body
}

// activate runs docs/mqtt.md's activation: connect with the activation id,
// policy, direct activation, reconnect as the endpoint.
func (d *device) activate(models ...string) {
	d.t.Helper()
	d.mustConnect()
	pol := d.mustCall("activation/policy", []byte(`{"OSName":"Linux","OSVersion":"6"}`))
	if string(pol) != `{"keyType":"RSA","hashAlgorithm":"SHA256withRSA","keySize":2048}` {
		d.t.Fatalf("activation policy: %s", pol)
	}
	var ar struct{ EndpointID, EndpointState string }
	if err := json.Unmarshal(d.mustCall("activation/direct", d.activationBody(append(models, capDirect)...)), &ar); err != nil || ar.EndpointState != "ACTIVATED" || ar.EndpointID == "" {
		d.t.Fatalf("direct activation: %+v %v", ar, err)
	}
	d.disconnect()
	d.endpointID = ar.EndpointID
	d.mustConnect()
}

// dataMsg is a DATA message of the humidity model.
func dataMsg(clientID, source string, humidity int) string {
	return fmt.Sprintf(`{"clientId":%q,"source":%q,"destination":"","priority":"LOW","reliability":"GUARANTEED_DELIVERY","eventTime":%d,"type":"DATA","payload":{"format":%q,"data":{"humidity":%d}}}`,
		clientID, source, time.Now().UnixMilli(), humidityURN+":attributes", humidity)
}

func responseMsg(clientID, source, requestID string, status int) string {
	return fmt.Sprintf(`{"clientId":%q,"source":%q,"destination":"iotcloud","priority":"HIGH","reliability":"BEST_EFFORT","eventTime":%d,"type":"RESPONSE","payload":{"statusCode":%d,"url":"","requestId":%q,"headers":{},"body":""}}`,
		clientID, source, time.Now().UnixMilli(), status, requestID)
}

func batch(msgs ...string) []byte { return []byte("[" + strings.Join(msgs, ",") + "]") }
