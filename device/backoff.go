package device

import (
	"errors"
	"sync"
	"time"

	"github.com/iotnode/iotnode/ports"
)

// minBackoff keeps a full-jitter draw near zero from turning a failing loop
// into a busy one.
const minBackoff = 10 * time.Millisecond

// backoffDelay returns the wait after the failures-th consecutive failure
// (1 for the first): a random duration below min(cap, base*2^(failures-1))
// (full jitter), at least minBackoff, and at least the cloud's Retry-After.
func (s *settings) backoffDelay(failures int, retryAfter time.Duration) time.Duration {
	ceiling := s.backoffBase
	for i := 1; i < failures && ceiling < s.backoffCap; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, s.backoffCap)
	return max(s.jitter(ceiling), minBackoff, retryAfter)
}

// retryAfter returns the Retry-After a CloudError carries, or 0.
func retryAfter(err error) time.Duration {
	var ce *ports.CloudError
	if errors.As(err, &ce) {
		return ce.RetryAfter
	}
	return 0
}

// breaker is the circuit breaker for refused credentials, shared by the
// transmitter and the receiver. It opens after threshold consecutive
// ErrUnauthorized answers and stays open for pause; after that, calls are
// let through again (the first one is the probe): a success closes it, a
// failure opens it again at once. Safe for concurrent use.
type breaker struct {
	threshold int
	pause     time.Duration

	mu        sync.Mutex
	failures  int
	openUntil time.Time
}

// wait returns how long callers must still wait before calling, 0 when the
// breaker lets calls through.
func (b *breaker) wait(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d := b.openUntil.Sub(now); d > 0 {
		return d
	}
	return 0
}

// success records an accepted call and closes the breaker.
func (b *breaker) success() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures = 0
	b.openUntil = time.Time{}
}

// failing reports whether the last call was refused: until a call
// succeeds, one call at a time probes.
func (b *breaker) failing() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failures > 0
}

// failure records an ErrUnauthorized answer. It reports whether the breaker
// opened now, and whether that is the first opening since it was last
// closed (so that the error is reported once per outage).
func (b *breaker) failure(now time.Time) (opened, first bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Before(b.openUntil) {
		return false, false // a call that started before another one opened it
	}
	b.failures++
	if b.failures < b.threshold {
		return false, false
	}
	b.openUntil = now.Add(b.pause)
	return true, b.failures == b.threshold
}
