package fsstore

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/internal/faultfs"
)

// The power-loss proof. A workload of concurrent Adds and Begin/End
// deliveries runs on a faultfs that crashes right after its k-th operation
// that changes something, for every k from the first (inside OpenOutbox)
// to past the end of the workload; then the power comes back (Restart
// keeps only what was synced, with or without a torn last write and a
// prefix of the unsynced directory changes), the recovery itself is
// crashed once more, and the outbox is opened on what is left. For every
// guaranteed message it asserts the guarantee documented on Outbox:
//
//   - Add returned nil and no End was called with it delivered: present
//     (an End cut short by the crash may or may not have reached the disk;
//     either way the cloud has the message);
//   - an End that returned nil delivered it: absent;
//   - present at most once, and only if its Add was called;
//   - in order: a producer's messages of one priority in the order of its
//     Adds;
//   - nothing reported corrupt (a crash only tears tails).
//
// It then runs a second, shorter workload on the recovered outbox and
// crashes it at a random point, to prove that writing after a recovery
// (into a segment whose torn tail was cut) keeps the guarantee too.
//
// POWERLOSS_SEEDS (default 8) sets how many seeds each crash mode runs.

// plModel is what the workload did, message by message (guaranteed ones).
type plModel struct {
	mu       sync.Mutex
	tried    map[string]bool // Add called
	acked    map[string]bool // Add returned nil
	delTried map[string]bool // End called with it delivered
	delOK    map[string]bool // End returned nil with it delivered
}

func newModel() *plModel {
	return &plModel{tried: map[string]bool{}, acked: map[string]bool{}, delTried: map[string]bool{}, delOK: map[string]bool{}}
}

// plID names a message: producer, index; its priority follows from the
// index.
func plID(prefix string, p, i int) string { return fmt.Sprintf("%s%d-%03d", prefix, p, i) }

func plPriority(i int) message.Priority {
	return []message.Priority{message.PriorityLow, message.PriorityMedium, message.PriorityHighest}[i%3]
}

// runWorkload runs producers that each add perProducer guaranteed
// messages (every fourth Add with a best-effort one besides) and one
// consumer that takes batches of up to 5 and delivers all but every fifth
// message, until everything added was delivered or the FS crashed.
func runWorkload(o *Outbox, m *plModel, prefix string, producers, perProducer int) {
	var prod sync.WaitGroup
	var done sync.WaitGroup
	stop := make(chan struct{})
	for p := range producers {
		prod.Go(func() {
			for i := range perProducer {
				id := plID(prefix, p, i)
				msgs := []message.Message{msg(id, plPriority(i), g)}
				if i%4 == 3 {
					msgs = append(msgs, msg("be-"+id, plPriority(i+1), be))
				}
				m.mu.Lock()
				m.tried[id] = true
				m.mu.Unlock()
				if _, err := o.Add(context.Background(), msgs...); err == nil {
					m.mu.Lock()
					m.acked[id] = true
					m.mu.Unlock()
				}
			}
		})
	}
	done.Go(func() {
		turn := 0
		for {
			b, err := o.Begin(5, 0)
			if err != nil {
				return // crashed
			}
			if len(b.Messages) == 0 {
				select {
				case <-stop:
					return
				default:
					runtime.Gosched()
					continue
				}
			}
			var ok []int
			var ids []string
			for i, msg := range b.Messages {
				if turn++; turn%5 == 0 || msg.Reliability != g {
					if msg.Reliability != g {
						ok = append(ok, i)
					}
					continue
				}
				ok = append(ok, i)
				ids = append(ids, msg.ClientID)
			}
			m.mu.Lock()
			for _, id := range ids {
				m.delTried[id] = true
			}
			m.mu.Unlock()
			if err := o.End(b, ok); err != nil {
				return // crashed
			}
			m.mu.Lock()
			for _, id := range ids {
				m.delOK[id] = true
			}
			m.mu.Unlock()
		}
	})
	prod.Wait()
	close(stop)
	done.Wait()
}

// peek returns the ids of the guaranteed messages an outbox holds, in the
// order Begin hands them out, leaving them queued.
func peek(t *testing.T, o *Outbox) []string {
	t.Helper()
	b := begin(t, o, 1<<30, 0)
	if len(b.Messages) == 0 {
		return nil
	}
	if err := o.End(b, nil); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range b.Messages {
		if m.Reliability == g {
			ids = append(ids, m.ClientID)
		}
	}
	return ids
}

// verify checks what a recovered outbox holds against the model and
// returns how many messages were recovered, how many of them had no nil
// answer from Add, and how many had been given to an End that did not
// return nil (both allowed, counted).
func verify(t *testing.T, m *plModel, got []string, what string) (recovered, unacked, undelivered int) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]int{} // producer+priority -> last index seen
	for _, id := range got {
		switch {
		case seen[id]:
			t.Fatalf("%s: %s recovered twice; holds %v", what, id, got)
		case !m.tried[id]:
			t.Fatalf("%s: %s recovered but never added", what, id)
		case m.delOK[id]:
			t.Fatalf("%s: %s came back although its End returned nil", what, id)
		}
		seen[id] = true
		if !m.acked[id] {
			unacked++
		}
		if m.delTried[id] {
			undelivered++
		}
		prod, idx, _ := strings.Cut(id, "-")
		i, _ := strconv.Atoi(idx)
		key := prod + "/" + plPriority(i).String()
		if j, ok := last[key]; ok && j > i {
			t.Fatalf("%s: %s recovered after %s-%03d: out of order; holds %v", what, id, prod, j, got)
		}
		last[key] = i
	}
	for id := range m.acked {
		if !m.delTried[id] && !seen[id] {
			t.Fatalf("%s: %s lost: its Add returned nil and no End delivered it; holds %v", what, id, got)
		}
	}
	return len(got), unacked, undelivered
}

