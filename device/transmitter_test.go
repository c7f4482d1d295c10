package device

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/ports"
)

// The transmit loop of transmitter.go on synctest's fake clock: sends in
// flight at once (WithMaxInFlight), one probe at a time while the cloud
// fails, held batches sent again as they are, the backoff counted from the
// start of the failed attempt, and Close with several sends hanging. The
// cloud is gatedCloud: each send waits until the test answers it, so the
// test sees which attempts are in flight together and ends each one when
// and how it chooses.

// gatedCloud is a ports.Messenger whose sends wait until the test answers
// them (or their context ends). Polls go to the rig's fake cloud, which
// also records the accepted sends (fakeCloud.sent and sentData work).
type gatedCloud struct {
	cloud *fakeCloud

	mu    sync.Mutex
	calls []*gatedCall // every send attempt, in the order Exchange was called
	open  int          // attempts in flight
	peak  int          // the most attempts in flight at once
}

// gatedCall is one send attempt.
type gatedCall struct {
	at     time.Time // when Exchange was called
	msgs   []message.Message
	answer chan error // buffered 1: the test's answer, nil to accept
	done   bool       // answered, or its context ended (under gatedCloud.mu)
}

// newGatedCloud makes r's device send through a gatedCloud.
func newGatedCloud(r *rig) *gatedCloud {
	g := &gatedCloud{cloud: r.cloud}
	r.cfg.Messenger = g
	return g
}

func (g *gatedCloud) Exchange(ctx context.Context, msgs []message.Message, acceptBytes int, wait time.Duration) ([]message.Message, error) {
	if len(msgs) == 0 {
		return g.cloud.Exchange(ctx, msgs, acceptBytes, wait)
	}
	c := &gatedCall{at: time.Now(), msgs: slices.Clone(msgs), answer: make(chan error, 1)}
	g.mu.Lock()
	g.calls = append(g.calls, c)
	g.open++
	g.peak = max(g.peak, g.open)
	g.mu.Unlock()
	var err error
	select {
	case err = <-c.answer:
	case <-ctx.Done():
		err = ctx.Err()
	}
	g.mu.Lock()
	g.open--
	c.done = true
	g.mu.Unlock()
	if err != nil {
		return nil, err
	}
	g.cloud.mu.Lock()
	g.cloud.batches = append(g.cloud.batches, c.msgs)
	g.cloud.mu.Unlock()
	return nil, nil
}

// pending waits until every goroutine of the bubble is blocked and returns
// the attempts waiting for an answer, in call order.
func (g *gatedCloud) pending() []*gatedCall {
	synctest.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*gatedCall
	for _, c := range g.calls {
		if !c.done {
			out = append(out, c)
		}
	}
	return out
}

// answer ends the attempts calls with err (nil: the cloud accepts them)
// and waits until every goroutine of the bubble is blocked: the
// transmitter has handled the answers.
func (g *gatedCloud) answer(err error, calls ...*gatedCall) {
	g.mu.Lock()
	for _, c := range calls {
		c.done = true
		c.answer <- err
	}
	g.mu.Unlock()
	synctest.Wait()
}

// await lets time pass, a millisecond at a time, until an attempt is in
// flight or limit passed, and returns the attempts in flight.
func (g *gatedCloud) await(limit time.Duration) []*gatedCall {
	for end := time.Now().Add(limit); ; time.Sleep(time.Millisecond) {
		if p := g.pending(); len(p) > 0 || !time.Now().Before(end) {
			return p
		}
	}
}

// acceptAll lets time pass and accepts every attempt until none comes.
func (g *gatedCloud) acceptAll() {
	for {
		time.Sleep(time.Second)
		p := g.pending()
		if len(p) == 0 {
			return
		}
		g.answer(nil, p...)
	}
}

// stats returns how many attempts were made and the most in flight at once.
func (g *gatedCloud) stats() (calls, peak int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.calls), g.peak
}

// clientIDs returns the clientIds of msgs, in order.
func clientIDs(msgs []message.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.ClientID
	}
	return out
}

// humidities returns the humidity readings among msgs, in order.
func humidities(msgs []message.Message) []int64 {
	var out []int64
	for _, m := range msgs {
		if m.Type == message.TypeData && m.Data.Format == humidityURN+":attributes" {
			out = append(out, field(m, "humidity").(int64))
		}
	}
	return out
}

