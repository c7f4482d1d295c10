package device

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/iotnode/iotnode/ports"
)

// receive is the receiver's loop: it asks the cloud for requests with the
// request buffer's free space as acceptBytes, holding the call up to the
// long-poll timeout (long polling) or polling every polling interval, and
// hands what comes to the request dispatcher. It waits while less than a
// quarter of the buffer is free (requests are being handled), backs off
// after errors like the transmitter, and honours the circuit breaker. A
// long poll that the transport answers empty within a second (it cannot
// hold calls) is followed by a polling interval's wait; an answer with requests is
// followed by another call at once. It returns when ctx ends.
func (p *dispatcher) receive(ctx context.Context) {
	defer close(p.rxDone)
	log := p.rxLog
	clock := p.dev.clock
	failures := 0
	for ctx.Err() == nil {
		if wait := p.breaker.wait(clock.Now()); wait > 0 {
			p.sleep(ctx, wait)
			continue
		}
		free := p.inbox.free()
		if free < p.set.requestBufferSize/4 {
			select {
			case <-p.inbox.space:
			case <-ctx.Done():
			}
			continue
		}
		var wait time.Duration
		if p.set.longPolling {
			wait = p.set.longPollTimeout
		}
		began := clock.Now()
		in, err := p.dev.cfg.Messenger.Exchange(ctx, nil, free, wait)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			p.dev.stats.protocolErrors.Add(1)
			if errors.Is(err, ports.ErrUnauthorized) {
				opened, first := p.breaker.failure(clock.Now())
				if first {
					log.Error("the cloud refuses the device's credentials; pausing sends and polls", "pause", p.set.authPause, "error", err)
					p.reportAll(fmt.Errorf("receive requests: the cloud refused the device's credentials %d times in a row; sends and polls pause for %s at a time and queued messages are kept: %w",
						p.set.authFailures, p.set.authPause, err))
				}
				if opened {
					continue
				}
			}
			failures++
			d := p.set.backoffDelay(failures, retryAfter(err))
			log.Warn("receive failed; retrying", "attempt", failures, "wait", d, "error", err)
			p.sleep(ctx, d)
			continue
		}
		failures = 0
		p.breaker.success()
		p.received(log, in)
		if len(in) == 0 && (!p.set.longPolling || clock.Now().Sub(began) < min(wait/2, time.Second)) {
			p.sleep(ctx, time.Duration(p.poll.Load()))
		}
	}
}
