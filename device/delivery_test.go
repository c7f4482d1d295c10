package device

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

// The delivery policy of issue 5 in the transmit loop, on synctest's fake
// clock: full-jitter exponential backoff up to a configurable cap, the
// cloud's Retry-After, and the counters. (The breaker is TestAuthBreaker,
// dead-lettering TestPermanentRefusalIsDeadLettered; one token refresh
// per 401 is the HTTP adapter's, TestUnauthorizedRetry in adapters/http.)

// attempts returns the times of the send attempts after the first mark,
// as offsets from start.
func (c *fakeCloud) attempts(mark int, start time.Time) []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Duration
	for _, at := range c.sendTimes[mark:] {
		out = append(out, at.Sub(start))
	}
	return out
}

// failNext makes the next n send attempts fail with err and returns how
// many attempts were made so far.
func (c *fakeCloud) failNext(n int, err error) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sendErrs = nil
	for range n {
		c.sendErrs = append(c.sendErrs, err)
	}
	return len(c.sendTimes)
}

func TestBackoffSchedule(t *testing.T) {
	const base, limit = 100 * time.Millisecond, 400 * time.Millisecond
	ms := func(ds ...int) []time.Duration {
		out := make([]time.Duration, len(ds))
		for i, d := range ds {
			out[i] = time.Duration(d) * time.Millisecond
		}
		return out
	}
	t.Run("the ceiling doubles up to the configured cap", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(true)
			d := r.device(t, WithBackoff(base, limit)) // the draw is the ceiling (testOpts)
			v := virtualDevice(t, d, "humidity_sensor")
			settle(time.Second) // the resources reports go out
			mark := r.cloud.failNext(6, errUnavailable)
			start := time.Now()
			if err := v.Set("humidity", 55); err != nil {
				t.Fatal(err)
			}
			settle(5 * time.Second)
			// The batch delay, then waits of 100, 200, 400 (the cap), 400, 400, 400 ms.
			want := ms(20, 120, 320, 720, 1120, 1520, 1920)
			if got := r.cloud.attempts(mark, start); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("attempts at %v, want %v", got, want)
			}
			if got := r.cloud.sentData(humidityURN + ":attributes"); len(got) != 1 {
				t.Fatalf("delivered %d messages, want 1", len(got))
			}
			t.Logf("attempts at %v after Set with WithBackoff(%s, %s)", want, base, limit)
			closeDevice(t, d)
		})
	})
	t.Run("full jitter: each wait is drawn below its ceiling", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(true)
			d := r.device(t, WithBackoff(base, limit), func(s *settings) { s.jitter = fullJitter })
			v := virtualDevice(t, d, "humidity_sensor")
			settle(time.Second)
			const failures = 40
			mark := r.cloud.failNext(failures, errUnavailable)
			start := time.Now()
			if err := v.Set("humidity", 56); err != nil {
				t.Fatal(err)
			}
			settle(time.Minute)
			at := r.cloud.attempts(mark, start)
			if len(at) != failures+1 {
				t.Fatalf("%d attempts, want %d", len(at), failures+1)
			}
			var sum time.Duration
			distinct := map[time.Duration]bool{}
			ceiling := base
			for k := 1; k < len(at); k, ceiling = k+1, min(2*ceiling, limit) {
				wait := at[k] - at[k-1]
				if wait < minBackoff || wait >= max(ceiling, minBackoff+1) {
					t.Fatalf("wait %d = %s, want in [%s, %s)", k, wait, minBackoff, ceiling)
				}
				if k > 3 {
					sum += wait
					distinct[wait] = true
				}
			}
			// 37 draws below the cap: uniform in [0, 400ms) (floored at 10 ms)
			// have a mean of about 200 ms; equal ceilings would be 400 ms.
			mean := sum / time.Duration(len(at)-4)
			if mean < 100*time.Millisecond || mean > 300*time.Millisecond || len(distinct) < 30 {
				t.Fatalf("waits at the cap: mean %s, %d distinct of %d; want random draws below %s", mean, len(distinct), len(at)-4, limit)
			}
			t.Logf("%d failures: waits at the %s cap averaged %s (%d distinct)", failures, limit, mean, len(distinct))
			closeDevice(t, d)
		})
	})
	t.Run("Retry-After above the cap is honoured", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(true)
			d := r.device(t, WithBackoff(base, limit))
			v := virtualDevice(t, d, "humidity_sensor")
			settle(time.Second)
			slowDown := &ports.CloudError{Op: "send messages", Status: 429, RetryAfter: time.Minute, Index: -1, Err: errors.New("too many requests")}
			mark := r.cloud.failNext(2, slowDown)
			start := time.Now()
			if err := v.Set("humidity", 57); err != nil {
				t.Fatal(err)
			}
			settle(3 * time.Minute)
			if got, want := r.cloud.attempts(mark, start), ms(20, 60020, 120020); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("attempts at %v, want %v (Retry-After 1m, twice, though the cap is %s)", got, want, limit)
			}
			closeDevice(t, d)
		})
	})
	t.Run("the default cap is 30 s", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(true)
			d := r.device(t) // base 1 s, cap 30 s
			v := virtualDevice(t, d, "humidity_sensor")
			settle(time.Second)
			mark := r.cloud.failNext(8, errRefused)
			start := time.Now()
			if err := v.Set("humidity", 58); err != nil {
				t.Fatal(err)
			}
			settle(5 * time.Minute)
			// Waits of 1, 2, 4, 8, 16, 30, 30, 30 s.
			want := ms(20, 1020, 3020, 7020, 15020, 31020, 61020, 91020, 121020)
			if got := r.cloud.attempts(mark, start); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("attempts at %v, want %v", got, want)
			}
			closeDevice(t, d)
		})
	})
}

