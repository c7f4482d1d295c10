package fsstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// tempInfix sits between a file's name and the random suffix of the
// temporary files that replace it: ".dm-x.json.tmp-123456". Names starting
// with a dot and containing it are never read by this package, so a
// temporary file left by a crash is ignored.
const tempInfix = ".tmp-"

// atomicWriter replaces files atomically and durably. The zero value is
// ready; beforeRename is a test hook that runs between the fsync of the
// temporary file and its rename (a non-nil error aborts the write).
type atomicWriter struct {
	beforeRename func(tmp string) error
}

// write replaces path with data: it writes a temporary file in the same
// directory, fsyncs it, sets perm, renames it over path and fsyncs the
// directory, so that after a crash path holds the old or the new data,
// never a mix, and after write returns nil the new data survives a power
// loss. On error path is unchanged and the temporary file is removed.
func (w atomicWriter) write(path string, data []byte, perm fs.FileMode) (err error) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	f, err := os.CreateTemp(dir, "."+base+tempInfix+"*")
	if err != nil {
		return fmt.Errorf("create temporary file in %s: %w", dir, unwrapPath(err))
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close() // may already be closed; the write error is what matters
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, unwrapPath(err))
	}
	if err = f.Chmod(perm); err != nil && runtime.GOOS != "windows" {
		return fmt.Errorf("chmod %s: %w", tmp, unwrapPath(err))
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, unwrapPath(err))
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, unwrapPath(err))
	}
	if w.beforeRename != nil {
		if err = w.beforeRename(tmp); err != nil {
			return err
		}
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, path, unwrapPath(err))
	}
	if err := syncDir(dir); err != nil {
		// The rename happened: the new data is in place but may not survive
		// a power loss. Report it; the temporary file no longer exists.
		return err
	}
	return nil
}

// syncDir fsyncs a directory so that a rename or a new entry in it is
// durable. Windows cannot open a directory for syncing and makes renames
// durable on its own, so it is skipped there.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s to fsync it: %w", dir, unwrapPath(err))
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, unwrapPath(err))
	}
	return nil
}

// unwrapPath drops the *fs.PathError wrapper of err, whose text repeats an
// operation and path that the caller's own message already names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
