package fsstore

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/iotnode/iotnode/domain/message"
)

// BenchmarkOutboxAddGuaranteed measures durable Adds (real fsync) of one
// GUARANTEED_DELIVERY message each, by one caller and by many concurrent
// callers sharing commits.
func BenchmarkOutboxAddGuaranteed(b *testing.B) {
	for _, perCPU := range []int{0, 8, 64} {
		name := "callers=1"
		if perCPU > 0 {
			name = fmt.Sprintf("callers=%dxGOMAXPROCS", perCPU)
		}
		b.Run(name, func(b *testing.B) {
			o, err := OpenOutbox(filepath.Join(b.TempDir(), "outbox.db"), OutboxOptions{MaxBytes: 1 << 40})
			if err != nil {
				b.Fatal(err)
			}
			defer o.Close()
			ctx := context.Background()
			m := msg("bench", message.PriorityMedium, message.GuaranteedDelivery)
			b.ReportAllocs()
			start := time.Now()
			if perCPU == 0 {
				for b.Loop() {
					if _, err := o.Add(ctx, m); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism(perCPU)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := o.Add(ctx, m); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			elapsed := time.Since(start)
			st := o.Stats()
			b.ReportMetric(float64(st.Guaranteed)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(st.Guaranteed)/float64(max(st.Commits, 1)), "msgs/commit")
		})
	}
}

// BenchmarkOutboxDrain measures taking and delivering a backlog of
// GUARANTEED_DELIVERY messages in batches of 100 (Begin, then End with all
// delivered: one fsynced delete per batch).
func BenchmarkOutboxDrain(b *testing.B) {
	o, err := OpenOutbox(filepath.Join(b.TempDir(), "outbox.db"), OutboxOptions{MaxBytes: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
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
}
