//go:build linux || darwin || freebsd

package device

import (
	"fmt"
	"syscall"
)

// diskSpace returns the free (available to unprivileged users) and total
// bytes of the file system holding dir.
func diskSpace(dir string) (free, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	bsize := uint64(st.Bsize)
	return uint64(max(int64(st.Bavail), 0)) * bsize, uint64(st.Blocks) * bsize, nil
}
