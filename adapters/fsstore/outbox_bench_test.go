package fsstore

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotnode/iotnode/domain/message"
)

// openBenchOutbox opens an outbox with real fsync for a benchmark.
func openBenchOutbox(b *testing.B) *Outbox {
	o, err := OpenOutbox(filepath.Join(b.TempDir(), "outbox"), OutboxOptions{MaxBytes: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := o.Close(); err != nil {
			b.Error(err)
		}
	})
	return o
}

// BenchmarkOutboxAddGuaranteed measures durable Adds (real fsync) of one
// GUARANTEED_DELIVERY message each, by 1, 16 and 128 concurrent callers
// sharing commits: msgs/s is messages acknowledged to their callers per
// second.
func BenchmarkOutboxAddGuaranteed(b *testing.B) {
	for _, callers := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			o := openBenchOutbox(b)
			ctx := context.Background()
			m := msg("bench", message.PriorityMedium, message.GuaranteedDelivery)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for range callers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, err := o.Add(ctx, m); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			st := o.Stats()
			b.ReportMetric(float64(st.Guaranteed)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(st.Guaranteed)/float64(max(st.Commits, 1)), "msgs/commit")
		})
	}
}

// BenchmarkOutboxDrain measures taking and delivering a backlog of 10,000
// GUARANTEED_DELIVERY messages in batches of 100 (Begin, then End with all
// delivered: one fsynced write per batch).
func BenchmarkOutboxDrain(b *testing.B) {
	b.Run("batch=100", func(b *testing.B) {
		o := openBenchOutbox(b)
		ctx := context.Background()
		chunk := make([]message.Message, 1000)
		for i := range chunk {
			chunk[i] = msg(fmt.Sprint("m", i), message.PriorityMedium, message.GuaranteedDelivery)
		}
		const batch = 100
		b.ReportAllocs()
		drained := 0
		var elapsed time.Duration
		for b.Loop() {
			// One backlog of 10,000 per iteration: filled untimed, drained timed.
			b.StopTimer()
			for range 10 {
				if _, err := o.Add(ctx, chunk...); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			start := time.Now()
			for {
				bt, err := o.Begin(batch, 0)
				if err != nil {
					b.Fatal(err)
				}
				if len(bt.Messages) == 0 {
					break
				}
				if err := o.End(bt, allIndexes(bt)); err != nil {
					b.Fatal(err)
				}
				drained += len(bt.Messages)
			}
			elapsed += time.Since(start)
		}
		b.ReportMetric(float64(drained)/elapsed.Seconds(), "msgs/s")
	})
}
