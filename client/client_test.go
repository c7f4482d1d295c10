package client_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotnode/iotnode/adapters/fsstore"
	"github.com/iotnode/iotnode/client"
	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/trust"
)

func closeDevice(t testing.TB, c interface{ Close(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
}

func TestDirectlyConnectedDeviceActivatesSendsAndRestarts(t *testing.T) {
	inst := startCloud(t)
	path := provision(t, inst, api.DeviceTypeDirect, "humidity-1")
	ctx := t.Context()

	dcd, err := client.NewDirectlyConnectedDevice(path, passphrase, client.WithKDFIterations(kdf))
	if err != nil {
		t.Fatal(err)
	}
	if dcd.IsActivated() {
		t.Fatal("a new provisioning file is activated already")
	}
	if err := dcd.Activate(ctx, humidityURN); err != nil {
		t.Fatal(err)
	}
	endpoint := dcd.EndpointID()
	if endpoint == "" {
		t.Fatal("no endpoint ID after Activate")
	}
	m, err := dcd.DeviceModel(ctx, humidityURN)
	if err != nil {
		t.Fatal(err)
	}
	vd, err := dcd.CreateVirtualDevice(endpoint, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := vd.Set("humidity", 55); err != nil {
		t.Fatal(err)
	}
	closeDevice(t, dcd)
	awaitMessage(t, inst.Client(), endpoint, "DATA", humidityURN+":attributes", "humidity", 55)

	// What the constructor keeps on disk: the data directory next to the
	// file, the outbox, the fetched model, and the file upgraded with the
	// endpoint and keys.
	dataDir := path + client.DataDirSuffix
	if dcd.DataDir() != dataDir {
		t.Errorf("DataDir() = %q, want %q", dcd.DataDir(), dataDir)
	}
	fi, err := os.Stat(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("data directory mode %04o, want 0700", perm)
	}
	for _, f := range []string{client.OutboxFile, filepath.Join(client.ModelsDir, fsstore.ModelFileName(humidityURN))} {
		if _, err := os.Stat(filepath.Join(dataDir, f)); err != nil {
			t.Errorf("data directory: %v", err)
		}
	}

	// A restart: still activated as the same endpoint, the model comes from
	// the local store, and sending works without activating again.
	again, err := client.NewDirectlyConnectedDevice(path, passphrase, client.WithKDFIterations(kdf))
	if err != nil {
		t.Fatal(err)
	}
	defer closeDevice(t, again)
	if !again.IsActivated() || again.EndpointID() != endpoint {
		t.Fatalf("after restart: activated %v as %q, want activated as %q", again.IsActivated(), again.EndpointID(), endpoint)
	}
	m2, err := again.DeviceModel(ctx, humidityURN)
	if err != nil {
		t.Fatal(err)
	}
	vd2, err := again.CreateVirtualDevice(endpoint, m2)
	if err != nil {
		t.Fatal(err)
	}
	if err := vd2.Set("humidity", 61); err != nil {
		t.Fatal(err)
	}
	awaitMessage(t, inst.Client(), endpoint, "DATA", humidityURN+":attributes", "humidity", 61)
}

func TestGatewayRegistersDevicesAndRestarts(t *testing.T) {
	inst := startCloud(t)
	path := provision(t, inst, api.DeviceTypeGateway, "gateway-1")
	ctx := t.Context()

	sensors := []struct{ hardwareID, serial string }{{"hum-a", "SN-A"}, {"hum-b", "SN-B"}}
	register := func(gw *client.GatewayDevice) []string {
		t.Helper()
		var ids []string
		for _, s := range sensors {
			id, err := gw.RegisterDevice(ctx, s.hardwareID, map[string]string{
				device.MetaManufacturer: "Acme",
				device.MetaModelNumber:  "H-100",
				device.MetaSerialNumber: s.serial,
			}, humidityURN)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		return ids
	}

	gw, err := client.NewGatewayDevice(path, passphrase, client.WithKDFIterations(kdf))
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Activate(ctx); err != nil {
		t.Fatal(err)
	}
	gwID := gw.EndpointID()
	ids := register(gw)
	m, err := gw.DeviceModel(ctx, humidityURN)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		vd, err := gw.CreateVirtualDevice(id, m)
		if err != nil {
			t.Fatal(err)
		}
		if err := vd.Set("humidity", 40+i); err != nil {
			t.Fatal(err)
		}
	}
	closeDevice(t, gw)
	for i, id := range ids {
		awaitMessage(t, inst.Client(), id, "DATA", humidityURN+":attributes", "humidity", 40+i)
		d, err := inst.Client().Device(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if d.Gateway != gwID || d.Metadata[device.MetaSerialNumber] != sensors[i].serial || d.Metadata[device.MetaManufacturer] != "Acme" {
			t.Errorf("device %s at the cloud: gateway %q, metadata %v; want gateway %q and serial %q", id, d.Gateway, d.Metadata, gwID, sensors[i].serial)
		}
	}

	again, err := client.NewGatewayDevice(path, passphrase, client.WithKDFIterations(kdf))
	if err != nil {
		t.Fatal(err)
	}
	defer closeDevice(t, again)
	if again.EndpointID() != gwID {
		t.Fatalf("gateway after restart: endpoint %q, want %q", again.EndpointID(), gwID)
	}
	if got := register(again); strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Errorf("indirectly connected devices after restart: %v, want the same endpoints %v", got, ids)
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name string
		path func(t *testing.T) string
		pass string
		opts []client.Option
		is   error    // errors.Is target, if any
		want []string // substrings of the error
	}{
		{
			name: "missing file",
			path: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope.conf") },
			pass: passphrase, is: fs.ErrNotExist, want: []string{"new directly connected device", "nope.conf"},
		},
		{
			name: "wrong passphrase",
			path: func(t *testing.T) string { return localFile(t, 0o600) },
			pass: "wrong", is: trust.ErrPassphrase, want: []string{"device.conf", "wrong passphrase or damaged file"},
		},
		{
			name: "world-readable file",
			path: func(t *testing.T) string { return localFile(t, 0o644) },
			pass: passphrase, want: []string{"device.conf", "0644"},
		},
		{
			name: "empty path",
			path: func(t *testing.T) string { return "" },
			pass: passphrase, want: []string{"provisioning file path is empty"},
		},
		{
			name: "every bad option at once",
			path: func(t *testing.T) string { return localFile(t, 0o600) },
			pass: passphrase,
			opts: []client.Option{client.WithDataDir(""), client.WithHTTPTimeout(-time.Second), client.WithOutboxLimits(-1, 0)},
			want: []string{"option WithDataDir", "option WithHTTPTimeout: -1s", "option WithOutboxLimits"},
		},
		{
			name: "bad device option",
			path: func(t *testing.T) string { return localFile(t, 0o600) },
			pass: passphrase,
			opts: []client.Option{client.WithDeviceOptions(device.WithRequestBufferSize(10))},
			want: []string{"option WithRequestBufferSize: 10, expected at least 256"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path(t)
			dcd, err := client.NewDirectlyConnectedDevice(path, tt.pass, tt.opts...)
			if err == nil {
				closeDevice(t, dcd)
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q does not wrap %v", err, tt.is)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), passphrase) {
				t.Errorf("error %q shows the passphrase", err)
			}
			if path != "" {
				// A failed constructor releases what it opened: the same
				// data directory can be opened by the next attempt.
				if _, serr := os.Stat(path + client.DataDirSuffix + "/" + client.OutboxFile); serr == nil {
					ok, err := client.NewDirectlyConnectedDevice(path, passphrase)
					if err != nil {
						t.Fatalf("after a failed open: %v", err)
					}
					closeDevice(t, ok)
				}
			}
		})
	}
}

func TestInsecurePermissionsOption(t *testing.T) {
	path := localFile(t, 0o644)
	dcd, err := client.NewDirectlyConnectedDevice(path, passphrase, client.WithInsecurePermissions())
	if err != nil {
		t.Fatal(err)
	}
	closeDevice(t, dcd)
}

func TestDataDirAndModelStoreOptions(t *testing.T) {
	path := localFile(t, 0o600)
	data := filepath.Join(t.TempDir(), "state")
	models := filepath.Join(t.TempDir(), "models")
	dcd, err := client.NewDirectlyConnectedDevice(path, passphrase, client.WithDataDir(data), client.WithModelStore(models))
	if err != nil {
		t.Fatal(err)
	}
	defer closeDevice(t, dcd)
	if dcd.DataDir() != data {
		t.Errorf("DataDir() = %q, want %q", dcd.DataDir(), data)
	}
	for _, p := range []string{filepath.Join(data, client.OutboxFile), models} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(path + client.DataDirSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the default data directory was made although WithDataDir was given (stat: %v)", err)
	}
	if st := dcd.OutboxStats(); st.Queued != 0 {
		t.Errorf("a new outbox holds %d messages", st.Queued)
	}
}

func TestSecondProcessIsRefused(t *testing.T) {
	// Two devices over one data directory would send the same messages
	// twice: the outbox lock refuses the second.
	path := localFile(t, 0o600)
	first, err := client.NewDirectlyConnectedDevice(path, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	defer closeDevice(t, first)
	second, err := client.NewGatewayDevice(path, passphrase)
	if err == nil {
		closeDevice(t, second)
		t.Fatal("a second device opened the same data directory")
	}
	if want := filepath.Join(path+client.DataDirSuffix, client.OutboxFile); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "another process") {
		t.Errorf("error %q does not name the outbox %s held by another process", err, want)
	}
}

func TestCloseIsIdempotentAndConcurrent(t *testing.T) {
	path := localFile(t, 0o600)
	dcd, err := client.NewDirectlyConnectedDevice(path, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { closeDevice(t, dcd) })
	}
	wg.Wait()
	closeDevice(t, dcd)
	if err := dcd.Activate(t.Context(), humidityURN); !errors.Is(err, device.ErrClosed) {
		t.Errorf("Activate after Close: %v, want ErrClosed", err)
	}
	// Everything was released: the same files open again.
	again, err := client.NewDirectlyConnectedDevice(path, passphrase)
	if err != nil {
		t.Fatalf("reopen after Close: %v", err)
	}
	closeDevice(t, again)
}
