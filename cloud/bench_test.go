package cloud

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/iotnode/iotnode/cloud/api"
)

// BenchmarkMessages posts batches of 100 DATA messages over TLS from an
// in-process device and reports messages stored per second (each batch is
// fsynced before its 202).
func BenchmarkMessages(b *testing.B) {
	e := newEnv(b)
	e.addModels()
	d := e.register(api.DeviceTypeDirect, 0)
	d.activate(humidityURN)
	var n atomic.Int64
	batch := func() string {
		msgs := make([]string, 100)
		for i := range msgs {
			msgs[i] = dataMsg(fmt.Sprintf("b-%d", n.Add(1)), d.endpointID, humidityURN+":attributes", `{"humidity":42}`)
		}
		return "[" + strings.Join(msgs, ",") + "]"
	}
	b.Run("sequential", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			body := batch()
			b.StartTimer()
			if r := d.send("?acceptBytes=4192", body); r.status != http.StatusAccepted {
				b.Fatalf("%d %s", r.status, r.body)
			}
		}
		b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if r := d.send("?acceptBytes=4192", batch()); r.status != http.StatusAccepted {
					b.Errorf("%d %s", r.status, r.body)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "msgs/s")
	})
}
