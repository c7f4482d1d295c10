package integration

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotnode/iotnode/client"
	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/message"
)

// The delivery figures of issue 5, over HTTPS on loopback against the
// in-process reference cloud, with the durable outbox (real fsync):
//
//   - guaranteed Set -> acknowledged by the cloud: many goroutines call Set
//     on one virtual device (GUARANTEED_DELIVERY data), each Set returns
//     once its message is on disk (group commit), and the clock stops when
//     the cloud has accepted the last one;
//   - backlog drain: the cloud is down while a backlog is queued; the clock
//     runs from the first send after it comes back until the outbox is
//     empty.
//
//	go test -run '^$' -bench 'GuaranteedSetToAck|BacklogDrain' -benchtime 20000x ./integration/
//	IOTNODE_BENCH=1 go test -run TestDeliveryFigures -v ./integration/
//
// Without IOTNODE_BENCH, TestDeliveryFigures makes a short run of each.

// deliveryDevice starts a cloud and an activated light switch whose Sets
// are GUARANTEED_DELIVERY, with a quick backoff so that a drain starts soon
// after the cloud returns.
func deliveryDevice(tb testing.TB, outboxBytes int64, opts ...device.Option) (*cloud, *client.DirectlyConnectedDevice, *device.VirtualDevice) {
	tb.Helper()
	c := startCloud(tb)
	d, v := activated(tb, provision(tb, c, api.DeviceTypeDirect, "delivery-light"), lightURN,
		client.WithOutboxLimits(outboxBytes, 0),
		client.WithDeviceOptions(
			device.WithDataQoS(message.PriorityLow, message.GuaranteedDelivery),
			device.WithBackoff(10*time.Millisecond, 100*time.Millisecond)),
		client.WithDeviceOptions(opts...))
	if !eventually(tb.Context(), waitFor, func() bool { return d.OutboxStats().Queued == 0 && d.Stats().Sent > 0 }) {
		tb.Fatal("the resources report was not sent")
	}
	return c, d, v
}

// setConcurrently makes n guaranteed Sets from callers goroutines and
// returns when every one returned (failing tb on an error).
func setConcurrently(tb testing.TB, v *device.VirtualDevice, prefix string, n, callers int) {
	tb.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	for range callers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if err := v.Set("label", fmt.Sprintf("%s%08d", prefix, i)); err != nil {
					once.Do(func() { tb.Errorf("Set %d: %v", i, err) })
					return
				}
			}
		})
	}
	wg.Wait()
}

// ackFigures are the figures of one guaranteed Set -> acknowledged run.
type ackFigures struct {
	n, callers    int
	sets, acked   time.Duration // from the first Set until the last returned; until the cloud accepted the last
	commits       int64         // outbox writes (each one write + one fsync)
	msgsPerSecond float64
}

// setToAck makes n guaranteed Sets from callers goroutines and measures
// until the cloud accepted all of them.
func setToAck(tb testing.TB, d *client.DirectlyConnectedDevice, v *device.VirtualDevice, n, callers int) ackFigures {
	tb.Helper()
	sent, commits := d.Stats().Sent, d.OutboxStats().Commits
	prefix := fmt.Sprintf("ack-%d-", time.Now().UnixNano())
	start := time.Now()
	setConcurrently(tb, v, prefix, n, callers)
	sets := time.Since(start)
	for d.Stats().Sent-sent < uint64(n) {
		if time.Since(start) > 2*time.Minute {
			tb.Fatalf("the cloud accepted %d of %d messages within 2 minutes", d.Stats().Sent-sent, n)
		}
		time.Sleep(200 * time.Microsecond)
	}
	acked := time.Since(start)
	return ackFigures{n: n, callers: callers, sets: sets, acked: acked, commits: d.OutboxStats().Commits - commits,
		msgsPerSecond: float64(n) / acked.Seconds()}
}

// drainFigures are the figures of one backlog drain.
type drainFigures struct {
	n             int
	drain         time.Duration // from the first send after the cloud came back until the outbox was empty
	firstSend     time.Duration // from the cloud's start until that first send
	msgsPerSecond float64
}

