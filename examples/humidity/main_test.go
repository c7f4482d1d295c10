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
	reg, err := cloud.RegisterDevice(ctx, api.RegisterDevice{HardwareID: "humidity-example"})
	if err != nil {
		t.Fatal(err)
	}
	const pass = "example passphrase"
	file, err := cloud.ProvisioningFile(ctx, reg.ID, api.ProvisioningFileRequest{Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "humidity.conf")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}

	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { // owned by the test: it waits on done below
		done <- run(ctx, config{
			File: path, Passphrase: pass,
			Duration: 4 * time.Second, Interval: 50 * time.Millisecond, Seed: 1,
			Out: out, Logger: slog.New(slog.DiscardHandler),
			Options: []client.Option{client.WithKDFIterations(trust.MinIterations)},
		})
	}()

	// The device activates itself and reports.
	endpoint := ""
	for endpoint == "" {
		d, err := cloud.Device(ctx, reg.ID)
		if err != nil {
			t.Fatal(err)
		}
		endpoint = d.EndpointID
		select {
		case err := <-done:
			t.Fatalf("run returned before activating: %v\n%s", err, out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	awaitMessage(t, cloud, endpoint, "DATA", modelURN+":attributes", func(data map[string]any) bool {
		_, ok := data["humidity"]
		return ok
	})

	// The cloud lowers the threshold: OnChange takes it, readings above 60
	// raise the alert.
	rid, err := cloud.SetAttribute(ctx, endpoint, modelURN, "maxThreshold", 60)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := cloud.WaitRequest(wctx, rid)
	if err != nil {
		t.Fatal(err)
	}
	if req.Response == nil || req.Response.StatusCode != 200 {
		t.Fatalf("set maxThreshold: request %+v, want a 200 response", req)
	}
	awaitMessage(t, cloud, endpoint, "ALERT", alertURN, func(data map[string]any) bool {
		h, ok := data["humidity"].(float64)
		return ok && h > 60
	})

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, out)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after its duration")
	}
	for _, want := range []string{"activating " + path, "endpoint " + endpoint, "maxThreshold is now 60%", "alert raised"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
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
