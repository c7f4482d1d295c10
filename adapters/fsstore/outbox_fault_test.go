package fsstore

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/iotnode/iotnode/internal/faultfs"
)

// faultFS adapts a *faultfs.FS to FS (its OpenFile returns the concrete
// *faultfs.File).
type faultFS struct{ *faultfs.FS }

func (f faultFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return file, nil
}

var _ FS = faultFS{}

// testFS returns a file system by name ("os": nil, the default; "fault":
// an in-memory faultfs) and where to put an outbox on it.
func testFS(t *testing.T, name string) (FS, string) {
	if name == "fault" {
		return faultFS{faultfs.New(faultfs.Options{})}, "/data/outbox"
	}
	return nil, filepath.Join(t.TempDir(), "outbox")
}

func readTestFile(fsys FS, name string) ([]byte, error) {
	if f, ok := fsys.(faultFS); ok {
		return f.ReadFile(name)
	}
	return os.ReadFile(name)
}

// writeTestFile replaces a file's content behind the outbox's back.
func writeTestFile(fsys FS, name string, data []byte) error {
	if f, ok := fsys.(faultFS); ok {
		return f.WriteFile(name, data)
	}
	return os.WriteFile(name, data, 0o600)
}