// backlogDrain stops the cloud, queues n guaranteed Sets, starts the cloud
// again and measures the drain.
func backlogDrain(tb testing.TB, c *cloud, d *client.DirectlyConnectedDevice, v *device.VirtualDevice, n int) drainFigures {
	tb.Helper()
	c.stop(tb)
	setConcurrently(tb, v, fmt.Sprintf("drain-%d-", time.Now().UnixNano()), n, 64)
	if q := d.OutboxStats().Guaranteed; q < int64(n) {
		tb.Fatalf("the outbox holds %d of the %d messages of the backlog", q, n)
	}
	sent := d.Stats().Sent
	up := time.Now()
	c.start(tb)
	var first time.Time
	for d.OutboxStats().Queued > 0 {
		if first.IsZero() && d.Stats().Sent > sent {
			first = time.Now()
		}
		if time.Since(up) > 2*time.Minute {
			tb.Fatalf("the backlog did not drain within 2 minutes: %+v", d.OutboxStats())
		}
		time.Sleep(200 * time.Microsecond)
	}
	end := time.Now()
	if first.IsZero() {
		first = up
	}
	return drainFigures{n: n, drain: end.Sub(first), firstSend: first.Sub(up), msgsPerSecond: float64(n) / end.Sub(first).Seconds()}
}

func TestDeliveryFigures(t *testing.T) {
	bench := os.Getenv("IOTNODE_BENCH") == "1"
	n, backlog, rounds := 2000, 5000, 1
	if bench {
		n, backlog, rounds = 50000, 50000, 3
	}
	c, d, v := deliveryDevice(t, 64<<20)
	for round := range rounds {
		for _, callers := range []int{1, 16, 64, 256} {
			if !bench && callers == 1 {
				continue // fsync-bound: a few hundred a second
			}
			count := n
			if callers == 1 {
				count = n / 20
			}
			f := setToAck(t, d, v, count, callers)
			t.Logf("round %d: guaranteed Set -> acknowledged, %d callers: %d messages in %s (Sets returned after %s), %.0f msgs/s; %d outbox commits (%.1f messages each)",
				round+1, callers, count, f.acked.Round(time.Millisecond), f.sets.Round(time.Millisecond), f.msgsPerSecond,
				f.commits, float64(count)/float64(max(f.commits, 1)))
		}
		f := backlogDrain(t, c, d, v, backlog)
		t.Logf("round %d: backlog drain: %d messages in %s (first send %s after the cloud's start), %.0f msgs/s",
			round+1, f.n, f.drain.Round(time.Millisecond), f.firstSend.Round(time.Millisecond), f.msgsPerSecond)
	}
	s := d.Stats()
	t.Logf("device: %d sent, %d retried, %d protocol errors, %d bytes sent", s.Sent, s.Retried, s.ProtocolErrors, s.BytesSent)
}

// BenchmarkGuaranteedSetToAck makes b.N guaranteed Sets from many
// goroutines and reports the messages the cloud accepted per second, from
// the first Set to the last acceptance, and the outbox writes per message.
func BenchmarkGuaranteedSetToAck(b *testing.B) {
	for _, tt := range []struct{ callers, batch, inFlight int }{
		{16, 100, 2}, {64, 100, 2}, {256, 100, 1}, {256, 100, 2}, {256, 100, 4}, {256, 500, 2}, {256, 1000, 2},
	} {
		b.Run(fmt.Sprintf("callers=%d/batch=%d/inflight=%d", tt.callers, tt.batch, tt.inFlight), func(b *testing.B) {
			callers := tt.callers
			_, d, v := deliveryDevice(b, 64<<20, device.WithMaxMessagesPerConnection(tt.batch), device.WithMaxInFlight(tt.inFlight))
			b.ResetTimer()
			f := setToAck(b, d, v, b.N, callers)
			b.StopTimer()
			b.ReportMetric(f.msgsPerSecond, "msgs/s")
			b.ReportMetric(float64(f.commits)/float64(b.N), "commits/msg")
		})
	}
}

// BenchmarkBacklogDrain queues a backlog of b.N guaranteed messages while
// the cloud is down and reports how fast it drains once the cloud is back.
func BenchmarkBacklogDrain(b *testing.B) {
	for _, tt := range []struct{ batch, inFlight int }{{100, 1}, {100, 2}, {100, 4}, {500, 2}, {1000, 2}} {
		b.Run(fmt.Sprintf("batch=%d/inflight=%d", tt.batch, tt.inFlight), func(b *testing.B) {
			c, d, v := deliveryDevice(b, 64<<20, device.WithMaxMessagesPerConnection(tt.batch), device.WithMaxInFlight(tt.inFlight))
			b.ResetTimer()
			b.StopTimer() // the fill is not measured
			f := backlogDrain(b, c, d, v, b.N)
			b.ReportMetric(f.msgsPerSecond, "msgs/s")
			b.ReportMetric(float64(f.firstSend)/1e6, "first-send-ms")
		})
	}
}
