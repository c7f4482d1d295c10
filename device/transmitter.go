package device

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/ports"
)

// transmitter is the state of the transmit loop; only its goroutine uses it
// (the sends it launches report back on results).
type transmitter struct {
	p   *dispatcher
	log *slog.Logger

	flush    <-chan time.Time // nil once the flush deadline arrived
	flushing bool
	deadline time.Time

	results  chan sendResult // the sends in flight report here
	inFlight int
	// held are the batches whose last attempt failed without a verdict from
	// the cloud, in Seq order. They stay open in the outbox (so a
	// best-effort message the cloud may already have is never dropped and
	// counted as lost) and are sent again as they are, with the same
	// clientIds, before anything new.
	held []ports.Batch

	failures  int       // consecutive transient failures, for the backoff
	failedGen uint64    // counts them all; a send launched before the last one counted carries an older value
	retryAt   time.Time // while failures > 0: when the next attempt may start
	drained   bool      // the last new batch did not fill up: the outbox was empty after it
	limit     int       // messages per batch; lowered to find a refused message
	lastErr   error     // of the last failed attempt
}

// sendResult is what one send reports to the transmit loop.
type sendResult struct {
	b       ports.Batch
	in      []message.Message
	err     error
	cut     bool      // its context ended: close cut it, or the flush deadline passed
	started time.Time // for the backoff, which counts from the start of the failed attempt
	gen     uint64    // the transmitter's failedGen when it was launched
}

// transmit is the transmitter's loop. It sleeps until the doorbell rings
// (something was queued), waits the batch delay so that neighbours join,
// then sends batches from the outbox until it is empty, with up to
// WithMaxInFlight sends at once while the cloud answers (one while it does
// not, or while a refused message is being looked for):
//
//   - success: the batch leaves the outbox; requests in the answer go to
//     the request dispatcher;
//   - transient error: the batch is held and sent again as it is after a
//     full-jitter exponential backoff counted from the start of the failed
//     attempt (or after the cloud's Retry-After); the first failure of an
//     outage is reported to the OnError of the virtual devices whose
//     messages were in the batch;
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
	t := &transmitter{p: p, log: p.txLog, flush: p.flush, limit: p.set.maxMessages,
		results: make(chan sendResult, p.set.maxInFlight)}
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
	t.settle()
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

// window is how many sends may be in flight: one while the cloud fails or
// while a refused message is looked for, so that a failing cloud gets one
// probe at a time.
func (t *transmitter) window() int {
	if t.failures > 0 || t.limit < t.p.set.maxMessages || t.p.breaker.failing() {
		return 1
	}
	return t.p.set.maxInFlight
}

// pause returns how long the next send must wait: while the circuit
// breaker is open (auth true) or the backoff runs; 0 when it may start.
func (t *transmitter) pause(now time.Time) (wait time.Duration, auth bool) {
	if w := t.p.breaker.wait(now); w > 0 {
		return w, true
	}
	if t.failures > 0 {
		return max(t.retryAt.Sub(now), 0), false
	}
	return 0, false
}

// drain sends batches until the outbox is empty and no send is in flight,
// the flush deadline passed or ctx ended. Sends may still be in flight when
// it returns for the deadline or ctx: settle collects them.
func (t *transmitter) drain(ctx context.Context) {
	p := t.p
	var grouping <-chan time.Time // the batch delay of messages queued during a send
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
		if t.inFlight < t.window() {
			wait, auth := t.pause(now)
			// A new batch goes alongside a send in flight only from a
			// backlog: after a batch that did not fill up, what is queued
			// next waits the batch delay (grouping) so that it leaves in
			// one call, not one call per message.
			room := t.inFlight == 0 || len(t.held) > 0 || !t.drained || t.flushing
			switch {
			case wait <= 0 && room:
				held := len(t.held) > 0
				b, err := t.next()
				switch {
				case err != nil:
					t.failures++
					t.failedGen++
					t.lastErr = fmt.Errorf("take messages from the outbox: %w", err)
					t.retryAt = now.Add(p.set.backoffDelay(t.failures, 0))
					t.log.Error("outbox failed; retrying", "error", err)
					continue
				case len(b.Messages) > 0:
					if !held {
						t.drained = len(b.Messages) < t.limit
					}
					t.launch(ctx, b)
					continue
				case t.inFlight == 0:
					return
				}
				t.drained = true
			case wait > 0 && t.inFlight == 0:
				if auth {
					if t.flushing {
						return // the credentials are refused: nothing can be sent before the close deadline
					}
					t.log.Debug("credentials refused: sends paused", "wait", wait)
				}
				t.sleep(ctx, wait)
				continue
			}
		}
		select {
		case r := <-t.results:
			t.inFlight--
			t.handle(r)
		case <-p.bell: // queued while a send is in flight: it may go in the window's next send
			if grouping == nil {
				grouping = p.dev.clock.After(p.set.batchDelay)
			}
		case <-grouping:
			grouping, t.drained = nil, false
		case dl := <-t.flush:
			t.startFlush(dl)
		case <-ctx.Done():
		}
	}
}

