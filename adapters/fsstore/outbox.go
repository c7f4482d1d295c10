package fsstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/ports"
)

// Defaults of OutboxOptions.
const (
	DefaultOutboxMaxBytes       = 64 << 20 // the outbox directory, on disk
	DefaultOutboxMaxMemoryBytes = 4 << 20  // other messages, in memory
)

const (
	// outboxLockTimeout is how long OpenOutbox waits for another process
	// to release the outbox.
	outboxLockTimeout = time.Second
	lockPollInterval  = 10 * time.Millisecond
	// Segment sizes: MaxBytes/16 within these bounds.
	minSegmentBytes = 64 << 10
	maxSegmentBytes = 4 << 20
	// maxCompactionsPerAdd bounds the compactions one Add that does not fit
	// asks for before it fails with ErrOutboxFull.
	maxCompactionsPerAdd = 64
	lockFileName         = "LOCK"
	reserveFileName      = "RESERVE"
	// minReserveBytes bounds the reserve file from below; it is
	// segment/32 otherwise, room for the acknowledgements that empty a
	// segment when delivered in batches of ten or more.
	minReserveBytes = 4 << 10
	segmentPrefix   = "seg-"
	segmentSuffix   = ".wal"
)

// OutboxOptions configures OpenOutbox. The zero value gives the defaults.
type OutboxOptions struct {
	// MaxBytes bounds the outbox directory on disk: the log's segments
	// (every record in them: messages with their 22 bytes of framing,
	// acknowledgements, segment headers, delivered messages not reclaimed
	// yet) and the reserve file. 0 means DefaultOutboxMaxBytes; it must be
	// larger than the reserve file (max(4 KiB, segment size/32), segments
	// being MaxBytes/16 within 64 KiB..4 MiB).
	//
	// The bound, exactly: an Add whose records would take the log past
	// MaxBytes − the reserve − one segment header fails with
	// ports.ErrOutboxFull. Acknowledgements are never refused (delivering
	// must always be possible) and compaction copies records before it
	// deletes their old segment, so the log may pass that line by a little;
	// Stats().DiskBytes + Stats().ReserveBytes ≤ MaxBytes + one segment
	// holds at every moment (TestOutboxDiskBound checks it after every call
	// of workloads that fill the bound many times over). The messages that
	// fit are the bound less what delivered messages still occupy: all of
	// it while the cloud is down (nothing is delivered); when deliveries
	// leave holes, compaction reclaims them until the messages held take
	// four fifths of the room at least (not counting the segment appended
	// to; see Outbox).
	MaxBytes int64
	// MaxMemoryBytes bounds the other messages (BEST_EFFORT, NO_GUARANTEE),
	// counted the same way; 0 means DefaultOutboxMaxMemoryBytes.
	MaxMemoryBytes int
	// NoSync skips fsync: fast, and a power loss may lose what was added
	// (never corrupt the log: damaged tails are cut off on open). For tests
	// only.
	NoSync bool
	// Logger receives a warning for each corrupt record or torn tail
	// skipped and each failed cleanup (never a payload); nil discards.
	Logger *slog.Logger
	// FS is the file system the log lives on; nil means the operating
	// system's. Tests pass one that injects faults and crashes.
	FS FS

	segmentBytes int64 // tests: the segment size; 0 derives it from MaxBytes
}

// OutboxStats are the outbox's counters (Outbox.Stats).
type OutboxStats struct {
	Queued      int64 // messages held, both classes, open batches included
	QueuedBytes int64 // their encoded JSON bytes
	Guaranteed  int64 // GUARANTEED_DELIVERY messages held (on disk, or being written)
	// GuaranteedBytes counts Guaranteed's encoded JSON bytes; on disk each
	// record takes 22 bytes more (MaxBytes bounds DiskBytes, not these).
	GuaranteedBytes int64
	InFlight        int64 // messages in open batches (taken by Begin, not yet ended)
	Dropped         int64 // non-guaranteed messages dropped for room since OpenOutbox
	// DroppedUnconfirmed counts those of Dropped that had been handed out
	// in a batch before (End put them back). If that batch's send failed
	// after the cloud stored it (a reset, a lost answer), the cloud may have
	// them: the messages lost are at least Dropped-DroppedUnconfirmed and at
	// most Dropped. The device's transmitter keeps such a batch open and
	// sends it again as it is, and puts a batch back only when the cloud
	// refused it or Close cut its send, so with it this stays 0 while the
	// device runs and the loss is exactly Dropped.
	DroppedUnconfirmed int64
	// Corrupt counts the records found damaged and skipped since
	// OpenOutbox (on open, by Begin, or when compacting): a checksum that
	// fails, a message that does not decode. Each is logged.
	Corrupt int64
	// Torn counts the writes cut short by a crash that OpenOutbox found at
	// the end of a segment and cut off; normal after a power loss. The
	// messages in them were never acknowledged to the caller.
	Torn int64
	// Commits counts the log writes (one write and one fsync each) since
	// OpenOutbox; concurrent Adds and Ends share them (group commit), so
	// it is smaller than their number under load.
	Commits int64
	// DiskBytes is the size of the log's segment files; ReserveBytes that
	// of the reserve file (0 while a full disk has it given back). Their
	// sum is what the outbox directory holds, bounded by MaxBytes + one
	// segment (see OutboxOptions.MaxBytes).
	DiskBytes    int64
	ReserveBytes int64
}

