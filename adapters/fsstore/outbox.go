package fsstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/ports"
)

// Defaults of OutboxOptions.
const (
	DefaultOutboxMaxBytes       = 64 << 20 // guaranteed messages, on disk
	DefaultOutboxMaxMemoryBytes = 4 << 20  // other messages, in memory
)

// outboxLockTimeout is how long OpenOutbox waits for another process to
// release the file.
const outboxLockTimeout = time.Second

// The on-disk layout (format "iotnode-outbox/1"):
//
//   - bucket "meta": key "format" = "iotnode-outbox/1";
//   - buckets "priority-0" (LOWEST) .. "priority-4" (HIGHEST): one record per
//     GUARANTEED_DELIVERY message; the key is the message's sequence number,
//     8 bytes big-endian (so keys sort in the order messages were added, and
//     numbers are never reused while the file lives), the value a 5-byte
//     header — version 1, then the CRC-32C (Castagnoli) of the body, 4 bytes
//     big-endian — followed by the body, the message's compact JSON
//     (message.AppendJSON).
const (
	outboxFormat     = "iotnode-outbox/1"
	recordVersion    = 1
	recordHeaderSize = 5
)

var (
	metaBucket    = []byte("meta")
	formatKey     = []byte("format")
	castagnoli    = crc32.MakeTable(crc32.Castagnoli)
	priorityNames = func() (names [message.PriorityHighest + 1][]byte) {
		for p := range names {
			names[p] = fmt.Appendf(nil, "priority-%d", p)
		}
		return names
	}()
)

// OutboxOptions configures OpenOutbox. The zero value gives the defaults.
type OutboxOptions struct {
	// MaxBytes bounds the GUARANTEED_DELIVERY messages held, counted as
	// their encoded JSON (message.EncodedSize); 0 means
	// DefaultOutboxMaxBytes. The file is larger by the record headers and
	// bbolt's page overhead, and never shrinks below its high-water mark
	// (freed pages are reused).
	MaxBytes int64
	// MaxMemoryBytes bounds the other messages (BEST_EFFORT, NO_GUARANTEE),
	// counted the same way; 0 means DefaultOutboxMaxMemoryBytes.
	MaxMemoryBytes int
	// NoSync skips fsync: fast, and a power loss may lose or corrupt what
	// was added. For tests only.
	NoSync bool
	// Logger receives a warning for each corrupt record skipped (never a
	// payload); nil discards.
	Logger *slog.Logger
}

// OutboxStats are the outbox's counters (Outbox.Stats).
type OutboxStats struct {
	Queued      int64 // messages held, both classes, open batches included
	QueuedBytes int64 // their encoded JSON bytes
	Guaranteed  int64 // GUARANTEED_DELIVERY messages held (on disk, or being written)
	// GuaranteedBytes counts Guaranteed's encoded JSON bytes against MaxBytes.
	GuaranteedBytes int64
	InFlight        int64 // messages in open batches (taken by Begin, not yet ended)
	Dropped         int64 // non-guaranteed messages dropped for room since OpenOutbox
	Corrupt         int64 // corrupt records skipped and deleted since OpenOutbox
	// Commits counts the write transactions of Add since OpenOutbox; with
	// concurrent callers it is smaller than the number of Adds (group commit).
	Commits int64
}

