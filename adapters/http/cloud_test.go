package http_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	httpadapter "github.com/iotnode/iotnode/adapters/http"
	"github.com/iotnode/iotnode/cloud"
	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
	"github.com/iotnode/iotnode/ports/porttest"
)

// realCloud is the reference cloud served over TLS on loopback.
type realCloud struct {
	srv   *httptest.Server
	admin *client.Client
	skew  atomic.Int64 // how far the cloud's clock is ahead of the real one
	stop  func() error
}

// exampleAdminToken is the admin token of the test clouds.
const exampleAdminToken = "admin-token-0123456789"

// newRealCloud starts the reference cloud with its store in dir; close
// stops it.
func newRealCloud(dir string) (*realCloud, error) {
	rc := &realCloud{}
	var handler atomic.Pointer[http.Handler]
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*handler.Load()).ServeHTTP(w, r)
	}))
	rc.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	rc.srv.StartTLS()
	s, err := cloud.Open(cloud.Config{
		DataDir:       dir,
		PublicURL:     rc.srv.URL,
		TrustAnchors:  [][]byte{rc.srv.Certificate().Raw},
		AdminToken:    exampleAdminToken,
		Now:           func() time.Time { return time.Now().Add(time.Duration(rc.skew.Load())) },
		KDFIterations: trust.MinIterations,
	})
	if err != nil {
		rc.srv.Close()
		return nil, fmt.Errorf("open cloud: %w", err)
	}
	h := s.Handler()
	handler.Store(&h)
	rc.stop = s.Close
	rc.admin, err = client.New(rc.srv.URL, exampleAdminToken, client.WithHTTPClient(rc.srv.Client()))
	if err != nil {
		rc.close()
		return nil, err
	}
	return rc, nil
}

// close stops the HTTP server, then the cloud.
func (rc *realCloud) close() {
	rc.srv.Close()
	_ = rc.stop()
}

func startCloud(t *testing.T) *realCloud {
	t.Helper()
	rc, err := newRealCloud(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.close)
	return rc
}