// Outbox is the durable ports.Outbox: GUARANTEED_DELIVERY messages in an
// append-only log of checksummed records in a directory, the others in a
// bounded in-memory queue. Modelled on Telegraf's transactional output
// buffer.
//
// Guaranteed messages: Add returns after their records were written and
// fsynced. Concurrent Adds and Ends share writes (group commit): the first
// caller to find no write running writes everything queued so far with one
// write and one fsync, and the callers that queue meanwhile are written
// together by the next. A caller never waits for a timer. When they would
// exceed MaxBytes, Add fails with ports.ErrOutboxFull and adds nothing:
// guaranteed messages are never dropped.
//
// End appends one acknowledgement record listing the delivered guaranteed
// messages and returns after it was fsynced (shared with concurrent Adds
// and Ends). The guarantee after a crash or power loss, exactly: every
// guaranteed message whose Add returned nil comes back, unless End was
// called with it delivered (the cloud has it); if that End returned nil,
// it never comes back, else it may. A message whose Add did not return nil
// may come back too (its write may have reached the disk). Each comes back
// at most once, in its priority's order, with its clientId, so the cloud
// drops a replay.
//
// Other messages (BEST_EFFORT, NO_GUARANTEE) live in memory only: they are
// not persisted and are lost on Close or a crash. Beyond MaxMemoryBytes the
// oldest of the lowest priority that has any (and is not in an open batch)
// is dropped, and counted exactly (Add's result and Stats().Dropped); a
// single message larger than the whole bound is dropped at once.
//
// Order: Begin hands out the highest priority first, and within a priority
// the order of Add (both classes interleaved), so new HIGHEST messages go
// out first even while a backlog drains. Messages of concurrent Adds have
// no defined order among each other. Begin costs O(1) per message whatever
// the backlog: the outbox keeps, per priority, the queue of where each
// record is (about 60 bytes of memory per guaranteed message held), and
// reads adjacent records with one read.
//
// Space: the directory stays within MaxBytes + one segment (see
// OutboxOptions.MaxBytes); segments are MaxBytes/16 (64 KiB..4 MiB). A
// segment is deleted once every message in it was delivered (the oldest
// first, which is the common case when a backlog drains). When delivered
// messages scattered over many segments hold more space than the messages
// still queued (and more than two segments), or the log is within a
// segment of its bound, the segment with the most such space is compacted:
// its queued records are copied to the end of the log and it is deleted.
// Under the bound's pressure a segment qualifies when a fifth of it at
// least is delivered (compacting writes at most four bytes per byte it
// frees) and its copies fit below MaxBytes + one segment. An Add that does
// not fit first asks for such compactions (sealing the segment appended
// to, when it qualifies, so that a bound smaller than a segment works
// too), and fails with ports.ErrOutboxFull only when they cannot make
// room. So the log also stays below
// 2 × (held JSON + 22 bytes per message) + 3 segments; with nothing
// delivered (the cloud down) it is the held JSON + 22 bytes per message +
// a 37-byte header per segment.
//
// A full disk: Add fails with the write's error (wrapping ENOSPC) and adds
// nothing; the partial write is cut off. End keeps working: when its write
// fails for room, the outbox deletes its reserve file (RESERVE) and writes
// the acknowledgements alone into the room that gives, so that delivering
// messages frees the segments the outbox itself filled; until the reserve
// can be made again, Adds are refused with "the disk is full (N bytes are
// kept free for acknowledgements)". When room returns (delivered segments
// deleted, or other files removed) it works again without intervention.
//
// Recovery: OpenOutbox replays the log in order. A torn tail (a write cut
// short by a crash) is cut off and counted in Stats().Torn; a damaged
// record is skipped up to the next valid one, logged and counted in
// Stats().Corrupt (as is a record whose JSON no longer decodes, found by
// Begin), and its segment is compacted so it is not met again; neither
// ever stops the outbox from opening. Messages of batches still open at
// Close or a crash are sent again after the next OpenOutbox.
//
// Why a log and not bbolt (the previous implementation): an Add is one
// sequential append and one fsync rather than a B+tree's page writes and
// two fsyncs. Measured on one machine in one interleaved run (medians of
// five rounds of BenchmarkOutboxAddGuaranteed and BenchmarkOutboxDrain):
// 2,794 / 19,402 / 93,521 messages/s acknowledged to 1 / 16 / 128
// concurrent callers against bbolt's 1,791 / 7,956 / 31,257; drain
// 106,928 against 98,457 messages/s. And all its I/O goes through FS, so
// TestOutboxPowerLoss crashes it after each of more than a thousand
// operations; bbolt writes through *os.File itself.
//
// All methods are safe for concurrent use. Messages passed to Add and
// returned by Begin are shared read-only.
type Outbox struct {
	path     string
	fsys     FS
	log      *slog.Logger
	noSync   bool
	maxG     int64 // MaxBytes: the directory's bound
	maxMem   int64
	segBytes int64
	lock     io.Closer
	lastSeq  atomic.Uint64 // last sequence number handed out
	commits  atomic.Int64

	// Group commit: the queue of writes and whether a leader is writing.
	// Never held together with mu.
	cmu        sync.Mutex
	cqueue     []*commitReq
	committing bool

	// w is the log writer's state. Only the commit leader uses it (one at
	// a time, handed over under cmu), or OpenOutbox and Close while no one
	// else can.
	w writer

	// mu guards the rest, and the fields of records that the leader
	// changes (it holds mu for that). Begin holds it while it reads
	// records; the leader never holds it during I/O.
	mu       sync.Mutex
	closed   bool
	busy     sync.WaitGroup // Adds and Ends past the closed check
	lanes    [message.PriorityHighest + 1]lane
	open     map[uint64][]item
	batchSeq uint64
	stats    OutboxStats
	memBytes int64  // non-guaranteed bytes held, open batches included
	voids    []*rec // corrupt records found by Begin, to acknowledge in the next write
	// admitted counts the record bytes of Adds admitted against the bound
	// and not written yet; compactable what compacting the segments that
	// qualify under pressure would free (set by the leader after a write).
	admitted, compactable int64
}

// writer is the state of the log's writing side.
type writer struct {
	segs     []*segment // oldest first; appends go to the last unless sealed
	sealed   bool       // the last segment takes no more appends: start a new one
	nextNum  uint64     // number of the next segment
	buf      []byte     // reused for each write
	voidSeqs []uint64   // messages of failed writes, to acknowledge in the next write
	dirDirty bool       // a removal was not made durable: sync the directory before the next one
	reserve  bool       // the reserve file exists
	// Counters for tests: segments compacted and deleted.
	compacted, removed int
}

// segment is one file of the log.
type segment struct {
	num       uint64
	name      string // path
	f         File
	size      int64  // bytes of valid frames (the file may hold a damaged tail beyond until cut)
	live      int64  // frame bytes of the records held here that are still queued
	recs      []*rec // records that were placed here, by offset (some moved or delivered since)
	minSeq    uint64 // smallest and largest number of the message frames here, moved or not
	maxSeq    uint64
	dirSynced bool // its directory entry is durable
	corrupt   bool // holds damaged frames: compact it
	unusable  bool // reading it failed: never compact it
}

// rec is where a guaranteed message's record is.
type rec struct {
	seq  uint64
	seg  *segment // nil: lost (found damaged by a compaction)
	off  int64
	n    int32 // frame bytes
	prio message.Priority
	dead bool // its acknowledgement is durable
}

// size returns the message's JSON bytes.
func (r *rec) size() int { return int(r.n) - recordOverhead }

// item is one message held by the outbox, outside the disk queues.
type item struct {
	seq    uint64
	size   int             // encoded JSON bytes
	rec    *rec            // guaranteed: its record; nil otherwise
	msg    message.Message // set unless unread
	unread bool            // taken from a disk queue, msg not read yet
}

// lane is the state of one priority. Its messages, in order, are the merge
// by seq of back, mem and disk[head:].
type lane struct {
	back []item // put back by End, sorted by seq
	mem  []item // non-guaranteed messages never taken, sorted by seq
	disk []*rec // guaranteed messages never taken, sorted by seq, from head
	head int
}

// OpenOutbox opens (creating it and its parents, mode 0700, if needed) the
// outbox directory at path, takes its lock, replays its log and makes what
// it found durable. The directory holds the log's segments seg-*.wal, LOCK
// and RESERVE (room given back when the disk is full), each mode 0600, and
// nothing else (files whose name starts with a dot are ignored).
//
// Errors name the directory: an option out of range; another process
// holding it (after waiting a second); a path that is a file (an outbox of
// iotnode before the log format was one bbolt file: move it away); a file
// in it that is not the outbox's; a log of another format; or the I/O
// that failed.
func OpenOutbox(path string, opts OutboxOptions) (*Outbox, error) {
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("outbox %s: MaxBytes %d: want 0 (default) or more", path, opts.MaxBytes)
	}
	if opts.MaxMemoryBytes < 0 {
		return nil, fmt.Errorf("outbox %s: MaxMemoryBytes %d: want 0 (default) or more", path, opts.MaxMemoryBytes)
	}
	o := &Outbox{
		path:     path,
		fsys:     opts.FS,
		log:      opts.Logger,
		noSync:   opts.NoSync,
		maxG:     opts.MaxBytes,
		maxMem:   int64(opts.MaxMemoryBytes),
		segBytes: opts.segmentBytes,
		open:     map[uint64][]item{},
	}
	if o.fsys == nil {
		o.fsys = osFS{}
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.maxG == 0 {
		o.maxG = DefaultOutboxMaxBytes
	}
	if o.maxMem == 0 {
		o.maxMem = DefaultOutboxMaxMemoryBytes
	}
	if o.segBytes == 0 {
		o.segBytes = min(max(o.maxG/16, minSegmentBytes), maxSegmentBytes)
	}
	if o.maxG <= o.reserveBytes()+segHeaderSize {
		return nil, fmt.Errorf("outbox %s: MaxBytes %d: want more than %d, the reserve file's %d bytes and a segment header",
			path, opts.MaxBytes, o.reserveBytes()+segHeaderSize, o.reserveBytes())
	}
	if err := o.fsys.MkdirAll(path, 0o700); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && errors.Is(err, syscall.ENOTDIR) && filepath.Clean(pe.Path) == filepath.Clean(path) {
			return nil, fmt.Errorf("outbox %s: a file, not a directory (an outbox of an older iotnode, in bbolt format?); move it away to start with an empty outbox", path)
		}
		return nil, fmt.Errorf("outbox %s: create its directory: %w", path, unwrapPath(err))
	}
	if err := o.takeLock(); err != nil {
		return nil, err
	}
	if err := o.replay(); err != nil {
		_ = o.closeFiles() // the replay error is the one to report
		return nil, err
	}
	// Compact damaged segments now, so that the damage is not met again. A
	// failure (a full disk, say) leaves them for a later write.
	damaged := 0
	for _, s := range o.w.segs {
		if s.corrupt {
			damaged++
		}
	}
	for range damaged {
		if err := o.write(nil); err != nil {
			o.log.Warn("cannot compact a damaged outbox segment", "path", o.path, "error", err.Error())
			break
		}
	}
	o.updateCompactable()
	if err := o.ensureReserve(); err != nil {
		o.log.Warn("the disk is full: guaranteed messages are refused until there is room", "path", o.path, "error", err.Error())
	}
	return o, nil
}

