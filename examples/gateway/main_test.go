package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/iotnode/iotnode/client"
	"github.com/iotnode/iotnode/cloud/api"
	cloudclient "github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/cloud/launch"
	"github.com/iotnode/iotnode/domain/trust"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is an io.Writer that the test reads while run writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunAgainstTheReferenceCloud(t *testing.T) {
	ctx := t.Context()
	inst, err := launch.Start(ctx, launch.Options{DataDir: t.TempDir(), Listen: "127.0.0.1:0", KDFIterations: trust.MinIterations})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := inst.Shutdown(sctx); err != nil {
			t.Error(err)
		}
	}()
	cloud := inst.Client()
	if _, err := cloud.AddModel(ctx, modelJSON); err != nil {
		t.Fatal(err)
	}
	reg, err := cloud.RegisterDevice(ctx, api.RegisterDevice{HardwareID: "gateway-example", Type: api.DeviceTypeGateway})
	if err != nil {
		t.Fatal(err)
	}
	const pass = "example passphrase"
	file, err := cloud.ProvisioningFile(ctx, reg.ID, api.ProvisioningFileRequest{Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gateway.conf")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config{
		File: path, Passphrase: pass,
		Duration: 2 * time.Second, Interval: 50 * time.Millisecond, Seed: 1,
		Logger:  slog.New(slog.DiscardHandler),
		Options: []client.Option{client.WithKDFIterations(trust.MinIterations)},
	}

	// Run twice: the second start finds the gateway activated and the
	// sensors registered, with the same endpoints.
	var outs []string
	for range 2 {
		out := &syncBuffer{}
		cfg.Out = out
		if err := run(ctx, cfg); err != nil {
			t.Fatalf("run: %v\n%s", err, out)
		}
		outs = append(outs, out.String())
	}
	gwd, err := cloud.Device(ctx, reg.ID)
	if err != nil {
		t.Fatal(err)
	}
	gateway := gwd.EndpointID
	if gateway == "" || !strings.Contains(outs[0], "activating "+path) || strings.Contains(outs[1], "activating") {
		t.Fatalf("gateway endpoint %q; first run:\n%s\nsecond run:\n%s", gateway, outs[0], outs[1])
	}

	devices, err := cloud.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for i := 1; i <= sensorCount; i++ {
		hw := hardwareID(gateway, i)
		for _, d := range devices.Items {
			if d.HardwareID != hw {
				continue
			}
			found++
			if d.Gateway != gateway || d.Metadata["manufacturer"] != sensorManufacturer ||
				d.Metadata["modelNumber"] != sensorModelNumber || d.Metadata["serialNumber"] != serialNumber(i) {
				t.Errorf("sensor %s at the cloud: gateway %q, metadata %v", hw, d.Gateway, d.Metadata)
			}
			line := fmt.Sprintf("sensor %s: endpoint %s\n", hw, d.EndpointID)
			for n, out := range outs {
				if !strings.Contains(out, line) {
					t.Errorf("run %d does not say %q:\n%s", n+1, line, out)
				}
			}
			awaitMessage(t, cloud, d.EndpointID, "DATA", modelURN+":attributes", func(data map[string]any) bool {
				_, ok := data["humidity"]
				return ok
			})
			// Above the default threshold (80) at least once in 40 readings.
			awaitMessage(t, cloud, d.EndpointID, "ALERT", alertURN, func(data map[string]any) bool {
				h, ok := data["humidity"].(float64)
				return ok && h > 80
			})
		}
	}
	if found != sensorCount {
		t.Errorf("the cloud knows %d of the %d sensors; devices: %+v", found, sensorCount, devices.Items)
	}
}

func TestRunRefusesABadInterval(t *testing.T) {
	err := run(t.Context(), config{File: "unused.conf", Passphrase: "p", Interval: 0})
	if err == nil || !strings.Contains(err.Error(), "interval 0s: expected more than 0") {
		t.Errorf("run with interval 0: %v", err)
	}
}

func TestEmbeddedModelIsTheHumiditySensor(t *testing.T) {
	var m struct {
		URN string `json:"urn"`
	}
	if err := json.Unmarshal(modelJSON, &m); err != nil || m.URN != modelURN {
		t.Errorf("embedded model: urn %q (%v), want %q", m.URN, err, modelURN)
	}
}

// awaitMessage polls the cloud until a message from source of type typ and
// format whose data satisfies ok arrives, or fails after 10 s.
func awaitMessage(t *testing.T, c *cloudclient.Client, source, typ, format string, ok func(map[string]any) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		list, err := c.Messages(ctx, cloudclient.MessageQuery{Source: source, Type: typ})
		if err == nil {
			for _, m := range list.Items {
				var w struct {
					Payload struct {
						Format string         `json:"format"`
						Data   map[string]any `json:"data"`
					} `json:"payload"`
				}
				if json.Unmarshal(m.Message, &w) == nil && w.Payload.Format == format && ok(w.Payload.Data) {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal(fmt.Errorf("no matching %s message from %s with format %s within 10 s (last error: %v)", typ, source, format, err))
		case <-time.After(50 * time.Millisecond):
		}
	}
}
