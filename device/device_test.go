package device

import (
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
	"github.com/iotnode/iotnode/ports/porttest"
)

func TestConfigValidate(t *testing.T) {
	r := newRig(true)
	tests := []struct {
		name string
		cfg  Config
		opts []Option
		want string
	}{
		{
			name: "nothing",
			want: "new directly connected device: config: Trust is nil, expected the device's trust store (the opened provisioning file)\n" +
				"config: Messenger is nil, expected the cloud transport that sends and receives messages\n" +
				"config: Activator is nil, expected the cloud transport that activates devices\n" +
				"config: Models is nil, expected the cloud transport that fetches device models",
		},
		{
			name: "bad options",
			cfg:  r.cfg,
			opts: []Option{WithPollingInterval(0), WithBackoff(time.Second, time.Millisecond), WithRequestBufferSize(10),
				WithLongPolling(true, 0), WithBatchDelay(-1), WithMaxMessagesPerConnection(0)},
			want: "new directly connected device: option WithPollingInterval: 0s, expected more than 0\n" +
				"option WithMaxMessagesPerConnection: 0, expected at least 1\n" +
				"option WithBackoff: limit 1ms is below base 1s, expected limit >= base\n" +
				"option WithRequestBufferSize: 10, expected at least 256\n" +
				"option WithLongPolling timeout: 0s, expected more than 0\n" +
				"option WithBatchDelay: -1ns, expected 0 or more",
		},
		{
			name: "more bad options",
			cfg:  r.cfg,
			opts: []Option{WithSettleTime(-time.Second), WithCloseTimeout(0), WithAuthBreaker(0, 0), WithOutboxBytes(1),
				WithCallbackQueue(0), WithMaxBatchBytes(10), WithAttributeHandlerTimeout(0)},
			want: "new directly connected device: option WithMaxBatchBytes: 10, expected at least 1024\n" +
				"option WithSettleTime: -1s, expected 0 or more\n" +
				"option WithCloseTimeout: 0s, expected more than 0\n" +
				"option WithAuthBreaker failures: 0, expected at least 1\n" +
				"option WithAuthBreaker pause: 0s, expected more than 0\n" +
				"option WithOutboxBytes: 1, expected at least 1024\n" +
				"option WithCallbackQueue: 0, expected at least 1\n" +
				"option WithAttributeHandlerTimeout: 0s, expected more than 0",
		},
		{
			name: "bad qos",
			cfg:  r.cfg,
			opts: []Option{WithDataQoS(9, message.BestEffort), WithAlertQoS(message.PriorityHigh, -1)},
			want: "new directly connected device: option WithDataQoS: priority Priority(9), reliability BEST_EFFORT, expected one of the message package's constants\n" +
				"option WithAlertQoS: priority HIGH, reliability Reliability(-1), expected one of the message package's constants",
		},
		{
			name: "trust store fails",
			cfg:  Config{Trust: porttest.NewMemTrustStore(nil), Messenger: r.cloud, Activator: r.cloud, Models: r.cloud},
			want: "new directly connected device: load trusted assets: trusted assets: not found",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := NewDirectlyConnectedDevice(tt.cfg, tt.opts...)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error:\n%v\nwant:\n%s", err, tt.want)
			}
			if d != nil {
				t.Fatal("a device came back with the error")
			}
		})
	}
	t.Run("gateway", func(t *testing.T) {
		_, err := NewGatewayDevice(Config{Trust: r.trust, Messenger: r.cloud, Activator: r.cloud})
		want := "new gateway device: config: Models is nil, expected the cloud transport that fetches device models"
		if err == nil || err.Error() != want {
			t.Fatalf("error %v, want %s", err, want)
		}
	})
}

