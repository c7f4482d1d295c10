package integration

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
	cloudclient "github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/message"
)

// A camera uploads a 5 MB snapshot through the reference cloud's signed
// URLs, links it to its URI attribute (the DATA message waits for the
// upload) and downloads it again.
func TestStorageObjectUploadLinkAndDownload(t *testing.T) {
	c := startCloud(t)
	path := provision(t, c, api.DeviceTypeDirect, "camera-1")
	d, vd := activated(t, path, lightURN)
	endpoint := d.EndpointID()
	var errs []device.ErrorEvent
	vd.OnError(func(ev device.ErrorEvent) { errs = append(errs, ev) })

	snapshot := make([]byte, 5<<20)
	rand.Read(snapshot)
	file := filepath.Join(t.TempDir(), "snap.jpg")
	if err := os.WriteFile(file, snapshot, 0o600); err != nil {
		t.Fatal(err)
	}
	obj, err := d.CreateStorageObject("snap.jpg", "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	// The upload starts only when the test opens the gate, so that the
	// test can see the message held while later ones go out.
	gate := make(chan struct{})
	opened := false
	defer func() {
		if !opened {
			close(gate)
		}
	}()
	err = obj.SetInput(func() (io.ReadCloser, error) {
		<-gate
		return os.Open(file)
	}, int64(len(snapshot)))
	if err != nil {
		t.Fatal(err)
	}
	synced := make(chan device.SyncEvent, 1)
	obj.OnSync(func(ev device.SyncEvent) { synced <- ev })

	if err := vd.Set("snapshot", obj); err != nil {
		t.Fatal(err)
	}
	if err := vd.Set("brightness", 42); err != nil {
		t.Fatal(err)
	}
	format := lightURN + ":attributes"
	q := cloudclient.MessageQuery{Source: endpoint, Type: "DATA"}
	awaitMessages(t, c, q, 1, dataWith(format, "brightness", 42))
	withSnapshot := func(m *message.Message) bool {
		_, ok := fields(m)["snapshot"]
		return m.Data != nil && m.Data.Format == format && ok
	}
	if held, _ := storedMessages(t.Context(), c.Client(), q); countMatching(held, withSnapshot) != 0 || obj.SyncStatus() != device.SyncPending {
		t.Fatalf("the snapshot message left before its upload (status %s):\n%s", obj.SyncStatus(), describe(held))
	}

	close(gate)
	opened = true
	ev := receive(t, synced, "sync event")
	if ev.Status != device.InSync || ev.Err != nil || ev.VirtualDevice != vd || ev.Name != "snapshot" {
		t.Fatalf("sync event %+v", ev)
	}
	uri := c.URL() + "/storage/o/" + endpoint + "/snap.jpg"
	if obj.URI() != uri || obj.Length() != int64(len(snapshot)) {
		t.Errorf("object URI %q (want %q), length %d", obj.URI(), uri, obj.Length())
	}
	awaitMessages(t, c, q, 1, dataWith(format, "snapshot", uri))

	// The cloud stored it byte for byte (its objects directory names files
	// by the SHA-256 of the object path).
	sum := sha256.Sum256([]byte(endpoint + "/snap.jpg"))
	stored, _ := filepath.Glob(filepath.Join(c.DataDir(), "objects", hex.EncodeToString(sum[:])+"-*"))
	if len(stored) != 1 {
		t.Fatalf("the cloud holds %d files for the object, want 1", len(stored))
	}
	if got, err := os.ReadFile(stored[0]); err != nil || !bytes.Equal(got, snapshot) {
		t.Fatalf("the cloud's copy differs (%d bytes, %v)", len(got), err)
	}

	// Read back through a signed GET URL, into a file.
	back, err := d.CreateStorageObject("snap.jpg", "")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "copy.jpg")
	if err := back.SetOutputPath(out); err != nil {
		t.Fatal(err)
	}
	if err := back.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, snapshot) {
		t.Fatalf("downloaded %d bytes (%v), want the %d uploaded", len(got), err, len(snapshot))
	}
	if back.ContentType() != "image/jpeg" || back.Length() != int64(len(snapshot)) || time.Since(back.LastModified()) > time.Minute {
		t.Errorf("downloaded object: %s, %d bytes, modified %s", back.ContentType(), back.Length(), back.LastModified())
	}
	closeDevice(t, d)
	if len(errs) != 0 {
		t.Errorf("OnError: %+v", errs)
	}
}

func countMatching(msgs []message.Message, match func(*message.Message) bool) int {
	n := 0
	for i := range msgs {
		if match(&msgs[i]) {
			n++
		}
	}
	return n
}
