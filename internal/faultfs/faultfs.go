package faultfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// ErrCrashed is the error of every call made after the FS crashed (wrapped
// in an *fs.PathError naming the operation and the file).
var ErrCrashed = errors.New("file system crashed")

// Op names an operation, for FailNext and in errors.
type Op int

// The operations that change something. Each call of one of them (that is
// not refused for a crash) is one step of Ops and CrashAfter. OpenFile
// counts only when it creates or truncates a file, MkdirAll only when it
// creates a directory.
const (
	OpOpen Op = iota + 1
	OpMkdir
	OpWrite
	OpSync
	OpTruncate
	OpRemove
	OpSyncDir
)

var opNames = [...]string{OpOpen: "open", OpMkdir: "mkdir", OpWrite: "write", OpSync: "sync",
	OpTruncate: "truncate", OpRemove: "remove", OpSyncDir: "syncdir"}

func (op Op) String() string {
	if op > 0 && int(op) < len(opNames) {
		return opNames[op]
	}
	return fmt.Sprintf("Op(%d)", int(op))
}

// Options configure New. The zero value crashes to exactly the durable
// state.
type Options struct {
	// Seed seeds the random choices of a crash, so that a failing run can
	// be replayed.
	Seed uint64
	// TearLastWrite: on a crash, a random prefix (empty, partial or whole)
	// of the last write that was not synced survives, as a disk that was
	// writing it when the power went leaves it. All other unsynced writes
	// are lost.
	TearLastWrite bool
	// KeepSomeDirOps: on a crash, a random prefix (in call order) of the
	// file creations and removals that no SyncDir made durable survives,
	// as a journaling file system that committed some of them leaves it.
	// Without it they are all lost.
	KeepSomeDirOps bool
}

// FS is the in-memory file system. The zero value is not usable; call New.
type FS struct {
	mu      sync.Mutex
	opts    Options
	rng     *rand.Rand
	dirs    map[string]bool   // directories, always durable
	files   map[string]*inode // names as programs see them
	durable map[string]*inode // names as of the last SyncDir of their directory
	pending []dirOp           // name changes since their directory's last SyncDir, in order
	last    *write            // the last write not synced since, for tearing
	ops     int64             // operations that changed something
	crashAt int64             // crash right after this many ops; 0: never
	crashed bool
	image   map[string][]byte // what survived the crash
	space   int64             // bytes all files may hold together; < 0: unlimited
	used    int64             // bytes all files hold
	faults  map[Op]fault
}

// inode is a file's content: what reads see and what a crash keeps.
type inode struct {
	data      []byte
	durable   []byte // content as of the last successful Sync
	dirty     bool
	dirtyFrom int64 // smallest offset changed since the last Sync, when dirty
}

// dirOp is a creation (ino set) or removal (ino nil) of a name.
type dirOp struct {
	name string
	ino  *inode
}

// write is a write not synced since.
type write struct {
	ino  *inode
	off  int64
	data []byte
}

// fault is an error for the next n calls of one operation.
type fault struct {
	n   int
	err error
}

// New returns an empty FS whose root ("/" and ".") exists.
func New(opts Options) *FS {
	return &FS{
		opts:    opts,
		rng:     rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		dirs:    map[string]bool{"/": true, ".": true},
		files:   map[string]*inode{},
		durable: map[string]*inode{},
		space:   -1,
		faults:  map[Op]fault{},
	}
}

// CrashAfter arms a crash right after the n-th operation (counted from
// this call) that changes something; that operation completes and returns
// its result, every later call fails with ErrCrashed. n < 1 disarms.
func (fsys *FS) CrashAfter(n int64) {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if n < 1 {
		fsys.crashAt = 0
		return
	}
	fsys.crashAt = fsys.ops + n
}

// Crash crashes now (if not crashed yet).
func (fsys *FS) Crash() {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	fsys.crash()
}

// Crashed reports whether the FS crashed.
func (fsys *FS) Crashed() bool {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	return fsys.crashed
}

// Ops returns how many operations changed something so far.
func (fsys *FS) Ops() int64 {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	return fsys.ops
}

// SetSpace makes the disk full at n bytes of file content in total: a
// write or truncate that would go beyond fails with ENOSPC (a write after
// writing what fits, as Linux does). n < 0 means unlimited, the default.
func (fsys *FS) SetSpace(n int64) {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	fsys.space = n
}

// Used returns the bytes of content all files hold together.
func (fsys *FS) Used() int64 {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	return fsys.used
}

// FailNext makes the next n calls of op fail with err (wrapped in an
// *fs.PathError) without doing anything; a failed call still counts as an
// operation. A failed Sync leaves the file's durable content as it was and
// keeps the data for reads, as Linux does until the pages are evicted.
func (fsys *FS) FailNext(op Op, n int, err error) {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	fsys.faults[op] = fault{n: n, err: err}
}