func TestActivate(t *testing.T) {
	r := newRig(false)
	d := r.device(t)
	if d.IsActivated() || d.EndpointID() != "" {
		t.Fatal("a fresh device says it is activated")
	}
	if err := d.Activate(t.Context(), humidityURN, humidityURN); err != nil {
		t.Fatal(err)
	}
	if !d.IsActivated() || d.EndpointID() != testEP {
		t.Fatalf("after Activate: activated %v, endpoint %q", d.IsActivated(), d.EndpointID())
	}
	req := r.cloud.direct[0]
	wantURNs := []string{humidityURN, model.CapDirectActivation, model.CapDevicePolicy, model.CapMessageDispatcher, model.CapDiagnostics}
	if !slices.Equal(req.ModelURNs, wantURNs) {
		t.Errorf("model URNs %q, want %q", req.ModelURNs, wantURNs)
	}
	if !r.cloud.signedOK {
		t.Error("the activation proof does not verify with the submitted public key")
	}
	a, err := r.trust.Load()
	if err != nil {
		t.Fatal(err)
	}
	if a.EndpointID != testEP {
		t.Errorf("stored endpoint %q, want %q", a.EndpointID, testEP)
	}
	key, err := x509.ParsePKCS8PrivateKey(a.PrivateKey)
	if err != nil {
		t.Fatalf("stored private key is not PKCS#8: %v", err)
	}
	pub, err := x509.ParsePKIXPublicKey(a.PublicKey)
	if err != nil {
		t.Fatalf("stored public key is not SPKI: %v", err)
	}
	if !key.(*rsa.PrivateKey).PublicKey.Equal(pub) {
		t.Error("stored keys do not belong together")
	}
	if err := a.Validate(); err != nil {
		t.Errorf("stored assets do not validate: %v", err)
	}

	// Restart: the new device reads the endpoint from the store.
	d2 := r.device(t)
	if d2.EndpointID() != testEP {
		t.Errorf("restarted device endpoint %q, want %q", d2.EndpointID(), testEP)
	}
	err = d2.Activate(t.Context())
	want := `activate: the device is already activated as endpoint "dev-ep-1"`
	if err == nil || err.Error() != want {
		t.Errorf("second activation: %v, want %s", err, want)
	}
}

func TestActivateGatewayCapabilities(t *testing.T) {
	r := newRig(false)
	g := r.gateway(t)
	if err := g.Activate(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := []string{model.CapDirectActivation, model.CapDevicePolicy, model.CapIndirectActivation, model.CapMessageDispatcher, model.CapDiagnostics}
	if got := r.cloud.direct[0].ModelURNs; !slices.Equal(got, want) {
		t.Errorf("model URNs %q, want %q", got, want)
	}
}

func TestActivateErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(r *rig)
		urns  []string
		want  string
	}{
		{
			name:  "key type",
			setup: func(r *rig) { r.cloud.policy.KeyType = "EC" },
			want:  `activate: the activation policy asks for a "EC" key, expected RSA`,
		},
		{
			name:  "key size",
			setup: func(r *rig) { r.cloud.policy.KeySize = 1024 },
			want:  "activate: the activation policy asks for a 1024-bit key, expected 2048 to 8192 bits",
		},
		{
			name:  "hash",
			setup: func(r *rig) { r.cloud.policy.HashAlgorithm = "MD5withRSA" },
			want:  `activate: the activation policy asks for the hash algorithm "MD5withRSA", expected SHA256withRSA, SHA384withRSA or SHA512withRSA`,
		},
		{
			name: "policy call",
			setup: func(r *rig) {
				r.cloud.policyErr = &ports.CloudError{Op: "get activation policy", Status: 401, Index: -1, Err: ports.ErrUnauthorized}
			},
			want: "activate: get activation policy: get activation policy: cloud answered 401: unauthorized",
		},
		{
			name:  "activation call",
			setup: func(r *rig) { r.cloud.directErr = errors.New("connection refused") },
			want:  "activate: connection refused",
		},
		{
			name:  "empty urn",
			setup: func(r *rig) {},
			urns:  []string{humidityURN, " "},
			want:  "activate: model URN 2 is empty, expected a device model URN",
		},
		{
			name:  "store fails",
			setup: func(r *rig) { r.cfg.Trust = failingTrust{r.trust} },
			want: `activate: the cloud activated endpoint "dev-ep-1" but saving it to the trust store failed (the provisioning file must be made again): ` +
				"write /x/dev.conf: disk full",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(false)
			tt.setup(r)
			d := r.device(t)
			err := d.Activate(t.Context(), tt.urns...)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v\nwant  %s", err, tt.want)
			}
			if d.IsActivated() {
				t.Fatal("activated after an error")
			}
		})
	}
	t.Run("key generation", func(t *testing.T) {
		r := newRig(false)
		d := r.device(t, func(s *settings) {
			s.genKey = func(int) (*rsa.PrivateKey, error) { return nil, errors.New("no entropy") }
		})
		want := "activate: generate a 2048-bit RSA key: no entropy"
		if err := d.Activate(t.Context()); err == nil || err.Error() != want {
			t.Fatalf("error %v, want %s", err, want)
		}
	})
	t.Run("canceled while another activates", func(t *testing.T) {
		r := newRig(false)
		d := r.device(t)
		d.activating <- struct{}{}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		want := "activate: context canceled"
		if err := d.Activate(ctx); err == nil || err.Error() != want {
			t.Fatalf("error %v, want %s", err, want)
		}
	})
	t.Run("closed", func(t *testing.T) {
		r := newRig(false)
		d := r.device(t)
		closeDevice(t, d)
		if err := d.Activate(t.Context()); !errors.Is(err, ErrClosed) || err.Error() != "activate: device closed" {
			t.Fatalf("error %v, want ErrClosed", err)
		}
	})
}