// reserveBytes is the size of the reserve file.
func (o *Outbox) reserveBytes() int64 { return max(minReserveBytes, o.segBytes/32) }

// room returns the bytes the log's records may take when Adds are
// admitted: the bound less the reserve file and the header of the segment
// the write may start.
func (o *Outbox) room() int64 { return o.maxG - o.reserveBytes() - segHeaderSize }

// ensureReserve creates the reserve file, unless it exists: room that a
// full disk gives back for acknowledgements (see write). While it is
// missing, Adds are refused with its error.
func (o *Outbox) ensureReserve() error {
	if o.w.reserve {
		return nil
	}
	name := filepath.Join(o.path, reserveFileName)
	f, err := o.fsys.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", reserveFileName, unwrapPath(err))
	}
	zeros := make([]byte, min(o.reserveBytes(), 16<<10))
	for left := o.reserveBytes(); left > 0 && err == nil; left -= int64(len(zeros)) {
		_, err = f.Write(zeros[:min(left, int64(len(zeros)))])
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = o.fsys.Remove(name) // give back what it took; the write error is the one to report
		return fmt.Errorf("write %s: %w", reserveFileName, unwrapPath(err))
	}
	o.w.reserve = true
	o.mu.Lock()
	o.stats.ReserveBytes = o.reserveBytes()
	o.mu.Unlock()
	return nil
}

// freeReserve deletes the reserve file and reports whether that freed
// space.
func (o *Outbox) freeReserve() bool {
	if !o.w.reserve {
		return false
	}
	o.w.reserve = false
	if err := o.fsys.Remove(filepath.Join(o.path, reserveFileName)); err != nil {
		o.log.Warn("cannot delete the outbox's reserve file", "path", o.path, "error", err.Error())
		return false
	}
	o.mu.Lock()
	o.stats.ReserveBytes = 0
	o.mu.Unlock()
	o.log.Warn("the disk is full: writing acknowledgements into the outbox's reserved space", "path", o.path)
	return true
}

// takeLock takes the directory's lock, when the FS can lock.
func (o *Outbox) takeLock() error {
	l, ok := o.fsys.(Locker)
	if !ok {
		return nil
	}
	name := filepath.Join(o.path, lockFileName)
	deadline := time.Now().Add(outboxLockTimeout)
	for {
		c, err := l.Lock(name)
		switch {
		case err == nil:
			o.lock = c
			return nil
		case !errors.Is(err, ErrLocked):
			return fmt.Errorf("outbox %s: lock %s: %w", o.path, name, unwrapPath(err))
		case time.Now().After(deadline):
			return fmt.Errorf("outbox %s: another process has it open (waited %v for its lock): %w", o.path, outboxLockTimeout, ErrLocked)
		}
		time.Sleep(lockPollInterval)
	}
}

// segmentNum returns the number of a segment file name.
func segmentNum(name string) (uint64, bool) {
	hex, ok := strings.CutPrefix(name, segmentPrefix)
	if !ok {
		return 0, false
	}
	if hex, ok = strings.CutSuffix(hex, segmentSuffix); !ok || len(hex) != 16 {
		return 0, false
	}
	n, err := strconv.ParseUint(hex, 16, 64)
	return n, err == nil
}

func (o *Outbox) segmentName(num uint64) string {
	return filepath.Join(o.path, fmt.Sprintf("%s%016x%s", segmentPrefix, num, segmentSuffix))
}