// Outbox is the durable ports.Outbox: GUARANTEED_DELIVERY messages in a
// bbolt file, the others in a bounded in-memory queue. Modelled on
// Telegraf's transactional output buffer.
//
// Guaranteed messages: Add returns after they were committed and fsynced.
// Concurrent Adds share commits (group commit): the first caller to find no
// commit running writes everything queued so far in one transaction, and
// the callers that queue meanwhile are written together by the next. A
// caller never waits for a timer. When they would exceed MaxBytes, Add
// fails with ports.ErrOutboxFull and adds nothing: guaranteed messages are
// never dropped.
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
// no defined order among each other. Each Begin costs one read transaction
// and a cursor seek per priority, then O(1) per message, whatever the
// backlog.
//
// Recovery: OpenOutbox replays the file in order. A record whose header or
// checksum is wrong (or whose JSON no longer decodes, found by Begin) is
// logged, counted in Stats().Corrupt, skipped and deleted; it never stops
// the outbox from opening. (A commit torn by a crash is rolled back by bbolt
// itself through its checksummed meta pages; only a file damaged beyond
// that is refused, with an error that says to move it away.) Messages of batches still open at Close or a
// crash are sent again after the next OpenOutbox; each keeps its clientId so
// the cloud drops the replay.
//
// All methods are safe for concurrent use. Messages passed to Add and
// returned by Begin are shared read-only.
type Outbox struct {
	path    string
	db      *bolt.DB
	log     *slog.Logger
	maxG    int64
	maxMem  int64
	lastSeq atomic.Uint64 // last sequence number handed out
	commits atomic.Int64

	// Group commit: the queue of writes and whether a leader is writing.
	// Never held together with mu; commits never take mu.
	cmu        sync.Mutex
	cqueue     []*commitReq
	committing bool

	// mu guards the rest. It may be held while a bbolt transaction runs
	// (lock order: mu, then bbolt's locks), which is safe because the
	// commit path never takes mu.
	mu       sync.Mutex
	closed   bool
	adding   sync.WaitGroup // Adds past the closed check
	lanes    [message.PriorityHighest + 1]lane
	open     map[uint64][]item
	batchSeq uint64
	stats    OutboxStats
	memBytes int64 // non-guaranteed bytes held, open batches included
}

// item is one message held by the outbox.
type item struct {
	seq        uint64
	size       int // encoded JSON bytes
	guaranteed bool
	msg        message.Message
}

// lane is the state of one priority. Its messages, in order, are the merge
// by seq of back, mem and the disk records with keys >= next.
type lane struct {
	back []item // put back by End, sorted by seq; guaranteed ones are also on disk
	mem  []item // non-guaranteed messages never taken, sorted by seq
	next uint64 // disk records with keys >= next have not been taken
}

// OpenOutbox opens (creating it and its directory, mode 0700, if needed)
// the outbox file at path, mode 0600, replays it and checks every record's
// checksum (deleting and counting the corrupt ones).
//
// Errors name the file: an option out of range; another process holding
// the file (after waiting a second); a file that is not an outbox, or is
// damaged beyond what bbolt's own checksums recover (move it away to start
// empty: its messages are then lost); or the I/O that failed.
func OpenOutbox(path string, opts OutboxOptions) (*Outbox, error) {
	if opts.MaxBytes < 0 {
		return nil, fmt.Errorf("outbox %s: MaxBytes %d: want 0 (default) or more", path, opts.MaxBytes)
	}
	if opts.MaxMemoryBytes < 0 {
		return nil, fmt.Errorf("outbox %s: MaxMemoryBytes %d: want 0 (default) or more", path, opts.MaxMemoryBytes)
	}
	o := &Outbox{
		path:   path,
		log:    opts.Logger,
		maxG:   opts.MaxBytes,
		maxMem: int64(opts.MaxMemoryBytes),
		open:   map[uint64][]item{},
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
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("outbox %s: create its directory: %w", path, unwrapPath(err))
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        outboxLockTimeout,
		NoFreelistSync: true, // faster commits; the freelist is rebuilt on open
		FreelistType:   bolt.FreelistMapType,
		NoSync:         opts.NoSync,
	})
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, fmt.Errorf("outbox %s: another process has it open (waited %v for its lock)", path, outboxLockTimeout)
	case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrChecksum), errors.Is(err, bolt.ErrVersionMismatch):
		return nil, fmt.Errorf("outbox %s: not an outbox file, or damaged beyond repair (%w); move it away to start with an empty outbox", path, err)
	case err != nil:
		return nil, fmt.Errorf("outbox %s: %w", path, unwrapPath(err))
	}
	o.db = db
	if err := o.init(); err != nil {
		_ = db.Close() // the init error is the one to report
		return nil, err
	}
	return o, nil
}

