//go:build !(linux || darwin || freebsd)

package device

import (
	"errors"
	"runtime"
)

// diskSpace is not implemented on this platform: the diagnostics resource
// then reports "Unknown".
func diskSpace(dir string) (free, total uint64, err error) {
	return 0, 0, errors.New("disk space of " + dir + ": not supported on " + runtime.GOOS)
}