// replay reads every segment in order, cuts damaged tails off, and builds
// the queues of the messages held; o is not shared yet.
func (o *Outbox) replay() error {
	names, err := o.fsys.ReadDir(o.path)
	if err != nil {
		return fmt.Errorf("outbox %s: list it: %w", o.path, unwrapPath(err))
	}
	var nums []uint64
	for _, name := range names {
		if num, ok := segmentNum(name); ok {
			nums = append(nums, num)
			continue
		}
		if name != lockFileName && name != reserveFileName && !strings.HasPrefix(name, ".") {
			return fmt.Errorf("outbox %s: holds %q, which is not an outbox file; want a directory of the outbox's own files (seg-*.wal, LOCK, RESERVE)", o.path, name)
		}
	}
	slices.Sort(nums)
	recs := map[uint64]*rec{}
	var last uint64
	for i, num := range nums {
		s := &segment{num: num, name: o.segmentName(num), minSeq: ^uint64(0), dirSynced: true}
		if s.f, err = o.fsys.OpenFile(s.name, os.O_RDWR|os.O_APPEND, 0o600); err != nil {
			return fmt.Errorf("outbox %s: open %s: %w", o.path, filepath.Base(s.name), unwrapPath(err))
		}
		o.w.segs = append(o.w.segs, s)
		data, err := readAll(s.f)
		if err != nil {
			return fmt.Errorf("outbox %s: read %s: %w", o.path, filepath.Base(s.name), unwrapPath(err))
		}
		var bad []string // why frames with a valid checksum are unusable
		var format error // a header of another format
		res := scanFrames(data, func(off int, p []byte) {
			switch p[0] {
			case kindHeader:
				f, seq, err := parseHeader(p)
				switch {
				case off == 0 && f != "" && f != walFormat:
					format = err // a log of another format: not ours to skip
				case err != nil:
					bad = append(bad, fmt.Sprintf("offset %d: %v", off, err))
				case off != 0:
					bad = append(bad, fmt.Sprintf("offset %d: a segment header in the middle", off))
				default:
					last = max(last, seq)
				}
			case kindMessage:
				prio, seq, _, err := parseMessage(p)
				if err != nil {
					bad = append(bad, fmt.Sprintf("offset %d: %v", off, err))
					return
				}
				last = max(last, seq)
				s.minSeq, s.maxSeq = min(s.minSeq, seq), max(s.maxSeq, seq)
				r := recs[seq]
				if r == nil {
					r = &rec{seq: seq, prio: prio}
					recs[seq] = r
				}
				r.seg, r.off, r.n = s, int64(off), int32(frameHeaderSize+len(p)) // a later copy wins
			case kindAck:
				seqs, err := parseAck(p)
				if err != nil {
					bad = append(bad, fmt.Sprintf("offset %d: %v", off, err))
					return
				}
				for _, seq := range seqs {
					delete(recs, seq)
					last = max(last, seq)
				}
			default:
				bad = append(bad, fmt.Sprintf("offset %d: unknown record kind %q", off, p[0]))
			}
		})
		if format != nil {
			return fmt.Errorf("outbox %s: %s: %w", o.path, filepath.Base(s.name), format)
		}
		for _, why := range bad {
			o.skipped(s, why)
		}
		for range res.corrupt {
			o.skipped(s, "damaged bytes (a checksum fails), skipped up to the next valid record")
		}
		s.size = int64(res.end)
		if res.end < len(data) {
			if res.torn {
				o.stats.Torn++
				o.log.Warn("cutting off a torn write at the end of the outbox log (a crash during a write)",
					"path", s.name, "offset", res.end, "bytes", len(data)-res.end)
			}
			if err := s.f.Truncate(int64(res.end)); err != nil {
				return fmt.Errorf("outbox %s: cut the damaged tail of %s: %w", o.path, filepath.Base(s.name), unwrapPath(err))
			}
		}
		if s.corrupt && i == len(nums)-1 {
			o.w.sealed = true // compacted right after: append elsewhere
		}
		o.w.nextNum = num + 1
	}
	// Make what was found durable: a previous process may have died before
	// its fsync (its callers never heard back, but this one builds on it).
	if !o.noSync {
		for _, s := range o.w.segs {
			if err := s.f.Sync(); err != nil {
				return fmt.Errorf("outbox %s: fsync %s: %w", o.path, filepath.Base(s.name), unwrapPath(err))
			}
		}
		if err := o.fsys.SyncDir(o.path); err != nil {
			return fmt.Errorf("outbox %s: fsync the directory: %w", o.path, unwrapPath(err))
		}
	}

	held := make([]*rec, 0, len(recs))
	for _, r := range recs {
		held = append(held, r)
	}
	slices.SortFunc(held, func(a, b *rec) int { return cmpSeq(a.seq, b.seq) })
	for _, r := range held {
		r.seg.recs = append(r.seg.recs, r)
		r.seg.live += int64(r.n)
		o.lanes[r.prio].disk = append(o.lanes[r.prio].disk, r)
		o.stats.Guaranteed++
		o.stats.GuaranteedBytes += int64(r.size())
	}
	for _, s := range o.w.segs {
		slices.SortFunc(s.recs, func(a, b *rec) int { return cmpSeq(uint64(a.off), uint64(b.off)) })
		o.stats.DiskBytes += s.size
	}
	o.stats.Queued, o.stats.QueuedBytes = o.stats.Guaranteed, o.stats.GuaranteedBytes
	o.lastSeq.Store(last)
	return nil
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// skipped logs and counts a damaged record of s, and marks s for
// compaction.
func (o *Outbox) skipped(s *segment, why string) {
	o.stats.Corrupt++
	s.corrupt = true
	o.log.Warn("skipping a corrupt outbox record", "path", s.name, "reason", why)
}

// readAll reads a whole file through ReadAt.
func readAll(f File) ([]byte, error) {
	data := make([]byte, 0, 8<<10)
	for {
		if len(data) == cap(data) {
			data = slices.Grow(data, min(cap(data), 1<<20))
		}
		n, err := f.ReadAt(data[len(data):cap(data)], int64(len(data)))
		data = data[:len(data)+n]
		if errors.Is(err, io.EOF) {
			return data, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// Path returns the outbox directory's path.
func (o *Outbox) Path() string { return o.path }

// Stats returns the outbox's counters.
func (o *Outbox) Stats() OutboxStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := o.stats
	st.Commits = o.commits.Load()
	return st
}

// pendingMsg is one message of an Add, ready to be stored.
type pendingMsg struct {
	size int
	json []byte // the JSON of a guaranteed message, nil otherwise
}

// Add implements ports.Outbox. Once ctx is checked and the messages are
// queued for the disk, Add waits for the write (disk I/O only), so that its
// answer is exact: nil means every guaranteed message is on disk; an error
// means none of the messages was added. Errors: a message that cannot be
// encoded (naming its index and field), ports.ErrOutboxFull (the records
// do not fit in MaxBytes, even after compacting what can be: see
// OutboxOptions.MaxBytes), ports.ErrClosed, ctx's error, or the write that
// failed (a full disk, a failed fsync: later Adds try again, nothing needs
// repair).
func (o *Outbox) Add(ctx context.Context, msgs ...message.Message) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("outbox add: %w", err)
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	pend := make([]pendingMsg, len(msgs))
	var gCount, gBytes int64
	for i := range msgs {
		m := &msgs[i]
		if !m.Priority.Valid() {
			return 0, fmt.Errorf("outbox add: message %d: priority %d: want %d (LOWEST)..%d (HIGHEST)",
				i, m.Priority, message.PriorityLowest, message.PriorityHighest)
		}
		size := message.EncodedSize(m)
		if size < 0 {
			_, err := message.AppendJSON(nil, m) // says which field
			return 0, fmt.Errorf("outbox add: message %d: %w", i, err)
		}
		pend[i].size = size
		if m.Reliability != message.GuaranteedDelivery {
			continue
		}
		if size > maxPayload-msgPrefixSize {
			return 0, fmt.Errorf("outbox add: message %d: %d bytes of JSON: want at most %d", i, size, maxPayload-msgPrefixSize)
		}
		json, err := message.AppendJSON(make([]byte, 0, size), m)
		if err != nil {
			return 0, fmt.Errorf("outbox add: message %d: %w", i, err)
		}
		pend[i].json = json
		gCount++
		gBytes += int64(size)
	}

	// Reserve room for the guaranteed messages' records before writing
	// them, so that concurrent Adds cannot overshoot the bound together.
	need := gBytes + gCount*recordOverhead
	if need > o.room() {
		return 0, fmt.Errorf("outbox add: %d guaranteed message(s) take %d bytes on disk: want at most %d "+
			"(MaxBytes %d less the %d-byte reserve file and a %d-byte segment header): %w",
			gCount, need, o.room(), o.maxG, o.reserveBytes(), segHeaderSize, ports.ErrOutboxFull)
	}
	for compactions := 0; ; compactions++ {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return 0, fmt.Errorf("outbox add: %s: %w", o.path, ports.ErrClosed)
		}
		if gCount == 0 || o.stats.DiskBytes+o.admitted+need <= o.room() {
			break // o.mu held
		}
		if o.compactable < need || compactions >= maxCompactionsPerAdd {
			held, used := o.stats.Guaranteed, o.stats.DiskBytes+o.admitted+o.stats.ReserveBytes
			o.mu.Unlock()
			return 0, fmt.Errorf("outbox add: %d guaranteed message(s) (%d bytes on disk) do not fit: the outbox %s holds %d in %d of its %d bytes: %w",
				gCount, need, o.path, held, used, o.maxG, ports.ErrOutboxFull)
		}
		// Delivered messages hold room a compaction gives back: ask the
		// writer for one, then try again.
		o.busy.Add(1)
		o.mu.Unlock()
		err := o.commit(&commitReq{compact: true, wake: make(chan struct{}, 1)})
		o.busy.Done()
		if err != nil {
			return 0, fmt.Errorf("outbox add: %d guaranteed message(s) do not fit (%w), and compacting %s to make room failed: %w",
				gCount, ports.ErrOutboxFull, o.path, err)
		}
	}
	if gCount == 0 {
		defer o.mu.Unlock()
		last := o.lastSeq.Add(uint64(len(msgs)))
		dropped := o.addToMemory(msgs, pend, func(i int) uint64 { return last - uint64(len(msgs)-1-i) })
		return dropped, nil
	}
	o.stats.Guaranteed += gCount
	o.stats.GuaranteedBytes += gBytes
	o.stats.Queued += gCount
	o.stats.QueuedBytes += gBytes
	o.admitted += need
	o.busy.Add(1)
	o.mu.Unlock()
	defer o.busy.Done()

	req := &commitReq{msgs: msgs, pend: pend, admitted: need, wake: make(chan struct{}, 1)}
	if err := o.commit(req); err != nil {
		o.mu.Lock()
		o.admitted -= req.admitted
		o.stats.Guaranteed -= gCount
		o.stats.GuaranteedBytes -= gBytes
		o.stats.Queued -= gCount
		o.stats.QueuedBytes -= gBytes
		o.mu.Unlock()
		return 0, fmt.Errorf("outbox add: write %d guaranteed messages to %s: %w", gCount, o.path, err)
	}
	return req.dropped, nil
}

// addToMemory queues the non-guaranteed messages of an Add, numbered by
// seq, sheds what no longer fits and returns how many messages were
// dropped; o.mu is held.
func (o *Outbox) addToMemory(msgs []message.Message, pend []pendingMsg, seq func(int) uint64) int {
	dropped, added := 0, false
	for i := range msgs {
		if pend[i].json != nil {
			continue
		}
		if int64(pend[i].size) > o.maxMem {
			dropped++ // would push out everything else and still not fit
			continue
		}
		l := &o.lanes[msgs[i].Priority]
		l.mem = insertBySeq(l.mem, item{seq: seq(i), size: pend[i].size, msg: msgs[i]})
		o.memBytes += int64(pend[i].size)
		o.stats.Queued++
		o.stats.QueuedBytes += int64(pend[i].size)
		added = true
	}
	if added {
		dropped += o.shed()
	}
	o.stats.Dropped += int64(dropped)
	return dropped
}

// insertBySeq inserts it into q, sorted by seq; usually an append.
func insertBySeq(q []item, it item) []item {
	i := len(q)
	for i > 0 && q[i-1].seq > it.seq {
		i--
	}
	return slices.Insert(q, i, it)
}

// shed drops the oldest non-guaranteed messages of the lowest priority that
// has any, not counting open batches, until the memory bound holds or
// nothing is left to drop. It returns how many it dropped; o.mu is held.
func (o *Outbox) shed() int {
	n := 0
	for o.memBytes > o.maxMem {
		dropped := false
		for p := range o.lanes {
			l := &o.lanes[p]
			bi := slices.IndexFunc(l.back, func(it item) bool { return it.rec == nil })
			var victim item
			switch {
			case bi >= 0 && (len(l.mem) == 0 || l.back[bi].seq < l.mem[0].seq):
				victim = l.back[bi]
				l.back = slices.Delete(l.back, bi, bi+1)
				o.stats.DroppedUnconfirmed++ // sent before: the cloud may have it
			case len(l.mem) > 0:
				victim = l.mem[0]
				l.mem[0] = item{} // let the message be collected
				l.mem = l.mem[1:]
			default:
				continue
			}
			o.memBytes -= int64(victim.size)
			o.stats.Queued--
			o.stats.QueuedBytes -= int64(victim.size)
			n++
			dropped = true
			break
		}
		if !dropped {
			break // all in open batches: over the bound until they end
		}
	}
	return n
}

// commitReq is one caller's share of a group commit: an Add's messages, an
// End's acknowledgements, or nothing (Close flushing).
type commitReq struct {
	msgs     []message.Message
	pend     []pendingMsg
	admitted int64         // record bytes counted in Outbox.admitted; the write that applies them zeroes it
	compact  bool          // an Add that does not fit asks for a compaction
	acks     []*rec        // delivered guaranteed messages
	firstSeq uint64        // set by the commit: the number of msgs[0], the others follow
	dropped  int           // set by the commit: non-guaranteed messages dropped
	err      error         // set by the commit
	wake     chan struct{} // receives once: done, or lead is set
	lead     bool          // set (under cmu) before wake when this caller must lead the next commit
}

// commit writes r (with whatever else is queued) in one log write and
// returns its outcome. The caller that finds no commit running leads: it
// writes all queued requests, wakes their callers, and hands leadership to
// the first request queued meanwhile, whose caller then writes the next
// round. Nothing waits for a timer and no goroutine is started.
func (o *Outbox) commit(r *commitReq) error {
	o.cmu.Lock()
	o.cqueue = append(o.cqueue, r)
	if o.committing {
		o.cmu.Unlock()
		<-r.wake
		if !r.lead {
			return r.err
		}
		o.cmu.Lock() // r leads this round; r is in the queue
	} else {
		o.committing = true
	}
	round := o.cqueue
	o.cqueue = nil
	o.cmu.Unlock()

	o.write(round) // sets each request's err

	o.cmu.Lock()
	var next *commitReq
	if len(o.cqueue) > 0 {
		next = o.cqueue[0]
		next.lead = true
	} else {
		o.committing = false
	}
	o.cmu.Unlock()
	for _, q := range round {
		if q != r {
			q.wake <- struct{}{}
		}
	}
	if next != nil {
		next.wake <- struct{}{}
	}
	return r.err
}

// newRec is a message of the write being prepared.
type newRec struct {
	req  *commitReq
	i    int // index in req.msgs
	seq  uint64
	off  int64 // of its frame in the segment
	size int   // frame bytes; 0 for a non-guaranteed message
}

// roundPlan is what one write appends.
type roundPlan struct {
	act    *segment
	base   int64 // act's size before the write
	buf    []byte
	cp     *compaction
	moved  []int64  // new offsets of cp.copies
	voids  []*rec   // records Begin found damaged
	acks   []uint64 // every number acknowledged
	recs   []newRec
	failed []uint64 // numbers of the new guaranteed messages
}

// write appends one round to the log: a compaction's copies if one is due,
// one acknowledgement record (End's deliveries, records found damaged,
// records of failed writes, acknowledgements a compaction carries over),
// then the round's messages; then fsyncs, applies the outcome to the
// queues, and deletes the segments no longer needed. It sets each
// request's err and returns the write's error. When the disk is full and
// the round acknowledges something, it frees the reserve file and writes
// the acknowledgements alone, so that delivering messages can free the
// space that the outbox itself filled; the round's Adds fail then. Only
// the commit leader calls it (or OpenOutbox and Close, alone).
func (o *Outbox) write(round []*commitReq) error {
	w := &o.w
	round, refused := o.admit(round)
	o.mu.Lock()
	voids := o.voids
	o.voids = nil
	o.mu.Unlock()
	if len(round) == 0 && len(voids) == 0 && refused != nil {
		return refused
	}
	defer o.updateCompactable()
	forced := slices.ContainsFunc(round, func(q *commitReq) bool { return q.compact })
	if n := len(w.segs); forced && n > 0 && !w.sealed && compactable(w.segs[n-1], o.headroom()) {
		// The segment appended to holds the room: seal it, so that this
		// round compacts it (or deletes it, when it is the oldest and fully
		// delivered). A bound smaller than a segment relies on this.
		w.sealed = true
	} else if forced && len(voids) == 0 && len(w.voidSeqs) == 0 && o.pickVictim(true) == nil &&
		!slices.ContainsFunc(round, func(q *commitReq) bool { return len(q.msgs) > 0 || len(q.acks) > 0 }) {
		return nil // nothing to write, nothing worth compacting
	}

	if n := len(w.segs); n == 0 || w.sealed || w.segs[n-1].size >= o.segBytes {
		if err := o.newSegment(); err != nil {
			return o.fail(round, voids, err)
		}
	}
	pl := o.prepare(round, voids, true, forced)
	if len(pl.buf) == 0 {
		return nil
	}
	err := o.flush(pl)
	if err != nil && errors.Is(err, syscall.ENOSPC) && !w.sealed && delivers(round, voids) && o.freeReserve() {
		// The failed write's own messages (now in w.voidSeqs) are
		// acknowledged too, in case some of them stayed on disk.
		acksOnly := o.prepare(nil, voids, false, false)
		acksOnly.acks = sortedUnique(slices.Concat(pl.acks, w.voidSeqs))
		acksOnly.buf = appendAckFrame(acksOnly.buf, acksOnly.acks)
		if o.flush(acksOnly) == nil {
			o.apply(acksOnly, round)
			for _, q := range round {
				if len(q.msgs) > 0 {
					q.err = err
				}
			}
			return err
		}
	}
	if err != nil {
		return o.fail(round, voids, err)
	}
	o.apply(pl, round)
	return nil
}

// admit refuses the round's Adds while the reserve file is missing (the
// disk was full) and cannot be made again: the room left is kept for
// acknowledgements, so that delivering can always free space. It returns
// the requests to write and the refusal, if any.
func (o *Outbox) admit(round []*commitReq) ([]*commitReq, error) {
	if o.w.reserve || !slices.ContainsFunc(round, func(q *commitReq) bool { return len(q.msgs) > 0 }) {
		return round, nil
	}
	err := o.ensureReserve()
	if err == nil {
		return round, nil
	}
	err = fmt.Errorf("the disk is full (%d bytes are kept free for acknowledgements): %w", o.reserveBytes(), err)
	var keep []*commitReq
	for _, q := range round {
		if len(q.msgs) > 0 {
			q.err = err
		} else {
			keep = append(keep, q)
		}
	}
	return keep, err
}

// delivers reports whether a round acknowledges deliveries or damaged
// records (not only failed writes, which can wait).
func delivers(round []*commitReq, voids []*rec) bool {
	return len(voids) > 0 || slices.ContainsFunc(round, func(q *commitReq) bool { return len(q.acks) > 0 })
}

// fail records a write's failure: every request fails, and the records
// Begin found damaged wait for the next write.
func (o *Outbox) fail(round []*commitReq, voids []*rec, err error) error {
	o.mu.Lock()
	o.voids = append(o.voids, voids...)
	o.mu.Unlock()
	for _, q := range round {
		q.err = err
	}
	return err
}

// prepare builds the bytes of a round (with everything but the
// acknowledgement frame when full is false: the caller adds it). forced
// asks for a compaction whenever one frees room (pickVictim).
func (o *Outbox) prepare(round []*commitReq, voids []*rec, full, forced bool) *roundPlan {
	w := &o.w
	act := w.segs[len(w.segs)-1]
	pl := &roundPlan{act: act, base: act.size, buf: w.buf[:0], voids: voids}
	if act.size == 0 {
		pl.buf = appendHeaderFrame(pl.buf, o.lastSeq.Load())
	}
	if !full {
		return pl
	}
	if victim := o.pickVictim(forced); victim != nil {
		pl.cp = o.planCompaction(victim)
	}
	if pl.cp != nil {
		for _, c := range pl.cp.copies {
			pl.moved = append(pl.moved, pl.base+int64(len(pl.buf)))
			pl.buf = append(pl.buf, pl.cp.data[c.off:c.off+int64(c.n)]...)
		}
		pl.acks = append(pl.acks, pl.cp.reAcks...)
	}
	pl.acks = append(pl.acks, w.voidSeqs...)
	for _, r := range voids {
		pl.acks = append(pl.acks, r.seq)
	}
	for _, q := range round {
		for _, r := range q.acks {
			pl.acks = append(pl.acks, r.seq)
		}
	}
	if len(pl.acks) > 0 {
		pl.acks = sortedUnique(pl.acks)
		pl.buf = appendAckFrame(pl.buf, pl.acks)
	}
	for _, q := range round {
		for i := range q.msgs {
			nr := newRec{req: q, i: i, seq: o.lastSeq.Add(1)}
			if i == 0 {
				q.firstSeq = nr.seq
			}
			if q.pend[i].json != nil {
				nr.off = pl.base + int64(len(pl.buf))
				pl.buf = appendMessageFrame(pl.buf, q.msgs[i].Priority, nr.seq, q.pend[i].json)
				nr.size = int(pl.base + int64(len(pl.buf)) - nr.off)
				pl.failed = append(pl.failed, nr.seq)
			}
			pl.recs = append(pl.recs, nr)
		}
	}
	return pl
}

// flush appends pl's bytes durably. On failure the segment is cut back
// and the new messages' numbers are kept for acknowledgement by the next
// write, so that whatever of them reached the disk never comes back.
func (o *Outbox) flush(pl *roundPlan) error {
	w := &o.w
	w.buf = pl.buf[:0] // reuse the memory next time
	o.commits.Add(1)
	if err := o.appendDurably(pl.act, pl.buf); err != nil {
		o.rollback(pl.act, pl.base, int64(len(pl.buf)))
		w.voidSeqs = append(w.voidSeqs, pl.failed...)
		return err
	}
	pl.act.size += int64(len(pl.buf))
	w.voidSeqs = w.voidSeqs[:0]
	return nil
}

// apply makes the queues reflect a durable round: moves first, then
// acknowledgements, then the new messages; then deletes the segments no
// longer needed.
func (o *Outbox) apply(pl *roundPlan, round []*commitReq) {
	w := &o.w
	act := pl.act
	o.mu.Lock()
	if cp := pl.cp; cp != nil {
		for i, c := range cp.copies {
			r := c.rec
			r.seg.live -= int64(r.n)
			r.seg, r.off = act, pl.moved[i]
			act.live += int64(r.n)
			act.recs = append(act.recs, r)
			act.minSeq, act.maxSeq = min(act.minSeq, r.seq), max(act.maxSeq, r.seq)
		}
		for _, r := range cp.lost {
			r.seg.live -= int64(r.n)
			r.seg = nil
		}
	}
	for _, r := range pl.voids {
		o.markDead(r)
	}
	for _, q := range round {
		for _, r := range q.acks {
			o.markDead(r)
		}
	}
	for _, nr := range pl.recs {
		if nr.size == 0 {
			continue
		}
		r := &rec{seq: nr.seq, seg: act, off: nr.off, n: int32(nr.size), prio: nr.req.msgs[nr.i].Priority}
		act.recs = append(act.recs, r)
		act.live += int64(r.n)
		act.minSeq, act.maxSeq = min(act.minSeq, r.seq), max(act.maxSeq, r.seq)
		l := &o.lanes[r.prio]
		l.disk = append(l.disk, r)
	}
	if len(pl.recs) > 0 {
		for _, q := range round {
			if len(q.msgs) > 0 {
				q.dropped = o.addToMemory(q.msgs, q.pend, func(k int) uint64 { return q.firstSeq + uint64(k) })
				o.admitted -= q.admitted // in DiskBytes now
				q.admitted = 0
			}
		}
	}
	o.stats.DiskBytes += int64(len(pl.buf))
	var remove []*segment
	if pl.cp != nil {
		remove = append(remove, pl.cp.seg)
		w.compacted++
	}
	// Fully delivered segments at the front go: nothing older can need
	// their acknowledgements.
	for _, s := range w.segs[:len(w.segs)-1] {
		if s.live != 0 {
			break
		}
		if pl.cp == nil || s != pl.cp.seg {
			remove = append(remove, s)
		}
	}
	o.mu.Unlock()
	o.removeSegments(remove)
}

// markDead records that r's acknowledgement is durable; o.mu is held.
func (o *Outbox) markDead(r *rec) {
	if r.dead {
		return
	}
	r.dead = true
	if r.seg != nil {
		r.seg.live -= int64(r.n)
	}
}

// appendDurably writes buf at the end of s and makes it durable (and s's
// directory entry, the first time).
func (o *Outbox) appendDurably(s *segment, buf []byte) error {
	if _, err := s.f.Write(buf); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(s.name), unwrapPath(err))
	}
	if o.noSync {
		return nil
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", filepath.Base(s.name), unwrapPath(err))
	}
	if !s.dirSynced {
		if err := o.fsys.SyncDir(o.path); err != nil {
			return fmt.Errorf("fsync the directory after creating %s: %w", filepath.Base(s.name), unwrapPath(err))
		}
		s.dirSynced = true
		o.w.dirDirty = false
	}
	return nil
}