// TestRealCloud runs the whole device flow against the reference cloud:
// provisioning file, activation, messages both ways, long polling, models,
// indirect activation, policies, storage, and a token refresh with clock skew.
func TestRealCloud(t *testing.T) {
	rc := startCloud(t)
	ctx := t.Context()
	if _, err := rc.admin.AddModel(ctx, humidityModel(t)); err != nil {
		t.Fatal(err)
	}
	dev, err := rc.admin.RegisterDevice(ctx, api.RegisterDevice{HardwareID: "gw-1", Type: api.DeviceTypeGateway})
	if err != nil {
		t.Fatal(err)
	}
	file, err := rc.admin.ProvisioningFile(ctx, dev.ID, api.ProvisioningFileRequest{Passphrase: "correct horse"})
	if err != nil {
		t.Fatal(err)
	}
	assets, _, err := trust.Decode(file, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	store := porttest.NewMemTrustStore(assets)
	c, err := httpadapter.New(httpadapter.Config{Trust: store}) // TLS from the file's trust anchors
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)

	// Activation.
	policy, err := c.Policy(ctx)
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	key := deviceKey()
	if policy.KeyType != "RSA" || policy.KeySize != key.N.BitLen() {
		if key, err = rsa.GenerateKey(rand.Reader, policy.KeySize); err != nil {
			t.Fatal(err)
		}
	}
	spki, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	sign := func(data []byte) ([]byte, error) {
		sum := sha256.Sum256(data)
		return rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
	}
	act, err := c.ActivateDirect(ctx, ports.DirectActivation{PublicKey: spki, Sign: sign, ModelURNs: []string{
		humidityURN,
		"urn:oracle:iot:dcd:capability:direct_activation",
		"urn:oracle:iot:dcd:capability:indirect_activation",
		"urn:oracle:iot:dcd:capability:device_policy",
	}})
	if err != nil {
		t.Fatalf("activate: %v", err)
	}
	ep := act.EndpointID
	assets.EndpointID, assets.PrivateKey, assets.PublicKey = ep, pkcs8, spki
	if err := store.Save(assets); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Policy(ctx); !errors.Is(err, ports.ErrUnauthorized) {
		t.Errorf("policy after activation: %v, want ErrUnauthorized (already activated)", err)
	}

	// Messages: data up, an attribute set down, the response up.
	data := dataMessage()
	data.Source, data.EventTime, data.Data.Format = ep, time.Now(), humidityURN+":attributes"
	if _, err := c.Exchange(ctx, []message.Message{data}, 4192, 0); err != nil {
		t.Fatalf("send data: %v", err)
	}
	stored, err := rc.admin.Messages(ctx, client.MessageQuery{Source: ep, Type: "DATA"})
	if err != nil || len(stored.Items) != 1 || !strings.Contains(string(stored.Items[0].Message), `"humidity":40`) {
		t.Fatalf("stored messages = %+v, %v", stored, err)
	}
	reqID, err := rc.admin.SetAttribute(ctx, ep, humidityURN, "maxThreshold", 90)
	if err != nil {
		t.Fatal(err)
	}
	in, err := c.Exchange(ctx, nil, 4192, 5*time.Second)
	if err != nil || len(in) != 1 || in[0].Type != message.TypeRequest || in[0].ID != reqID {
		t.Fatalf("long poll = %+v, %v; want request %s", in, err, reqID)
	}
	resp := message.Message{ClientID: "resp-1", Source: ep, Destination: in[0].Source, EventTime: time.Now(),
		Priority: message.PriorityHigh, Reliability: message.BestEffort, Type: message.TypeResponse,
		Response: &message.Response{StatusCode: 200, URL: in[0].Request.URL, RequestID: in[0].ID, Body: []byte("OK")}}
	if _, err := c.Exchange(ctx, []message.Message{resp}, 4192, 0); err != nil {
		t.Fatalf("send response: %v", err)
	}
	if r, err := rc.admin.WaitRequest(ctx, reqID); err != nil || r.Status != api.RequestCompleted {
		t.Fatalf("request = %+v, %v; want COMPLETED", r, err)
	}
	start := time.Now()
	if in, err := c.Exchange(ctx, nil, 4192, time.Second); err != nil || len(in) != 0 || time.Since(start) < 900*time.Millisecond {
		t.Errorf("idle long poll = %v, %v after %s; want nothing after about 1s", in, err, time.Since(start))
	}
	bad := dataMessage()
	bad.Source, bad.ClientID = ep, ""
	var ce *ports.CloudError
	if _, err := c.Exchange(ctx, []message.Message{data, bad}, 4192, 0); !errors.As(err, &ce) || !ce.Permanent || ce.Status != 400 || ce.Index != 1 {
		t.Errorf("bad batch: %v, want a permanent 400 naming message 1", err)
	} else {
		t.Logf("bad batch: %v", err)
	}

	// Models.
	m, err := c.Model(ctx, humidityURN)
	if err != nil || m.URN != humidityURN {
		t.Fatalf("model: %v", err)
	}
	if _, err := c.Model(ctx, "urn:com:example:unknown"); !errors.Is(err, ports.ErrNotFound) {
		t.Errorf("unknown model: %v, want ErrNotFound", err)
	}

	// Indirect activation by the gateway.
	icd, err := c.ActivateIndirect(ctx, ports.IndirectActivation{HardwareID: "icd-1", ModelURNs: []string{humidityURN},
		Metadata: map[string]string{"manufacturer": "ACME", "serialNumber": "42"}})
	if err != nil || icd.EndpointID == "" || icd.EndpointID == ep {
		t.Fatalf("indirect activation = %+v, %v", icd, err)
	}

	// Device policies.
	raw, err := os.ReadFile("../../testdata/devicepolicies/humidity_sensor.policy.json")
	if err != nil {
		t.Fatal(err)
	}
	added, err := rc.admin.AddPolicy(ctx, raw, humidityURN)
	if err != nil {
		t.Fatal(err)
	}
	var p struct{ ID string }
	_ = json.Unmarshal(added, &p)
	if err := rc.admin.AssignPolicy(ctx, p.ID, api.PolicyAssignment{DeviceModel: humidityURN, Devices: []string{ep}}); err != nil {
		t.Fatal(err)
	}
	got, err := c.DevicePolicy(ctx, humidityURN, ep)
	if err != nil || !strings.Contains(string(got), `"id":"`+p.ID+`"`) {
		t.Errorf("device policy = %s, %v", got, err)
	}
	if got, err := c.DevicePolicyByID(ctx, humidityURN, p.ID); err != nil || !strings.Contains(string(got), "pipelines") {
		t.Errorf("policy by id = %s, %v", got, err)
	}
	if _, err := c.DevicePolicy(ctx, humidityURN, icd.EndpointID); !errors.Is(err, ports.ErrNotFound) {
		t.Errorf("policy of an unassigned device: %v, want ErrNotFound", err)
	}

	// Storage.
	u, _, err := c.StorageURL(ctx, "photo.jpg", http.MethodPut)
	if err != nil || !strings.HasPrefix(u, rc.srv.URL+"/storage/o/"+ep+"/photo.jpg?") {
		t.Errorf("storage URL = %q, %v", u, err)
	}

	// The cloud's clock jumps two hours: the cached token expires (401), the
	// new assertion is too old (403 currentTime), the offset is learnt and
	// the call still succeeds.
	rc.skew.Store(int64(2 * time.Hour))
	if _, err := c.Exchange(ctx, nil, 4192, 0); err != nil {
		t.Fatalf("exchange after the cloud's clock jumped: %v", err)
	}
	if off := c.ClockOffset(); off < 2*time.Hour-time.Minute || off > 2*time.Hour+time.Minute {
		t.Errorf("ClockOffset = %s, want about 2h", off)
	}
}