// accept replaces the model after a verified recovery: what was recovered
// is now durably held (OpenOutbox synced it), nothing else will return.
func (m *plModel) accept(got []string) *plModel {
	n := newModel()
	for _, id := range got {
		n.tried[id], n.acked[id] = true, true
	}
	return n
}

func TestOutboxPowerLoss(t *testing.T) {
	seeds := 8
	if s := os.Getenv("POWERLOSS_SEEDS"); s != "" {
		var err error
		if seeds, err = strconv.Atoi(s); err != nil {
			t.Fatalf("POWERLOSS_SEEDS=%q: want a number", s)
		}
	}
	modes := []struct {
		name string
		opts faultfs.Options
	}{
		{"durable state only", faultfs.Options{}},
		{"torn last write, some directory changes", faultfs.Options{TearLastWrite: true, KeepSomeDirOps: true}},
	}
	const path = "/data/outbox"
	// Small segments, so that the workload rotates, compacts and deletes.
	opts := func(fsys *faultfs.FS) OutboxOptions { return OutboxOptions{FS: faultFS{fsys}, segmentBytes: 1 << 10} }
	var points, crashes2, recovered, unacked, undelivered, torn, recovered2 int
	var compacted, removed int
	for _, mode := range modes {
		for seed := range uint64(seeds) {
			for k := int64(1); ; k++ {
				name := fmt.Sprintf("%s/seed %d/crash after op %d", mode.name, seed, k)
				o1 := mode.opts
				o1.Seed = seed*1_000_003 + uint64(k)
				fsys := faultfs.New(o1)
				fsys.CrashAfter(k)
				m := newModel()
				o, err := OpenOutbox(path, opts(fsys))
				if err == nil {
					runWorkload(o, m, "p", 3, 10)
					compacted += o.w.compacted
					removed += o.w.removed
					_ = o.Close() // fails after the crash
				}
				if !fsys.Crashed() {
					if k < 50 {
						t.Fatalf("the workload took only %d operations", k)
					}
					break // k is past the end of the workload
				}
				points++

				// Power back on; crash the recovery itself early once.
				fsys2 := fsys.Restart()
				fsys2.CrashAfter(1 + k%4)
				if o, err := OpenOutbox(path, opts(fsys2)); err == nil {
					_ = o.Close()
				}
				fsys3 := fsys2.Restart()
				o3, err := OpenOutbox(path, opts(fsys3))
				if err != nil {
					t.Fatalf("%s: reopen: %v", name, err)
				}
				st := o3.Stats()
				if st.Corrupt != 0 {
					t.Fatalf("%s: %d corrupt records after a crash; want 0 (only torn tails)", name, st.Corrupt)
				}
				torn += int(st.Torn)
				checkDiskBound(t, o3)
				got := peek(t, o3)
				r, u, d := verify(t, m, got, name)
				recovered += r
				unacked += u
				undelivered += d

				// Write on the recovered outbox, crash it at a random point.
				m2 := m.accept(got)
				fsys3.CrashAfter(1 + int64(o1.Seed%40))
				runWorkload(o3, m2, "q", 1, 9)
				crashed := fsys3.Crashed()
				_ = o3.Close()
				if !crashed {
					fsys3.Crash() // the power fails after a clean run: nothing is lost either
				}
				crashes2++
				o4, err := OpenOutbox(path, opts(fsys3.Restart()))
				if err != nil {
					t.Fatalf("%s, then again: reopen: %v", name, err)
				}
				if st := o4.Stats(); st.Corrupt != 0 {
					t.Fatalf("%s, then again: %d corrupt records", name, st.Corrupt)
				}
				checkDiskBound(t, o4)
				got2 := peek(t, o4)
				r2, _, _ := verify(t, m2, got2, name+", then again")
				recovered2 += r2
				if err := o4.Close(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if os.Getenv("POWERLOSS_SEEDS") == "" && points < 1000 {
		t.Fatalf("%d crash points; want at least 1,000", points)
	}
	if compacted == 0 || removed == 0 {
		t.Fatalf("the workload compacted %d and deleted %d segments; want both > 0", compacted, removed)
	}
	t.Logf("power loss: %d crash points (+%d crashes during recovery, +%d crashes after recovery): "+
		"%d messages recovered (%d of them with no nil answer from Add, %d delivered by an End that did not return nil), "+
		"%d torn tails cut, 0 lost, 0 duplicated, 0 resurrected, 0 corrupt; second crash: %d recovered; "+
		"segments compacted %d, deleted %d",
		points, points, crashes2, recovered, unacked, undelivered, torn, recovered2, compacted, removed)
}