// rollback cuts s back to size after a failed write of n bytes. When that
// fails too, s's end is unknown: it is sealed (counted at its largest
// possible size) and the next write starts a new segment. Either way the
// records of the failed write are acknowledged by the next one, so that
// whatever of them reached the disk never comes back.
func (o *Outbox) rollback(s *segment, size, n int64) {
	err := s.f.Truncate(size)
	if err == nil && !o.noSync {
		err = s.f.Sync()
	}
	if err != nil {
		o.log.Warn("cannot cut a failed write off the outbox log; continuing in a new segment",
			"path", s.name, "error", err.Error())
		o.w.sealed = true
		o.mu.Lock()
		o.stats.DiskBytes += n
		o.mu.Unlock()
		s.size += n
	}
}

// newSegment creates the next segment file and makes it the one appended
// to. Its header and directory entry are written with the first round.
func (o *Outbox) newSegment() error {
	w := &o.w
	num := w.nextNum
	if num == 0 {
		num = 1
	}
	name := o.segmentName(num)
	if w.dirDirty && !o.noSync {
		if err := o.fsys.SyncDir(o.path); err != nil {
			return fmt.Errorf("fsync the directory: %w", unwrapPath(err))
		}
		w.dirDirty = false
	}
	f, err := o.fsys.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", filepath.Base(name), unwrapPath(err))
	}
	w.nextNum = num + 1
	w.segs = append(w.segs, &segment{num: num, name: name, f: f, minSeq: ^uint64(0), dirSynced: o.noSync})
	w.sealed = false
	return nil
}

