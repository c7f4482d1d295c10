package client_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotnode/iotnode/client"
	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/device"
)

// The constructor wires the HTTPS transport as the device's storage: an
// object goes up and comes back through the reference cloud's signed URLs,
// over the provisioning file's trust anchors.
func TestStorageObjectsThroughTheHTTPSTransport(t *testing.T) {
	inst := startCloud(t)
	path := provision(t, inst, api.DeviceTypeDirect, "camera-1")
	dcd, err := client.NewDirectlyConnectedDevice(path, passphrase, client.WithKDFIterations(kdf))
	if err != nil {
		t.Fatal(err)
	}
	defer closeDevice(t, dcd)
	if err := dcd.Activate(t.Context(), humidityURN); err != nil {
		t.Fatal(err)
	}

	up, err := dcd.CreateStorageObject("notes/today.txt", "text/plain")
	if err != nil {
		t.Fatal(err)
	}
	const content = "relative humidity stable at 55 %"
	if err := up.SetInput(func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(content)), nil }, -1); err != nil {
		t.Fatal(err)
	}
	if err := up.SetMetadata("Sensor", "hygrometer"); err != nil {
		t.Fatal(err)
	}
	if err := up.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantURI := inst.URL() + "/storage/o/" + dcd.EndpointID() + "/notes/today.txt"
	if up.URI() != wantURI || up.SyncStatus() != device.InSync || up.Length() != int64(len(content)) || up.LastModified().IsZero() {
		t.Errorf("after upload: URI %q (want %q), %s, %d bytes, modified %s", up.URI(), wantURI, up.SyncStatus(), up.Length(), up.LastModified())
	}

	down, err := dcd.CreateStorageObject("notes/today.txt", "")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "today.txt")
	if err := down.SetOutputPath(out); err != nil {
		t.Fatal(err)
	}
	if err := down.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil || string(got) != content {
		t.Fatalf("downloaded %q, %v; want %q", got, err, content)
	}
	if down.ContentType() != "text/plain" || down.Metadata()["sensor"] != "hygrometer" || down.URI() != wantURI {
		t.Errorf("downloaded object: %s, metadata %v, URI %q", down.ContentType(), down.Metadata(), down.URI())
	}
}