// span returns the integers lo..hi.
func span(lo, hi int64) []int64 {
	var out []int64
	for i := lo; i <= hi; i++ {
		out = append(out, i)
	}
	return out
}

// setReadings sets the humidity of v to each of values.
func setReadings(t *testing.T, v *VirtualDevice, values []int64) {
	t.Helper()
	for _, h := range values {
		if err := v.Set("humidity", h); err != nil {
			t.Fatal(err)
		}
	}
}

// With a cloud that answers slowly and a backlog of many batches, exactly
// WithMaxInFlight sends are in flight at once (never more), and every
// message is delivered once.
func TestMaxInFlight(t *testing.T) {
	tests := []struct {
		name string
		opts []Option
		want int
	}{
		{"default", nil, DefaultMaxInFlight},
		{"1", []Option{WithMaxInFlight(1)}, 1},
		{"2", []Option{WithMaxInFlight(2)}, 2},
		{"4", []Option{WithMaxInFlight(4)}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(true)
				g := newGatedCloud(r)
				d := r.device(t, append(tt.opts, WithMaxMessagesPerConnection(2))...)
				v := virtualDevice(t, d, "humidity_sensor")
				// The 2 resources reports and 20 readings: 11 batches of 2.
				setReadings(t, v, span(0, 19))
				time.Sleep(100 * time.Millisecond) // the batch delay passes
				for round := 0; ; round++ {
					p := g.pending()
					if len(p) == 0 {
						break
					}
					if round == 100 {
						t.Fatalf("still %d sends in flight after 100 answers", len(p))
					}
					if len(p) > tt.want {
						t.Fatalf("%d sends in flight, want at most %d", len(p), tt.want)
					}
					g.answer(nil, p[0]) // the oldest: the next batch takes its place
				}
				calls, peak := g.stats()
				if calls != 11 || peak != tt.want {
					t.Errorf("%d attempts, at most %d at once; want 11 attempts, %d at once", calls, peak, tt.want)
				}
				sent := r.cloud.sent()
				got := humidities(sent)
				slices.Sort(got) // batches in flight together may be stored in either order
				unique := clientIDs(sent)
				slices.Sort(unique)
				if len(sent) != 22 || !slices.Equal(got, span(0, 19)) || len(slices.Compact(unique)) != 22 {
					t.Errorf("the cloud got %d messages (readings %v), want the 22 queued, each once", len(sent), got)
				}
				t.Logf("11 batches through a slow cloud: at most %d sends in flight", peak)
				closeDevice(t, d)
			})
		})
	}
}

// While the cloud fails, one attempt at a time probes it, whatever
// WithMaxInFlight allows; the first success opens the window again.
func TestOneProbeAtATimeWhileTheCloudFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		g := newGatedCloud(r)
		d := r.device(t, WithMaxInFlight(4), WithMaxMessagesPerConnection(2), WithBackoff(100*time.Millisecond, 400*time.Millisecond))
		v := virtualDevice(t, d, "humidity_sensor")
		setReadings(t, v, span(0, 19)) // with the 2 reports: 11 batches of 2
		time.Sleep(100 * time.Millisecond)
		p := g.pending()
		if len(p) != 4 {
			t.Fatalf("%d sends in flight, want 4", len(p))
		}
		g.answer(errUnavailable, p...)
		if p := g.pending(); len(p) != 0 {
			t.Fatalf("%d sends in flight at once after the failures, want none before the backoff", len(p))
		}
		for probe := range 3 {
			time.Sleep(time.Second) // more than the 400 ms cap
			p := g.pending()
			if len(p) != 1 {
				t.Fatalf("probe %d: %d sends in flight while the cloud fails, want 1", probe, len(p))
			}
			if probe < 2 {
				g.answer(errUnavailable, p...)
			} else {
				g.answer(nil, p...)
			}
		}
		if p := g.pending(); len(p) != 4 {
			t.Fatalf("%d sends in flight after a success, want 4", len(p))
		}
		g.acceptAll()
		if calls, peak := g.stats(); calls != 17 || peak != 4 {
			t.Errorf("%d attempts, at most %d at once; want 11 successes + 6 failures, 4 at once", calls, peak)
		}
		got := humidities(r.cloud.sent())
		slices.Sort(got)
		if len(r.cloud.sent()) != 22 || !slices.Equal(got, span(0, 19)) {
			t.Errorf("the cloud got %d messages (readings %v), want the 22 queued, each once", len(r.cloud.sent()), got)
		}
		closeDevice(t, d)
	})
}

