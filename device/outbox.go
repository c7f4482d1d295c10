package device

import (
	"context"
	"fmt"
	"sync"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/ports"
)

// memOutbox is the default ports.Outbox, used when Config.Outbox is nil: one
// FIFO per priority in memory, bounded to maxBytes of encoded messages (0
// means unbounded).
//
// Overflow: a message that is not GUARANTEED_DELIVERY may be dropped to make
// room, the oldest of the lowest priority first (counted in the device's
// Stats.Dropped); GUARANTEED_DELIVERY messages are never dropped: when they
// do not fit beside the guaranteed ones already held, Add fails with
// ports.ErrOutboxFull and adds nothing. It keeps nothing across restarts.
type memOutbox struct {
	mu         sync.Mutex
	maxBytes   int
	bytes      int // every held message, open batches included
	guaranteed int // the GUARANTEED_DELIVERY share of bytes
	queues     [message.PriorityHighest + 1][]outItem
	open       map[uint64][]outItem
	seq        uint64
}

type outItem struct {
	msg  message.Message
	size int
}

func newMemOutbox(maxBytes int) *memOutbox {
	return &memOutbox{maxBytes: maxBytes, open: map[uint64][]outItem{}}
}

// Add implements ports.Outbox.
func (o *memOutbox) Add(ctx context.Context, msgs ...message.Message) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("outbox add: %w", err)
	}
	items := make([]outItem, len(msgs))
	needGuaranteed := 0
	for i, m := range msgs {
		if !m.Priority.Valid() {
			return 0, fmt.Errorf("outbox add: message %d: priority %d out of range, expected %d..%d",
				i, m.Priority, message.PriorityLowest, message.PriorityHighest)
		}
		// An unencodable message (-1) is held at size 0: the transmitter's
		// exchange refuses it permanently and dead-letters it.
		items[i] = outItem{msg: m, size: max(message.EncodedSize(&m), 0)}
		if m.Reliability == message.GuaranteedDelivery {
			needGuaranteed += items[i].size
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.maxBytes > 0 && o.guaranteed+needGuaranteed > o.maxBytes {
		return 0, fmt.Errorf("outbox add: %d bytes of guaranteed messages do not fit in the %d bytes left of %d: %w",
			needGuaranteed, o.maxBytes-o.guaranteed, o.maxBytes, ports.ErrOutboxFull)
	}
	for _, it := range items {
		o.queues[it.msg.Priority] = append(o.queues[it.msg.Priority], it)
		o.account(it, 1)
	}
	dropped := 0
	for o.maxBytes > 0 && o.bytes > o.maxBytes && o.dropOne() {
		dropped++
	}
	return dropped, nil
}

func (o *memOutbox) account(it outItem, sign int) {
	o.bytes += sign * it.size
	if it.msg.Reliability == message.GuaranteedDelivery {
		o.guaranteed += sign * it.size
	}
}

// dropOne drops the oldest message that is not GUARANTEED_DELIVERY from the
// lowest priority that has one. Messages in open batches are never dropped.
func (o *memOutbox) dropOne() bool {
	for p := range o.queues {
		q := o.queues[p]
		for i, it := range q {
			if it.msg.Reliability != message.GuaranteedDelivery {
				o.account(it, -1)
				o.queues[p] = append(q[:i:i], q[i+1:]...)
				return true
			}
		}
	}
	return false
}

// Begin implements ports.Outbox.
func (o *memOutbox) Begin(limit, maxBytes int) (ports.Batch, error) {
	if limit < 1 {
		return ports.Batch{}, fmt.Errorf("outbox begin: max %d, expected at least 1", limit)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var taken []outItem
	sum := 0
	for p := len(o.queues) - 1; p >= 0 && len(taken) < limit; p-- {
		q := o.queues[p]
		n := 0
		for n < len(q) && len(taken) < limit {
			if maxBytes > 0 && len(taken) > 0 && message.ArraySize(len(taken)+1, sum+q[n].size) > maxBytes {
				break
			}
			sum += q[n].size
			taken = append(taken, q[n])
			n++
		}
		o.queues[p] = q[n:]
		if n < len(q) {
			break // a message that did not fit holds back the lower priorities too
		}
	}
	if len(taken) == 0 {
		return ports.Batch{}, nil
	}
	o.seq++
	o.open[o.seq] = taken
	b := ports.Batch{Seq: o.seq, Messages: make([]message.Message, len(taken))}
	for i, it := range taken {
		b.Messages[i] = it.msg
	}
	return b, nil
}

// End implements ports.Outbox.
func (o *memOutbox) End(b ports.Batch, delivered []int) error {
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
	var back [message.PriorityHighest + 1][]outItem
	for i, it := range taken {
		if done[i] {
			o.account(it, -1)
			continue
		}
		back[it.msg.Priority] = append(back[it.msg.Priority], it)
	}
	for p, items := range back {
		if len(items) > 0 {
			o.queues[p] = append(items, o.queues[p]...)
		}
	}
	return nil
}

var _ ports.Outbox = (*memOutbox)(nil)
