package store

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTest(t *testing.T) (*BoltStore, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cloud.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestOpen(t *testing.T) {
	s, path := openTest(t)
	if s.Path() != path || s.String() != path {
		t.Fatalf("Path %s, String %s", s.Path(), s)
	}
	t.Run("locked", func(t *testing.T) {
		_, err := Open(path, Options{LockTimeout: 50 * time.Millisecond})
		want := "open store " + path + ": the file is locked by another process (is another iotcloud running on this data directory?)"
		if err == nil || err.Error() != want {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("newer schema", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "new.db")
		db, _ := bolt.Open(p, 0o600, nil)
		db.Update(func(tx *bolt.Tx) error {
			b, _ := tx.CreateBucketIfNotExists(bucketMeta)
			return b.Put(metaSchema, u64(2))
		})
		db.Close()
		_, err := Open(p, Options{})
		if err == nil || err.Error() != "open store "+p+": schema version is 0000000000000002, expected 1 (written by a newer iotcloud?)" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("not a directory", func(t *testing.T) {
		if _, err := Open(filepath.Join(path, "x.db"), Options{}); err == nil || !strings.HasPrefix(err.Error(), "open store ") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestCorruptRecord(t *testing.T) {
	s, _ := openTest(t)
	s.db.Update(func(tx *bolt.Tx) error {
		tx.Bucket(bucketDevices).Put([]byte("bad"), []byte("{"))
		tx.Bucket(bucketPolicies).Put([]byte("bad"), []byte("{"))
		return nil
	})
	s.View(func(tx Tx) error {
		if _, err := tx.Device("bad"); err == nil || !strings.HasPrefix(err.Error(), `device "bad": corrupt record "bad": `) {
			t.Errorf("Device: %v", err)
		}
		if _, err := tx.Devices(); err == nil || !strings.HasPrefix(err.Error(), `device "bad": corrupt record: `) {
			t.Errorf("Devices: %v", err)
		}
		if _, err := tx.Policies(); err == nil {
			t.Error("Policies: no error")
		}
		return nil
	})
}
