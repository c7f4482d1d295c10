package client_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/iotnode/iotnode/cloud/api"
	cloudclient "github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/cloud/launch"
	"github.com/iotnode/iotnode/domain/trust"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	humidityURN = "urn:com:oracle:iot:device:humidity_sensor"
	passphrase  = "correct horse battery staple"
	// kdf keeps the provisioning files cheap to write in tests.
	kdf = trust.MinIterations
)

// startCloud runs the reference cloud in-process on a free loopback port,
// with the humidity model added, until the test ends.
func startCloud(t testing.TB) *launch.Instance {
	t.Helper()
	return startCloudWith(t, launch.Options{})
}

// startCloudWith is startCloud with more options (MQTT); the data
// directory, the address and the KDF cost are set here.
func startCloudWith(t testing.TB, o launch.Options) *launch.Instance {
	t.Helper()
	o.DataDir, o.Listen, o.KDFIterations = t.TempDir(), "127.0.0.1:0", kdf
	inst, err := launch.Start(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := inst.Shutdown(ctx); err != nil {
			t.Errorf("shut down the cloud: %v", err)
		}
	})
	m, err := os.ReadFile(filepath.Join("..", "testdata", "devicemodels", "humidity_sensor.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inst.Client().AddModel(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	return inst
}

// provision registers a device of type typ (api.DeviceType*) and writes its
// provisioning file, mode 0600, into a new directory. It returns the path.
func provision(t testing.TB, inst *launch.Instance, typ, hardwareID string) string {
	t.Helper()
	path, err := provisionFile(t.Context(), inst.Client(), t.TempDir(), typ, hardwareID)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func provisionFile(ctx context.Context, c *cloudclient.Client, dir, typ, hardwareID string) (string, error) {
	return provisionFileFor(ctx, c, dir, typ, hardwareID, "")
}

// provisionFileFor is provisionFile for a transport ("" or "https", or
// "mqtt": the file names the cloud's MQTT broker).
func provisionFileFor(ctx context.Context, c *cloudclient.Client, dir, typ, hardwareID, transport string) (string, error) {
	dev, err := c.RegisterDevice(ctx, api.RegisterDevice{HardwareID: hardwareID, Type: typ})
	if err != nil {
		return "", err
	}
	file, err := c.ProvisioningFile(ctx, dev.ID, api.ProvisioningFileRequest{Passphrase: passphrase, Transport: transport})
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, hardwareID+".conf")
	return path, os.WriteFile(path, file, 0o600)
}

// localFile writes a provisioning file for a cloud that is never called
// (port 1 on loopback), with mode perm, and returns its path.
func localFile(t testing.TB, perm os.FileMode) string {
	t.Helper()
	data, err := trust.EncodeV2(&trust.Assets{
		ServerURI:    "https://127.0.0.1:1",
		ClientID:     "offline-sensor",
		SharedSecret: []byte("s3cret"),
	}, passphrase, rand.Reader, trust.WithIterations(kdf))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "device.conf")
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // umask may have removed bits
		t.Fatal(err)
	}
	return path
}

// wire is the part of a stored message the tests look at.
type wire struct {
	ClientID    string `json:"clientId"`
	Type        string `json:"type"`
	Source      string `json:"source"`
	Reliability string `json:"reliability"`
	Payload     struct {
		Format string         `json:"format"`
		Data   map[string]any `json:"data"`
	} `json:"payload"`
}

// awaitMessage polls the cloud until a message from source of type typ and
// format has field == want, or fails the test after 10 s.
func awaitMessage(t testing.TB, c *cloudclient.Client, source, typ, format, field string, want any) {
	t.Helper()
	if err := waitMessage(t.Context(), c, source, typ, format, field, want); err != nil {
		t.Fatal(err)
	}
}

func waitMessage(ctx context.Context, c *cloudclient.Client, source, typ, format, field string, want any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var seen []wire
	for {
		list, err := c.Messages(ctx, cloudclient.MessageQuery{Source: source, Type: typ})
		if err == nil {
			seen = seen[:0]
			for _, m := range list.Items {
				var w wire
				if err := json.Unmarshal(m.Message, &w); err != nil {
					return fmt.Errorf("stored message %s: %w", m.Message, err)
				}
				seen = append(seen, w)
				if w.Payload.Format == format && fmt.Sprint(w.Payload.Data[field]) == fmt.Sprint(want) {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no %s message from %s with format %s and %s=%v within 10 s (last error %v); saw %+v",
				typ, source, format, field, want, err, seen)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// exampleCloud starts a cloud for an Example, registers a device of type
// typ and writes its provisioning file. stop shuts the cloud down and
// removes every file. Examples cannot fail a test, so errors panic.
func exampleCloud(typ string) (path string, stop func()) {
	dir, err := os.MkdirTemp("", "client-example")
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	inst, err := launch.Start(ctx, launch.Options{DataDir: filepath.Join(dir, "cloud"), Listen: "127.0.0.1:0", KDFIterations: kdf})
	if err != nil {
		panic(err)
	}
	stop = func() {
		inst.Shutdown(ctx)
		os.RemoveAll(dir)
	}
	m, err := os.ReadFile(filepath.Join("..", "testdata", "devicemodels", "humidity_sensor.json"))
	if err == nil {
		_, err = inst.Client().AddModel(ctx, m)
	}
	if err == nil {
		path, err = provisionFile(ctx, inst.Client(), dir, typ, "example-"+strings.ToLower(typ))
	}
	if err != nil {
		stop()
		panic(err)
	}
	return path, stop
}