// The counters of issue 5 (queued, sent, retried, dropped, dead-lettered)
// are exact, and the message_dispatcher counters resource answers the same
// figures as Stats.
func TestDeliveryCounters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		// An in-memory outbox of 2 KiB: room for a few humidity readings.
		d := r.device(t, WithOutboxBytes(2048))
		v := virtualDevice(t, d, "humidity_sensor")
		var sink errorSink
		v.OnError(sink.add)
		settle(time.Second) // the resources reports go out
		before := d.Stats()

		// The cloud fails the first attempt, then refuses the alert of
		// humidity 99 for good (naming it), then accepts everything.
		r.cloud.mu.Lock()
		r.cloud.sendErrs = []error{errUnavailable}
		r.cloud.sendErr = func(batch []message.Message) error {
			for i, m := range batch {
				if m.Type == message.TypeAlert && fmt.Sprint(m.Alert.Fields[0].Value) == "99" {
					return &ports.CloudError{Op: "send messages", Status: 400, Permanent: true, Index: i, Err: errors.New("alert refused")}
				}
			}
			return nil
		}
		r.cloud.mu.Unlock()

		const readings = 10 // BEST_EFFORT (the data default): the oldest are dropped for room
		for i := range readings {
			if err := v.Set("humidity", 10+i); err != nil {
				t.Fatal(err)
			}
		}
		for _, h := range []int{98, 99} { // GUARANTEED_DELIVERY (the alert default)
			if err := v.CreateAlert(humidityURN+":too_humid").Set("humidity", h).Raise(); err != nil {
				t.Fatal(err)
			}
		}
		held, _ := memHeld(d)
		settle(5 * time.Second)

		delivered := len(r.cloud.sentData(humidityURN + ":attributes"))
		alerts := 0
		for _, m := range r.cloud.sent() {
			if m.Type == message.TypeAlert {
				alerts++
			}
		}
		s := d.Stats()
		got := Stats{
			Queued: s.Queued - before.Queued, Sent: s.Sent - before.Sent, Retried: s.Retried - before.Retried,
			Dropped: s.Dropped - before.Dropped, DeadLettered: s.DeadLettered - before.DeadLettered,
			ProtocolErrors: s.ProtocolErrors - before.ProtocolErrors,
		}
		// held messages went out in one batch that failed (all retried),
		// then one that was refused (the others retried), then the rest.
		want := Stats{
			Queued: readings + 2, Sent: uint64(held - 1), Retried: uint64(held + held - 1),
			Dropped: uint64(readings + 2 - held), DeadLettered: 1, ProtocolErrors: 2,
		}
		if got != want || delivered+alerts != held-1 || alerts != 1 {
			t.Fatalf("counters %+v, want %+v; the cloud got %d readings and %d alerts of the %d messages held", got, want, delivered, alerts, held)
		}
		if evs := sink.all(); len(evs) != 2 || len(evs[1].Messages) != 1 || evs[1].Messages[0].Type != message.TypeAlert {
			t.Fatalf("OnError got %q, want the outage and the refused alert", sink.texts())
		}

		// The counters resource answers the same totals.
		r.cloud.push(newRequest("c1", testEP, "GET", capabilityURL(model.CapMessageDispatcher, "counters"), "", nil))
		settle(100 * time.Millisecond)
		resp := r.cloud.response(t, "c1")
		var body countersBody
		if err := json.Unmarshal(resp.Body, &body); err != nil || resp.StatusCode != 200 {
			t.Fatalf("counters answered %d %s", resp.StatusCode, resp.Body)
		}
		wantBody := countersBody{
			TotalMessagesSent: s.Sent, TotalMessagesReceived: s.Received + 1, TotalMessagesRetried: s.Retried,
			TotalBytesSent: s.BytesSent, TotalBytesReceived: body.TotalBytesReceived, TotalProtocolErrors: s.ProtocolErrors,
			TotalMessagesQueued: s.Queued, TotalMessagesDropped: s.Dropped, TotalMessagesDeadLettered: s.DeadLettered,
		}
		if body != wantBody || body.TotalBytesReceived <= s.BytesReceived {
			t.Fatalf("counters resource %+v, want %+v (Stats before the request, which it counts as received)", body, wantBody)
		}
		t.Logf("%d readings and 2 alerts into a 2 KiB outbox, one transient failure, one refusal: %+v", readings, want)
		closeDevice(t, d)
	})
}
