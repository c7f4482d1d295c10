//go:build !(linux || darwin || freebsd)

package main

// freeBytes cannot learn the free space on this system.
func freeBytes(string) (uint64, bool) { return 0, false }