// removeSegments deletes segments no longer needed, each made durable
// before the next (a later segment may acknowledge records of an earlier
// one: the earlier must never outlive it). A failure is logged; the file
// is found again by the next OpenOutbox, which copes (its records are
// duplicates or acknowledged).
func (o *Outbox) removeSegments(segs []*segment) {
	w := &o.w
	for _, s := range segs {
		if w.dirDirty && !o.noSync {
			if err := o.fsys.SyncDir(o.path); err != nil {
				o.log.Warn("cannot fsync the outbox directory; keeping segments for now", "path", o.path, "error", err.Error())
				return
			}
			w.dirDirty = false
		}
		i := slices.Index(w.segs, s)
		if i < 0 || i == len(w.segs)-1 {
			continue // never the segment appended to
		}
		w.segs = slices.Delete(w.segs, i, i+1)
		o.mu.Lock()
		o.stats.DiskBytes -= s.size
		o.mu.Unlock()
		if err := s.f.Close(); err != nil {
			o.log.Warn("cannot close an outbox segment", "path", s.name, "error", err.Error())
		}
		if err := o.fsys.Remove(s.name); err != nil {
			o.log.Warn("cannot delete an outbox segment", "path", s.name, "error", err.Error())
			continue
		}
		w.removed++
		w.dirDirty = true
	}
	if w.dirDirty && !o.noSync {
		if err := o.fsys.SyncDir(o.path); err != nil {
			o.log.Warn("cannot fsync the outbox directory", "path", o.path, "error", err.Error())
			return
		}
		w.dirDirty = false
	}
	if len(segs) > 0 && !w.reserve {
		if err := o.ensureReserve(); err != nil {
			o.log.Debug("cannot create the outbox's reserve file yet", "path", o.path, "error", err.Error())
		}
	}
}

