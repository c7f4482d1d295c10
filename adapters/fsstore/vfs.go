package fsstore

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"runtime"
)

// FS is the file system the outbox keeps its log on: the operating
// system's by default, or in tests one that injects faults and crashes
// (internal/faultfs). Names are paths as path/filepath builds them. Its
// methods behave as the os functions of the same name; the outbox needs
// nothing else.
//
// An FS that also implements Locker is asked for an exclusive lock on the
// outbox directory, so that two processes never share one outbox.
type FS interface {
	MkdirAll(dir string, perm fs.FileMode) error
	// OpenFile takes os.OpenFile's flags; the outbox uses O_RDWR,
	// O_WRONLY, O_CREATE, O_EXCL, O_TRUNC and O_APPEND.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	// ReadDir returns the names in dir.
	ReadDir(dir string) ([]string, error)
	Remove(name string) error
	// SyncDir makes the creations and removals of files in dir durable
	// (fsync of the directory).
	SyncDir(dir string) error
}

// File is an open file of an FS, as *os.File provides it. Sync returns
// after the file's data reached the disk.
type File interface {
	io.Writer
	io.ReaderAt
	Sync() error
	Truncate(size int64) error
	Close() error
}

// Locker is an optional capability of an FS: Lock takes an exclusive lock
// on the file name (creating it), held until the returned Closer is
// closed, or fails at once with ErrLocked when someone else holds it.
type Locker interface {
	Lock(name string) (io.Closer, error)
}

// ErrLocked is the error of Locker.Lock when another holder has the lock.
var ErrLocked = errors.New("locked by another holder")

// osFS is the operating system's file system.
type osFS struct{}

func (osFS) MkdirAll(dir string, perm fs.FileMode) error { return os.MkdirAll(dir, perm) }

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return f, nil
}

func (osFS) ReadDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

func (osFS) Remove(name string) error { return os.Remove(name) }

// SyncDir fsyncs dir. Windows cannot open a directory for syncing and makes
// creations and removals durable on its own, so it does nothing there.
func (osFS) SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