// init creates the buckets of a new file, checks the format of an old one
// and replays it.
func (o *Outbox) init() error {
	err := o.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(metaBucket)
		if meta == nil {
			if k, _ := tx.Cursor().First(); k != nil {
				return fmt.Errorf("outbox %s: a bbolt file of something else (no %q bucket); want an outbox file", o.path, metaBucket)
			}
			var err error
			if meta, err = tx.CreateBucket(metaBucket); err != nil {
				return err
			}
			if err := meta.Put(formatKey, []byte(outboxFormat)); err != nil {
				return err
			}
		}
		if f := meta.Get(formatKey); string(f) != outboxFormat {
			return fmt.Errorf("outbox %s: format %q: want %q", o.path, f, outboxFormat)
		}
		for _, name := range priorityNames {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("outbox %s: %w", o.path, err)
	}
	return o.replay()
}

// corruptRecord is a record to delete: where it is and why.
type corruptRecord struct {
	p      message.Priority
	key    []byte
	size   int64 // body bytes counted in the stats, or 0 when never counted
	reason string
}

// replay scans every record: counts and sizes the good ones, finds the last
// sequence number, and deletes the corrupt ones.
func (o *Outbox) replay() error {
	var bad []corruptRecord
	var last uint64
	err := o.db.View(func(tx *bolt.Tx) error {
		for p, name := range priorityNames {
			c := tx.Bucket(name).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if len(k) == 8 {
					last = max(last, binary.BigEndian.Uint64(k))
				}
				if reason := checkRecord(k, v); reason != "" {
					bad = append(bad, corruptRecord{p: message.Priority(p), key: slices.Clone(k), reason: reason})
					continue
				}
				o.stats.Guaranteed++
				o.stats.GuaranteedBytes += int64(len(v) - recordHeaderSize)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("outbox %s: replay: %w", o.path, err)
	}
	o.lastSeq.Store(last)
	o.stats.Queued, o.stats.QueuedBytes = o.stats.Guaranteed, o.stats.GuaranteedBytes
	o.dropCorrupt(bad)
	return nil
}

// checkRecord returns why the record k, v is corrupt, or "".
func checkRecord(k, v []byte) string {
	switch {
	case len(k) != 8:
		return fmt.Sprintf("key of %d bytes, want 8", len(k))
	case len(v) < recordHeaderSize:
		return fmt.Sprintf("record of %d bytes, shorter than its %d-byte header", len(v), recordHeaderSize)
	case v[0] != recordVersion:
		return fmt.Sprintf("record version %d, want %d", v[0], recordVersion)
	case crc32.Checksum(v[recordHeaderSize:], castagnoli) != binary.BigEndian.Uint32(v[1:recordHeaderSize]):
		return "checksum mismatch"
	}
	return ""
}

// dropCorrupt logs, counts and deletes corrupt records; o.mu is held or o
// is not shared yet. A failed delete is logged: the records are skipped
// anyway and found again by the next OpenOutbox.
func (o *Outbox) dropCorrupt(bad []corruptRecord) {
	if len(bad) == 0 {
		return
	}
	for _, r := range bad {
		o.log.Warn("skipping corrupt outbox record", "path", o.path, "priority", r.p.String(),
			"key", fmt.Sprintf("%x", r.key), "reason", r.reason)
		o.stats.Corrupt++
		if r.size > 0 {
			o.stats.Guaranteed--
			o.stats.GuaranteedBytes -= r.size
			o.stats.Queued--
			o.stats.QueuedBytes -= r.size
		}
	}
	err := o.db.Update(func(tx *bolt.Tx) error {
		for _, r := range bad {
			if err := tx.Bucket(priorityNames[r.p]).Delete(r.key); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		o.log.Warn("cannot delete corrupt outbox records", "path", o.path, "count", len(bad), "error", err.Error())
	}
}

// Path returns the outbox file's path.
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
	size   int
	record []byte // header + JSON for a guaranteed message, nil otherwise
}

// Add implements ports.Outbox. Once ctx is checked and the messages are
// queued for the disk, Add waits for the commit (disk I/O only), so that
// its answer is exact: nil means every guaranteed message is on disk; an
// error means none of the messages was added. Errors: a message that
// cannot be encoded (naming its index and field), ports.ErrOutboxFull,
// ports.ErrClosed, ctx's error, or the write that failed.
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
		rec, err := message.AppendJSON(make([]byte, recordHeaderSize, recordHeaderSize+size), m)
		if err != nil {
			return 0, fmt.Errorf("outbox add: message %d: %w", i, err)
		}
		rec[0] = recordVersion
		binary.BigEndian.PutUint32(rec[1:], crc32.Checksum(rec[recordHeaderSize:], castagnoli))
		pend[i].record = rec
		gCount++
		gBytes += int64(pend[i].size)
	}

	// Reserve room for the guaranteed messages before writing them, so that
	// concurrent Adds cannot overshoot the bound together.
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return 0, fmt.Errorf("outbox add: %s: %w", o.path, ports.ErrClosed)
	}
	if gCount > 0 && o.stats.GuaranteedBytes+gBytes > o.maxG {
		held := o.stats.GuaranteedBytes
		o.mu.Unlock()
		if gBytes > o.maxG {
			return 0, fmt.Errorf("outbox add: %d bytes of guaranteed messages exceed the whole bound of %d bytes: %w",
				gBytes, o.maxG, ports.ErrOutboxFull)
		}
		return 0, fmt.Errorf("outbox add: %d bytes of guaranteed messages do not fit: %d of %d bytes held: %w",
			gBytes, held, o.maxG, ports.ErrOutboxFull)
	}
	o.stats.Guaranteed += gCount
	o.stats.GuaranteedBytes += gBytes
	o.stats.Queued += gCount
	o.stats.QueuedBytes += gBytes
	o.adding.Add(1)
	o.mu.Unlock()
	defer o.adding.Done()

	var seqs []uint64
	if gCount > 0 {
		req := &commitReq{msgs: msgs, pend: pend, seqs: make([]uint64, len(msgs)), wake: make(chan struct{}, 1)}
		if err := o.commit(req); err != nil {
			o.mu.Lock()
			o.stats.Guaranteed -= gCount
			o.stats.GuaranteedBytes -= gBytes
			o.stats.Queued -= gCount
			o.stats.QueuedBytes -= gBytes
			o.mu.Unlock()
			return 0, fmt.Errorf("outbox add: write %d guaranteed messages to %s: %w", gCount, o.path, err)
		}
		seqs = req.seqs
	} else {
		last := o.lastSeq.Add(uint64(len(msgs)))
		seqs = make([]uint64, len(msgs))
		for i := range seqs {
			seqs[i] = last - uint64(len(msgs)-1-i)
		}
	}
	if gCount == int64(len(msgs)) {
		return 0, nil
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	dropped := 0
	for i := range msgs {
		if pend[i].record != nil {
			continue
		}
		if int64(pend[i].size) > o.maxMem {
			dropped++ // would push out everything else and still not fit
			continue
		}
		l := &o.lanes[msgs[i].Priority]
		l.mem = insertBySeq(l.mem, item{seq: seqs[i], size: pend[i].size, msg: msgs[i]})
		o.memBytes += int64(pend[i].size)
		o.stats.Queued++
		o.stats.QueuedBytes += int64(pend[i].size)
	}
	dropped += o.shed()
	o.stats.Dropped += int64(dropped)
	return dropped, nil
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
			bi := slices.IndexFunc(l.back, func(it item) bool { return !it.guaranteed })
			var victim item
			switch {
			case bi >= 0 && (len(l.mem) == 0 || l.back[bi].seq < l.mem[0].seq):
				victim = l.back[bi]
				l.back = slices.Delete(l.back, bi, bi+1)
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

// commitReq is one Add's share of a group commit.
type commitReq struct {
	msgs []message.Message
	pend []pendingMsg
	seqs []uint64      // set by the commit: one per message, in order
	err  error         // set by the commit
	wake chan struct{} // receives once: done, or lead is set
	lead bool          // set (under cmu) before wake when this caller must lead the next commit
}

// commit writes r (with whatever else is queued) in one transaction and
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

	err := o.db.Update(func(tx *bolt.Tx) error {
		// Sequence numbers are taken inside the write transaction, and
		// write transactions run one at a time: a record becomes visible
		// only after every record with a smaller key was committed (or
		// rolled back, never to appear). Begin relies on this.
		for _, q := range round {
			for i := range q.msgs {
				q.seqs[i] = o.lastSeq.Add(1)
				if q.pend[i].record == nil {
					continue
				}
				var key [8]byte
				binary.BigEndian.PutUint64(key[:], q.seqs[i])
				if err := tx.Bucket(priorityNames[q.msgs[i].Priority]).Put(key[:], q.pend[i].record); err != nil {
					return err
				}
			}
		}
		return nil
	})

	o.commits.Add(1)
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
		q.err = err
		if q != r {
			q.wake <- struct{}{}
		}
	}
	if next != nil {
		next.wake <- struct{}{}
	}
	return err
}

// Begin implements ports.Outbox. It fails for max < 1, after Close
// (ports.ErrClosed), or when the file cannot be read. Corrupt records met
// on the way are skipped, counted and deleted.
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
	var bad []corruptRecord
	err := o.db.View(func(tx *bolt.Tx) error {
		sum := 0
		for p := len(o.lanes) - 1; p >= 0 && len(taken) < maxMsgs; p-- {
			l := &o.lanes[p]
			c := tx.Bucket(priorityNames[p]).Cursor()
			var seek [8]byte
			binary.BigEndian.PutUint64(seek[:], l.next)
			dk, dv := c.Seek(seek[:])
			for len(taken) < maxMsgs {
				// The lane's next message has the smallest seq of its three sources.
				src, seq := srcNone, ^uint64(0)
				if len(l.back) > 0 {
					src, seq = srcBack, l.back[0].seq
				}
				if len(l.mem) > 0 && l.mem[0].seq < seq {
					src, seq = srcMem, l.mem[0].seq
				}
				if dk != nil && (src == srcNone || keySeq(dk) < seq) {
					src = srcDisk
				}
				var it item
				switch src {
				case srcNone:
				case srcBack:
					it = l.back[0]
				case srcMem:
					it = l.mem[0]
				case srcDisk:
					var reason string
					if it, reason = decodeRecord(dk, dv); reason != "" {
						size := int64(0)
						if len(dv) >= recordHeaderSize {
							size = int64(len(dv) - recordHeaderSize)
						}
						bad = append(bad, corruptRecord{p: message.Priority(p), key: slices.Clone(dk), size: size, reason: reason})
						if len(dk) == 8 {
							l.next = max(l.next, keySeq(dk)+1)
						}
						dk, dv = c.Next()
						continue
					}
				}
				if src == srcNone {
					break // the lane is empty
				}
				if maxBytes > 0 && len(taken) > 0 && message.ArraySize(len(taken)+1, sum+it.size) > maxBytes {
					return nil // keep strict order: what does not fit blocks lower priorities too
				}
				switch src {
				case srcBack:
					l.back = l.back[1:]
				case srcMem:
					l.mem[0] = item{} // let the message be collected
					l.mem = l.mem[1:]
				case srcDisk:
					l.next = it.seq + 1
					dk, dv = c.Next()
				}
				taken = append(taken, it)
				sum += it.size
			}
		}
		return nil
	})
	o.dropCorrupt(bad)
	if err != nil {
		// Put back what was taken, at the head of each lane.
		o.putBack(taken)
		return ports.Batch{}, fmt.Errorf("outbox begin: read %s: %w", o.path, err)
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

// The sources of a lane's messages.
const (
	srcNone = iota
	srcBack
	srcMem
	srcDisk
)

// keySeq returns the sequence number of key k; 0 for a key of the wrong
// length, which then comes first and is found corrupt by decodeRecord.
func keySeq(k []byte) uint64 {
	if len(k) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k)
}

// decodeRecord decodes the record k, v, or says why it is corrupt.
func decodeRecord(k, v []byte) (item, string) {
	if reason := checkRecord(k, v); reason != "" {
		return item{}, reason
	}
	body := slices.Clone(v[recordHeaderSize:]) // v lives only as long as the transaction
	var m message.Message
	if err := m.UnmarshalJSON(body); err != nil {
		return item{}, "undecodable message: " + err.Error()
	}
	if m.Reliability != message.GuaranteedDelivery {
		return item{}, "message is not GUARANTEED_DELIVERY: " + m.Reliability.String()
	}
	return item{seq: binary.BigEndian.Uint64(k), size: len(body), guaranteed: true, msg: m}, ""
}

// putBack returns items to the head of their lanes, in seq order; o.mu is
// held.
func (o *Outbox) putBack(items []item) {
	for _, it := range items {
		l := &o.lanes[it.msg.Priority]
		i, _ := slices.BinarySearchFunc(l.back, it.seq, func(x item, seq uint64) int {
			switch {
			case x.seq < seq:
				return -1
			case x.seq > seq:
				return 1
			}
			return 0
		})
		l.back = slices.Insert(l.back, i, it)
	}
}

// End implements ports.Outbox: delivered messages leave the outbox (the
// guaranteed ones deleted from the file in one fsynced transaction), the
// others go back to the head of their priority, in their order. It fails
// for an unknown or ended batch or an index out of range (the batch stays
// open then), after Close, or when the delete fails: then every message of
// the batch goes back and will be sent again.
func (o *Outbox) End(b ports.Batch, delivered []int) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return fmt.Errorf("outbox end: %s: %w", o.path, ports.ErrClosed)
	}
	items, ok := o.open[b.Seq]
	if !ok {
		return fmt.Errorf("outbox end: batch %d is not open", b.Seq)
	}
	done := make([]bool, len(items))
	for _, i := range delivered {
		if i < 0 || i >= len(items) {
			return fmt.Errorf("outbox end: batch %d: index %d out of range 0..%d", b.Seq, i, len(items)-1)
		}
		done[i] = true
	}
	delete(o.open, b.Seq)
	o.stats.InFlight -= int64(len(items))

	nDelete := 0
	for i, it := range items {
		if done[i] && it.guaranteed {
			nDelete++
		}
	}
	if nDelete > 0 {
		err := o.db.Update(func(tx *bolt.Tx) error {
			for i, it := range items {
				if done[i] && it.guaranteed {
					var k [8]byte
					binary.BigEndian.PutUint64(k[:], it.seq)
					if err := tx.Bucket(priorityNames[it.msg.Priority]).Delete(k[:]); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			o.putBack(items)
			return fmt.Errorf("outbox end: batch %d: delete %d delivered messages from %s: %w; every message of the batch stays queued",
				b.Seq, nDelete, o.path, err)
		}
	}
	var back []item
	for i, it := range items {
		if !done[i] {
			back = append(back, it)
			continue
		}
		size := int64(it.size)
		o.stats.Queued--
		o.stats.QueuedBytes -= size
		if it.guaranteed {
			o.stats.Guaranteed--
			o.stats.GuaranteedBytes -= size
		} else {
			o.memBytes -= size
		}
	}
	o.putBack(back)
	return nil
}

// Close closes the file after the Adds in progress finished; later calls
// fail with ports.ErrClosed. Guaranteed messages stay in the file
// (including those of open batches) for the next OpenOutbox; the others
// are lost. Close may be called more than once; only the first closes.
func (o *Outbox) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	o.mu.Unlock()
	o.adding.Wait()
	if err := o.db.Close(); err != nil {
		return fmt.Errorf("outbox %s: close: %w", o.path, err)
	}
	return nil
}

var _ ports.Outbox = (*Outbox)(nil)
