//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package fsstore

import (
	"errors"
	"io"
	"os"
	"syscall"
)

// Lock takes a flock(2) lock on name. The kernel drops it when the process
// dies, so a crash never leaves the outbox locked.
func (osFS) Lock(name string) (io.Closer, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close() // the lock error is the one to report
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, &os.PathError{Op: "flock", Path: name, Err: err}
	}
	return f, nil
}