// A batch whose attempt failed without a verdict is held open and sent
// again as it is: the same messages with the same clientIds, in the same
// order, in one call, before any message queued later (an alert of
// priority HIGHEST among them); and the in-memory outbox never drops its
// best-effort messages for room.
func TestHeldBatches(t *testing.T) {
	t.Run("sent again as they are before newer messages", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(true)
			g := newGatedCloud(r)
			d := r.device(t, WithMaxMessagesPerConnection(3), WithBackoff(100*time.Millisecond, 400*time.Millisecond))
			v := virtualDevice(t, d, "humidity_sensor")
			g.acceptAll() // the resources reports
			before := d.Stats()

			setReadings(t, v, span(1, 5))
			time.Sleep(100 * time.Millisecond)
			p := g.pending()
			slices.SortFunc(p, func(a, b *gatedCall) int { return cmpReading(a.msgs[0], b.msgs[0]) })
			if len(p) != 2 || !slices.Equal(humidities(p[0].msgs), span(1, 3)) || !slices.Equal(humidities(p[1].msgs), span(4, 5)) {
				t.Fatalf("%d sends in flight, want readings 1-3 and 4-5", len(p))
			}
			first, second := p[0].msgs, p[1].msgs
			g.answer(errUnavailable, p...)

			// Newer messages, the alert first in priority order.
			setReadings(t, v, []int64{6})
			if err := v.CreateAlert(humidityURN+":too_humid").Set("humidity", 99).Raise(); err != nil {
				t.Fatal(err)
			}
			setReadings(t, v, []int64{7})

			for attempt := range 2 {
				time.Sleep(time.Second)
				p := g.pending()
				if len(p) != 1 || !slices.Equal(clientIDs(p[0].msgs), clientIDs(first)) {
					t.Fatalf("retry %d: sends in flight %v, want the first held batch %v alone", attempt, callIDs(p), clientIDs(first))
				}
				if attempt == 0 {
					g.answer(errUnavailable, p...)
				} else {
					g.answer(nil, p...)
				}
			}
			// The window opens again: the other held batch and the newer
			// messages go together (either may be stored first).
			p = g.pending()
			slices.SortFunc(p, func(a, b *gatedCall) int { return cmpReading(a.msgs[len(a.msgs)-1], b.msgs[len(b.msgs)-1]) })
			if len(p) != 2 || !slices.Equal(clientIDs(p[0].msgs), clientIDs(second)) ||
				p[1].msgs[0].Type != message.TypeAlert || !slices.Equal(humidities(p[1].msgs), []int64{6, 7}) {
				t.Fatalf("after the success, sends in flight %v, want the held batch %v and [alert, 6, 7]", callIDs(p), clientIDs(second))
			}
			g.answer(nil, p...)
			g.acceptAll()

			sent := r.cloud.sent()
			unique := clientIDs(sent)
			slices.Sort(unique)
			if len(sent) != 10 || len(slices.Compact(unique)) != 10 { // 2 reports, 7 readings, 1 alert
				t.Errorf("the cloud got %d messages, want the 10 queued, each once", len(sent))
			}
			// Three failed attempts: 3 + 2 + 3 messages sent again.
			if s := d.Stats(); s.Retried-before.Retried != 8 || s.Sent-before.Sent != 8 {
				t.Errorf("retried %d, sent %d; want 8 and 8", s.Retried-before.Retried, s.Sent-before.Sent)
			}
			closeDevice(t, d)
		})
	})
	t.Run("their best-effort messages are never dropped for room", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(true)
			g := newGatedCloud(r)
			d := r.device(t, WithOutboxBytes(2048), WithMaxMessagesPerConnection(3))
			v := virtualDevice(t, d, "humidity_sensor")
			g.acceptAll() // the resources reports
			before := d.Stats()

			setReadings(t, v, span(0, 2))
			time.Sleep(100 * time.Millisecond)
			p := g.pending()
			if len(p) != 1 || !slices.Equal(humidities(p[0].msgs), span(0, 2)) {
				t.Fatalf("sends in flight %v, want one of readings 0-2", callIDs(p))
			}
			g.answer(errUnavailable, p...)
			if queued, open := memHeld(d); queued != 0 || open != 3 {
				t.Fatalf("the outbox holds %d queued and %d open messages, want the failed batch of 3 open", queued, open)
			}
			setReadings(t, v, span(3, 39)) // during the outage, into 2 KiB: the oldest queued are dropped
			dropped := d.Stats().Dropped - before.Dropped
			if dropped == 0 {
				t.Fatal("nothing dropped: the outbox did not overflow")
			}
			g.acceptAll()

			got := humidities(r.cloud.sent())
			if len(got) < 3 || !slices.Equal(got[:3], span(0, 2)) {
				t.Fatalf("the cloud got readings %v, want the held 0-2 first", got)
			}
			if missing := 40 - uint64(len(got)); missing != dropped {
				t.Errorf("%d readings missing at the cloud (got %v), want the %d the outbox counted as dropped", missing, got, dropped)
			}
			t.Logf("40 readings into a 2 KiB outbox during an outage: %d dropped, none of the held batch", dropped)
			closeDevice(t, d)
		})
	})
}

