package store_test

import (
	"path/filepath"
	"testing"

	"github.com/iotnode/iotnode/cloud/store"
	"github.com/iotnode/iotnode/cloud/store/storetest"
)

// TestConformance runs the store.Store conformance suite against the bbolt
// store.
func TestConformance(t *testing.T) {
	open := func(t *testing.T, path string) store.Store {
		t.Helper()
		s, err := store.Open(path, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	storetest.Run(t, storetest.Opener{
		Open: func(t *testing.T) store.Store {
			return open(t, filepath.Join(t.TempDir(), "cloud.db"))
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			path := s.(*store.BoltStore).Path()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, path)
		},
	})
}