// Restart crashes the FS (if it did not crash yet) and returns a new FS
// holding what survived, with the same options (but a new seed drawn from
// this one's), the same space limit and no faults armed. Each call returns
// an independent copy.
func (fsys *FS) Restart() *FS {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	fsys.crash()
	return fsys.boot(fsys.image)
}

// Snapshot returns a new FS holding what a crash at this moment would
// leave (as Restart does), while this one goes on uncrashed.
func (fsys *FS) Snapshot() *FS {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if fsys.crashed {
		return fsys.boot(fsys.image)
	}
	return fsys.boot(fsys.survivors())
}

// boot returns a new FS holding image; fsys.mu is held.
func (fsys *FS) boot(image map[string][]byte) *FS {
	opts := fsys.opts
	opts.Seed = fsys.rng.Uint64()
	n := New(opts)
	n.space = fsys.space
	for d := range fsys.dirs {
		n.dirs[d] = true
	}
	for name, content := range image {
		ino := &inode{data: slices.Clone(content), durable: slices.Clone(content)}
		n.files[name] = ino
		n.durable[name] = ino
		n.used += int64(len(content))
	}
	return n
}

// ReadFile returns a copy of a file's content as programs see it; it is
// not an operation and works after a crash (on what was there).
func (fsys *FS) ReadFile(name string) ([]byte, error) {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	ino, ok := fsys.files[filepath.Clean(name)]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return slices.Clone(ino.data), nil
}