// cmpReading orders DATA messages by humidity reading, alerts last.
func cmpReading(a, b message.Message) int {
	key := func(m message.Message) int64 {
		if h := humidities([]message.Message{m}); len(h) == 1 {
			return h[0]
		}
		return 1 << 62
	}
	return cmp.Compare(key(a), key(b))
}

// callIDs returns the clientIds of each of calls, for messages.
func callIDs(calls []*gatedCall) [][]string {
	var out [][]string
	for _, c := range calls {
		out = append(out, clientIDs(c.msgs))
	}
	return out
}

// hung is how a send attempt ends: after hanging so long, with err.
type hung struct {
	after time.Duration
	err   error
}

// The next attempt starts a backoff draw after the start of the failed one
// (at once if that passed while it hung), not after its end; a Retry-After
// counts from the answer. The draw is the ceiling (testOpts); the backoff
// base is 1 s.
func TestBackoffCountsFromTheAttemptStart(t *testing.T) {
	slowDown := &ports.CloudError{Op: "send messages", Status: 503, RetryAfter: 5 * time.Second, Index: -1, Err: errors.New("service unavailable")}
	tests := []struct {
		name    string
		answers []hung          // of the failed attempts, in order
		want    []time.Duration // the starts of the attempts, from the first
	}{
		{
			name: "an attempt that hangs",
			answers: []hung{
				{10 * time.Second, errUnavailable}, // draw 1 s: already passed, at once
				{0, errUnavailable},                // draw 2 s from 10 s
				{2 * time.Second, errUnavailable},  // draw 4 s from 12 s: at 16 s, not 18 s
			},
			want: []time.Duration{0, 10 * time.Second, 12 * time.Second, 16 * time.Second},
		},
		{
			name: "Retry-After counts from the answer",
			answers: []hung{
				{2 * time.Second, slowDown}, // draw 1 s from 0; Retry-After 5 s from 2 s
			},
			want: []time.Duration{0, 7 * time.Second},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(true)
				g := newGatedCloud(r)
				d := r.device(t)
				v := virtualDevice(t, d, "humidity_sensor")
				g.acceptAll() // the resources reports
				mark, _ := g.stats()
				setReadings(t, v, []int64{50})
				time.Sleep(100 * time.Millisecond)
				for i, a := range tt.answers {
					p := g.await(time.Minute)
					if len(p) != 1 {
						t.Fatalf("attempt %d: %d sends in flight, want 1", i+1, len(p))
					}
					time.Sleep(a.after - time.Since(p[0].at))
					g.answer(a.err, p...)
				}
				g.answer(nil, g.await(time.Minute)...)
				g.mu.Lock()
				calls := g.calls[mark:]
				g.mu.Unlock()
				var got []time.Duration
				for _, c := range calls {
					got = append(got, c.at.Sub(calls[0].at))
				}
				if !slices.Equal(got, tt.want) {
					t.Fatalf("attempts at %v, want %v", got, tt.want)
				}
				if n := len(r.cloud.sentData(humidityURN + ":attributes")); n != 1 {
					t.Errorf("delivered %d readings, want 1", n)
				}
				closeDevice(t, d)
			})
		})
	}
}

