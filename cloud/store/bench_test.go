package store

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkAppend100 stores batches of 100 messages, one transaction (and
// fsync) per batch, as the messages endpoint does.
func BenchmarkAppend100(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "cloud.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	raw := []byte(`{"clientId":"c","source":"0-ABCDEFGHIJKLMNOP","destination":"","priority":"LOW","reliability":"GUARANTEED_DELIVERY","eventTime":1764244800000,"type":"DATA","payload":{"format":"urn:x:attributes","data":{"humidity":42}}}`)
	n := 0
	now := time.Now()
	for b.Loop() {
		err := s.Batch(func(tx Tx) error {
			for range 100 {
				n++
				id := fmt.Sprint("c-", n)
				if tx.Seen("0-ABCDEFGHIJKLMNOP", id, now) {
					continue
				}
				if err := tx.AppendMessage(&Message{Received: now.UnixMilli(), Source: "0-ABCDEFGHIJKLMNOP", Type: "DATA", Raw: raw}); err != nil {
					return err
				}
				if err := tx.Remember("0-ABCDEFGHIJKLMNOP", id, now.Add(time.Hour)); err != nil {
					return err
				}
			}
			_, err := tx.PruneMessages(0, 1_000_000, 612)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "msgs/s")
}
