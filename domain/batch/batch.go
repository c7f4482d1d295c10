package batch

import (
	"errors"
	"fmt"
	"time"

	"github.com/iotnode/iotnode/domain/message"
)

// Config says when a batch is ready and how big it may grow.
type Config struct {
	// MaxMessages is the most messages one batch holds; reaching it makes the
	// batch ready. It must be at least 1.
	MaxMessages int
	// MaxBytes caps the encoded size of one batch, the JSON array included
	// (brackets and commas), like the cloud's acceptBytes; reaching it makes
	// the batch ready. It must be at least 1.
	MaxBytes int
	// MaxAge is how long a message may wait for companions: once the oldest
	// queued message is MaxAge old the batch is ready. Zero sends every
	// message as soon as it is added; it must not be negative.
	MaxAge time.Duration
}

// Validate reports every invalid field of c at once, or nil.
func (c Config) Validate() error {
	var errs []error
	if c.MaxMessages < 1 {
		errs = append(errs, fmt.Errorf("batch config: MaxMessages is %d, expected at least 1", c.MaxMessages))
	}
	if c.MaxBytes < 1 {
		errs = append(errs, fmt.Errorf("batch config: MaxBytes is %d, expected at least 1", c.MaxBytes))
	}
	if c.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("batch config: MaxAge is %v, expected 0 or more", c.MaxAge))
	}
	return errors.Join(errs...)
}

// numPriorities is the number of message priorities, PriorityLowest to PriorityHighest.
const numPriorities = int(message.PriorityHighest) + 1

// entry is one queued message with its encoded size, computed once in Add.
type entry struct {
	msg   message.Message
	size  int // -1 when the message cannot be encoded
	added time.Time
}

// fifo is a first-in first-out queue with O(1) amortised push and pop: it pops
// by moving head and compacts the slice once the dead prefix is the larger half.
type fifo struct {
	items []entry
	head  int
}

func (q *fifo) len() int { return len(q.items) - q.head }

func (q *fifo) push(e entry) { q.items = append(q.items, e) }

func (q *fifo) front() *entry { return &q.items[q.head] }

func (q *fifo) pop() entry {
	e := q.items[q.head]
	q.items[q.head] = entry{} // release the message for the garbage collector
	q.head++
	switch {
	case q.head == len(q.items):
		q.items = q.items[:0]
		q.head = 0
	case q.head >= 32 && q.head*2 >= len(q.items):
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items = q.items[:n]
		q.head = 0
	}
	return e
}

// Batcher queues messages and hands them out in batches. The zero Batcher is
// not usable; build one with New. A Batcher is not safe for concurrent use.
type Batcher struct {
	cfg    Config
	queues [numPriorities]fifo // index = priority
	n      int                 // messages queued
	sum    int                 // sum of their encoded sizes, unencodable ones excluded
	bad    int                 // unencodable messages queued (size -1)
}

// New returns an empty Batcher. It does not validate cfg (call Validate
// first); out-of-range fields are clamped so that the Batcher still works:
// MaxMessages and MaxBytes below 1 act as 1 (every message goes alone) and a
// negative MaxAge acts as 0.
func New(cfg Config) *Batcher {
	cfg.MaxMessages = max(cfg.MaxMessages, 1)
	cfg.MaxBytes = max(cfg.MaxBytes, 1)
	cfg.MaxAge = max(cfg.MaxAge, 0)
	return &Batcher{cfg: cfg}
}

// Add queues m, added at now. Its encoded size is computed once, here.
// A priority outside PriorityLowest..PriorityHighest is treated as the
// nearest valid one for ordering; m itself is not changed.
//
// A message that cannot be encoded (message.EncodedSize returns -1) is kept
// apart from the byte accounting: it makes the Batcher ready at once and
// Next returns it alone, so that the caller's encoder reports its error for
// that message only and the others are not held back.
func (b *Batcher) Add(m message.Message, now time.Time) {
	size := message.EncodedSize(&m)
	b.queues[queueIndex(m.Priority)].push(entry{msg: m, size: size, added: now})
	b.n++
	if size < 0 {
		b.bad++
		return
	}
	b.sum += size
}