func TestMaxInFlightOption(t *testing.T) {
	for _, n := range []int{0, -1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			_, err := NewDirectlyConnectedDevice(newRig(true).cfg, testOpts(WithMaxInFlight(n))...)
			want := fmt.Sprintf("new directly connected device: option WithMaxInFlight: %d, expected at least 1", n)
			if err == nil || err.Error() != want {
				t.Fatalf("NewDirectlyConnectedDevice: %v\nwant %s", err, want)
			}
		})
	}
}

// Close with several sends hanging cuts them all when the flush's share of
// the close timeout passes: Close returns on time, the cut batches go back
// to the outbox (a durable one keeps them for the next start) and are
// reported, and every send goroutine has returned (synctest.Test fails on
// a goroutine left blocked in the bubble, goleak on one outside).
func TestCloseCutsEverySendInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		g := newGatedCloud(r)
		d := r.device(t, WithMaxInFlight(3), WithMaxMessagesPerConnection(1), WithCloseTimeout(time.Second))
		v := virtualDevice(t, d, "humidity_sensor")
		var sink errorSink
		v.OnError(sink.add)
		setReadings(t, v, span(1, 3)) // with the 2 reports: 5 batches of 1
		time.Sleep(100 * time.Millisecond)
		if p := g.pending(); len(p) != 3 {
			t.Fatalf("%d sends in flight, want 3", len(p))
		}
		if queued, open := memHeld(d); queued != 2 || open != 3 {
			t.Fatalf("the outbox holds %d queued and %d in-flight messages, want 2 and 3", queued, open)
		}
		start := time.Now()
		err := d.Close(context.Background())
		if elapsed := time.Since(start); elapsed != 900*time.Millisecond {
			t.Errorf("Close took %s, want the flush's share 900ms of the close timeout 1s", elapsed)
		}
		const left = "5 message(s) not sent (a durable outbox keeps them for the next start): a send was cut short by the close deadline: context canceled"
		if err == nil || err.Error() != "close device dev-ep-1: "+left {
			t.Fatalf("Close: %v\nwant   close device dev-ep-1: %s", err, left)
		}
		if queued, open := memHeld(d); queued != 5 || open != 0 {
			t.Errorf("the outbox holds %d queued and %d in-flight messages after Close, want the 5 queued", queued, open)
		}
		if p := g.pending(); len(p) != 0 || len(r.cloud.sent()) != 0 {
			t.Errorf("%d sends still in flight after Close, %d messages accepted; want none", len(p), len(r.cloud.sent()))
		}
		if evs := sink.all(); len(evs) != 1 || evs[0].Err.Error() != "close: "+left || !slices.Equal(humidities(evs[0].Messages), span(1, 3)) {
			t.Errorf("OnError got %q, want the close report of readings 1-3", sink.texts())
		}
	})
}

// A message queued while a send hangs goes out in a second send without
// waiting for the first send's answer: the transmitter hears the doorbell
// during a send (default WithMaxInFlight 2, WithBatchDelay 20 ms). It
// should leave once the batch delay has passed, so that its neighbours join
// it; today it leaves at once (bug, see the skipped case).
func TestQueuedDuringASendGoesAlongside(t *testing.T) {
	const offset = 5 * time.Millisecond // from the first send's start to the second message
	tests := []struct {
		name  string
		exact bool // the second send starts at the batch delay, not merely by then
	}{
		{name: "without waiting for the first answer"},
		{name: "after the batch delay", exact: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(true)
				g := newGatedCloud(r)
				d := r.device(t)
				v := virtualDevice(t, d, "humidity_sensor")
				g.acceptAll() // the resources reports
				setReadings(t, v, []int64{1})
				queued := time.Now()
				p := g.await(time.Second)
				if len(p) != 1 || !slices.Equal(humidities(p[0].msgs), []int64{1}) || p[0].at.Sub(queued) != DefaultBatchDelay {
					t.Fatalf("sends in flight %v, want reading 1 alone after the batch delay", callIDs(p))
				}
				first := p[0]
				time.Sleep(first.at.Add(offset).Sub(time.Now()))
				setReadings(t, v, []int64{2}) // while the first send hangs
				want := first.at.Add(offset + DefaultBatchDelay)
				time.Sleep(want.Sub(time.Now()) - time.Nanosecond)
				if p := g.pending(); tt.exact && len(p) != 1 {
					t.Fatalf("%d sends in flight a nanosecond before the second message's batch delay passed, want 1", len(p))
				}
				time.Sleep(time.Nanosecond)
				p = g.pending()
				if len(p) != 2 || p[0] != first || !slices.Equal(humidities(p[1].msgs), []int64{2}) {
					t.Fatalf("sends in flight %v at first send + %s + batch delay, want the hanging first one and reading 2", callIDs(p), offset)
				}
				second := p[1].at.Sub(first.at)
				if tt.exact && second != offset+DefaultBatchDelay || second < offset {
					t.Errorf("the second send started %s after the first, want %s", second, offset+DefaultBatchDelay)
				}
				g.answer(nil, p[1])
				if !slices.Equal(g.pending(), []*gatedCall{first}) {
					t.Fatal("answering the second send ended the first")
				}
				g.answer(nil, first)
				if got := humidities(r.cloud.sent()); !slices.Equal(got, []int64{2, 1}) {
					t.Errorf("the cloud stored readings %v, want [2 1] (the second send was answered first)", got)
				}
				closeDevice(t, d)
			})
		})
	}
}

