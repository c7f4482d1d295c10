package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotnode/iotnode/adapters/fsstore"
	"github.com/iotnode/iotnode/client"
	"github.com/iotnode/iotnode/cloud/api"
	cloudclient "github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/ports"
)

// The outage proof of issue 5: the cloud is down long enough that
// guaranteed Sets try to fill the durable outbox twice over.
//
//   - the outbox directory stays within its bound, measured on disk all
//     along: MaxBytes + one segment (and within MaxBytes itself, since
//     nothing is delivered);
//   - the Sets that do not fit fail with an error wrapping
//     ports.ErrOutboxFull whose text says where and how full; none is
//     dropped silently: accepted + refused = tried;
//   - the device restarts during the outage: the accepted messages come
//     back from disk with the clientIds they were given before;
//   - best-effort alerts raised during the outage beyond the memory bound
//     are dropped, counted exactly;
//   - the cloud comes back: the backlog drains (the rate is printed; the
//     target is 5,000 msgs/s, asserted only above a floor of 500 so that a
//     loaded machine does not fail the test), and the cloud holds every
//     accepted message exactly once and no refused one.
//
//	go test -run TestCloudOutage -v ./integration/                      # a 2 MiB outbox
//	IOTNODE_LONG=1 go test -run TestCloudOutage -v ./integration/       # 16 MiB

// outageOutboxBytes is the outbox's MaxBytes in the outage proof.
func outageOutboxBytes() int64 {
	if os.Getenv("IOTNODE_LONG") == "1" {
		return 16 << 20
	}
	return 2 << 20
}

