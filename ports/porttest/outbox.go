package porttest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/ports"
)

// MemOutbox is an in-memory ports.Outbox: per-priority FIFO queues, a bound on
// encoded bytes, drop-oldest for messages that are not GUARANTEED_DELIVERY
// and ErrOutboxFull back-pressure for those that are. It keeps nothing across
// restarts. The zero value is not usable: call NewMemOutbox.
type MemOutbox struct {
	mu       sync.Mutex
	maxBytes int
	bytes    int
	queues   [message.PriorityHighest + 1][]entry
	open     map[uint64][]entry
	seq      uint64
	dropped  int
}

type entry struct {
	msg  message.Message
	size int
}

// NewMemOutbox returns an outbox bounded to maxBytes of encoded messages
// (0 means unbounded).
func NewMemOutbox(maxBytes int) *MemOutbox {
	return &MemOutbox{maxBytes: maxBytes, open: map[uint64][]entry{}}
}

// Dropped returns how many messages were dropped to make room, in total.
func (o *MemOutbox) Dropped() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dropped
}

// Len returns how many messages are queued, including those in open batches.
func (o *MemOutbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, q := range o.queues {
		n += len(q)
	}
	for _, b := range o.open {
		n += len(b)
	}
	return n
}

// Add implements ports.Outbox.
func (o *MemOutbox) Add(ctx context.Context, msgs ...message.Message) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	entries := make([]entry, len(msgs))
	need, needGuaranteed := 0, 0
	for i, m := range msgs {
		if m.Priority < message.PriorityLowest || m.Priority > message.PriorityHighest {
			return 0, fmt.Errorf("outbox add: message %d: priority %d out of range", i, m.Priority)
		}
		entries[i] = entry{msg: m, size: message.EncodedSize(&m)}
		need += entries[i].size
		if m.Reliability == message.GuaranteedDelivery {
			needGuaranteed += entries[i].size
		}
	}
	if o.maxBytes > 0 {
		// Guaranteed messages must fit beside the guaranteed ones already held.
		if o.guaranteedBytes()+needGuaranteed > o.maxBytes {
			return 0, fmt.Errorf("outbox add: %d bytes of guaranteed messages do not fit in %d free of %d: %w",
				needGuaranteed, o.maxBytes-o.guaranteedBytes(), o.maxBytes, ports.ErrOutboxFull)
		}
	}
	dropped := 0
	for _, e := range entries {
		o.queues[e.msg.Priority] = append(o.queues[e.msg.Priority], e)
		o.bytes += e.size
	}
	for o.maxBytes > 0 && o.bytes > o.maxBytes {
		if !o.dropOldestUnguaranteed() {
			break
		}
		dropped++
	}
	o.dropped += dropped
	return dropped, nil
}

func (o *MemOutbox) guaranteedBytes() int {
	n := 0
	for _, q := range o.queues {
		for _, e := range q {
			if e.msg.Reliability == message.GuaranteedDelivery {
				n += e.size
			}
		}
	}
	for _, b := range o.open {
		for _, e := range b {
			if e.msg.Reliability == message.GuaranteedDelivery {
				n += e.size
			}
		}
	}
	return n
}

// dropOldestUnguaranteed drops the oldest droppable message of the lowest
// priority that has one.
func (o *MemOutbox) dropOldestUnguaranteed() bool {
	for p := range o.queues {
		q := o.queues[p]
		for i, e := range q {
			if e.msg.Reliability != message.GuaranteedDelivery {
				o.queues[p] = slices.Delete(q, i, i+1)
				o.bytes -= e.size
				return true
			}
		}
	}
	return false
}

// Begin implements ports.Outbox.
func (o *MemOutbox) Begin(max, maxBytes int) (ports.Batch, error) {
	if max <= 0 {
		return ports.Batch{}, fmt.Errorf("outbox begin: max %d: want at least 1", max)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var taken []entry
	sum := 0
	for p := len(o.queues) - 1; p >= 0 && len(taken) < max; p-- {
		q := o.queues[p]
		n := 0
		for n < len(q) && len(taken) < max {
			size := message.ArraySize(len(taken)+1, sum+q[n].size)
			if maxBytes > 0 && len(taken) > 0 && size > maxBytes {
				break
			}
			sum += q[n].size
			taken = append(taken, q[n])
			n++
		}
		o.queues[p] = q[n:]
		if n < len(q) {
			break // keep strict order: a message that did not fit blocks lower priorities too
		}
	}
	if len(taken) == 0 {
		return ports.Batch{}, nil
	}
	o.seq++
	o.open[o.seq] = taken
	b := ports.Batch{Seq: o.seq, Messages: make([]message.Message, len(taken))}
	for i, e := range taken {
		b.Messages[i] = e.msg
	}
	return b, nil
}

// End implements ports.Outbox.
func (o *MemOutbox) End(b ports.Batch, delivered []int) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	taken, ok := o.open[b.Seq]
	if !ok {
		return fmt.Errorf("outbox end: batch %d is not open", b.Seq)
	}
	done := make([]bool, len(taken))
	for _, i := range delivered {
		if i < 0 || i >= len(taken) {
			return fmt.Errorf("outbox end: batch %d: index %d out of range 0..%d", b.Seq, i, len(taken)-1)
		}
		done[i] = true
	}
	delete(o.open, b.Seq)
	// Put back what was not delivered at the head of its priority, in order.
	var back [message.PriorityHighest + 1][]entry
	for i, e := range taken {
		if done[i] {
			o.bytes -= e.size
			continue
		}
		back[e.msg.Priority] = append(back[e.msg.Priority], e)
	}
	for p, es := range back {
		if len(es) > 0 {
			o.queues[p] = append(es, o.queues[p]...)
		}
	}
	return nil
}

var _ ports.Outbox = (*MemOutbox)(nil)
