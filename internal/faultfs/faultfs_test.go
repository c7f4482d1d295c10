package faultfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
)

const rw = os.O_RDWR | os.O_CREATE | os.O_APPEND

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func open(t *testing.T, fsys *FS, name string) *File {
	t.Helper()
	f, err := fsys.OpenFile(name, rw, 0o600)
	must(t, err)
	return f
}

func writeStr(t *testing.T, f *File, s string) {
	t.Helper()
	if n, err := f.Write([]byte(s)); n != len(s) || err != nil {
		t.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}

// contents returns "name=content" of every file in /d after a restart.
func contents(t *testing.T, fsys *FS) string {
	t.Helper()
	names, err := fsys.ReadDir("/d")
	must(t, err)
	var out []string
	for _, n := range names {
		b, err := fsys.ReadFile("/d/" + n)
		must(t, err)
		out = append(out, n+"="+string(b))
	}
	return strings.Join(out, " ")
}

func TestCrashKeepsOnlyDurableState(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, fsys *FS)
		want string
	}{
		{"created, never synced", func(t *testing.T, fsys *FS) {
			f := open(t, fsys, "/d/a")
			writeStr(t, f, "hello")
			must(t, f.Sync())
		}, ""},
		{"synced file and directory", func(t *testing.T, fsys *FS) {
			f := open(t, fsys, "/d/a")
			writeStr(t, f, "hello")
			must(t, f.Sync())
			must(t, fsys.SyncDir("/d"))
			writeStr(t, f, " world")
		}, "a=hello"},
		{"directory synced, data not", func(t *testing.T, fsys *FS) {
			f := open(t, fsys, "/d/a")
			must(t, fsys.SyncDir("/d"))
			writeStr(t, f, "hello")
		}, "a="},
		{"unsynced removal comes back", func(t *testing.T, fsys *FS) {
			f := open(t, fsys, "/d/a")
			writeStr(t, f, "x")
			must(t, f.Sync())
			must(t, fsys.SyncDir("/d"))
			must(t, fsys.Remove("/d/a"))
		}, "a=x"},
		{"synced removal", func(t *testing.T, fsys *FS) {
			open(t, fsys, "/d/a")
			must(t, fsys.SyncDir("/d"))
			must(t, fsys.Remove("/d/a"))
			must(t, fsys.SyncDir("/d"))
		}, ""},
		{"unsynced truncate is undone", func(t *testing.T, fsys *FS) {
			f := open(t, fsys, "/d/a")
			writeStr(t, f, "abcdef")
			must(t, f.Sync())
			must(t, fsys.SyncDir("/d"))
			must(t, f.Truncate(2))
			writeStr(t, f, "XY")
			if b, _ := fsys.ReadFile("/d/a"); string(b) != "abXY" {
				t.Fatalf("before the crash: %q, want abXY", b)
			}
		}, "a=abcdef"},
		{"synced truncate and rewrite", func(t *testing.T, fsys *FS) {
			f := open(t, fsys, "/d/a")
			writeStr(t, f, "abcdef")
			must(t, fsys.SyncDir("/d"))
			must(t, f.Sync())
			must(t, f.Truncate(2))
			writeStr(t, f, "XY")
			must(t, f.Sync())
		}, "a=abXY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := New(Options{})
			must(t, fsys.MkdirAll("/d", 0o700))
			tt.run(t, fsys)
			if got := contents(t, fsys.Restart()); got != tt.want {
				t.Fatalf("after the crash: %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTearLastWrite(t *testing.T) {
	// Over many seeds the last unsynced write survives as every prefix,
	// from nothing to all of it; earlier unsynced writes never survive.
	seen := map[string]bool{}
	for seed := range uint64(200) {
		fsys := New(Options{Seed: seed, TearLastWrite: true})
		must(t, fsys.MkdirAll("/d", 0o700))
		f := open(t, fsys, "/d/a")
		must(t, fsys.SyncDir("/d"))
		writeStr(t, f, "base|")
		must(t, f.Sync())
		writeStr(t, f, "lost|")
		writeStr(t, f, "0123")
		got := contents(t, fsys.Restart())
		if !strings.HasPrefix(got, "a=base|") {
			t.Fatalf("seed %d: %q lost synced data", seed, got)
		}
		tail := strings.TrimPrefix(got, "a=base|")
		// The last write went to offset 10; the lost one leaves a hole.
		if tail != "" && tail != strings.Repeat("\x00", 5)+"0123"[:len(tail)-5] {
			t.Fatalf("seed %d: tail %q is not a prefix of the last write after a hole", seed, tail)
		}
		seen[tail] = true
	}
	if len(seen) != 5 {
		t.Fatalf("saw %d different tears, want all 5 (nothing, 1..4 bytes of a 4-byte write after its hole)", len(seen))
	}
}

func TestKeepSomeDirOps(t *testing.T) {
	// Creations of a, b, c not synced: a crash keeps a prefix of them.
	seen := map[string]bool{}
	for seed := range uint64(100) {
		fsys := New(Options{Seed: seed, KeepSomeDirOps: true})
		must(t, fsys.MkdirAll("/d", 0o700))
		for _, n := range []string{"a", "b", "c"} {
			open(t, fsys, "/d/"+n)
		}
		got := contents(t, fsys.Restart())
		switch got {
		case "", "a=", "a= b=", "a= b= c=":
			seen[got] = true
		default:
			t.Fatalf("seed %d: %q is not a prefix of the creations", seed, got)
		}
	}
	if len(seen) != 4 {
		t.Fatalf("saw %v, want all 4 prefixes", seen)
	}
}

func TestCrashAfter(t *testing.T) {
	fsys := New(Options{})
	must(t, fsys.MkdirAll("/d", 0o700)) // op 1
	f := open(t, fsys, "/d/a")          // op 2
	fsys.CrashAfter(2)
	writeStr(t, f, "x") // op 3
	must(t, f.Sync())   // op 4: completes, then the crash
	_, err := f.Write([]byte("y"))
	if !errors.Is(err, ErrCrashed) || err.Error() != "write /d/a: file system crashed" {
		t.Fatalf("Write after the crash = %v", err)
	}
	if _, err := fsys.ReadDir("/d"); !errors.Is(err, ErrCrashed) {
		t.Fatalf("ReadDir after the crash = %v", err)
	}
	if fsys.Ops() != 4 || !fsys.Crashed() {
		t.Fatalf("Ops = %d, Crashed = %v; want 4, true", fsys.Ops(), fsys.Crashed())
	}
	must(t, f.Close())
	// The file's directory was never synced.
	if got := contents(t, fsys.Restart()); got != "" {
		t.Fatalf("after the crash: %q", got)
	}
}

func TestFaults(t *testing.T) {
	t.Run("disk full", func(t *testing.T) {
		fsys := New(Options{})
		must(t, fsys.MkdirAll("/d", 0o700))
		fsys.SetSpace(10)
		f := open(t, fsys, "/d/a")
		writeStr(t, f, "123456")
		n, err := f.Write([]byte("789abc"))
		if n != 4 || !errors.Is(err, syscall.ENOSPC) || err.Error() != "write /d/a: no space left on device" {
			t.Fatalf("Write over the space = %d, %v; want 4, ENOSPC", n, err)
		}
		if err := f.Truncate(11); !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Truncate over the space = %v", err)
		}
		must(t, f.Truncate(3))
		writeStr(t, f, "4567890")
		if fsys.Used() != 10 {
			t.Fatalf("Used = %d, want 10", fsys.Used())
		}
		must(t, fsys.Remove("/d/a"))
		if fsys.Used() != 0 {
			t.Fatalf("Used after Remove = %d, want 0", fsys.Used())
		}
	})
	t.Run("failing sync", func(t *testing.T) {
		fsys := New(Options{})
		must(t, fsys.MkdirAll("/d", 0o700))
		f := open(t, fsys, "/d/a")
		must(t, fsys.SyncDir("/d"))
		writeStr(t, f, "abc")
		fsys.FailNext(OpSync, 1, syscall.EIO)
		if err := f.Sync(); !errors.Is(err, syscall.EIO) || err.Error() != "sync /d/a: input/output error" {
			t.Fatalf("Sync = %v, want EIO", err)
		}
		buf := make([]byte, 3)
		if n, err := f.ReadAt(buf, 0); n != 3 || err != nil || string(buf) != "abc" {
			t.Fatalf("ReadAt after the failed sync = %d, %v, %q", n, err, buf)
		}
		if got := contents(t, fsys.Restart()); got != "a=" {
			t.Fatalf("after the crash: %q, want the data not durable", got)
		}
	})
}

func TestNamespaceErrors(t *testing.T) {
	fsys := New(Options{})
	must(t, fsys.MkdirAll("/d", 0o700))
	f := open(t, fsys, "/d/file")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"mkdir below a file", fsys.MkdirAll("/d/file/x/y", 0o700), "mkdir /d/file: not a directory"},
		{"open missing", func() error { _, err := fsys.OpenFile("/d/nope", os.O_RDONLY, 0); return err }(), "open /d/nope: file does not exist"},
		{"open in missing dir", func() error { _, err := fsys.OpenFile("/e/x", rw, 0); return err }(), "open /e/x: file does not exist"},
		{"exclusive create", func() error { _, err := fsys.OpenFile("/d/file", rw|os.O_EXCL, 0); return err }(), "open /d/file: file already exists"},
		{"open a directory", func() error { _, err := fsys.OpenFile("/d", os.O_RDONLY, 0); return err }(), "open /d: is a directory"},
		{"readdir a file", func() error { _, err := fsys.ReadDir("/d/file"); return err }(), "readdir /d/file: not a directory"},
		{"remove missing", fsys.Remove("/d/nope"), "remove /d/nope: file does not exist"},
		{"remove non-empty dir", fsys.Remove("/d"), "remove /d: directory not empty"},
		{"sync missing dir", fsys.SyncDir("/nope"), "syncdir /nope: file does not exist"},
		{"write read-only", func() error {
			r, err := fsys.OpenFile("/d/file", os.O_RDONLY, 0)
			must(t, err)
			_, err = r.Write([]byte("x"))
			return err
		}(), "write /d/file: bad file descriptor"},
		{"close twice", func() error { must(t, f.Close()); return f.Close() }(), "close /d/file: file already closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fmt.Sprint(tt.err); got != tt.want {
				t.Fatalf("error = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestReadAtAndOffsets(t *testing.T) {
	fsys := New(Options{})
	must(t, fsys.MkdirAll("/d", 0o700))
	f, err := fsys.OpenFile("/d/a", os.O_RDWR|os.O_CREATE, 0o600) // no O_APPEND
	must(t, err)
	writeStr(t, f, "abcdef")
	must(t, f.Truncate(3))
	writeStr(t, f, "X") // at offset 6: a hole of zeros from 3
	got := make([]byte, 10)
	n, err := f.ReadAt(got, 0)
	if n != 7 || err != io.EOF || !bytes.Equal(got[:n], []byte("abc\x00\x00\x00X")) {
		t.Fatalf("ReadAt = %d, %v, %q", n, err, got[:n])
	}
	if _, err := f.ReadAt(got, 7); err != io.EOF {
		t.Fatalf("ReadAt at the end = %v, want EOF", err)
	}
	trunc, err := fsys.OpenFile("/d/a", os.O_RDWR|os.O_TRUNC, 0)
	must(t, err)
	if n, err := trunc.ReadAt(got, 0); n != 0 || err != io.EOF {
		t.Fatalf("after O_TRUNC: %d, %v", n, err)
	}
	names, err := fsys.ReadDir("/")
	if err != nil || fmt.Sprint(names) != "[d]" {
		t.Fatalf("ReadDir(/) = %v, %v", names, err)
	}
}

func TestSnapshot(t *testing.T) {
	fsys := New(Options{})
	must(t, fsys.MkdirAll("/d", 0o700))
	f := open(t, fsys, "/d/a")
	must(t, fsys.SyncDir("/d"))
	writeStr(t, f, "kept")
	must(t, f.Sync())
	writeStr(t, f, "+lost")
	if got := contents(t, fsys.Snapshot()); got != "a=kept" {
		t.Fatalf("snapshot: %q, want a=kept", got)
	}
	// The original goes on.
	writeStr(t, f, "+more")
	must(t, f.Sync())
	if fsys.Crashed() {
		t.Fatal("Snapshot crashed the FS")
	}
	if got := contents(t, fsys.Restart()); got != "a=kept+lost+more" {
		t.Fatalf("after a crash: %q", got)
	}
}
