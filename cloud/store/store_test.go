package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTest(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cloud.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func update(t *testing.T, s *Store, fn func(*Tx) error) {
	t.Helper()
	if err := s.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func TestOpen(t *testing.T) {
	s, path := openTest(t)
	if s.Path() != path {
		t.Fatalf("Path %s", s.Path())
	}
	t.Run("locked", func(t *testing.T) {
		_, err := Open(path, Options{LockTimeout: 50 * time.Millisecond})
		want := "open store " + path + ": the file is locked by another process (is another iotcloud running on this data directory?)"
		if err == nil || err.Error() != want {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("newer schema", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "new.db")
		db, _ := bolt.Open(p, 0o600, nil)
		db.Update(func(tx *bolt.Tx) error {
			b, _ := tx.CreateBucketIfNotExists(bucketMeta)
			return b.Put(metaSchema, u64(2))
		})
		db.Close()
		_, err := Open(p, Options{})
		if err == nil || err.Error() != "open store "+p+": schema version is 0000000000000002, expected 1 (written by a newer iotcloud?)" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("not a directory", func(t *testing.T) {
		if _, err := Open(filepath.Join(path, "x.db"), Options{}); err == nil || !strings.HasPrefix(err.Error(), "open store ") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("reopen keeps data", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "re.db")
		s1, _ := Open(p, Options{})
		var k1 []byte
		s1.Update(func(tx *Tx) error { k1, _ = tx.Key("k", 32); return nil })
		if err := s1.Close(); err != nil {
			t.Fatal(err)
		}
		s2, err := Open(p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		var k2 []byte
		s2.View(func(tx *Tx) error { k2, err = tx.Key("k", 32); return err })
		if len(k1) != 32 || string(k1) != string(k2) {
			t.Fatalf("key %x then %x (%v)", k1, k2, err)
		}
	})
	t.Run("missing key in a read transaction", func(t *testing.T) {
		err := s.View(func(tx *Tx) error { _, err := tx.Key("absent", 32); return err })
		if !errors.Is(err, ErrNotFound) || err.Error() != `server key "absent": not found` {
			t.Fatalf("got %v", err)
		}
	})
}

func TestDevices(t *testing.T) {
	s, _ := openTest(t)
	d1 := &Device{ID: "a1", HardwareID: "hw1", Type: "GATEWAY", State: "REGISTERED", SharedSecret: "s"}
	update(t, s, func(tx *Tx) error { return tx.PutDevice(d1) })
	tests := []struct {
		name string
		d    *Device
		msg  string
	}{
		{"empty id", &Device{}, "put device: empty id"},
		{"hardware id taken", &Device{ID: "a2", HardwareID: "hw1"}, `put device a2: hardware id "hw1" is registered to device a1: already exists`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Update(func(tx *Tx) error { return tx.PutDevice(tt.d) })
			if err == nil || err.Error() != tt.msg {
				t.Fatalf("got %v", err)
			}
		})
	}
	// Activate: endpoint index; then change the hardware id.
	d1.EndpointID, d1.State = "e1", "ACTIVATED"
	update(t, s, func(tx *Tx) error { return tx.PutDevice(d1) })
	update(t, s, func(tx *Tx) error { return tx.PutDevice(&Device{ID: "a3", HardwareID: "hw3", EndpointID: "e3"}) })
	err := s.Update(func(tx *Tx) error { return tx.PutDevice(&Device{ID: "a4", HardwareID: "hw4", EndpointID: "e1"}) })
	if !errors.Is(err, ErrExists) || err.Error() != `put device a4: endpoint id "e1" belongs to device a1: already exists` {
		t.Fatalf("got %v", err)
	}
	d1.HardwareID, d1.EndpointID = "hw1b", "e1b"
	update(t, s, func(tx *Tx) error { return tx.PutDevice(d1) })
	s.View(func(tx *Tx) error {
		for _, id := range []string{"a1", "e1b"} {
			if d, err := tx.Device(id); err != nil || d.ID != "a1" {
				t.Errorf("Device(%s) = %v, %v", id, d, err)
			}
		}
		if d, err := tx.DeviceByHardwareID("hw1b"); err != nil || d.ID != "a1" {
			t.Errorf("by new hardware id: %v %v", d, err)
		}
		for _, id := range []string{"e1", "nobody"} {
			if _, err := tx.Device(id); !errors.Is(err, ErrNotFound) {
				t.Errorf("Device(%s): %v", id, err)
			}
		}
		if _, err := tx.DeviceByHardwareID("hw1"); !errors.Is(err, ErrNotFound) || err.Error() != `device with hardware id "hw1": not found` {
			t.Errorf("old hardware id: %v", err)
		}
		all, err := tx.Devices()
		if err != nil || len(all) != 2 || all[0].ID != "a1" || all[1].ID != "a3" {
			t.Errorf("Devices = %v, %v", all, err)
		}
		return nil
	})
}

func msg(recv int64, src, typ string) *Message {
	js, _ := json.Marshal(src)
	return &Message{Received: recv, Source: src, Type: typ, Raw: json.RawMessage(fmt.Sprintf(`{"r":%d,"s":%s}`, recv, js))}
}

func received(ms []Message) []int64 {
	var out []int64
	for _, m := range ms {
		out = append(out, m.Received)
	}
	return out
}

func TestMessages(t *testing.T) {
	s, _ := openTest(t)
	update(t, s, func(tx *Tx) error {
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
	tests := []struct {
		name string
		q    Query
		want []int64
		more bool
	}{
		{"newest", Query{Newest: true, Limit: 3}, []int64{140, 150, 150}, true},
		{"all", Query{Limit: 100}, []int64{100, 110, 120, 130, 140, 150, 150}, false},
		{"since", Query{Since: 115, Limit: 2}, []int64{120, 130}, true},
		{"since, to the end", Query{Since: 141, Limit: 10}, []int64{150, 150}, false},
		{"source", Query{Source: "a", Limit: 10}, []int64{100, 120, 140, 150}, false},
		{"source newest", Query{Source: "a", Newest: true, Limit: 2}, []int64{140, 150}, true},
		{"source with a NUL", Query{Source: "a\x00b", Limit: 10}, []int64{150}, false},
		{"source since", Query{Source: "b", Since: 111, Limit: 10}, []int64{130}, false},
		{"type", Query{Type: "ALERT", Limit: 10}, []int64{110, 130, 150}, false},
		{"source and type", Query{Source: "a", Type: "DATA", Since: 1, Limit: 2}, []int64{100, 120}, true},
		{"unknown source", Query{Source: "zz", Limit: 10}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.View(func(tx *Tx) error {
				got, more, err := tx.Messages(tt.q)
				if err != nil || !reflect.DeepEqual(received(got), tt.want) || more != tt.more {
					t.Fatalf("got %v more=%v err=%v, want %v more=%v", received(got), more, err, tt.want, tt.more)
				}
				return nil
			})
		})
	}
	s.View(func(tx *Tx) error {
		if _, _, err := tx.Messages(Query{}); err == nil || err.Error() != "query messages: limit 0, expected > 0" {
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
			update(t, s, func(tx *Tx) error {
				n, err := tx.PruneMessages(tt.cutoff, tt.max, tt.budget)
				if err != nil || n != tt.deleted || tx.MessageCount() != tt.left {
					t.Fatalf("deleted %d (%v), left %d; want %d, %d", n, err, tx.MessageCount(), tt.deleted, tt.left)
				}
				all, _, _ := tx.Messages(Query{Source: "a", Limit: 100})
				byType, _, _ := tx.Messages(Query{Type: "DATA", Limit: 100})
				if len(all)+len(byType) > 2*tt.left {
					t.Fatalf("indexes not pruned: %d by source, %d by type", len(all), len(byType))
				}
				return nil
			})
		})
	}
}

func seqs(ms []Message) []uint64 {
	var out []uint64
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

// TestMessagesCursor pages through 250 messages received in one millisecond
// (two and a half batches of a device) with After, 100 at a time.
func TestMessagesCursor(t *testing.T) {
	s, _ := openTest(t)
	update(t, s, func(tx *Tx) error {
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
	page := func(t *testing.T, q Query) ([]Message, bool) {
		t.Helper()
		var got []Message
		var more bool
		err := s.View(func(tx *Tx) error {
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
		q     Query
		pages [][2]uint64 // first and last seq of each page
	}{
		{"by source", Query{Source: "a", Limit: 100}, [][2]uint64{{6, 105}, {106, 205}, {206, 255}}},
		{"by type", Query{Type: "DATA", Since: 1000, Limit: 100}, [][2]uint64{{6, 105}, {106, 205}, {206, 260}}},
		{"all, since in the millisecond", Query{Since: 1000, Limit: 100}, [][2]uint64{{6, 105}, {106, 205}, {206, 260}}},
		{"all from the start", Query{Limit: 100}, [][2]uint64{{1, 100}, {101, 200}, {201, 260}}},
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
		got, more := page(t, Query{Source: "a", After: 250, Newest: true, Limit: 3})
		if !reflect.DeepEqual(seqs(got), []uint64{253, 254, 255}) || !more {
			t.Fatalf("got %v more=%v", seqs(got), more)
		}
		got, more = page(t, Query{Source: "a", After: 252, Newest: true, Limit: 3})
		if !reflect.DeepEqual(seqs(got), []uint64{253, 254, 255}) || more {
			t.Fatalf("got %v more=%v", seqs(got), more)
		}
	})
	t.Run("since later than the cursor", func(t *testing.T) {
		got, _ := page(t, Query{After: 3, Since: 1100, Limit: 100})
		if !reflect.DeepEqual(seqs(got), []uint64{256, 257, 258, 259, 260}) {
			t.Fatalf("got %v", seqs(got))
		}
	})
	t.Run("cursor ahead", func(t *testing.T) {
		err := s.View(func(tx *Tx) error {
			_, _, err := tx.Messages(Query{After: 261, Limit: 1})
			return err
		})
		if !errors.Is(err, ErrCursorAhead) || err.Error() != "query messages after 261: cursor is beyond the newest message (seq 260)" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("cursor at a pruned message", func(t *testing.T) {
		update(t, s, func(tx *Tx) error {
			_, err := tx.PruneMessages(0, 250, 100) // deletes 1..10
			return err
		})
		got, more := page(t, Query{After: 4, Limit: 3})
		if !reflect.DeepEqual(seqs(got), []uint64{11, 12, 13}) || !more {
			t.Fatalf("got %v more=%v", seqs(got), more)
		}
	})
}

// TestMessagesAfterEveryCursor checks the binary search on receive times:
// for every cursor, the messages after it are exactly those numbered above.
func TestMessagesAfterEveryCursor(t *testing.T) {
	s, _ := openTest(t)
	recv := []int64{3, 3, 3, 7, 8, 8, 20, 20, 20, 20, 21, 1000, 1000, 5000, 5001, 5001}
	update(t, s, func(tx *Tx) error {
		for i, r := range recv {
			if err := tx.AppendMessage(msg(r, []string{"a", "b"}[i%2], "DATA")); err != nil {
				return err
			}
		}
		return nil
	})
	s.View(func(tx *Tx) error {
		for after := uint64(0); after <= uint64(len(recv)); after++ {
			for _, src := range []string{"", "a", "b"} {
				got, more, err := tx.Messages(Query{Source: src, After: after, Limit: 100})
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

func TestDedup(t *testing.T) {
	s, _ := openTest(t)
	now := time.UnixMilli(1_000_000)
	update(t, s, func(tx *Tx) error {
		tx.Remember("a", "c1", now.Add(time.Second))
		tx.Remember("a", "c2", now.Add(time.Minute))
		tx.Remember("a", "c2", now.Add(time.Hour)) // extended
		tx.Remember("b", "c3", now.Add(time.Second))
		return nil
	})
	s.View(func(tx *Tx) error {
		if !tx.Seen("a", "c1", now) || tx.Seen("b", "c1", now) || tx.Seen("a", "c1", now.Add(time.Second)) {
			t.Error("Seen before pruning")
		}
		return nil
	})
	update(t, s, func(tx *Tx) error {
		if n, err := tx.PruneDedup(now.Add(2*time.Minute), 1); n != 1 || err != nil {
			t.Errorf("budget 1: %d %v", n, err)
		}
		if n, err := tx.PruneDedup(now.Add(2*time.Minute), 10); n != 1 || err != nil {
			t.Errorf("rest: %d %v", n, err)
		}
		if !tx.Seen("a", "c2", now.Add(2*time.Minute)) {
			t.Error("extended key pruned")
		}
		return nil
	})
}

func TestRequests(t *testing.T) {
	s, _ := openTest(t)
	mk := func(id, route string, size int, expires int64) *Request {
		return &Request{ID: id, Destination: route, RouteTo: route, Method: "POST", URL: "u", Expires: expires, Wire: json.RawMessage(`"` + strings.Repeat("x", size) + `"`)}
	}
	update(t, s, func(tx *Tx) error {
		for _, r := range []*Request{mk("r1", "gw", 10, 50), mk("r2", "gw", 10, 1000), mk("r3", "gw", 100, 1000), mk("r4", "gw", 10, 1000), mk("o1", "other", 1, 1000)} {
			if err := tx.EnqueueRequest(r); err != nil {
				return err
			}
		}
		return nil
	})
	for _, tt := range []struct {
		name string
		r    *Request
		msg  string
	}{
		{"duplicate", mk("r1", "gw", 1, 0), "enqueue request r1: already exists"},
		{"no route", mk("r9", "", 1, 0), `enqueue request: id "r9" and route "" must not be empty`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Update(func(tx *Tx) error { return tx.EnqueueRequest(tt.r) }); err == nil || err.Error() != tt.msg {
				t.Fatalf("got %v", err)
			}
		})
	}
	budget := 20
	var taken []*Request
	update(t, s, func(tx *Tx) error {
		var err error
		taken, err = tx.TakeRequests("gw", 100, func(r *Request) bool {
			if len(r.Wire) > budget {
				return false
			}
			budget -= len(r.Wire)
			return true
		})
		return err
	})
	if len(taken) != 1 || taken[0].ID != "r2" || taken[0].Status != RequestDelivered || taken[0].Updated != 100 {
		t.Fatalf("taken %+v", taken)
	}
	s.View(func(tx *Tx) error {
		r1, _ := tx.Request("r1")
		r3, _ := tx.Request("r3")
		if r1.Status != RequestExpired || r3.Status != RequestPending || !tx.Queued("gw") || !tx.Queued("other") || tx.Queued("nobody") {
			t.Errorf("r1 %s, r3 %s", r1.Status, r3.Status)
		}
		if _, err := tx.Request("zz"); !errors.Is(err, ErrNotFound) {
			t.Errorf("missing request: %v", err)
		}
		return nil
	})
	// Completing a pending request takes it out of the queue.
	update(t, s, func(tx *Tx) error {
		r3, _ := tx.Request("r3")
		r3.Status, r3.Response = RequestCompleted, &Response{StatusCode: 200, Body: []byte("OK")}
		return tx.PutRequest(r3)
	})
	update(t, s, func(tx *Tx) error {
		got, err := tx.TakeRequests("gw", 100, func(*Request) bool { return true })
		if err != nil || len(got) != 1 || got[0].ID != "r4" || tx.Queued("gw") {
			t.Errorf("after completion: %+v %v", got, err)
		}
		r3, _ := tx.Request("r3")
		if string(r3.Response.Body) != "OK" {
			t.Errorf("r3 %+v", r3)
		}
		return nil
	})
}

func TestRecords(t *testing.T) {
	s, _ := openTest(t)
	update(t, s, func(tx *Tx) error {
		if err := tx.PutModel("", nil); err == nil || err.Error() != "put model: empty urn" {
			t.Errorf("empty urn: %v", err)
		}
		tx.PutModel("urn:b", []byte(`{"urn":"urn:b"}`))
		tx.PutModel("urn:a", []byte(`{"urn":"urn:a"}`))
		if err := tx.PutPolicy(&Policy{}); err == nil || err.Error() != "put policy: empty id" {
			t.Errorf("empty policy id: %v", err)
		}
		tx.PutPolicy(&Policy{ID: "p2", DeviceModelURN: "urn:a", Devices: []string{"e1"}})
		tx.PutPolicy(&Policy{ID: "p1", DeviceModelURN: "urn:a", AllDevices: true})
		tx.MergeAttributes("e1", "urn:a", map[string]json.RawMessage{"x": json.RawMessage("1"), "y": json.RawMessage("2")}, 10)
		tx.MergeAttributes("e1", "urn:a", map[string]json.RawMessage{"y": json.RawMessage("3")}, 5)
		return tx.PutObject(&Object{Path: "e1/o", File: "f", Length: 3})
	})
	s.View(func(tx *Tx) error {
		if m, err := tx.Model("urn:a"); err != nil || string(m) != `{"urn":"urn:a"}` {
			t.Errorf("Model: %s %v", m, err)
		}
		if _, err := tx.Model("urn:z"); !errors.Is(err, ErrNotFound) || err.Error() != `device model "urn:z": not found` {
			t.Errorf("missing model: %v", err)
		}
		if ms, err := tx.Models(); err != nil || len(ms) != 2 || string(ms[0]) != `{"urn":"urn:a"}` {
			t.Errorf("Models: %s %v", ms, err)
		}
		ps, err := tx.Policies()
		if err != nil || len(ps) != 2 || ps[0].ID != "p1" {
			t.Errorf("Policies: %v %v", ps, err)
		}
		if !ps[0].Applies("e9", []string{"urn:a"}) || ps[0].Applies("e9", []string{"urn:b"}) || !ps[1].Applies("e1", []string{"urn:a"}) || ps[1].Applies("e2", []string{"urn:a"}) {
			t.Error("Applies")
		}
		a, err := tx.Attributes("e1", "urn:a")
		if err != nil || string(a.Values["x"]) != "1" || string(a.Values["y"]) != "3" || a.Updated != 10 {
			t.Errorf("Attributes: %+v %v", a, err)
		}
		if a, err := tx.Attributes("e2", "urn:a"); err != nil || len(a.Values) != 0 {
			t.Errorf("no attributes: %+v %v", a, err)
		}
		if o, err := tx.Object("e1/o"); err != nil || o.Length != 3 {
			t.Errorf("Object: %+v %v", o, err)
		}
		if _, err := tx.Object("e1/none"); !errors.Is(err, ErrNotFound) {
			t.Errorf("missing object: %v", err)
		}
		return nil
	})
	update(t, s, func(tx *Tx) error {
		if err := tx.DeletePolicy("p1"); err != nil {
			t.Error(err)
		}
		if err := tx.DeletePolicy("p1"); !errors.Is(err, ErrNotFound) || err.Error() != `device policy "p1": not found` {
			t.Errorf("delete twice: %v", err)
		}
		if _, err := tx.Policy("p1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted policy: %v", err)
		}
		return nil
	})
}

func TestBatch(t *testing.T) {
	s, _ := openTest(t)
	errc := make(chan error, 8)
	for i := range 8 {
		go func() {
			errc <- s.Batch(func(tx *Tx) error { return tx.AppendMessage(msg(int64(i), "a", "DATA")) })
		}()
	}
	for range 8 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	s.View(func(tx *Tx) error {
		if n := tx.MessageCount(); n != 8 {
			t.Errorf("count %d", n)
		}
		return nil
	})
}

func TestCorruptRecord(t *testing.T) {
	s, _ := openTest(t)
	s.db.Update(func(tx *bolt.Tx) error {
		tx.Bucket(bucketDevices).Put([]byte("bad"), []byte("{"))
		tx.Bucket(bucketPolicies).Put([]byte("bad"), []byte("{"))
		return nil
	})
	s.View(func(tx *Tx) error {
		if _, err := tx.Device("bad"); err == nil || !strings.HasPrefix(err.Error(), `device "bad": corrupt record "bad": `) {
			t.Errorf("Device: %v", err)
		}
		if _, err := tx.Devices(); err == nil || !strings.HasPrefix(err.Error(), `device "bad": corrupt record: `) {
			t.Errorf("Devices: %v", err)
		}
		if _, err := tx.Policies(); err == nil {
			t.Error("Policies: no error")
		}
		return nil
	})
}
