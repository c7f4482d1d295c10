// Package faultfs is an in-memory file system for tests that remembers, per
// file and per directory, what a power loss would keep: the content as of
// the last Sync of each file and the names as of the last SyncDir of each
// directory. Crash freezes it (every later call fails with ErrCrashed) and
// Restart returns a new FS holding only what survived, optionally with a
// torn prefix of the last unsynced write and a prefix of the unsynced
// directory changes, chosen by a seeded random source so that every run
// can be replayed.
//
// It also injects the faults a real disk shows: an error from the next
// calls of one operation (fsync failing with EIO, say), a disk that is full
// after a number of bytes (ENOSPC, with a partial write as Linux does), and
// a crash right after the n-th operation that changes something, so that a
// test can crash a workload at every point of its run.
//
// Why not the OS: a crash cannot be simulated on a real file system
// without a virtual machine, and the page cache hides what was never
// synced. Why not a library: the ones that exist model neither durability
// per file nor torn writes.
//
// The model is deliberately pessimistic: data written but not synced is
// lost, except the one torn write; a file created or removed is so after a
// crash only if its directory was synced. Directories themselves
// are durable as soon as MkdirAll returns. Paths are cleaned with
// path/filepath; there are no symbolic links, permissions or timestamps.
//
// FS and File are safe for concurrent use. The package uses the standard
// library only; adapters wrap its concrete types in their own interfaces.
package faultfs