// WriteFile replaces an existing file's content, durably, as damage done
// behind the program's back (a bit flip on the medium, say); it is not an
// operation and ignores the space limit.
func (fsys *FS) WriteFile(name string, data []byte) error {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	ino, ok := fsys.files[filepath.Clean(name)]
	if !ok {
		return &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	fsys.used += int64(len(data) - len(ino.data))
	ino.data = slices.Clone(data)
	ino.durable = slices.Clone(data)
	ino.dirty = false
	if fsys.last != nil && fsys.last.ino == ino {
		fsys.last = nil
	}
	return nil
}

// crash freezes the FS and computes what survives; fsys.mu is held.
func (fsys *FS) crash() {
	if fsys.crashed {
		return
	}
	fsys.crashed = true
	fsys.image = fsys.survivors()
}

// survivors returns the content of each file a crash now would leave,
// making the random choices of the options; fsys.mu is held.
func (fsys *FS) survivors() map[string][]byte {
	names := make(map[string]*inode, len(fsys.durable))
	for name, ino := range fsys.durable {
		names[name] = ino
	}
	if fsys.opts.KeepSomeDirOps && len(fsys.pending) > 0 {
		for _, op := range fsys.pending[:fsys.rng.IntN(len(fsys.pending)+1)] {
			if op.ino == nil {
				delete(names, op.name)
			} else {
				names[op.name] = op.ino
			}
		}
	}
	contents := map[*inode][]byte{}
	image := make(map[string][]byte, len(names))
	for name, ino := range names {
		c, ok := contents[ino]
		if !ok {
			c = slices.Clone(ino.durable)
			if w := fsys.last; fsys.opts.TearLastWrite && w != nil && w.ino == ino {
				if k := fsys.rng.IntN(len(w.data) + 1); k > 0 {
					if end := w.off + int64(k); end > int64(len(c)) {
						c = append(c, make([]byte, end-int64(len(c)))...)
					}
					copy(c[w.off:], w.data[:k])
				}
			}
			contents[ino] = c
		}
		image[name] = c
	}
	return image
}

// start checks whether op may run on name; fsys.mu is held. A non-nil
// error is the call's result (a crash, or an armed fault, which counts).
func (fsys *FS) start(op Op, name string) error {
	if fsys.crashed {
		return &fs.PathError{Op: op.String(), Path: name, Err: ErrCrashed}
	}
	if f := fsys.faults[op]; f.n > 0 {
		f.n--
		fsys.faults[op] = f
		fsys.done()
		return &fs.PathError{Op: op.String(), Path: name, Err: f.err}
	}
	return nil
}

// done counts an operation and crashes when it is the armed one; fsys.mu
// is held.
func (fsys *FS) done() {
	fsys.ops++
	if fsys.crashAt > 0 && fsys.ops >= fsys.crashAt {
		fsys.crash()
	}
}

// isDir reports whether dir exists as a directory; fsys.mu is held.
func (fsys *FS) isDir(dir string) bool { return fsys.dirs[dir] }

// MkdirAll creates dir and its missing parents. Like os.MkdirAll it fails
// with ENOTDIR naming the first path element that is a file.
func (fsys *FS) MkdirAll(dir string, _ fs.FileMode) error {
	dir = filepath.Clean(dir)
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if fsys.crashed {
		return &fs.PathError{Op: "mkdir", Path: dir, Err: ErrCrashed}
	}
	var missing []string
	for d := dir; !fsys.isDir(d); d = filepath.Dir(d) {
		if _, ok := fsys.files[d]; ok {
			return &fs.PathError{Op: "mkdir", Path: d, Err: syscall.ENOTDIR}
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := fsys.start(OpMkdir, dir); err != nil {
		return err
	}
	for _, d := range missing {
		fsys.dirs[d] = true
	}
	fsys.done()
	return nil
}

// OpenFile opens name with os.OpenFile's flags (O_RDONLY, O_WRONLY,
// O_RDWR, O_APPEND, O_CREATE, O_EXCL, O_TRUNC); perm is ignored. A file
// it creates exists after a crash only once its directory was synced.
func (fsys *FS) OpenFile(name string, flag int, _ fs.FileMode) (*File, error) {
	name = filepath.Clean(name)
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if fsys.crashed {
		return nil, &fs.PathError{Op: "open", Path: name, Err: ErrCrashed}
	}
	if fsys.isDir(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EISDIR}
	}
	dir := filepath.Dir(name)
	if !fsys.isDir(dir) {
		if _, ok := fsys.files[dir]; ok {
			return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.ENOTDIR}
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	ino, exists := fsys.files[name]
	writable := flag&(os.O_WRONLY|os.O_RDWR) != 0
	switch {
	case exists && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case !exists && flag&os.O_CREATE == 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case !exists:
		if err := fsys.start(OpOpen, name); err != nil {
			return nil, err
		}
		ino = &inode{}
		fsys.files[name] = ino
		fsys.pending = append(fsys.pending, dirOp{name: name, ino: ino})
		fsys.done()
	case flag&os.O_TRUNC != 0 && writable && len(ino.data) > 0:
		if err := fsys.start(OpOpen, name); err != nil {
			return nil, err
		}
		fsys.truncate(ino, 0)
		fsys.done()
	}
	return &File{fsys: fsys, name: name, ino: ino, flag: flag}, nil
}

// ReadDir returns the names in dir (files and directories), sorted.
func (fsys *FS) ReadDir(dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if fsys.crashed {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: ErrCrashed}
	}
	if !fsys.isDir(dir) {
		if _, ok := fsys.files[dir]; ok {
			return nil, &fs.PathError{Op: "readdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var names []string
	for name := range fsys.files {
		if filepath.Dir(name) == dir {
			names = append(names, filepath.Base(name))
		}
	}
	for d := range fsys.dirs {
		if d != dir && filepath.Dir(d) == dir {
			names = append(names, filepath.Base(d))
		}
	}
	slices.Sort(names)
	return names, nil
}

// Remove removes a file (the removal is durable once its directory is
// synced; open handles keep working) or an empty directory (at once).
func (fsys *FS) Remove(name string) error {
	name = filepath.Clean(name)
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if fsys.crashed {
		return &fs.PathError{Op: "remove", Path: name, Err: ErrCrashed}
	}
	ino, isFile := fsys.files[name]
	if !isFile && !fsys.isDir(name) {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	if !isFile {
		for other := range fsys.files {
			if strings.HasPrefix(other, name+string(filepath.Separator)) {
				return &fs.PathError{Op: "remove", Path: name, Err: syscall.ENOTEMPTY}
			}
		}
	}
	if err := fsys.start(OpRemove, name); err != nil {
		return err
	}
	if isFile {
		delete(fsys.files, name)
		fsys.used -= int64(len(ino.data))
		fsys.pending = append(fsys.pending, dirOp{name: name})
	} else {
		delete(fsys.dirs, name)
	}
	fsys.done()
	return nil
}

// SyncDir makes the creations and removals of files in dir durable.
func (fsys *FS) SyncDir(dir string) error {
	dir = filepath.Clean(dir)
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if fsys.crashed {
		return &fs.PathError{Op: "syncdir", Path: dir, Err: ErrCrashed}
	}
	if !fsys.isDir(dir) {
		return &fs.PathError{Op: "syncdir", Path: dir, Err: fs.ErrNotExist}
	}
	if err := fsys.start(OpSyncDir, dir); err != nil {
		return err
	}
	kept := fsys.pending[:0]
	for _, op := range fsys.pending {
		switch {
		case filepath.Dir(op.name) != dir:
			kept = append(kept, op)
		case op.ino == nil:
			delete(fsys.durable, op.name)
		default:
			fsys.durable[op.name] = op.ino
		}
	}
	clear(fsys.pending[len(kept):])
	fsys.pending = kept
	fsys.done()
	return nil
}

// truncate sets ino's length; fsys.mu is held and space was checked.
func (fsys *FS) truncate(ino *inode, size int64) {
	fsys.used += size - int64(len(ino.data))
	if size <= int64(len(ino.data)) {
		ino.data = ino.data[:size]
	} else {
		ino.data = append(ino.data, make([]byte, size-int64(len(ino.data)))...)
	}
	fsys.markDirty(ino, size)
	if fsys.last != nil && fsys.last.ino == ino {
		fsys.last = nil // what it wrote is cut or overwritten by zeros
	}
}

func (fsys *FS) markDirty(ino *inode, from int64) {
	if !ino.dirty || from < ino.dirtyFrom {
		ino.dirtyFrom = from
	}
	ino.dirty = true
}

// File is an open file of an FS. Its methods are those of *os.File.
type File struct {
	fsys   *FS
	name   string
	ino    *inode
	flag   int
	off    int64
	closed bool
}

// Name returns the name the file was opened with (cleaned).
func (f *File) Name() string { return f.name }

// check returns the error of a call of op on f before anything else;
// f.fsys.mu is held.
func (f *File) check(op string, write bool) error {
	switch {
	case f.closed:
		return &fs.PathError{Op: op, Path: f.name, Err: os.ErrClosed}
	case f.fsys.crashed:
		return &fs.PathError{Op: op, Path: f.name, Err: ErrCrashed}
	case write && f.flag&(os.O_WRONLY|os.O_RDWR) == 0:
		return &fs.PathError{Op: op, Path: f.name, Err: syscall.EBADF}
	}
	return nil
}

// Write writes p at the file's offset (at its end with O_APPEND). When the
// disk is full it writes what fits and fails with ENOSPC.
func (f *File) Write(p []byte) (int, error) {
	fsys := f.fsys
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if err := f.check("write", true); err != nil {
		return 0, err
	}
	if err := fsys.start(OpWrite, f.name); err != nil {
		return 0, err
	}
	ino := f.ino
	if f.flag&os.O_APPEND != 0 {
		f.off = int64(len(ino.data))
	}
	n := len(p)
	var err error
	if grow := f.off + int64(n) - int64(len(ino.data)); grow > 0 && fsys.space >= 0 && fsys.used+grow > fsys.space {
		n = max(0, n-int(fsys.used+grow-fsys.space))
		err = &fs.PathError{Op: "write", Path: f.name, Err: syscall.ENOSPC}
	}
	if end := f.off + int64(n); end > int64(len(ino.data)) {
		fsys.used += end - int64(len(ino.data))
		ino.data = append(ino.data, make([]byte, end-int64(len(ino.data)))...)
	}
	copy(ino.data[f.off:], p[:n])
	if n > 0 {
		fsys.markDirty(ino, f.off)
		fsys.last = &write{ino: ino, off: f.off, data: slices.Clone(p[:n])}
	}
	f.off += int64(n)
	fsys.done()
	return n, err
}

// ReadAt reads len(p) bytes at off; fewer only at the end of the file,
// with io.EOF.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	f.fsys.mu.Lock()
	defer f.fsys.mu.Unlock()
	if err := f.check("read", false); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: syscall.EINVAL}
	}
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Sync makes the file's content durable.
func (f *File) Sync() error {
	fsys := f.fsys
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if err := f.check("sync", false); err != nil {
		return err
	}
	if err := fsys.start(OpSync, f.name); err != nil {
		return err
	}
	if ino := f.ino; ino.dirty {
		from := min(ino.dirtyFrom, int64(len(ino.durable)), int64(len(ino.data)))
		ino.durable = append(ino.durable[:from], ino.data[from:]...)
		ino.dirty = false
	}
	if fsys.last != nil && fsys.last.ino == f.ino {
		fsys.last = nil
	}
	fsys.done()
	return nil
}

// Truncate changes the file's size (growing it with zeros).
func (f *File) Truncate(size int64) error {
	fsys := f.fsys
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if err := f.check("truncate", true); err != nil {
		return err
	}
	if size < 0 {
		return &fs.PathError{Op: "truncate", Path: f.name, Err: syscall.EINVAL}
	}
	if err := fsys.start(OpTruncate, f.name); err != nil {
		return err
	}
	if grow := size - int64(len(f.ino.data)); grow > 0 && fsys.space >= 0 && fsys.used+grow > fsys.space {
		fsys.done()
		return &fs.PathError{Op: "truncate", Path: f.name, Err: syscall.ENOSPC}
	}
	fsys.truncate(f.ino, size)
	fsys.done()
	return nil
}

// Close closes the handle; it is not an operation and works after a crash.
func (f *File) Close() error {
	f.fsys.mu.Lock()
	defer f.fsys.mu.Unlock()
	if f.closed {
		return &fs.PathError{Op: "close", Path: f.name, Err: os.ErrClosed}
	}
	f.closed = true
	return nil
}
