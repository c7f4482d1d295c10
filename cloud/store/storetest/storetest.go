// Package storetest is the conformance suite of store.Store: every
// implementation of the cloud's store runs Run from its tests, so that the
// contract written in the doc comments of store.Store and store.Tx is checked
// the same way for each.
//
// It may import the standard library and cloud/store only.
package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/store"
)

// Opener opens the stores the suite runs against.
type Opener struct {
	// Open returns a new, empty store for the test t, and arranges (with
	// t.Cleanup) for it to be closed (and its data removed) when t ends.
	Open func(t *testing.T) store.Store
	// Reopen closes s, which Open or Reopen returned for t, and opens the
	// same data again, arranging the close of the new store like Open. nil
	// skips the persistence tests.
	Reopen func(t *testing.T, s store.Store) store.Store
}

// Run runs the conformance suite, each test as a subtest of t with a store of
// its own. The subtests do not run in parallel.
func Run(t *testing.T, o Opener) {
	if o.Open == nil {
		t.Fatal("storetest: Opener.Open is nil")
	}
	tests := []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"Key", testKey},
		{"Reopen", testReopen},
		{"NotFound", testNotFound},
		{"Devices", testDevices},
		{"Messages", testMessages},
		{"MessagesCursor", testMessagesCursor},
		{"MessagesAfterEveryCursor", testMessagesAfterEveryCursor},
		{"Dedup", testDedup},
		{"Requests", testRequests},
		{"Records", testRecords},
		{"Rollback", testRollback},
		{"Batch", testBatch},
		{"BatchRetry", testBatchRetry},
		{"ConcurrentPaging", testConcurrentPaging},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, o) })
	}
}