// Sends in flight together that fail together are one failure for the
// backoff: after 4 sends fail, the first probe comes at the ceiling of
// failure 1 (1 s, the rig's draw) after their start, not of failure 4 (8 s),
// and the next at the ceiling of failure 2 after the probe's start. Every
// virtual device with messages in one of the failed batches gets the
// first-failure report, for exactly those messages; the failed probe does
// not report again.
func TestSendsThatFailTogetherAreOneFailure(t *testing.T) {
	tests := []struct {
		name string
		hang time.Duration // from the sends' start to their failure
	}{
		{name: "after hanging", hang: 300 * time.Millisecond},
		{name: "at the instant they start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testFailTogether(t, tt.hang) })
		})
	}
}

func testFailTogether(t *testing.T, hang time.Duration) {
	r := newRig(true)
	g := newGatedCloud(r)
	d := r.device(t, WithMaxInFlight(4), WithMaxMessagesPerConnection(2), WithBackoff(time.Second, 30*time.Second))
	hum := virtualDevice(t, d, "humidity_sensor")
	light := virtualDevice(t, d, "light_switch")
	var humErrs, lightErrs errorSink
	hum.OnError(humErrs.add)
	light.OnError(lightErrs.add)
	g.acceptAll() // the resources reports
	setReadings(t, hum, span(1, 4))
	for b := range int64(4) {
		if err := light.Set("brightness", 10+b); err != nil {
			t.Fatal(err)
		}
	}
	p := g.await(time.Second) // batches [h1 h2] [h3 h4] [l10 l11] [l12 l13]
	if len(p) != 4 {
		t.Fatalf("%d sends in flight, want 4", len(p))
	}
	start := p[0].at
	for _, c := range p {
		if !c.at.Equal(start) {
			t.Fatalf("sends started at %v and %v, want together", start, c.at)
		}
	}
	failed := slices.Concat(p[0].msgs, p[1].msgs, p[2].msgs, p[3].msgs)
	time.Sleep(hang)
	g.answer(errUnavailable, p...)

	want := "send messages: the cloud is unreachable or failing; the messages stay queued and are retried with backoff: " + errUnavailable.Error()
	reported := func(s *errorSink, dev *VirtualDevice) []string {
		var out []string
		for _, ev := range s.all() {
			if ev.Device != dev || ev.Err.Error() != want {
				t.Errorf("OnError of %s got %q from %s, want %q", dev.Model().URN, ev.Err, ev.Device.Model().URN, want)
			}
			out = append(out, clientIDs(ev.Messages)...)
		}
		slices.Sort(out)
		return out
	}
	owned := func(format string) []string {
		var out []string
		for _, m := range failed {
			if m.Data.Format == format {
				out = append(out, m.ClientID)
			}
		}
		slices.Sort(out)
		return out
	}
	if got, want := reported(&humErrs, hum), owned(humidityURN+":attributes"); len(want) != 4 || !slices.Equal(got, want) {
		t.Errorf("the humidity sensor's OnError got messages %v, want its 4 failed ones %v", got, want)
	}
	if got, want := reported(&lightErrs, light), owned(lightURN+":attributes"); len(want) != 4 || !slices.Equal(got, want) {
		t.Errorf("the light switch's OnError got messages %v, want its 4 failed ones %v", got, want)
	}
	reports := len(humErrs.all()) + len(lightErrs.all())

	// The probes: failure 1's ceiling after the failed sends' start, then
	// failure 2's after the probe's start.
	for i, at := range []time.Time{start.Add(time.Second), start.Add(3 * time.Second)} {
		time.Sleep(at.Sub(time.Now()) - time.Nanosecond)
		if p := g.pending(); len(p) != 0 {
			t.Fatalf("probe %d: a send before start + %s", i+1, at.Sub(start))
		}
		time.Sleep(time.Nanosecond)
		p := g.pending()
		if len(p) != 1 || !p[0].at.Equal(at) {
			t.Fatalf("probe %d: %d sends in flight at start + %s, want 1", i+1, len(p), at.Sub(start))
		}
		if i == 1 {
			g.answer(nil, p...)
			break
		}
		time.Sleep(100 * time.Millisecond)
		g.answer(errUnavailable, p...)
		if n := len(humErrs.all()) + len(lightErrs.all()); n != reports {
			t.Errorf("%d reports after the probe failed, want the %d of the first failure", n, reports)
		}
	}
	if p := g.pending(); len(p) != 3 {
		t.Fatalf("%d sends in flight after the probe succeeded, want the other 3 held batches", len(p))
	}
	g.acceptAll()
	if h, l := humidities(r.cloud.sent()), r.cloud.sentData(lightURN+":attributes"); len(h) != 4 || len(l) != 4 {
		t.Errorf("the cloud got readings %v and %d light updates, want 4 and 4", h, len(l))
	}
	closeDevice(t, d)
}