// next returns the batch to send next: the oldest held one, else a new one
// from the outbox (empty when there is none).
func (t *transmitter) next() (ports.Batch, error) {
	if len(t.held) > 0 {
		b := t.held[0]
		t.held = t.held[1:]
		return b, nil
	}
	return t.p.dev.outbox.Begin(t.limit, t.p.set.maxBatchBytes)
}

// launch starts one attempt at batch b; it reports on t.results.
func (t *transmitter) launch(ctx context.Context, b ports.Batch) {
	p := t.p
	var callCtx context.Context
	var cancel context.CancelFunc
	if t.flushing {
		callCtx, cancel = context.WithTimeout(ctx, t.deadline.Sub(p.dev.clock.Now()))
	} else {
		callCtx, cancel = p.cut.begin(ctx) // close cuts it when the flush deadline passes
	}
	started, gen := p.dev.clock.Now(), t.failedGen
	t.inFlight++
	go func() {
		in, err := p.dev.cfg.Messenger.Exchange(callCtx, b.Messages, 0, 0)
		cut := callCtx.Err() != nil
		cancel()
		t.results <- sendResult{b: b, in: in, err: err, cut: cut, started: started, gen: gen}
	}()
}

// settle waits for the sends in flight and handles their results, then
// ends the held batches (their messages stay queued).
func (t *transmitter) settle() {
	for ; t.inFlight > 0; t.inFlight-- {
		t.handle(<-t.results)
	}
	for _, b := range t.held {
		t.end(b, nil)
	}
	t.held = nil
}

// handle ends the attempt r reports on.
func (t *transmitter) handle(r sendResult) {
	p := t.p
	b, err := r.b, r.err
	n := len(b.Messages)
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
		p.received(t.log, r.in)
		return
	}
	if r.cut {
		t.end(b, nil) // stopping: the batch stays for the next start
		t.lastErr = fmt.Errorf("a send was cut short by the close deadline: %w", err)
		return
	}
	t.lastErr = err
	p.dev.stats.protocolErrors.Add(1)
	now := p.dev.clock.Now()
	switch {
	case errors.Is(err, ports.ErrUnauthorized):
		t.hold(b)
		opened, first := p.breaker.failure(now)
		switch {
		case first:
			t.log.Error("the cloud refuses the device's credentials; pausing sends and polls",
				"pause", p.set.authPause, "error", err)
			p.reportAll(fmt.Errorf("send messages: the cloud refused the device's credentials %d times in a row; sends and polls pause for %s at a time and queued messages are kept: %w",
				p.set.authFailures, p.set.authPause, err))
		case opened:
			t.log.Warn("credentials still refused; pausing again", "pause", p.set.authPause, "error", err)
		default:
			t.backoff(r, now)
		}
	case ports.IsPermanent(err):
		t.failures = 0
		t.refused(b, err)
	default:
		t.hold(b)
		t.backoff(r, now)
		t.log.Warn("send failed; retrying", "messages", n, "attempt", t.failures,
			"wait", max(t.retryAt.Sub(now), 0), "error", err)
		if t.failures == 1 {
			p.reportError(b.Messages, fmt.Errorf("send messages: the cloud is unreachable or failing; the messages stay queued and are retried with backoff: %w", err))
		}
	}
}

// backoff counts the failure of attempt r (unless r was launched before the
// last counted failure: sends in flight together fail as one) and sets when the
// next attempt may start: a full-jitter draw after the start of r (so an
// attempt that hung for its timeout does not add the timeout to the wait:
// the time between attempts stays below the backoff cap), and not before
// the cloud's Retry-After has passed.
func (t *transmitter) backoff(r sendResult, now time.Time) {
	if r.gen == t.failedGen {
		t.failures++ // sends launched before this failure was counted fail with it, as one
		t.failedGen++
	}
	at := r.started.Add(t.p.set.backoffDelay(t.failures, 0))
	if ra := retryAfter(r.err); ra > 0 && now.Add(ra).After(at) {
		at = now.Add(ra)
	}
	if at.After(t.retryAt) {
		t.retryAt = at
	}
}

// hold keeps batch b open for another attempt, in Seq order.
func (t *transmitter) hold(b ports.Batch) {
	t.p.dev.stats.retried.Add(uint64(len(b.Messages)))
	i, _ := slices.BinarySearchFunc(t.held, b.Seq, func(h ports.Batch, seq uint64) int { return cmp.Compare(h.Seq, seq) })
	t.held = slices.Insert(t.held, i, b)
}

// retry puts batch b back in the outbox for another attempt.
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

// sendCutter lets close cancel the sends the transmitter began before it
// learnt of the flush deadline: such a send has no deadline of its own (a
// hanging cloud would hold it for the transport's timeouts), and only close
// knows when to give up on it. Safe for concurrent use.
type sendCutter struct {
	mu      sync.Mutex
	next    int
	cancels map[int]context.CancelFunc // of the sends in flight
	done    bool                       // cut was called: later sends begin canceled
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
	if c.cancels == nil {
		c.cancels = map[int]context.CancelFunc{}
	}
	id := c.next
	c.next++
	c.cancels[id] = cancel
	return ctx, func() {
		c.mu.Lock()
		delete(c.cancels, id)
		c.mu.Unlock()
		cancel()
	}
}

// cut cancels the sends in flight, if any, and every later one.
func (c *sendCutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = true
	for _, cancel := range c.cancels {
		cancel()
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
