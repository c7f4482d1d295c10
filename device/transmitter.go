package device

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/ports"
)

// transmitter is the state of the transmit loop; only its goroutine uses it.
type transmitter struct {
	p   *dispatcher
	log *slog.Logger

	flush    <-chan time.Time // nil once the flush deadline arrived
	flushing bool
	deadline time.Time

	failures int   // consecutive transient failures, for the backoff
	limit    int   // messages per batch; lowered to find a refused message
	lastErr  error // of the last failed attempt
}

// transmit is the transmitter's loop. It sleeps until the doorbell rings
// (something was queued), waits the batch delay so that neighbours join,
// then sends batches from the outbox until it is empty:
//
//   - success: the batch leaves the outbox; requests in the answer go to
//     the request dispatcher;
//   - transient error: the batch goes back and is retried after a
//     full-jitter exponential backoff (or the cloud's Retry-After); the
//     first failure of an outage is reported to the OnError of the virtual
//     devices whose messages were in the batch;
//   - ErrUnauthorized: like a transient error, and it counts towards the
//     circuit breaker, which pauses sends and polls and reports the error to
//     every virtual device's OnError when it opens;
//   - permanent error: the message the cloud named (or the only one) is
//     dead-lettered and reported to its virtual device's OnError; when the
//     cloud named none, the batch goes back and smaller batches find it.
//
// When close sends the flush deadline it keeps sending until the outbox is
// empty or the deadline passes; a send begun before the flush arrived has
// no deadline of its own, and close cuts it (sendCutter) when the deadline
// passes. What is left is reported to the OnError of the virtual devices it
// came from and, counted, into p.unsent.
// The transmitter passes acceptBytes 0: requests come through the receiver,
// so that an answer never depends on the request buffer.
func (p *dispatcher) transmit(ctx context.Context) {
	defer close(p.txDone)
	t := &transmitter{p: p, log: p.txLog, flush: p.flush, limit: p.set.maxMessages}
	for ctx.Err() == nil {
		if !t.flushing {
			select {
			case <-p.bell:
				t.sleep(ctx, p.set.batchDelay)
			case dl := <-t.flush:
				t.startFlush(dl)
			case <-ctx.Done():
			}
		}
		t.drain(ctx)
		if t.flushing {
			break
		}
	}
	p.unsent = t.leftover()
}

func (t *transmitter) startFlush(deadline time.Time) {
	t.flushing, t.deadline, t.flush = true, deadline, nil
}

// sleep waits d on the clock, less when the flush deadline comes first. The
// arrival of the flush deadline ends it early.
func (t *transmitter) sleep(ctx context.Context, d time.Duration) {
	if t.flushing {
		d = min(d, t.deadline.Sub(t.p.dev.clock.Now()))
	}
	if d <= 0 {
		return
	}
	select {
	case <-t.p.dev.clock.After(d):
	case dl := <-t.flush:
		t.startFlush(dl)
	case <-ctx.Done():
	}
}

// drain sends batches until the outbox is empty, the flush deadline passed
// or ctx ended.
func (t *transmitter) drain(ctx context.Context) {
	p := t.p
	for ctx.Err() == nil {
		select {
		case dl := <-t.flush: // nil once flushing; it may come during a send
			t.startFlush(dl)
		default:
		}
		now := p.dev.clock.Now()
		if t.flushing && !now.Before(t.deadline) {
			return
		}
		if wait := p.breaker.wait(now); wait > 0 {
			if t.flushing {
				return // the credentials are refused: nothing can be sent before the close deadline
			}
			t.log.Debug("credentials refused: sends paused", "wait", wait)
			t.sleep(ctx, wait)
			continue
		}
		b, err := p.dev.outbox.Begin(t.limit, p.set.maxBatchBytes)
		if err != nil {
			t.failures++
			t.lastErr = fmt.Errorf("take messages from the outbox: %w", err)
			t.log.Error("outbox failed; retrying", "error", err)
			t.sleep(ctx, p.set.backoffDelay(t.failures, 0))
			continue
		}
		if len(b.Messages) == 0 {
			return
		}
		t.send(ctx, b)
	}
}