func TestDeviceModel(t *testing.T) {
	humidity := loadModel(t, "humidity_sensor")
	t.Run("fetched, stored and cached", func(t *testing.T) {
		r := newRig(true)
		store := &porttest.MemModelStore{}
		r.cfg.ModelStore = store
		r.cloud.models[humidityURN] = humidity
		d := r.device(t)
		for range 2 {
			m, err := d.DeviceModel(t.Context(), humidityURN)
			if err != nil || m != humidity {
				t.Fatalf("DeviceModel = %v, %v", m, err)
			}
		}
		if r.cloud.modelCalls != 1 {
			t.Errorf("%d cloud calls, want 1", r.cloud.modelCalls)
		}
		if m, err := store.Load(humidityURN); err != nil || m != humidity {
			t.Errorf("store holds %v, %v", m, err)
		}
	})
	t.Run("from the store before activation", func(t *testing.T) {
		r := newRig(false)
		store := &porttest.MemModelStore{}
		if err := store.Save(humidity); err != nil {
			t.Fatal(err)
		}
		r.cfg.ModelStore = store
		d := r.device(t)
		if m, err := d.DeviceModel(t.Context(), humidityURN); err != nil || m != humidity {
			t.Fatalf("DeviceModel = %v, %v", m, err)
		}
		if r.cloud.modelCalls != 0 {
			t.Errorf("%d cloud calls, want 0", r.cloud.modelCalls)
		}
	})
	t.Run("corrupt store entry is refetched", func(t *testing.T) {
		r := newRig(true)
		r.cfg.ModelStore = corruptStore{}
		r.cloud.models[humidityURN] = humidity
		d := r.device(t)
		if m, err := d.DeviceModel(t.Context(), humidityURN); err != nil || m != humidity {
			t.Fatalf("DeviceModel = %v, %v", m, err)
		}
		if !contains(r.logs.String(), "device model in the local store is unusable; fetching it again") {
			t.Errorf("the corrupt entry was not logged:\n%s", r.logs)
		}
		if !contains(r.logs.String(), "device model not saved to the local store") {
			t.Errorf("the failed save was not logged:\n%s", r.logs)
		}
	})
	tests := []struct {
		name      string
		activated bool
		urn       string
		models    map[string]*model.DeviceModel
		want      string
		notFound  bool
	}{
		{name: "empty", activated: true, urn: "", want: "device model: the URN is empty, expected a device model URN such as urn:com:example:sensor"},
		{name: "not activated", urn: humidityURN, want: `device model "urn:com:oracle:iot:device:humidity_sensor": device not activated: call Activate first`},
		{name: "unknown", activated: true, urn: "urn:x", notFound: true,
			want: `device model "urn:x": get device model: cloud answered 404: device model "urn:x": not found`},
		{name: "wrong urn", activated: true, urn: "urn:x", models: map[string]*model.DeviceModel{"urn:x": humidity},
			want: `device model "urn:x": the cloud answered with model "urn:com:oracle:iot:device:humidity_sensor", expected that URN`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(tt.activated)
			for k, v := range tt.models {
				r.cloud.models[k] = v
			}
			_, err := r.device(t).DeviceModel(t.Context(), tt.urn)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v\nwant  %s", err, tt.want)
			}
			if errors.Is(err, ports.ErrNotFound) != tt.notFound {
				t.Fatalf("errors.Is(err, ErrNotFound) = %v, want %v", !tt.notFound, tt.notFound)
			}
		})
	}
}

// corruptStore is a model store whose entries are all corrupt and which
// cannot save.
type corruptStore struct{}

func (corruptStore) Load(urn string) (*model.DeviceModel, error) {
	return nil, fmt.Errorf("device model store: dm-x.json: invalid JSON at line 1")
}
func (corruptStore) Save(*model.DeviceModel) error { return errors.New("read-only file system") }

