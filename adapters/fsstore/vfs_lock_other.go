//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package fsstore

import (
	"io"
	"os"
)

// Lock only creates name: on this platform the outbox does not guard
// against a second process (there is no flock(2)); the composition root
// must not open one outbox twice.
func (osFS) Lock(name string) (io.Closer, error) {
	return os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
}