// send makes one attempt at batch b and ends it.
func (t *transmitter) send(ctx context.Context, b ports.Batch) {
	p := t.p
	n := len(b.Messages)
	var callCtx context.Context
	var cancel context.CancelFunc
	if t.flushing {
		callCtx, cancel = context.WithTimeout(ctx, t.deadline.Sub(p.dev.clock.Now()))
	} else {
		callCtx, cancel = p.cut.begin(ctx) // close cuts it when the flush deadline passes
	}
	in, err := p.dev.cfg.Messenger.Exchange(callCtx, b.Messages, 0, 0)
	cut := callCtx.Err() != nil
	cancel()
	if err == nil {
		t.end(b, all(n))
		size := 0
		for i := range b.Messages {
			size += max(message.EncodedSize(&b.Messages[i]), 0)
		}
		p.dev.stats.sent.Add(uint64(n))
		p.dev.stats.bytesSent.Add(uint64(message.ArraySize(n, size)))
		t.failures, t.lastErr = 0, nil
		t.limit = min(t.limit*2, p.set.maxMessages)
		p.breaker.success()
		t.log.Debug("messages sent", "messages", n, "bytes", message.ArraySize(n, size))
		p.received(t.log, in)
		return
	}
	if cut {
		t.end(b, nil) // stopping: the batch stays for the next start
		t.lastErr = fmt.Errorf("a send was cut short by the close deadline: %w", err)
		return
	}
	t.lastErr = err
	p.dev.stats.protocolErrors.Add(1)
	switch {
	case errors.Is(err, ports.ErrUnauthorized):
		t.retry(b)
		opened, first := p.breaker.failure(p.dev.clock.Now())
		switch {
		case first:
			t.log.Error("the cloud refuses the device's credentials; pausing sends and polls",
				"pause", p.set.authPause, "error", err)
			p.reportAll(fmt.Errorf("send messages: the cloud refused the device's credentials %d times in a row; sends and polls pause for %s at a time and queued messages are kept: %w",
				p.set.authFailures, p.set.authPause, err))
		case opened:
			t.log.Warn("credentials still refused; pausing again", "pause", p.set.authPause, "error", err)
		default:
			t.failures++
			t.sleep(ctx, p.set.backoffDelay(t.failures, retryAfter(err)))
		}
	case ports.IsPermanent(err):
		t.failures = 0
		t.refused(b, err)
	default:
		t.retry(b)
		t.failures++
		wait := p.set.backoffDelay(t.failures, retryAfter(err))
		t.log.Warn("send failed; retrying", "messages", n, "attempt", t.failures, "wait", wait, "error", err)
		if t.failures == 1 {
			p.reportError(b.Messages, fmt.Errorf("send messages: the cloud is unreachable or failing; the messages stay queued and are retried with backoff: %w", err))
		}
		t.sleep(ctx, wait)
	}
}

// retry puts batch b back for another attempt.
func (t *transmitter) retry(b ports.Batch) {
	t.p.dev.stats.retried.Add(uint64(len(b.Messages)))
	t.end(b, nil)
}

// refused handles a permanent error: the message the cloud named, or the
// only one, is dead-lettered; when the cloud named none in a larger batch,
// the batch goes back and the next batches are half as large, until the
// refused message travels alone. The messages that go back count as
// retried: they are sent again.
func (t *transmitter) refused(b ports.Batch, err error) {
	n := len(b.Messages)
	index := -1
	var ce *ports.CloudError
	if errors.As(err, &ce) {
		index = ce.Index
	}
	switch {
	case index >= 0 && index < n:
	case n == 1:
		index = 0
	default:
		t.retry(b)
		t.limit = max(n/2, 1)
		t.log.Warn("the cloud refused a batch without naming the message; sending smaller batches to find it",
			"messages", n, "error", err)
		return
	}
	t.end(b, []int{index})
	t.p.dev.stats.retried.Add(uint64(n - 1))
	dead := b.Messages[index]
	t.p.dev.stats.deadLettered.Add(1)
	t.log.Error("message refused by the cloud for good; dead-lettered", "client_id", dead.ClientID,
		"type", dead.Type, "source", dead.Source, "error", err)
	t.p.reportError([]message.Message{dead}, fmt.Errorf("message %s refused by the cloud, not retried: %w", dead.ClientID, err))
}

// end ends batch b; an outbox that cannot is logged (the outbox reports
// its own corruption).
func (t *transmitter) end(b ports.Batch, delivered []int) {
	if err := t.p.dev.outbox.End(b, delivered); err != nil {
		t.log.Error("outbox could not end a batch", "batch", b.Seq, "error", err)
	}
}

// sendCutter lets close cancel the send the transmitter began before it
// learnt of the flush deadline: such a send has no deadline of its own (a
// hanging cloud would hold it for the transport's timeouts), and only close
// knows when to give up on it. Safe for concurrent use.
type sendCutter struct {
	mu     sync.Mutex
	cancel context.CancelFunc // of the send in flight; nil between sends
	done   bool               // cut was called: later sends begin canceled
}

// begin returns the context of a send derived from ctx, canceled by cut,
// at once if cut was called before, and the function that ends the send
// (call it when Exchange returned).
func (c *sendCutter) begin(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		cancel()
		return ctx, cancel
	}
	c.cancel = cancel
	return ctx, func() {
		c.mu.Lock()
		c.cancel = nil
		c.mu.Unlock()
		cancel()
	}
}

// cut cancels the send in flight, if any, and every later one.
func (c *sendCutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = true
	if c.cancel != nil {
		c.cancel()
	}
}

// maxLeftover bounds the messages leftover takes out of the outbox to count
// and report them.
const maxLeftover = 10000

// leftover counts the messages still in the outbox after the flush and
// returns the error close reports, or nil when none is left.
func (t *transmitter) leftover() error {
	outbox := t.p.dev.outbox
	var left []message.Message
	var open []ports.Batch
	for len(left) < maxLeftover {
		b, err := outbox.Begin(t.p.set.maxMessages, 0)
		if err != nil || len(b.Messages) == 0 {
			break
		}
		left = append(left, b.Messages...)
		open = append(open, b)
	}
	for _, b := range open {
		t.end(b, nil)
	}
	if len(left) == 0 {
		return nil
	}
	cause := t.lastErr
	if cause == nil {
		cause = errors.New("the close deadline passed before they could be sent")
	}
	count := strconv.Itoa(len(left))
	if len(left) >= maxLeftover {
		count = "at least " + count
	}
	err := fmt.Errorf("%s message(s) not sent (a durable outbox keeps them for the next start): %w", count, cause)
	t.p.reportError(left, fmt.Errorf("close: %w", err))
	return err
}

// all returns 0..n-1.
func all(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