func TestCreateVirtualDeviceErrors(t *testing.T) {
	m := loadModel(t, "humidity_sensor")
	tests := []struct {
		name      string
		activated bool
		endpoint  string
		model     *model.DeviceModel
		closed    bool
		want      string
	}{
		{name: "nil model", activated: true, endpoint: testEP, want: "create virtual device: the device model is nil, expected one from DeviceModel or model.Parse"},
		{name: "no urn", activated: true, endpoint: testEP, model: &model.DeviceModel{}, want: "create virtual device: the device model has no URN"},
		{name: "no endpoint", activated: true, model: m, want: "create virtual device: the endpoint ID is empty, expected the device's own EndpointID()"},
		{name: "not activated", endpoint: testEP, model: m, want: "create virtual device: device not activated: call Activate first"},
		{name: "closed", activated: true, endpoint: testEP, model: m, closed: true, want: "create virtual device: device closed"},
		{name: "other endpoint", activated: true, endpoint: "other", model: m,
			want: `create virtual device: endpoint "other" is not this device's endpoint "dev-ep-1"; only a GatewayDevice creates virtual devices for other endpoints`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newRig(tt.activated).device(t)
			if tt.closed {
				closeDevice(t, d)
			}
			v, err := d.CreateVirtualDevice(tt.endpoint, tt.model)
			if err == nil || err.Error() != tt.want || v != nil {
				t.Fatalf("error %v\nwant  %s", err, tt.want)
			}
		})
	}
	t.Run("start", func(t *testing.T) {
		d := newRig(false).device(t)
		if err := d.Start(); !errors.Is(err, ErrNotActivated) || err.Error() != "start: device not activated: call Activate first" {
			t.Fatalf("Start before activation: %v", err)
		}
	})
}

func TestGatewayRegisterDevice(t *testing.T) {
	r := newRig(true)
	assets, _ := r.trust.Load()
	assets.Devices = []trust.ConnectedDevice{{HardwareID: "hw-2", SharedSecret: []byte("icd-secret")}}
	if err := r.trust.Save(assets); err != nil {
		t.Fatal(err)
	}
	g := r.gateway(t)
	meta := map[string]string{MetaManufacturer: "Acme", MetaModelNumber: "M1", MetaSerialNumber: "S1", "vendorKey": "v"}

	ep, err := g.RegisterDevice(t.Context(), "hw-1", meta, humidityURN)
	if err != nil || ep != "icd-hw-1" {
		t.Fatalf("RegisterDevice = %q, %v", ep, err)
	}
	first := r.cloud.indirect[0]
	if first.HardwareID != "hw-1" || !slices.Equal(first.ModelURNs, []string{humidityURN}) || first.Metadata["vendorKey"] != "v" ||
		first.Metadata[MetaSerialNumber] != "S1" || first.Signature != nil {
		t.Errorf("indirect activation %+v", first)
	}

	if _, err := g.RegisterDevice(t.Context(), "hw-2", nil, humidityURN, lightURN); err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, []byte("icd-secret"))
	mac.Write([]byte(testEP))
	if got := r.cloud.indirect[1].Signature; !hmac.Equal(got, mac.Sum(nil)) {
		t.Errorf("signature %x, want HMAC-SHA256(secret, gateway endpoint)", got)
	}

	errTests := []struct {
		name string
		hw   string
		meta map[string]string
		urns []string
		want string
	}{
		{name: "no hardware id", hw: "", urns: []string{humidityURN}, want: "register device: the hardware ID is empty, expected the device's activation ID"},
		{name: "no model", hw: "hw-3", want: `register device "hw-3": no device model URN, expected at least one`},
		{name: "empty model", hw: "hw-3", urns: []string{""}, want: `register device "hw-3": model URN 1 is empty, expected a device model URN`},
		{name: "reserved key", hw: "hw-3", urns: []string{humidityURN}, meta: map[string]string{"hardwareId": "x"},
			want: `register device "hw-3": metadata key "hardwareId" is reserved or empty, expected a key such as "serialNumber" or a vendor key`},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := g.RegisterDevice(t.Context(), tt.hw, tt.meta, tt.urns...); err == nil || err.Error() != tt.want {
				t.Fatalf("error %v\nwant  %s", err, tt.want)
			}
		})
	}
	t.Run("not activated", func(t *testing.T) {
		g := newRig(false).gateway(t)
		_, err := g.RegisterDevice(t.Context(), "hw-1", nil, humidityURN)
		if !errors.Is(err, ErrNotActivated) || err.Error() != `register device "hw-1": device not activated: call Activate first` {
			t.Fatalf("error %v", err)
		}
	})
}

func TestNewUUID(t *testing.T) {
	seen := map[string]bool{}
	before := time.Now().UnixMilli()
	for range 100 {
		id := newUUID()
		if len(id) != 36 || id[14] != '7' || !strings.ContainsRune("89ab", rune(id[19])) || strings.Count(id, "-") != 4 {
			t.Fatalf("%q is not a version 7 UUID", id)
		}
		ms, err := strconv.ParseInt(strings.ReplaceAll(id[:13], "-", ""), 16, 64)
		if err != nil || ms < before || ms > time.Now().UnixMilli() {
			t.Fatalf("%q: timestamp %d (%v), want the time it was made, %d or later", id, ms, err, before)
		}
		if seen[id] {
			t.Fatalf("%q repeated", id)
		}
		seen[id] = true
	}
}