// Once the credentials breaker has opened (threshold 1 here), one send at a
// time probes when each pause ends, whatever WithMaxInFlight allows and
// however large the backlog, even though no transient failure is counted
// (the breaker alone narrows the window); the first success opens the
// window to 4 again. The receiver is held in a long poll, so only the
// transmitter meets the breaker.
func TestAuthBreakerProbesOneAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const pause = 10 * time.Second
		r := newRig(true)
		g := newGatedCloud(r)
		d := r.device(t, WithMaxInFlight(4), WithMaxMessagesPerConnection(2), WithAuthBreaker(1, pause), WithLongPolling(true, time.Hour))
		v := virtualDevice(t, d, "humidity_sensor")
		var sink errorSink
		v.OnError(sink.add)
		g.acceptAll() // the resources reports
		setReadings(t, v, []int64{0})
		p := g.await(time.Second)
		if len(p) != 1 {
			t.Fatalf("%d sends in flight, want 1", len(p))
		}
		g.answer(errAuth, p...)        // the breaker opens
		setReadings(t, v, span(1, 20)) // during the pause: 10 batches behind the held one

		for i := range 3 {
			want := time.Now().Add(pause)
			time.Sleep(pause - time.Nanosecond)
			if p := g.pending(); len(p) != 0 {
				t.Fatalf("pause %d: %d sends in flight while the breaker is open, want none", i+1, len(p))
			}
			time.Sleep(time.Nanosecond)
			p := g.pending()
			if len(p) != 1 || !p[0].at.Equal(want) || !slices.Equal(humidities(p[0].msgs), []int64{0}) {
				t.Fatalf("pause %d over: sends in flight %v, want the held reading 0 alone", i+1, callIDs(p))
			}
			time.Sleep(100 * time.Millisecond)
			if p := g.pending(); len(p) != 1 {
				t.Fatalf("pause %d over: %d sends in flight while the probe hangs, want 1", i+1, len(p))
			}
			if i < 2 {
				g.answer(errAuth, p...) // open again
			} else {
				g.answer(nil, p...)
			}
		}
		if p := g.pending(); len(p) != 4 {
			t.Fatalf("%d sends in flight after the probe succeeded, want 4", len(p))
		}
		g.acceptAll()
		if calls, peak := g.stats(); calls != 2+3+10 || peak != 4 {
			t.Errorf("%d attempts, at most %d at once; want 15 (reports, 3 probes, 10 batches), 4 at once", calls, peak)
		}
		if got := humidities(r.cloud.sent()); len(got) != 21 {
			t.Errorf("the cloud got %d readings, want 21", len(got))
		}
		if texts := sink.texts(); len(texts) != 1 || !contains(texts[0], "the cloud refused the device's credentials 1 times in a row") {
			t.Errorf("OnError got %q, want one breaker report", texts)
		}
		closeDevice(t, d)
	})
}
