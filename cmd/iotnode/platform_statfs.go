//go:build linux || darwin || freebsd

package main

import "golang.org/x/sys/unix"

// freeBytes returns the space available to unprivileged users on the file
// system of dir, and whether it could be learnt.
func freeBytes(dir string) (uint64, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true
}