// compaction is the plan to empty one segment.
type compaction struct {
	seg    *segment
	data   []byte // its content
	copies []frameRef
	lost   []*rec   // queued records whose frame is damaged
	reAcks []uint64 // acknowledgements in it that older segments still need
}

// frameRef is a queued record's frame in a compacted segment.
type frameRef struct {
	rec *rec
	off int64
	n   int32
}

// pickVictim returns the segment to compact in this round, or nil: a
// damaged one, else the one with the most delivered bytes when delivered
// messages hold more than the queued ones and more than two segments, or
// when the log is within a segment of its bound (or forced: an Add does
// not fit). Near the bound (or forced), only a segment at least half
// delivered qualifies: its copies then take less room than its deletion
// frees, so that compacting never takes the directory past MaxBytes + one
// segment. Fully delivered segments at the front are deleted without it.
func (o *Outbox) pickVictim(forced bool) *segment {
	w := &o.w
	if len(w.segs) < 2 {
		return nil
	}
	sealed := w.segs[:len(w.segs)-1]
	var garbage, live int64
	var best, bestUnder *segment // the most delivered bytes; among those that qualify under pressure
	for _, s := range w.segs {
		live += s.live
	}
	headroom := o.headroom()
	for _, s := range sealed {
		if s.unusable {
			continue
		}
		if s.corrupt {
			return s
		}
		garbage += s.size - s.live
		if best == nil || s.size-s.live > best.size-best.live {
			best = s
		}
		if compactable(s, headroom) && (bestUnder == nil || s.size-s.live > bestUnder.size-bestUnder.live) {
			bestUnder = s
		}
	}
	o.mu.Lock()
	pressure := o.stats.DiskBytes+o.admitted+o.reserveBytes()+o.segBytes > o.maxG
	o.mu.Unlock()
	switch {
	case pressure || forced:
		return bestUnder
	case best == nil || garbage <= max(2*o.segBytes, live):
		return nil
	}
	return best
}

// headroom returns how many bytes of copies a compaction may write now
// without taking the directory past MaxBytes + one segment, keeping an
// eighth of a segment for the acknowledgements written meanwhile.
func (o *Outbox) headroom() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.maxG + o.segBytes*7/8 - o.stats.DiskBytes - o.admitted - o.reserveBytes()
}

// compactable reports whether compacting s under the bound's pressure is
// allowed and worth it: its copies fit in headroom, and delivered records
// (and acknowledgements) take a fifth of it at least (so that compacting
// writes at most four bytes per byte it frees) and more than its header
// (which the segment that takes the copies has too).
func compactable(s *segment, headroom int64) bool {
	garbage := s.size - s.live
	return !s.unusable && s.live <= headroom && 4*garbage >= s.live && garbage > segHeaderSize
}

// updateCompactable records what compacting every segment that qualifies
// under pressure would free (the one appended to included: a forced round
// seals it), for Adds that do not fit; the leader calls it after each
// write.
func (o *Outbox) updateCompactable() {
	var n int64
	headroom := o.headroom()
	for _, s := range o.w.segs {
		if compactable(s, headroom) {
			n += s.size - s.live - segHeaderSize
		}
	}
	o.mu.Lock()
	o.compactable = n
	o.mu.Unlock()
}

// planCompaction reads s and finds what must survive it: its queued
// records and the acknowledgements of records still in older segments. A
// read error makes s unusable for compaction (logged), and nil is returned.
func (o *Outbox) planCompaction(s *segment) *compaction {
	data := make([]byte, s.size)
	if n, err := s.f.ReadAt(data, 0); int64(n) < s.size {
		o.log.Warn("cannot read an outbox segment to compact it", "path", s.name, "error", fmt.Sprint(err))
		s.unusable = true
		return nil
	}
	cp := &compaction{seg: s, data: data}
	older := o.w.segs[:slices.Index(o.w.segs, s)]
	found := map[*rec]bool{}
	j := 0
	res := scanFrames(data, func(off int, p []byte) {
		switch p[0] {
		case kindMessage:
			for j < len(s.recs) && s.recs[j].off < int64(off) {
				j++
			}
			if j < len(s.recs) && s.recs[j].off == int64(off) {
				if r := s.recs[j]; r.seg == s && !r.dead {
					cp.copies = append(cp.copies, frameRef{rec: r, off: int64(off), n: r.n})
					found[r] = true
				}
			}
		case kindAck:
			seqs, err := parseAck(p)
			if err != nil {
				return
			}
			for _, seq := range seqs {
				for _, os := range older {
					if os.minSeq <= seq && seq <= os.maxSeq {
						cp.reAcks = append(cp.reAcks, seq)
						break
					}
				}
			}
		}
	})
	for _, r := range s.recs {
		if r.seg == s && !r.dead && !found[r] {
			cp.lost = append(cp.lost, r)
		}
	}
	if res.corrupt > 0 || res.end < len(data) || len(cp.lost) > 0 {
		o.log.Warn("compacting a damaged outbox segment", "path", s.name, "lost_records", len(cp.lost))
	}
	return cp
}

// Begin implements ports.Outbox. It fails for max < 1, after Close
// (ports.ErrClosed), or when the log cannot be read (then nothing is
// taken). Damaged records met on the way are skipped, logged, counted and
// acknowledged with the next write so they are not met again.
func (o *Outbox) Begin(maxMsgs, maxBytes int) (ports.Batch, error) {
	if maxMsgs <= 0 {
		return ports.Batch{}, fmt.Errorf("outbox begin: max %d: want at least 1", maxMsgs)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return ports.Batch{}, fmt.Errorf("outbox begin: %s: %w", o.path, ports.ErrClosed)
	}
	var taken []item
	sum := 0
	for {
		saved := o.lanes
		plan, full := o.plan(maxMsgs-len(taken), maxBytes, len(taken), sum)
		bad, err := o.readRecords(plan)
		if err != nil {
			o.lanes = saved
			o.putBack(taken)
			return ports.Batch{}, fmt.Errorf("outbox begin: read %s: %w", o.path, err)
		}
		o.releaseTaken(saved)
		for i, it := range plan {
			if !bad[i] {
				taken = append(taken, it)
				sum += it.size
			}
		}
		if full || !slices.Contains(bad, true) {
			break // else fill the room the damaged ones left
		}
	}
	if len(taken) == 0 {
		return ports.Batch{}, nil
	}
	o.batchSeq++
	o.open[o.batchSeq] = taken
	o.stats.InFlight += int64(len(taken))
	b := ports.Batch{Seq: o.batchSeq, Messages: make([]message.Message, len(taken))}
	for i := range taken {
		b.Messages[i] = taken[i].msg
	}
	return b, nil
}

// plan takes up to n items from the lanes in order (priority first, then
// seq), with room for maxBytes given count items of sum bytes taken
// already; guaranteed ones taken from disk have no msg yet. full reports
// that an item did not fit (strict order: it blocks lower priorities too).
// It only reslices the lanes, so that restoring a copy undoes it; o.mu is
// held.
func (o *Outbox) plan(n, maxBytes, count, sum int) (plan []item, full bool) {
	for p := len(o.lanes) - 1; p >= 0 && len(plan) < n; p-- {
		l := &o.lanes[p]
		for len(plan) < n {
			// The lane's next message has the smallest seq of its three sources.
			const none, back, mem, disk = 0, 1, 2, 3
			src, seq := none, ^uint64(0)
			if len(l.back) > 0 {
				src, seq = back, l.back[0].seq
			}
			if len(l.mem) > 0 && l.mem[0].seq < seq {
				src, seq = mem, l.mem[0].seq
			}
			if l.head < len(l.disk) && (src == none || l.disk[l.head].seq < seq) {
				src = disk
			}
			var it item
			switch src {
			case none:
			case back:
				it = l.back[0]
			case mem:
				it = l.mem[0]
			case disk:
				r := l.disk[l.head]
				it = item{seq: r.seq, size: r.size(), rec: r, unread: true}
			}
			if src == none {
				break // the lane is empty
			}
			if maxBytes > 0 && count+len(plan) > 0 && message.ArraySize(count+len(plan)+1, sum+it.size) > maxBytes {
				return plan, true
			}
			switch src {
			case back:
				l.back = l.back[1:]
			case mem:
				l.mem = l.mem[1:]
			case disk:
				l.head++
			}
			plan = append(plan, it)
			sum += it.size
		}
	}
	return plan, false
}