func queueIndex(p message.Priority) int {
	return int(min(max(p, message.PriorityLowest), message.PriorityHighest))
}

// Len returns how many messages are queued.
func (b *Batcher) Len() int { return b.n }

// Bytes returns the encoded size of all queued messages as one JSON array,
// or 0 when nothing is queued. Messages that cannot be encoded count as 0.
func (b *Batcher) Bytes() int {
	if b.n == 0 {
		return 0
	}
	return message.ArraySize(b.n, b.sum)
}

// Ready reports whether a batch should be sent now: when MaxMessages messages
// are queued, when Bytes reached MaxBytes, when the oldest queued message was
// added MaxAge or more before now, or when a PriorityHighest message waits
// (alerts and other urgent messages never wait for companions), or when a
// message that cannot be encoded waits (see Add). An empty Batcher is never
// ready.
func (b *Batcher) Ready(now time.Time) bool {
	if b.n == 0 {
		return false
	}
	if b.n >= b.cfg.MaxMessages || b.Bytes() >= b.cfg.MaxBytes || b.bad > 0 {
		return true
	}
	if b.queues[message.PriorityHighest].len() > 0 {
		return true
	}
	deadline, _ := b.Deadline()
	return !now.Before(deadline)
}

// Deadline returns when the oldest queued message reaches MaxAge, so that the
// caller can set a timer; ok is false when nothing is queued. The oldest
// message is found among the heads of the per-priority queues, which holds as
// long as the now passed to Add never goes backwards.
func (b *Batcher) Deadline() (deadline time.Time, ok bool) {
	for i := range b.queues {
		q := &b.queues[i]
		if q.len() == 0 {
			continue
		}
		if added := q.front().added; !ok || added.Before(deadline) {
			deadline, ok = added, true
		}
	}
	if !ok {
		return time.Time{}, false
	}
	return deadline.Add(b.cfg.MaxAge), true
}

// Next removes and returns the next batch: PriorityHighest messages first,
// first in first out within a priority, at most MaxMessages messages and at
// most maxBytes bytes of encoded JSON array (MaxBytes when maxBytes <= 0).
// It stops at the first message that does not fit, so that a lower priority
// never overtakes a higher one. A single message larger than the cap is
// returned alone rather than blocking the queue forever: the caller decides
// what to do with it (for example send it anyway, or fail it); so is a
// message that cannot be encoded. Next returns
// nil when nothing is queued. It does not look at the clock: the caller asks
// Ready first, or flushes on shutdown.
func (b *Batcher) Next(maxBytes int) []message.Message {
	if b.n == 0 {
		return nil
	}
	if maxBytes <= 0 {
		maxBytes = b.cfg.MaxBytes
	}
	out := make([]message.Message, 0, min(b.n, b.cfg.MaxMessages))
	sum := 0
	for p := numPriorities - 1; p >= 0 && len(out) < b.cfg.MaxMessages; p-- {
		q := &b.queues[p]
		for q.len() > 0 && len(out) < b.cfg.MaxMessages {
			size := q.front().size
			if len(out) > 0 && (size < 0 || message.ArraySize(len(out)+1, sum+size) > maxBytes) {
				return b.took(out, sum, 0)
			}
			e := q.pop()
			out = append(out, e.msg)
			if size < 0 {
				return b.took(out, 0, 1) // unencodable: alone
			}
			sum += size
			if len(out) == 1 && message.ArraySize(1, sum) > maxBytes {
				return b.took(out, sum, 0) // oversize: alone
			}
		}
	}
	return b.took(out, sum, 0)
}

// took accounts for the messages Next removed.
func (b *Batcher) took(out []message.Message, sum, bad int) []message.Message {
	b.n -= len(out)
	b.sum -= sum
	b.bad -= bad
	return out
}
