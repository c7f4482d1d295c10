package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/cloud/launch"
	"github.com/iotnode/iotnode/domain/trust"
)

// testPassphrase is the passphrase of the tests' provisioning files.
const testPassphrase = "correct horse battery staple"

// result is what one in-process run of iotnode printed and returned.
type result struct {
	code           int
	stdout, stderr string
}

// runMain runs iotnode with args and env (KEY=VALUE) in-process.
func runMain(t *testing.T, ctx context.Context, m *Main, env []string, args ...string) result {
	t.Helper()
	if m == nil {
		m = NewMain()
	}
	if m.kdfIterations == 0 {
		m.kdfIterations = trust.MinIterations
	}
	m.Environ = func() []string { return env }
	m.Getenv = func(k string) string {
		for _, kv := range env {
			if key, v, ok := strings.Cut(kv, "="); ok && key == k {
				return v
			}
		}
		return ""
	}
	var out, errOut bytes.Buffer
	code := m.Run(ctx, args, &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// write writes a file (mode 0600) under dir and returns its path.
func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeModels copies the embedded demo models into dir/models.
func writeModels(t *testing.T, dir string) {
	t.Helper()
	for _, name := range []string{"humidity_sensor.json", "light_switch.json", "temperature_sensor.json"} {
		data, err := demoModels.ReadFile("models/" + name)
		if err != nil {
			t.Fatal(err)
		}
		write(t, dir, "models/"+name, string(data))
	}
}

// newFlagSet is a flag set as Run makes it.
func newFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// testCloud is an in-process iotcloud on 127.0.0.1 with the demo's models.
type testCloud struct {
	inst *launch.Instance
	cl   *client.Client
	// transport is that of the provisioning files provision writes: "" (the
	// cloud's HTTPS URL) or "mqtt" (its MQTT broker).
	transport string
}

func startCloud(t *testing.T) *testCloud {
	t.Helper()
	return startCloudWith(t, launch.Options{})
}

// startMQTTCloud is startCloud with the embedded MQTT broker on a free
// loopback port; its provisioning files name the broker.
func startMQTTCloud(t *testing.T) *testCloud {
	t.Helper()
	c := startCloudWith(t, launch.Options{MQTTListen: "127.0.0.1:0"})
	c.transport = "mqtt"
	return c
}

// startCloudWith starts a cloud with o; the data directory, the address and
// the KDF cost are set here.
func startCloudWith(t *testing.T, o launch.Options) *testCloud {
	t.Helper()
	o.DataDir, o.Listen, o.KDFIterations = t.TempDir(), "127.0.0.1:0", demoKDFIterations
	inst, err := launch.Start(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := inst.Shutdown(ctx); err != nil {
			t.Errorf("shut down the cloud: %v", err)
		}
	})
	if err := addDemoModels(t.Context(), inst.Client()); err != nil {
		t.Fatal(err)
	}
	return &testCloud{inst: inst, cl: inst.Client()}
}

// provision registers a device and writes its provisioning file (passphrase
// testPassphrase) to dir/device.prov, and the passphrase to dir/passphrase.
func (c *testCloud) provision(t *testing.T, dir string, gateway bool) api.Device {
	t.Helper()
	req := api.RegisterDevice{Type: api.DeviceTypeDirect}
	if gateway {
		req.Type = api.DeviceTypeGateway
	}
	dev, err := c.cl.RegisterDevice(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	file, err := c.cl.ProvisioningFile(t.Context(), dev.ID, api.ProvisioningFileRequest{Passphrase: testPassphrase, Transport: c.transport})
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, "device.prov", string(file))
	write(t, dir, "passphrase", testPassphrase+"\n")
	return dev
}