// dirSize returns the bytes of the files in dir.
func dirSize(t testing.TB, dir string) int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range entries {
		fi, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue // a segment deleted meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// diskWatch samples the size of a directory every few milliseconds until
// stopped, and keeps the largest.
type diskWatch struct {
	stop chan struct{}
	done chan struct{}
	max  atomic.Int64
	n    atomic.Int64
}

func watchDisk(t testing.TB, dir string) *diskWatch {
	w := &diskWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			w.max.Store(max(w.max.Load(), dirSize(t, dir)))
			w.n.Add(1)
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// end stops the sampling and returns the largest size seen and the number
// of samples.
func (w *diskWatch) end() (int64, int64) {
	close(w.stop)
	<-w.done
	return w.max.Load(), w.n.Load()
}

// outageLabel names the i-th Set of the outage proof; the fixed width gives
// every message the same size.
func outageLabel(i int) string { return fmt.Sprintf("outage-%07d", i) }

func TestCloudOutage(t *testing.T) {
	maxBytes := outageOutboxBytes()
	segment := min(max(maxBytes/16, 64<<10), 4<<20) // fsstore's segment size for it
	const (
		memBytes = 64 << 10 // best-effort messages, in memory
		callers  = 32
		alerts   = 2000
	)
	c := startCloud(t)
	path := provision(t, c, api.DeviceTypeDirect, "outage-light")
	outboxDir := filepath.Join(path+client.DataDirSuffix, client.OutboxFile)
	opts := []client.Option{
		client.WithOutboxLimits(maxBytes, memBytes),
		client.WithDeviceOptions(
			device.WithDataQoS(message.PriorityLow, message.GuaranteedDelivery),
			device.WithAlertQoS(message.PriorityHigh, message.BestEffort),
			device.WithBackoff(20*time.Millisecond, 200*time.Millisecond)), // so that the drain starts soon after the cloud
	}
	d, v := activated(t, path, lightURN, opts...)
	endpoint := d.EndpointID()
	if !eventually(t.Context(), waitFor, func() bool { return d.OutboxStats().Queued == 0 && d.Stats().Sent > 0 }) {
		t.Fatalf("the resources report was not sent: %+v", d.OutboxStats())
	}

	c.stop(t) // the outage begins

	// Run 1: concurrent guaranteed Sets until twice as many were tried as
	// the outbox accepted.
	full := regexp.MustCompile(`^set attribute "label": queue 1 message\(s\): outbox add: 1 guaranteed message\(s\) \(\d+ bytes on disk\) do not fit: ` +
		`the outbox ` + regexp.QuoteMeta(outboxDir) + ` holds \d+ in \d+ of its ` + strconv.FormatInt(maxBytes, 10) + ` bytes: outbox full$`)
	watch := watchDisk(t, outboxDir)
	var mu sync.Mutex
	var accepted []string
	tried, refused := 0, 0
	start := time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for {
				mu.Lock()
				if tried > 0 && tried >= 2*len(accepted) && refused > 0 {
					mu.Unlock()
					return
				}
				label := outageLabel(tried)
				tried++
				mu.Unlock()
				err := v.Set("label", label)
				mu.Lock()
				switch {
				case err == nil:
					accepted = append(accepted, label)
				case errors.Is(err, ports.ErrOutboxFull) && full.MatchString(err.Error()):
					refused++
				default:
					t.Errorf("Set %s: %v", label, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	fill := time.Since(start)
	if t.Failed() {
		t.FailNow()
	}
	if tried != len(accepted)+refused {
		t.Fatalf("%d Sets tried, %d accepted, %d refused: some went unanswered", tried, len(accepted), refused)
	}

	// One more Set now that nothing moves: the exact error the user sees.
	st := d.OutboxStats()
	probeErr := v.Set("label", outageLabel(tried))
	tried++
	refused++
	peakDisk, samples := watch.end()
	disk := dirSize(t, outboxDir)
	if disk != st.DiskBytes+st.ReserveBytes+0 {
		t.Fatalf("the outbox directory holds %d bytes, its Stats %d+%d", disk, st.DiskBytes, st.ReserveBytes)
	}
	if peakDisk > maxBytes+segment || disk > maxBytes {
		t.Fatalf("the outbox directory peaked at %d bytes and holds %d: want at most MaxBytes %d + one segment %d, and MaxBytes while nothing is delivered",
			peakDisk, disk, maxBytes, segment)
	}
	if st.Guaranteed != int64(len(accepted)) {
		t.Fatalf("the outbox holds %d guaranteed messages, %d Sets were accepted", st.Guaranteed, len(accepted))
	}

	// Run 2 begins: the device restarts during the outage. What its
	// outbox holds on disk: the accepted messages, with their clientIds.
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	err := d.Close(ctx)
	cancel()
	left := fmt.Sprintf("close device %s: %d message(s) not sent (a durable outbox keeps them for the next start): ", endpoint, len(accepted))
	if len(accepted) >= 10000 {
		left = fmt.Sprintf("close device %s: at least 10000 message(s) not sent (a durable outbox keeps them for the next start): ", endpoint)
	}
	if err == nil || !strings.HasPrefix(err.Error(), left) {
		t.Fatalf("Close during the outage: %v\nwant it to begin %q", err, left)
	}
	onDisk := peekOutbox(t, outboxDir, maxBytes)
	if len(onDisk) != len(accepted) {
		t.Fatalf("the outbox holds %d messages after the restart, %d were accepted", len(onDisk), len(accepted))
	}
	wantIDs := map[string]string{} // label -> clientId given in run 1
	var size int
	for _, m := range onDisk {
		label, _ := fields(&m)["label"].(string)
		wantIDs[label] = m.ClientID
		size = message.EncodedSize(&m)
	}
	for _, label := range accepted {
		if wantIDs[label] == "" {
			t.Fatalf("accepted Set %s is not in the outbox", label)
		}
	}
	want := fmt.Sprintf(`set attribute "label": queue 1 message(s): outbox add: 1 guaranteed message(s) (%d bytes on disk) do not fit: `+
		"the outbox %s holds %d in %d of its %d bytes: outbox full", size+22, outboxDir, len(accepted), st.DiskBytes+st.ReserveBytes, maxBytes)
	if probeErr == nil || probeErr.Error() != want || !errors.Is(probeErr, ports.ErrOutboxFull) {
		t.Fatalf("Set into the full outbox: %v\nwant %s", probeErr, want)
	}

	d, v = activated(t, path, lightURN, opts...)
	for i := range alerts {
		if err := v.CreateAlert(lightURN+":button_pressed").Set("presses", i).Raise(); err != nil {
			t.Fatalf("alert %d: %v", i, err)
		}
	}
	dropped := d.Stats().Dropped
	if o := d.OutboxStats(); dropped == 0 || uint64(o.Dropped) != dropped || o.Guaranteed != int64(len(accepted)) {
		t.Fatalf("after %d best-effort alerts: device dropped %d, outbox %+v", alerts, dropped, o)
	}

	// The cloud comes back: the backlog drains.
	sent := d.Stats().Sent
	up := time.Now()
	c.start(t)
	var first time.Time
	if !eventually(t.Context(), time.Minute, func() bool {
		if first.IsZero() && d.Stats().Sent > sent {
			first = time.Now()
		}
		return d.OutboxStats().Queued == 0
	}) {
		t.Fatalf("the backlog did not drain within a minute: %+v", d.OutboxStats())
	}
	drained := time.Now()
	if first.IsZero() {
		first = up
	}
	backlog := len(accepted) + alerts - int(dropped)
	drainTime := drained.Sub(first)
	rate := float64(backlog) / drainTime.Seconds()

	// The cloud holds every accepted message exactly once, with the
	// clientId of run 1, and none of the refused ones; and exactly the
	// alerts that were not dropped.
	seen := map[string]int{}
	alertsStored := 0
	q := cloudclient.MessageQuery{Source: endpoint, Limit: 1000}
	for item, err := range c.Client().AllMessages(t.Context(), q) {
		if err != nil {
			t.Fatal(err)
		}
		var m message.Message
		if err := m.UnmarshalJSON(item.Message); err != nil {
			t.Fatal(err)
		}
		switch {
		case m.Type == message.TypeAlert && m.Alert.Format == lightURN+":button_pressed":
			alertsStored++
		case m.Type == message.TypeData:
			label, _ := fields(&m)["label"].(string)
			if !strings.HasPrefix(label, "outage-") {
				continue
			}
			seen[label]++
			if id := wantIDs[label]; m.ClientID != id {
				t.Errorf("%s stored with clientId %s, want %s (the one given before the restart)", label, m.ClientID, id)
			}
		}
	}
	var missing, twice []string
	for _, label := range accepted {
		switch seen[label] {
		case 0:
			missing = append(missing, label)
		case 1:
		default:
			twice = append(twice, label)
		}
	}
	if len(missing) > 0 || len(twice) > 0 || len(seen) != len(accepted) {
		slices.Sort(missing)
		t.Fatalf("the cloud stored %d distinct labels of %d accepted: missing %d %.5v, stored more than once %d %.5v",
			len(seen), len(accepted), len(missing), missing, len(twice), twice)
	}
	if alertsStored != alerts-int(dropped) {
		t.Fatalf("the cloud stored %d alerts: %d raised, %d dropped (counted), so want %d", alertsStored, alerts, dropped, alerts-int(dropped))
	}
	after := dirSize(t, outboxDir)

	t.Logf("outbox MaxBytes %d (segments of %d): %d guaranteed Sets by %d callers in %s during the outage: %d accepted, %d refused with ErrOutboxFull",
		maxBytes, segment, tried, callers, fill.Round(time.Millisecond), len(accepted), refused)
	t.Logf("outbox directory: peak %d bytes over %d samples, %d when full (%d free), %d after the drain", peakDisk, samples, disk, maxBytes-disk, after)
	t.Logf("best effort: %d alerts raised, %d dropped (counted exactly), %d stored", alerts, dropped, alertsStored)
	t.Logf("drain: %d messages in %s after the first send (%s after the cloud came back): %.0f msgs/s (target 5,000)",
		backlog, drainTime.Round(time.Millisecond), first.Sub(up).Round(time.Millisecond), rate)
	if rate < 500 {
		t.Errorf("the backlog drained at %.0f msgs/s, want at least 500 (target 5,000)", rate)
	}
}

// peekOutbox opens the outbox directory at path (nobody else has it open)
// and returns the guaranteed messages it holds, in order, leaving them
// there.
func peekOutbox(t *testing.T, path string, maxBytes int64) []message.Message {
	t.Helper()
	o, err := fsstore.OpenOutbox(path, fsstore.OutboxOptions{MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := o.Close(); err != nil {
			t.Error(err)
		}
	}()
	var out []message.Message
	var open []ports.Batch
	for {
		b, err := o.Begin(1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Messages) == 0 {
			break
		}
		out = append(out, b.Messages...)
		open = append(open, b)
	}
	for _, b := range open {
		if err := o.End(b, nil); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