func update(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func view(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.View(fn); err != nil {
		t.Fatal(err)
	}
}

func testKey(t *testing.T, o Opener) {
	s := o.Open(t)
	if s.String() == "" {
		t.Error("String is empty")
	}
	var k1, k2 []byte
	update(t, s, func(tx store.Tx) error {
		var err error
		k1, err = tx.Key("k", 32)
		return err
	})
	update(t, s, func(tx store.Tx) error {
		var err error
		k2, err = tx.Key("k", 16) // n counts only the first time
		return err
	})
	if len(k1) != 32 || string(k1) != string(k2) {
		t.Fatalf("key %x then %x", k1, k2)
	}
	update(t, s, func(tx store.Tx) error {
		other, err := tx.Key("other", 32)
		if err == nil && string(other) == string(k1) {
			t.Error("two keys are equal")
		}
		return err
	})
	err := s.View(func(tx store.Tx) error { _, err := tx.Key("absent", 32); return err })
	if !errors.Is(err, store.ErrNotFound) || err.Error() != `server key "absent": not found` {
		t.Fatalf("missing key in a read transaction: %v", err)
	}
}

func testReopen(t *testing.T, o Opener) {
	if o.Reopen == nil {
		t.Skip("no Opener.Reopen")
	}
	s := o.Open(t)
	var k1 []byte
	update(t, s, func(tx store.Tx) error {
		var err error
		if k1, err = tx.Key("k", 32); err != nil {
			return err
		}
		if err := tx.PutDevice(&store.Device{ID: "a1", HardwareID: "hw1"}); err != nil {
			return err
		}
		return tx.AppendMessage(msg(5, "a", "DATA"))
	})
	s = o.Reopen(t, s)
	view(t, s, func(tx store.Tx) error {
		k2, err := tx.Key("k", 32)
		if err != nil || string(k1) != string(k2) {
			t.Errorf("key %x then %x (%v)", k1, k2, err)
		}
		if d, err := tx.DeviceByHardwareID("hw1"); err != nil || d.ID != "a1" {
			t.Errorf("device: %v %v", d, err)
		}
		if tx.LastMessageSeq() != 1 || tx.MessageCount() != 1 {
			t.Errorf("seq %d, count %d", tx.LastMessageSeq(), tx.MessageCount())
		}
		return nil
	})
	// Sequence numbers are never reused, not even after pruning and reopening.
	update(t, s, func(tx store.Tx) error {
		_, err := tx.PruneMessages(6, 0, 10)
		return err
	})
	s = o.Reopen(t, s)
	update(t, s, func(tx store.Tx) error {
		m := msg(7, "a", "DATA")
		if err := tx.AppendMessage(m); err != nil {
			return err
		}
		if m.Seq != 2 || tx.MessageCount() != 1 {
			t.Errorf("after pruning and reopening: seq %d, count %d", m.Seq, tx.MessageCount())
		}
		return nil
	})
}

// testNotFound checks every lookup of a missing record: errors.Is
// ErrNotFound, and the text the cloud shows users.
func testNotFound(t *testing.T, o Opener) {
	s := o.Open(t)
	tests := []struct {
		name string
		fn   func(store.Tx) error
		want string
	}{
		{"Device", func(tx store.Tx) error { _, err := tx.Device("nobody"); return err }, `device "nobody": not found`},
		{"DeviceByHardwareID", func(tx store.Tx) error { _, err := tx.DeviceByHardwareID("hw"); return err }, `device with hardware id "hw": not found`},
		{"Model", func(tx store.Tx) error { _, err := tx.Model("urn:z"); return err }, `device model "urn:z": not found`},
		{"Policy", func(tx store.Tx) error { _, err := tx.Policy("p"); return err }, `device policy "p": not found`},
		{"DeletePolicy", func(tx store.Tx) error { return tx.DeletePolicy("p") }, `device policy "p": not found`},
		{"Object", func(tx store.Tx) error { _, err := tx.Object("e1/o"); return err }, `object "e1/o": not found`},
		{"Request", func(tx store.Tx) error { _, err := tx.Request("r"); return err }, `request "r": not found`},
		{"Key", func(tx store.Tx) error { _, err := tx.Key("k", 32); return err }, `server key "k": not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := s.Update
			if tt.name == "Key" {
				run = s.View
			}
			err := run(tt.fn)
			if !errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists) || err.Error() != tt.want {
				t.Fatalf("got %v, want %s (wrapping ErrNotFound)", err, tt.want)
			}
		})
	}
	view(t, s, func(tx store.Tx) error {
		if ds, err := tx.Devices(); err != nil || len(ds) != 0 {
			t.Errorf("Devices of an empty store: %v %v", ds, err)
		}
		if ms, err := tx.Models(); err != nil || len(ms) != 0 {
			t.Errorf("Models of an empty store: %v %v", ms, err)
		}
		if ps, err := tx.Policies(); err != nil || len(ps) != 0 {
			t.Errorf("Policies of an empty store: %v %v", ps, err)
		}
		if tx.LastMessageSeq() != 0 || tx.MessageCount() != 0 || tx.Queued("gw") {
			t.Errorf("empty store: seq %d, count %d, queued %v", tx.LastMessageSeq(), tx.MessageCount(), tx.Queued("gw"))
		}
		if ms, more, err := tx.Messages(store.Query{Limit: 10}); err != nil || more || len(ms) != 0 {
			t.Errorf("Messages of an empty store: %v %v %v", ms, more, err)
		}
		return nil
	})
}

func testDevices(t *testing.T, o Opener) {
	s := o.Open(t)
	d1 := &store.Device{ID: "a1", HardwareID: "hw1", Type: "GATEWAY", State: "REGISTERED", SharedSecret: "s",
		PublicKey: []byte{0x30, 0x00, 0xFF}, Models: []string{"urn:a"}, Metadata: map[string]string{"k": "v"}, Created: 7}
	update(t, s, func(tx store.Tx) error { return tx.PutDevice(d1) })
	view(t, s, func(tx store.Tx) error {
		got, err := tx.Device("a1")
		if err != nil || !reflect.DeepEqual(got, d1) {
			t.Errorf("round trip: %+v %v, want %+v", got, err, d1)
		}
		return nil
	})
	tests := []struct {
		name string
		d    *store.Device
		msg  string
	}{
		{"empty id", &store.Device{}, "put device: empty id"},
		{"hardware id taken", &store.Device{ID: "a2", HardwareID: "hw1"}, `put device a2: hardware id "hw1" is registered to device a1: already exists`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Update(func(tx store.Tx) error { return tx.PutDevice(tt.d) })
			if err == nil || err.Error() != tt.msg {
				t.Fatalf("got %v", err)
			}
		})
	}
	// Activate: endpoint index; then change the hardware id.
	d1.EndpointID, d1.State = "e1", "ACTIVATED"
	update(t, s, func(tx store.Tx) error { return tx.PutDevice(d1) })
	update(t, s, func(tx store.Tx) error {
		return tx.PutDevice(&store.Device{ID: "a3", HardwareID: "hw3", EndpointID: "e3"})
	})
	err := s.Update(func(tx store.Tx) error {
		return tx.PutDevice(&store.Device{ID: "a4", HardwareID: "hw4", EndpointID: "e1"})
	})
	if !errors.Is(err, store.ErrExists) || err.Error() != `put device a4: endpoint id "e1" belongs to device a1: already exists` {
		t.Fatalf("got %v", err)
	}
	d1.HardwareID, d1.EndpointID = "hw1b", "e1b"
	update(t, s, func(tx store.Tx) error { return tx.PutDevice(d1) })
	d1.State = "changed after PutDevice" // not retained
	view(t, s, func(tx store.Tx) error {
		for _, id := range []string{"a1", "e1b"} {
			if d, err := tx.Device(id); err != nil || d.ID != "a1" || d.State != "ACTIVATED" {
				t.Errorf("Device(%s) = %v, %v", id, d, err)
			}
		}
		if d, err := tx.DeviceByHardwareID("hw1b"); err != nil || d.ID != "a1" {
			t.Errorf("by new hardware id: %v %v", d, err)
		}
		for _, id := range []string{"e1", "nobody"} {
			if _, err := tx.Device(id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Device(%s): %v", id, err)
			}
		}
		if _, err := tx.DeviceByHardwareID("hw1"); !errors.Is(err, store.ErrNotFound) || err.Error() != `device with hardware id "hw1": not found` {
			t.Errorf("old hardware id: %v", err)
		}
		all, err := tx.Devices()
		if err != nil || len(all) != 2 || all[0].ID != "a1" || all[1].ID != "a3" {
			t.Errorf("Devices = %v, %v", all, err)
		}
		return nil
	})
	// The freed hardware and endpoint ids can be taken by another device.
	update(t, s, func(tx store.Tx) error {
		return tx.PutDevice(&store.Device{ID: "a5", HardwareID: "hw1", EndpointID: "e1"})
	})
}

func msg(recv int64, src, typ string) *store.Message {
	js, _ := json.Marshal(src)
	return &store.Message{Received: recv, Source: src, Type: typ, Raw: json.RawMessage(fmt.Sprintf(`{"r":%d,"s":%s}`, recv, js))}
}

func received(ms []store.Message) []int64 {
	var out []int64
	for _, m := range ms {
		out = append(out, m.Received)
	}
	return out
}

func seqs(ms []store.Message) []uint64 {
	var out []uint64
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

func testMessages(t *testing.T, o Opener) {
	s := o.Open(t)
	update(t, s, func(tx store.Tx) error {
		for i, src := range []string{"a", "b", "a", "b", "a", "a\x00b"} {
			typ := "DATA"
			if i%2 == 1 {
				typ = "ALERT"
			}
			if err := tx.AppendMessage(msg(int64(100+10*i), src, typ)); err != nil {
				return err
			}
		}
		// A clock that stepped back never reorders.
		m := msg(5, "a", "DATA")
		if err := tx.AppendMessage(m); err != nil || m.Received != 150 {
			t.Errorf("stepped-back message received %d, %v", m.Received, err)
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		got, _, err := tx.Messages(store.Query{Limit: 1})
		want := msg(100, "a", "DATA")
		want.Seq = 1
		if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], *want) {
			t.Errorf("round trip: %+v %v, want %+v", got, err, *want)
		}
		return nil
	})
	tests := []struct {
		name string
		q    store.Query
		want []int64
		more bool
	}{
		{"newest", store.Query{Newest: true, Limit: 3}, []int64{140, 150, 150}, true},
		{"all", store.Query{Limit: 100}, []int64{100, 110, 120, 130, 140, 150, 150}, false},
		{"since", store.Query{Since: 115, Limit: 2}, []int64{120, 130}, true},
		{"since, to the end", store.Query{Since: 141, Limit: 10}, []int64{150, 150}, false},
		{"source", store.Query{Source: "a", Limit: 10}, []int64{100, 120, 140, 150}, false},
		{"source newest", store.Query{Source: "a", Newest: true, Limit: 2}, []int64{140, 150}, true},
		{"source with a NUL", store.Query{Source: "a\x00b", Limit: 10}, []int64{150}, false},
		{"source since", store.Query{Source: "b", Since: 111, Limit: 10}, []int64{130}, false},
		{"type", store.Query{Type: "ALERT", Limit: 10}, []int64{110, 130, 150}, false},
		{"source and type", store.Query{Source: "a", Type: "DATA", Since: 1, Limit: 2}, []int64{100, 120}, true},
		{"unknown source", store.Query{Source: "zz", Limit: 10}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			view(t, s, func(tx store.Tx) error {
				got, more, err := tx.Messages(tt.q)
				if err != nil || !reflect.DeepEqual(received(got), tt.want) || more != tt.more {
					t.Fatalf("got %v more=%v err=%v, want %v more=%v", received(got), more, err, tt.want, tt.more)
				}
				return nil
			})
		})
	}
	view(t, s, func(tx store.Tx) error {
		if _, _, err := tx.Messages(store.Query{}); err == nil || err.Error() != "query messages: limit 0, expected > 0" {
			t.Errorf("limit 0: %v", err)
		}
		if n := tx.MessageCount(); n != 7 {
			t.Errorf("count %d", n)
		}
		return nil
	})
	prune := []struct {
		name          string
		cutoff        int64
		max, budget   int
		deleted, left int
	}{
		{"nothing to do", 0, 10, 10, 0, 7},
		{"count cap, budget-bound", 0, 2, 3, 3, 4},
		{"count cap", 0, 2, 100, 2, 2},
		{"age", 151, 0, 100, 2, 0},
	}
	for _, tt := range prune {
		t.Run("prune "+tt.name, func(t *testing.T) {
			update(t, s, func(tx store.Tx) error {
				n, err := tx.PruneMessages(tt.cutoff, tt.max, tt.budget)
				if err != nil || n != tt.deleted || tx.MessageCount() != tt.left {
					t.Fatalf("deleted %d (%v), left %d; want %d, %d", n, err, tx.MessageCount(), tt.deleted, tt.left)
				}
				all, _, _ := tx.Messages(store.Query{Source: "a", Limit: 100})
				byType, _, _ := tx.Messages(store.Query{Type: "DATA", Limit: 100})
				if len(all)+len(byType) > 2*tt.left {
					t.Fatalf("indexes not pruned: %d by source, %d by type", len(all), len(byType))
				}
				return nil
			})
		})
	}
	view(t, s, func(tx store.Tx) error {
		if last := tx.LastMessageSeq(); last != 7 {
			t.Errorf("LastMessageSeq after pruning everything: %d, want 7", last)
		}
		return nil
	})
}

// testMessagesCursor pages through 250 messages received in one millisecond
// (two and a half batches of a device) with After, 100 at a time.
func testMessagesCursor(t *testing.T, o Opener) {
	s := o.Open(t)
	update(t, s, func(tx store.Tx) error {
		for i := range 260 {
			src, recv := "a", int64(1000)
			switch {
			case i < 5: // earlier, from another source
				src, recv = "b", int64(900+i)
			case i >= 255: // later, from another source
				src, recv = "b", int64(1100)
			}
			m := msg(recv, src, "DATA")
			if err := tx.AppendMessage(m); err != nil {
				return err
			}
			if m.Seq != uint64(i+1) {
				t.Fatalf("message %d numbered %d, want %d", i, m.Seq, i+1)
			}
		}
		return nil
	})
	page := func(t *testing.T, q store.Query) ([]store.Message, bool) {
		t.Helper()
		var got []store.Message
		var more bool
		err := s.View(func(tx store.Tx) error {
			var err error
			got, more, err = tx.Messages(q)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return got, more
	}
	tests := []struct {
		name  string
		q     store.Query
		pages [][2]uint64 // first and last seq of each page
	}{
		{"by source", store.Query{Source: "a", Limit: 100}, [][2]uint64{{6, 105}, {106, 205}, {206, 255}}},
		{"by type", store.Query{Type: "DATA", Since: 1000, Limit: 100}, [][2]uint64{{6, 105}, {106, 205}, {206, 260}}},
		{"all, since in the millisecond", store.Query{Since: 1000, Limit: 100}, [][2]uint64{{6, 105}, {106, 205}, {206, 260}}},
		{"all from the start", store.Query{Limit: 100}, [][2]uint64{{1, 100}, {101, 200}, {201, 260}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := tt.q
			var all []uint64
			for i, want := range tt.pages {
				got, more := page(t, q)
				if len(got) == 0 || got[0].Seq != want[0] || got[len(got)-1].Seq != want[1] || more != (i < len(tt.pages)-1) {
					t.Fatalf("page %d after %d: %v more=%v, want %d..%d", i+1, q.After, seqs(got), more, want[0], want[1])
				}
				all = append(all, seqs(got)...)
				q.After = got[len(got)-1].Seq
			}
			for i := 1; i < len(all); i++ {
				if all[i] != all[i-1]+1 {
					t.Fatalf("seq %d follows %d: a message was skipped or repeated", all[i], all[i-1])
				}
			}
			if got, more := page(t, q); len(got) != 0 || more {
				t.Fatalf("after the last page: %v more=%v", seqs(got), more)
			}
		})
	}
	t.Run("newest, above a cursor", func(t *testing.T) {
		got, more := page(t, store.Query{Source: "a", After: 250, Newest: true, Limit: 3})
		if !reflect.DeepEqual(seqs(got), []uint64{253, 254, 255}) || !more {
			t.Fatalf("got %v more=%v", seqs(got), more)
		}
		got, more = page(t, store.Query{Source: "a", After: 252, Newest: true, Limit: 3})
		if !reflect.DeepEqual(seqs(got), []uint64{253, 254, 255}) || more {
			t.Fatalf("got %v more=%v", seqs(got), more)
		}
	})
	t.Run("since later than the cursor", func(t *testing.T) {
		got, _ := page(t, store.Query{After: 3, Since: 1100, Limit: 100})
		if !reflect.DeepEqual(seqs(got), []uint64{256, 257, 258, 259, 260}) {
			t.Fatalf("got %v", seqs(got))
		}
	})
	t.Run("cursor ahead", func(t *testing.T) {
		err := s.View(func(tx store.Tx) error {
			_, _, err := tx.Messages(store.Query{After: 261, Limit: 1})
			return err
		})
		if !errors.Is(err, store.ErrCursorAhead) || err.Error() != "query messages after 261: cursor is beyond the newest message (seq 260)" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("cursor at a pruned message", func(t *testing.T) {
		update(t, s, func(tx store.Tx) error {
			_, err := tx.PruneMessages(0, 250, 100) // deletes 1..10
			return err
		})
		got, more := page(t, store.Query{After: 4, Limit: 3})
		if !reflect.DeepEqual(seqs(got), []uint64{11, 12, 13}) || !more {
			t.Fatalf("got %v more=%v", seqs(got), more)
		}
	})
}

// testMessagesAfterEveryCursor checks, for every cursor, that the messages
// after it are exactly those numbered above.
func testMessagesAfterEveryCursor(t *testing.T, o Opener) {
	s := o.Open(t)
	recv := []int64{3, 3, 3, 7, 8, 8, 20, 20, 20, 20, 21, 1000, 1000, 5000, 5001, 5001}
	update(t, s, func(tx store.Tx) error {
		for i, r := range recv {
			if err := tx.AppendMessage(msg(r, []string{"a", "b"}[i%2], "DATA")); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(tx store.Tx) error {
		for after := uint64(0); after <= uint64(len(recv)); after++ {
			for _, src := range []string{"", "a", "b"} {
				got, more, err := tx.Messages(store.Query{Source: src, After: after, Limit: 100})
				var want []uint64
				for seq := after + 1; seq <= uint64(len(recv)); seq++ {
					if src == "" || src == []string{"a", "b"}[(seq-1)%2] {
						want = append(want, seq)
					}
				}
				if err != nil || more || !reflect.DeepEqual(seqs(got), want) {
					t.Errorf("source %q after %d: %v more=%v err=%v, want %v", src, after, seqs(got), more, err, want)
				}
			}
		}
		return nil
	})
}

func testDedup(t *testing.T, o Opener) {
	s := o.Open(t)
	now := time.UnixMilli(1_000_000)
	update(t, s, func(tx store.Tx) error {
		return errors.Join(
			tx.Remember("a", "c1", now.Add(time.Second)),
			tx.Remember("a", "c2", now.Add(time.Minute)),
			tx.Remember("a", "c2", now.Add(time.Hour)), // extended
			tx.Remember("b", "c3", now.Add(time.Second)),
		)
	})
	view(t, s, func(tx store.Tx) error {
		if !tx.Seen("a", "c1", now) || tx.Seen("b", "c1", now) || tx.Seen("a", "c1", now.Add(time.Second)) {
			t.Error("Seen before pruning")
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		if n, err := tx.PruneDedup(now.Add(2*time.Minute), 1); n != 1 || err != nil {
			t.Errorf("budget 1: %d %v", n, err)
		}
		if n, err := tx.PruneDedup(now.Add(2*time.Minute), 10); n != 1 || err != nil {
			t.Errorf("rest: %d %v", n, err)
		}
		if !tx.Seen("a", "c2", now.Add(2*time.Minute)) {
			t.Error("extended key pruned")
		}
		if n, err := tx.PruneDedup(now.Add(2*time.Hour), 10); n != 1 || err != nil || tx.Seen("a", "c2", now) {
			t.Errorf("extended key: pruned %d %v", n, err)
		}
		return nil
	})
}

func testRequests(t *testing.T, o Opener) {
	s := o.Open(t)
	mk := func(id, route string, size int, expires int64) *store.Request {
		return &store.Request{ID: id, Destination: route, RouteTo: route, Method: "POST", URL: "u", Expires: expires, Wire: json.RawMessage(`"` + strings.Repeat("x", size) + `"`)}
	}
	update(t, s, func(tx store.Tx) error {
		var last uint64
		for _, r := range []*store.Request{mk("r1", "gw", 10, 50), mk("r2", "gw", 10, 1000), mk("r3", "gw", 100, 1000), mk("r4", "gw", 10, 1000), mk("o1", "other", 1, 1000)} {
			if err := tx.EnqueueRequest(r); err != nil {
				return err
			}
			if r.Status != store.RequestPending || r.Seq <= last {
				t.Errorf("enqueued %s: status %s, seq %d after %d", r.ID, r.Status, r.Seq, last)
			}
			last = r.Seq
		}
		return nil
	})
	for _, tt := range []struct {
		name string
		r    *store.Request
		msg  string
	}{
		{"duplicate", mk("r1", "gw", 1, 0), "enqueue request r1: already exists"},
		{"no route", mk("r9", "", 1, 0), `enqueue request: id "r9" and route "" must not be empty`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Update(func(tx store.Tx) error { return tx.EnqueueRequest(tt.r) }); err == nil || err.Error() != tt.msg {
				t.Fatalf("got %v", err)
			}
		})
	}
	budget := 20
	var taken []*store.Request
	update(t, s, func(tx store.Tx) error {
		var err error
		taken, err = tx.TakeRequests("gw", 100, func(r *store.Request) bool {
			if len(r.Wire) > budget {
				return false
			}
			budget -= len(r.Wire)
			return true
		})
		return err
	})
	if len(taken) != 1 || taken[0].ID != "r2" || taken[0].Status != store.RequestDelivered || taken[0].Updated != 100 {
		t.Fatalf("taken %+v", taken)
	}
	view(t, s, func(tx store.Tx) error {
		r1, _ := tx.Request("r1")
		r3, _ := tx.Request("r3")
		if r1 == nil || r3 == nil || r1.Status != store.RequestExpired || r1.Updated != 100 || r3.Status != store.RequestPending ||
			!tx.Queued("gw") || !tx.Queued("other") || tx.Queued("nobody") || tx.Queued("g") {
			t.Errorf("r1 %+v, r3 %+v", r1, r3)
		}
		if r2, err := tx.Request("r2"); err != nil || !reflect.DeepEqual(r2, taken[0]) {
			t.Errorf("r2 %+v %v, want %+v", r2, err, taken[0])
		}
		if _, err := tx.Request("zz"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("missing request: %v", err)
		}
		return nil
	})
	// Completing a pending request takes it out of the queue.
	update(t, s, func(tx store.Tx) error {
		r3, err := tx.Request("r3")
		if err != nil {
			return err
		}
		r3.Status, r3.Response = store.RequestCompleted, &store.Response{StatusCode: 200, Headers: map[string][]string{"A": {"b"}}, Body: []byte("OK")}
		return tx.PutRequest(r3)
	})
	update(t, s, func(tx store.Tx) error {
		got, err := tx.TakeRequests("gw", 100, func(*store.Request) bool { return true })
		if err != nil || len(got) != 1 || got[0].ID != "r4" || tx.Queued("gw") {
			t.Errorf("after completion: %+v %v", got, err)
		}
		r3, err := tx.Request("r3")
		if err != nil || r3.Response == nil || string(r3.Response.Body) != "OK" || r3.Response.Headers["A"][0] != "b" {
			t.Errorf("r3 %+v %v", r3, err)
		}
		return nil
	})
}

func testRecords(t *testing.T, o Opener) {
	s := o.Open(t)
	update(t, s, func(tx store.Tx) error {
		if err := tx.PutModel("", nil); err == nil || err.Error() != "put model: empty urn" {
			t.Errorf("empty urn: %v", err)
		}
		if err := tx.PutPolicy(&store.Policy{}); err == nil || err.Error() != "put policy: empty id" {
			t.Errorf("empty policy id: %v", err)
		}
		return errors.Join(
			tx.PutModel("urn:b", []byte(`{"urn":"urn:b"}`)),
			tx.PutModel("urn:a", []byte(`{"urn":"urn:a","n":1.50}`)),
			tx.PutPolicy(&store.Policy{ID: "p2", DeviceModelURN: "urn:a", Devices: []string{"e1"}, Pipelines: json.RawMessage(`[]`)}),
			tx.PutPolicy(&store.Policy{ID: "p1", DeviceModelURN: "urn:a", AllDevices: true, Pipelines: json.RawMessage(`[{"a":1}]`)}),
			tx.MergeAttributes("e1", "urn:a", map[string]json.RawMessage{"x": json.RawMessage("1"), "y": json.RawMessage("2")}, 10),
			tx.MergeAttributes("e1", "urn:a", map[string]json.RawMessage{"y": json.RawMessage("3")}, 5),
			tx.PutObject(&store.Object{Path: "e1/o", File: "f", Length: 3}),
		)
	})
	view(t, s, func(tx store.Tx) error {
		if m, err := tx.Model("urn:a"); err != nil || string(m) != `{"urn":"urn:a","n":1.50}` {
			t.Errorf("Model: %s %v", m, err)
		}
		if _, err := tx.Model("urn:z"); !errors.Is(err, store.ErrNotFound) || err.Error() != `device model "urn:z": not found` {
			t.Errorf("missing model: %v", err)
		}
		if ms, err := tx.Models(); err != nil || len(ms) != 2 || string(ms[0]) != `{"urn":"urn:a","n":1.50}` {
			t.Errorf("Models: %s %v", ms, err)
		}
		ps, err := tx.Policies()
		if err != nil || len(ps) != 2 || ps[0].ID != "p1" || string(ps[0].Pipelines) != `[{"a":1}]` {
			t.Fatalf("Policies: %v %v", ps, err)
		}
		if !ps[0].Applies("e9", []string{"urn:a"}) || ps[0].Applies("e9", []string{"urn:b"}) || !ps[1].Applies("e1", []string{"urn:a"}) || ps[1].Applies("e2", []string{"urn:a"}) {
			t.Error("Applies")
		}
		a, err := tx.Attributes("e1", "urn:a")
		if err != nil || string(a.Values["x"]) != "1" || string(a.Values["y"]) != "3" || a.Updated != 10 {
			t.Errorf("Attributes: %+v %v", a, err)
		}
		if a, err := tx.Attributes("e2", "urn:a"); err != nil || a.Values == nil || len(a.Values) != 0 {
			t.Errorf("no attributes: %+v %v", a, err)
		}
		if a, err := tx.Attributes("e1", "urn:b"); err != nil || len(a.Values) != 0 {
			t.Errorf("attributes of another model: %+v %v", a, err)
		}
		if o, err := tx.Object("e1/o"); err != nil || o.Length != 3 || o.File != "f" {
			t.Errorf("Object: %+v %v", o, err)
		}
		if _, err := tx.Object("e1/none"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("missing object: %v", err)
		}
		return nil
	})
	update(t, s, func(tx store.Tx) error {
		if err := tx.DeletePolicy("p1"); err != nil {
			t.Error(err)
		}
		if err := tx.DeletePolicy("p1"); !errors.Is(err, store.ErrNotFound) || err.Error() != `device policy "p1": not found` {
			t.Errorf("delete twice: %v", err)
		}
		if _, err := tx.Policy("p1"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("deleted policy: %v", err)
		}
		return nil
	})
}

// testRollback checks that an error from fn commits nothing and comes back
// unchanged.
func testRollback(t *testing.T, o Opener) {
	s := o.Open(t)
	errFn := errors.New("fn failed")
	for _, run := range []struct {
		name string
		fn   func(func(store.Tx) error) error
	}{{"Update", s.Update}, {"Batch", s.Batch}} {
		t.Run(run.name, func(t *testing.T) {
			err := run.fn(func(tx store.Tx) error {
				if err := tx.PutDevice(&store.Device{ID: "d-" + run.name, HardwareID: "hw-" + run.name}); err != nil {
					return err
				}
				if err := tx.AppendMessage(msg(1, "a", "DATA")); err != nil {
					return err
				}
				return errFn
			})
			if err != errFn {
				t.Fatalf("got %v, want the error of fn unchanged", err)
			}
			view(t, s, func(tx store.Tx) error {
				if _, err := tx.Device("d-" + run.name); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("device of a rolled-back transaction: %v", err)
				}
				if _, err := tx.DeviceByHardwareID("hw-" + run.name); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("hardware id of a rolled-back transaction: %v", err)
				}
				if n := tx.MessageCount(); n != 0 {
					t.Errorf("count %d", n)
				}
				return nil
			})
		})
	}
}

func testBatch(t *testing.T, o Opener) {
	s := o.Open(t)
	errc := make(chan error, 8)
	for i := range 8 {
		go func() {
			errc <- s.Batch(func(tx store.Tx) error { return tx.AppendMessage(msg(int64(i), "a", "DATA")) })
		}()
	}
	for range 8 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	view(t, s, func(tx store.Tx) error {
		if n := tx.MessageCount(); n != 8 {
			t.Errorf("count %d", n)
		}
		return nil
	})
}

// testBatchRetry runs failing and succeeding functions in concurrent Batch
// calls: each failing call returns its own error and commits nothing; each
// succeeding one commits the effects of exactly one run, however often it
// was called.
func testBatchRetry(t *testing.T, o Opener) {
	s := o.Open(t)
	const n = 16
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		calls = map[int]int{}
		errs  = make([]error, n)
		seqOf = make([][]uint64, n)
	)
	failures := make([]error, n)
	for i := range n {
		if i%3 == 0 {
			failures[i] = fmt.Errorf("batch %d failed", i)
		}
	}
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Batch(func(tx store.Tx) error {
				mu.Lock()
				calls[i]++
				mu.Unlock()
				seqOf[i] = nil // reset what this run collects
				for j := range 3 {
					m := msg(int64(j), fmt.Sprint("src", i), "DATA")
					if err := tx.AppendMessage(m); err != nil {
						return err
					}
					seqOf[i] = append(seqOf[i], m.Seq)
				}
				if err := tx.PutDevice(&store.Device{ID: fmt.Sprint("d", i)}); err != nil {
					return err
				}
				return failures[i]
			})
		})
	}
	wg.Wait()
	view(t, s, func(tx store.Tx) error {
		want := 0
		for i := range n {
			if calls[i] < 1 {
				t.Errorf("batch %d: fn never called", i)
			}
			_, derr := tx.Device(fmt.Sprint("d", i))
			got, _, err := tx.Messages(store.Query{Source: fmt.Sprint("src", i), Limit: 10})
			if err != nil {
				return err
			}
			if failures[i] != nil {
				if errs[i] != failures[i] || !errors.Is(derr, store.ErrNotFound) || len(got) != 0 {
					t.Errorf("failing batch %d: returned %v, device %v, %d messages", i, errs[i], derr, len(got))
				}
				continue
			}
			want += 3
			if errs[i] != nil || derr != nil || !reflect.DeepEqual(seqs(got), seqOf[i]) {
				t.Errorf("batch %d: returned %v, device %v, messages %v, fn's last run numbered %v", i, errs[i], derr, seqs(got), seqOf[i])
			}
		}
		if c := tx.MessageCount(); c != want {
			t.Errorf("count %d, want %d", c, want)
		}
		return nil
	})
}

// testConcurrentPaging appends from 8 goroutines with Batch while a reader
// pages with After = the last Seq it saw: sequence numbers follow commit
// order, so the reader sees every message exactly once, in increasing order.
func testConcurrentPaging(t *testing.T, o Opener) {
	s := o.Open(t)
	const writers, batches, perBatch = 8, 25, 3
	const total = writers * batches * perBatch
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				err := s.Batch(func(tx store.Tx) error {
					for i := range perBatch {
						m := &store.Message{Received: 1000, Source: fmt.Sprint("w", w), Type: "DATA",
							Raw: json.RawMessage(fmt.Sprintf(`{"w":%d,"b":%d,"i":%d}`, w, b, i))}
						if err := tx.AppendMessage(m); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					errc <- err
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	seen := map[string]bool{}
	var cursor uint64
	read := func() (int, error) {
		var got []store.Message
		err := s.View(func(tx store.Tx) error {
			var err error
			got, _, err = tx.Messages(store.Query{After: cursor, Limit: 7})
			return err
		})
		for _, m := range got {
			if m.Seq <= cursor {
				return 0, fmt.Errorf("seq %d after cursor %d", m.Seq, cursor)
			}
			if seen[string(m.Raw)] {
				return 0, fmt.Errorf("message %s (seq %d) seen twice", m.Raw, m.Seq)
			}
			seen[string(m.Raw)] = true
			cursor = m.Seq
		}
		return len(got), err
	}
	for writing := true; writing; {
		select {
		case <-done:
			writing = false
		default:
		}
		if _, err := read(); err != nil {
			t.Fatal(err)
		}
	}
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	for {
		n, err := read()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if len(seen) != total {
		t.Fatalf("the reader saw %d of %d messages: paging skipped some", len(seen), total)
	}
	view(t, s, func(tx store.Tx) error {
		if c := tx.MessageCount(); c != total || tx.LastMessageSeq() < total {
			t.Errorf("count %d, last seq %d, want %d", c, tx.LastMessageSeq(), total)
		}
		return nil
	})
}
