package device_test

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	httpadapter "github.com/iotnode/iotnode/adapters/http"
	"github.com/iotnode/iotnode/cloud"
	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports/porttest"
)

const adminToken = "admin-token-0123456789"

// startCloud serves the reference cloud over TLS on loopback and returns its
// enterprise client.
func startCloud(t *testing.T) *client.Client {
	t.Helper()
	var handler http.Handler = http.NotFoundHandler()
	var mu sync.RWMutex
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.RLock()
		h := handler
		mu.RUnlock()
		h.ServeHTTP(w, r)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	c, err := cloud.Open(cloud.Config{
		DataDir:       t.TempDir(),
		PublicURL:     srv.URL,
		TrustAnchors:  [][]byte{srv.Certificate().Raw},
		AdminToken:    adminToken,
		KDFIterations: trust.MinIterations,
	})
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	mu.Lock()
	handler = c.Handler()
	mu.Unlock()
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		c.Close()
	})
	admin, err := client.New(srv.URL, adminToken, client.WithHTTPClient(srv.Client()), client.WithPollInterval(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return admin
}

// TestAgainstTheReferenceCloud runs the library over HTTPS against the
// reference cloud: activation, a virtual device sending data, alerts and
// custom data, cloud-side sets and actions, and the resources reports.
func TestAgainstTheReferenceCloud(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	admin := startCloud(t)
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "devicemodels", "light_switch.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AddModel(ctx, raw); err != nil {
		t.Fatal(err)
	}
	reg, err := admin.RegisterDevice(ctx, api.RegisterDevice{HardwareID: "light-1"})
	if err != nil {
		t.Fatal(err)
	}
	file, err := admin.ProvisioningFile(ctx, reg.ID, api.ProvisioningFileRequest{Passphrase: "pass phrase"})
	if err != nil {
		t.Fatal(err)
	}
	assets, _, err := trust.Decode(file, "pass phrase")
	if err != nil {
		t.Fatal(err)
	}
	store := porttest.NewMemTrustStore(assets)
	transport, err := httpadapter.New(httpadapter.Config{Trust: store})
	if err != nil {
		t.Fatal(err)
	}
	defer transport.Close()
	dev, err := device.NewDirectlyConnectedDevice(device.Config{
		Trust: store, Messenger: transport, Activator: transport, Models: transport,
		ModelStore: &porttest.MemModelStore{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Activate(ctx, "urn:com:example:iot:device:light_switch"); err != nil {
		t.Fatal(err)
	}
	const urn = "urn:com:example:iot:device:light_switch"
	m, err := dev.DeviceModel(ctx, urn)
	if err != nil {
		t.Fatal(err)
	}
	vd, err := dev.CreateVirtualDevice(dev.EndpointID(), m)
	if err != nil {
		t.Fatal(err)
	}
	changes := make(chan device.ChangeEvent, 4)
	vd.OnChange(func(ev device.ChangeEvent) { changes <- ev })
	blinks := make(chan int64, 1)
	if err := vd.SetCallable("blink", func(_ context.Context, args map[string]model.Value) error {
		blinks <- args["value"].Int()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var errs []string
	var errMu sync.Mutex
	vd.OnError(func(ev device.ErrorEvent) {
		errMu.Lock()
		defer errMu.Unlock()
		errs = append(errs, ev.Err.Error())
	})

	if err := vd.Update().Set("brightness", 40).Set("label", "hall").Finish(); err != nil {
		t.Fatal(err)
	}
	if err := vd.CreateAlert(urn+":button_pressed").Set("presses", 3).Raise(); err != nil {
		t.Fatal(err)
	}
	if err := vd.CreateData(urn+":energy").Set("wattHours", 2.5).Set("since", time.UnixMilli(1700000000000)).Submit(); err != nil {
		t.Fatal(err)
	}

	// A cloud-side set and an action.
	id, err := admin.SetAttribute(ctx, dev.EndpointID(), urn, "power", true)
	if err != nil {
		t.Fatal(err)
	}
	req, err := admin.WaitRequest(ctx, id)
	if err != nil || req.Response == nil || req.Response.StatusCode != 200 {
		t.Fatalf("set power: %+v, %v", req, err)
	}
	select {
	case ev := <-changes:
		if len(ev.Changes) != 1 || ev.Changes[0].Name != "power" || !ev.Changes[0].New.Bool() {
			t.Errorf("change event %+v", ev.Changes)
		}
	case <-ctx.Done():
		t.Fatal("no change event")
	}
	id, err = admin.CallAction(ctx, dev.EndpointID(), urn, "blink", map[string]any{"value": 4})
	if err != nil {
		t.Fatal(err)
	}
	if req, err := admin.WaitRequest(ctx, id); err != nil || req.Response == nil || req.Response.StatusCode != 200 {
		t.Errorf("blink answered %+v, %v", req, err)
	}
	if n := <-blinks; n != 4 {
		t.Errorf("blink got %d", n)
	}
	id, err = admin.CallAction(ctx, dev.EndpointID(), urn, "toggle", nil)
	if err != nil {
		t.Fatal(err)
	}
	if req, err := admin.WaitRequest(ctx, id); err != nil || req.Response == nil || req.Response.StatusCode != 404 {
		t.Errorf("toggle without a callable answered %+v, %v", req.Response, err)
	}

	if err := dev.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	list, err := admin.Messages(ctx, client.MessageQuery{Source: dev.EndpointID(), Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, item := range list.Items {
		var msg message.Message
		if err := json.Unmarshal(item.Message, &msg); err != nil {
			t.Fatal(err)
		}
		key := string(msg.Type)
		switch {
		case msg.Data != nil:
			key += " " + msg.Data.Format
		case msg.Alert != nil:
			key += " " + msg.Alert.Format
		}
		seen[key]++
	}
	want := map[string]int{
		"DATA " + urn + ":attributes":      2, // the update and the echo of the power set
		"ALERT " + urn + ":button_pressed": 1,
		"DATA " + urn + ":energy":          1,
		"RESPONSE":                         3,
		"RESOURCES_REPORT":                 2,
	}
	for k, n := range want {
		if seen[k] != n {
			t.Errorf("the cloud holds %d %s, want %d (all: %v)", seen[k], k, n, seen)
		}
	}
	errMu.Lock()
	defer errMu.Unlock()
	if len(errs) > 0 {
		t.Errorf("OnError got %q", errs)
	}
}