// releaseTaken drops the references the lanes of saved still held to the
// items taken since, so they can be collected, and compacts the disk
// queues; o.mu is held.
func (o *Outbox) releaseTaken(saved [message.PriorityHighest + 1]lane) {
	for p := range o.lanes {
		l := &o.lanes[p]
		clear(saved[p].mem[:len(saved[p].mem)-len(l.mem)])
		clear(l.disk[saved[p].head:l.head])
		if l.head > 1024 && l.head > len(l.disk)/2 {
			n := copy(l.disk, l.disk[l.head:])
			clear(l.disk[n:])
			l.disk, l.head = l.disk[:n], 0
		}
	}
}

// readRecords reads and decodes the guaranteed messages of plan that come
// from disk (adjacent records with one read). bad[i] reports plan[i] found
// damaged: it was logged, counted, taken out of the stats and queued for
// acknowledgement. An error is an I/O error (nothing counted then); o.mu
// is held.
func (o *Outbox) readRecords(plan []item) (bad []bool, err error) {
	bad = make([]bool, len(plan))
	var damaged []int
	for i := 0; i < len(plan); {
		r := plan[i].rec
		if !plan[i].unread {
			i++ // in memory already
			continue
		}
		if r.seg == nil {
			bad[i] = true
			damaged = append(damaged, i)
			o.log.Warn("skipping a corrupt outbox record", "path", o.path, "seq", r.seq,
				"reason", "its frame was found damaged when its segment was compacted")
			i++
			continue
		}
		// A run of records adjacent in one segment.
		j, end := i+1, r.off+int64(r.n)
		for j < len(plan) && plan[j].rec != nil && plan[j].rec.seg == r.seg && plan[j].rec.off == end && plan[j].unread {
			end += int64(plan[j].rec.n)
			j++
		}
		data := make([]byte, end-r.off)
		n, rerr := r.seg.f.ReadAt(data, r.off)
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return nil, fmt.Errorf("%s: %w", filepath.Base(r.seg.name), unwrapPath(rerr))
		}
		data = data[:n]
		for k := i; k < j; k++ {
			rk := plan[k].rec
			m, why := decodeRecord(data, rk.off-r.off, rk)
			if why != "" {
				bad[k] = true
				damaged = append(damaged, k)
				o.log.Warn("skipping a corrupt outbox record", "path", rk.seg.name, "offset", rk.off, "seq", rk.seq, "reason", why)
				continue
			}
			plan[k].msg, plan[k].unread = m, false
		}
		i = j
	}
	for _, i := range damaged {
		r := plan[i].rec
		o.stats.Corrupt++
		o.stats.Guaranteed--
		o.stats.GuaranteedBytes -= int64(r.size())
		o.stats.Queued--
		o.stats.QueuedBytes -= int64(r.size())
		o.voids = append(o.voids, r)
	}
	return bad, nil
}

// decodeRecord decodes r's frame at data[off:], or says why it is damaged.
func decodeRecord(data []byte, off int64, r *rec) (message.Message, string) {
	if off+int64(r.n) > int64(len(data)) {
		return message.Message{}, "record beyond the end of its segment"
	}
	p, _, ok := frameAt(data[:off+int64(r.n)], int(off))
	if !ok {
		return message.Message{}, "checksum mismatch"
	}
	if p[0] != kindMessage {
		return message.Message{}, fmt.Sprintf("record kind %q, want %q", p[0], kindMessage)
	}
	prio, seq, body, err := parseMessage(p)
	switch {
	case err != nil:
		return message.Message{}, err.Error()
	case seq != r.seq || prio != r.prio:
		return message.Message{}, fmt.Sprintf("record of message %d (%s), want %d (%s)", seq, prio, r.seq, r.prio)
	}
	var m message.Message
	if err := m.UnmarshalJSON(body); err != nil {
		return message.Message{}, "undecodable message: " + err.Error()
	}
	switch {
	case m.Reliability != message.GuaranteedDelivery:
		return message.Message{}, "message is not GUARANTEED_DELIVERY: " + m.Reliability.String()
	case m.Priority != r.prio:
		return message.Message{}, fmt.Sprintf("message priority %s, record priority %s", m.Priority, r.prio)
	}
	return m, ""
}

// putBack returns items to the head of their lanes, in seq order; o.mu is
// held.
func (o *Outbox) putBack(items []item) {
	for _, it := range items {
		l := &o.lanes[it.msg.Priority]
		i, _ := slices.BinarySearchFunc(l.back, it.seq, func(x item, seq uint64) int { return cmpSeq(x.seq, seq) })
		l.back = slices.Insert(l.back, i, it)
	}
}

// End implements ports.Outbox: delivered messages leave the outbox (the
// guaranteed ones acknowledged in the log, fsynced before End returns),
// the others go back to the head of their priority, in their order. It
// fails for an unknown or ended batch or an index out of range (the batch
// stays open then), after Close, or when the acknowledgement cannot be
// written: then every message of the batch goes back and will be sent
// again.
func (o *Outbox) End(b ports.Batch, delivered []int) error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return fmt.Errorf("outbox end: %s: %w", o.path, ports.ErrClosed)
	}
	items, ok := o.open[b.Seq]
	if !ok {
		o.mu.Unlock()
		return fmt.Errorf("outbox end: batch %d is not open", b.Seq)
	}
	done := make([]bool, len(items))
	for _, i := range delivered {
		if i < 0 || i >= len(items) {
			o.mu.Unlock()
			return fmt.Errorf("outbox end: batch %d: index %d out of range 0..%d", b.Seq, i, len(items)-1)
		}
		done[i] = true
	}
	delete(o.open, b.Seq)
	var acks []*rec
	for i, it := range items {
		if done[i] && it.rec != nil {
			acks = append(acks, it.rec)
		}
	}
	if len(acks) > 0 {
		o.busy.Add(1)
		o.mu.Unlock()
		err := o.commit(&commitReq{acks: acks, wake: make(chan struct{}, 1)})
		o.mu.Lock()
		o.busy.Done()
		if err != nil {
			o.stats.InFlight -= int64(len(items))
			o.putBack(items)
			o.mu.Unlock()
			return fmt.Errorf("outbox end: batch %d: acknowledge %d delivered messages in %s: %w; every message of the batch stays queued",
				b.Seq, len(acks), o.path, err)
		}
	}
	defer o.mu.Unlock()
	o.stats.InFlight -= int64(len(items))
	var back []item
	for i, it := range items {
		if !done[i] {
			back = append(back, it)
			continue
		}
		size := int64(it.size)
		o.stats.Queued--
		o.stats.QueuedBytes -= size
		if it.rec != nil {
			o.stats.Guaranteed--
			o.stats.GuaranteedBytes -= size
		} else {
			o.memBytes -= size
		}
	}
	o.putBack(back)
	return nil
}

// Close writes the pending acknowledgements of damaged records (a failure
// is logged: they are met again after the next OpenOutbox) and closes the
// log after the Adds and Ends in progress finished; later calls fail with
// ports.ErrClosed. Guaranteed messages stay in the log (including those of
// open batches) for the next OpenOutbox; the others are lost. Close may be
// called more than once; only the first closes.
func (o *Outbox) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	pending := len(o.voids) > 0
	o.mu.Unlock()
	o.busy.Wait()
	if pending || len(o.w.voidSeqs) > 0 {
		if err := o.write(nil); err != nil {
			o.log.Warn("cannot write the outbox's pending acknowledgements at close", "path", o.path, "error", err.Error())
		}
	}
	if err := o.closeFiles(); err != nil {
		return fmt.Errorf("outbox %s: close: %w", o.path, err)
	}
	return nil
}

// closeFiles closes every segment and the lock, returning the errors.
func (o *Outbox) closeFiles() error {
	var errs []error
	for _, s := range o.w.segs {
		if err := s.f.Close(); err != nil {
			errs = append(errs, unwrapPath(err))
		}
	}
	o.w.segs = nil
	if o.lock != nil {
		if err := o.lock.Close(); err != nil {
			errs = append(errs, unwrapPath(err))
		}
		o.lock = nil
	}
	return errors.Join(errs...)
}

var _ ports.Outbox = (*Outbox)(nil)
