package fsstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/ports"
	"github.com/iotnode/iotnode/ports/porttest"
)

const (
	low     = message.PriorityLow
	medium  = message.PriorityMedium
	highest = message.PriorityHighest
	g       = message.GuaranteedDelivery
	be      = message.BestEffort
	ng      = message.NoGuarantee
)

var msg = porttest.Msg

// msgSize is the encoded size of a porttest.Msg with a 2-character id and
// priority LOW.
var msgSize = func() int { m := msg("xx", low, g); return message.EncodedSize(&m) }()

// sizeOf returns the encoded size of msgs, added up.
func sizeOf(msgs ...message.Message) int64 {
	n := 0
	for i := range msgs {
		n += message.EncodedSize(&msgs[i])
	}
	return int64(n)
}

func openOutbox(t *testing.T, path string, opts OutboxOptions) *Outbox {
	t.Helper()
	o, err := OpenOutbox(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := o.Close(); err != nil {
			t.Error(err)
		}
	})
	return o
}

func add(t *testing.T, o *Outbox, msgs ...message.Message) int {
	t.Helper()
	n, err := o.Add(t.Context(), msgs...)
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	return n
}

func begin(t *testing.T, o *Outbox, n, maxBytes int) ports.Batch {
	t.Helper()
	b, err := o.Begin(n, maxBytes)
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	return b
}

func idsOf(b ports.Batch) string {
	out := make([]string, len(b.Messages))
	for i, m := range b.Messages {
		out[i] = m.ClientID
	}
	return strings.Join(out, " ")
}

func allIndexes(b ports.Batch) []int {
	out := make([]int, len(b.Messages))
	for i := range out {
		out[i] = i
	}
	return out
}

// drain takes and delivers everything, returning the ids in order.
func drain(t *testing.T, o *Outbox) string {
	t.Helper()
	var ids []string
	for {
		b := begin(t, o, 7, 0)
		if len(b.Messages) == 0 {
			return strings.Join(ids, " ")
		}
		ids = append(ids, idsOf(b))
		if err := o.End(b, allIndexes(b)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOutboxConformance(t *testing.T) {
	for _, noSync := range []bool{true, false} {
		t.Run(fmt.Sprint("nosync=", noSync), func(t *testing.T) {
			porttest.Outbox(t, func(t *testing.T, maxBytes int) ports.Outbox {
				return openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"),
					OutboxOptions{MaxBytes: int64(maxBytes), MaxMemoryBytes: maxBytes, NoSync: noSync})
			})
		})
	}
}

func TestOutboxReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "outbox.db")
	o, err := OpenOutbox(path, OutboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	add(t, o, msg("g1", low, g), msg("b1", low, be), msg("g2", highest, g), msg("n1", highest, ng))
	add(t, o, msg("g3", low, g), msg("g4", medium, g), msg("g5", low, g))
	b := begin(t, o, 3, 0) // g2 n1 g4
	if got := idsOf(b); got != "g2 n1 g4" {
		t.Fatalf("first batch = %s", got)
	}
	if err := o.End(b, []int{0}); err != nil { // g2 delivered; n1, g4 back
		t.Fatal(err)
	}
	open := begin(t, o, 2, 0) // n1 g4, left open at Close
	if got := idsOf(open); got != "n1 g4" {
		t.Fatalf("second batch = %s", got)
	}
	gHeld := sizeOf(msg("g1", low, g), msg("g3", low, g), msg("g4", medium, g), msg("g5", low, g))
	want := OutboxStats{Queued: 6, QueuedBytes: gHeld + sizeOf(msg("b1", low, be), msg("n1", highest, ng)),
		Guaranteed: 4, GuaranteedBytes: gHeld, InFlight: 2, Commits: 2}
	if st := o.Stats(); st != want {
		t.Fatalf("stats = %+v, want %+v", st, want)
	}
	if o.Path() != path {
		t.Fatalf("Path = %s, want %s", o.Path(), path)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("outbox file: %v, %v; want mode 0600", fi, err)
	}

	o2 := openOutbox(t, path, OutboxOptions{})
	want = OutboxStats{Queued: 4, QueuedBytes: gHeld, Guaranteed: 4, GuaranteedBytes: gHeld}
	if st := o2.Stats(); st != want {
		t.Fatalf("stats after reopen = %+v, want %+v", st, want)
	}
	// Guaranteed messages come back in order, the delivered one is gone,
	// best-effort ones were not persisted.
	if got := drain(t, o2); got != "g4 g1 g3 g5" {
		t.Fatalf("after reopen = %s, want g4 g1 g3 g5", got)
	}
	// New messages continue the sequence after the replayed ones.
	add(t, o2, msg("g6", low, g), msg("g7", low, g))
	if got := drain(t, o2); got != "g6 g7" {
		t.Fatalf("after more adds = %s", got)
	}
}

func TestOutboxOrder(t *testing.T) {
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"), OutboxOptions{NoSync: true})
	for i := range 6 {
		r := g
		if i%2 == 1 {
			r = be
		}
		add(t, o, msg(fmt.Sprint("l", i), low, r))
	}
	b1 := begin(t, o, 2, 0) // l0 l1
	b2 := begin(t, o, 2, 0) // l2 l3
	// Ending out of order still restores the original order.
	if err := o.End(b2, nil); err != nil {
		t.Fatal(err)
	}
	if err := o.End(b1, []int{1}); err != nil {
		t.Fatal(err)
	}
	// A new HIGHEST message overtakes the backlog.
	add(t, o, msg("h0", highest, g))
	if got := idsOf(begin(t, o, 3, 0)); got != "h0 l0 l2" {
		t.Fatalf("order = %s, want h0 l0 l2", got)
	}
	if got := idsOf(begin(t, o, 10, 0)); got != "l3 l4 l5" {
		t.Fatalf("order = %s, want l3 l4 l5", got)
	}
}

func TestOutboxMaxBytesStopsLowerPriorities(t *testing.T) {
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"), OutboxOptions{NoSync: true})
	big := msg("hb", highest, g)
	big.Data.Fields = append(big.Data.Fields, message.Field{Name: "pad", Value: strings.Repeat("x", 200)})
	add(t, o, msg("h1", highest, g), big, msg("l1", low, g))
	if got := idsOf(begin(t, o, 10, message.ArraySize(2, 2*msgSize))); got != "h1" {
		t.Fatalf("batch = %s, want h1 alone: the big one does not fit and blocks the low one", got)
	}
	if got := idsOf(begin(t, o, 10, 1)); got != "hb" {
		t.Fatalf("batch = %s, want hb: one message even over maxBytes", got)
	}
}

func TestOutboxBounds(t *testing.T) {
	ctx := t.Context()
	t.Run("guaranteed back-pressure", func(t *testing.T) {
		o := openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"), OutboxOptions{MaxBytes: int64(3 * msgSize), NoSync: true})
		add(t, o, msg("g1", low, g), msg("g2", low, g))
		_, err := o.Add(ctx, msg("g3", low, g), msg("g4", low, g), msg("b1", low, be))
		want := fmt.Sprintf("outbox add: %d bytes of guaranteed messages do not fit: %d of %d bytes held: outbox full",
			2*msgSize, 2*msgSize, 3*msgSize)
		if errText(err) != want || !errors.Is(err, ports.ErrOutboxFull) {
			t.Fatalf("Add over the bound = %v, want %s", err, want)
		}
		big := msg("big", low, g)
		big.Data.Fields[0].Value = strings.Repeat("x", 3*msgSize)
		_, err = o.Add(ctx, big)
		want = fmt.Sprintf("outbox add: %d bytes of guaranteed messages exceed the whole bound of %d bytes: outbox full",
			message.EncodedSize(&big), 3*msgSize)
		if errText(err) != want || !errors.Is(err, ports.ErrOutboxFull) {
			t.Fatalf("Add of a huge message = %v, want %s", err, want)
		}
		if got := drain(t, o); got != "g1 g2" {
			t.Fatalf("contents = %s, want g1 g2 (nothing of the refused Adds)", got)
		}
		add(t, o, msg("g3", low, g), msg("g4", low, g), msg("g5", low, g)) // room again
	})
	t.Run("drop oldest of the lowest priority", func(t *testing.T) {
		o := openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"), OutboxOptions{MaxMemoryBytes: 3 * msgSize, NoSync: true})
		add(t, o, msg("h1", highest, be), msg("l1", low, be), msg("l2", low, ng))
		b := begin(t, o, 1, 0) // h1 in flight: not droppable
		if n := add(t, o, msg("m1", medium, be), msg("g1", low, g)); n != 1 {
			t.Fatalf("dropped = %d, want 1", n)
		}
		if n := add(t, o, msg("m2", medium, be), msg("m3", medium, be)); n != 2 {
			t.Fatalf("dropped = %d, want 2", n)
		}
		// Now h1 (open), m2, m3 held: everything else droppable is gone.
		if n := add(t, o, msg("m4", medium, be)); n != 1 {
			t.Fatalf("dropped = %d, want 1", n)
		}
		st := o.Stats()
		if st.Dropped != 4 || st.Queued != 4 || st.InFlight != 1 {
			t.Fatalf("stats = %+v, want Dropped 4, Queued 4 (h1 m3 m4 g1), InFlight 1", st)
		}
		if err := o.End(b, nil); err != nil {
			t.Fatal(err)
		}
		if got := drain(t, o); got != "h1 m3 m4 g1" {
			t.Fatalf("contents = %s, want h1 m3 m4 g1", got)
		}
	})
	t.Run("a message bigger than the memory bound", func(t *testing.T) {
		o := openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"), OutboxOptions{MaxMemoryBytes: 3 * msgSize, NoSync: true})
		add(t, o, msg("b1", low, be))
		big := msg("big", low, be)
		big.Data.Fields[0].Value = strings.Repeat("x", 3*msgSize)
		if n := add(t, o, big); n != 1 {
			t.Fatalf("dropped = %d, want 1 (the big one only)", n)
		}
		if got := drain(t, o); got != "b1" {
			t.Fatalf("contents = %s, want b1", got)
		}
	})
	t.Run("open batches are not dropped", func(t *testing.T) {
		o := openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"), OutboxOptions{MaxMemoryBytes: 2 * msgSize, NoSync: true})
		add(t, o, msg("b1", low, be), msg("b2", low, be))
		b := begin(t, o, 2, 0)
		if n := add(t, o, msg("b3", low, be)); n != 1 {
			t.Fatalf("dropped = %d, want 1 (b3 itself)", n)
		}
		if err := o.End(b, []int{1}); err != nil {
			t.Fatal(err)
		}
		if n := add(t, o, msg("b4", low, be)); n != 0 {
			t.Fatalf("dropped = %d, want 0", n)
		}
		if got := drain(t, o); got != "b1 b4" {
			t.Fatalf("contents = %s, want b1 b4", got)
		}
	})
}

func TestOutboxErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openOutbox(t, path, OutboxOptions{NoSync: true})
	add(t, o, msg("a", low, g))
	b := begin(t, o, 1, 0)
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	badPriority := msg("p", low, g)
	badPriority.Priority = 9
	badType := msg("t", low, g)
	badType.Type = "NOPE"
	badBE := msg("t", low, be)
	badBE.Type = "NOPE"
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"begin max 0", func() error { _, err := o.Begin(0, 0); return err }, "outbox begin: max 0: want at least 1"},
		{"end unknown batch", func() error { return o.End(ports.Batch{Seq: 99}, nil) }, "outbox end: batch 99 is not open"},
		{"end index out of range", func() error { return o.End(b, []int{0, 1}) }, "outbox end: batch 1: index 1 out of range 0..0"},
		{"add cancelled", func() error { _, err := o.Add(cancelled, msg("c", low, g)); return err }, "outbox add: context canceled"},
		{"add bad priority", func() error { _, err := o.Add(t.Context(), msg("ok", low, g), badPriority); return err },
			"outbox add: message 1: priority 9: want 0 (LOWEST)..4 (HIGHEST)"},
		{"add unencodable guaranteed", func() error { _, err := o.Add(t.Context(), badType); return err },
			"outbox add: message 0: " + encodeErr(badType)},
		{"add unencodable best effort", func() error { _, err := o.Add(t.Context(), badBE); return err },
			"outbox add: message 0: " + encodeErr(badBE)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errText(tt.call()); got != tt.want {
				t.Fatalf("error:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
	if n, err := o.Add(t.Context()); n != 0 || err != nil {
		t.Fatalf("empty Add = %d, %v", n, err)
	}
	if err := o.End(b, []int{0}); err != nil {
		t.Fatalf("End after the failed End = %v; the batch must stay open", err)
	}
	if st := o.Stats(); st.Queued != 0 || st.Guaranteed != 0 {
		t.Fatalf("stats = %+v, want empty: failed Adds add nothing", st)
	}

	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	closed := []struct {
		name string
		call func() error
		want string
	}{
		{"add", func() error { _, err := o.Add(t.Context(), msg("x", low, g)); return err }, "outbox add: " + path + ": closed"},
		{"begin", func() error { _, err := o.Begin(1, 0); return err }, "outbox begin: " + path + ": closed"},
		{"end", func() error { return o.End(b, nil) }, "outbox end: " + path + ": closed"},
		{"close again", o.Close, "<nil>"},
	}
	for _, tt := range closed {
		t.Run("closed "+tt.name, func(t *testing.T) {
			err := tt.call()
			if errText(err) != tt.want || (err != nil && !errors.Is(err, ports.ErrClosed)) {
				t.Fatalf("error:\n got %v\nwant %s", err, tt.want)
			}
		})
	}
}

func encodeErr(m message.Message) string {
	_, err := message.AppendJSON(nil, &m)
	return errText(err)
}

func TestOpenOutboxErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a bbolt file ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(dir, "foreign.db")
	otherFormat := filepath.Join(dir, "other-format.db")
	for path, fill := range map[string]func(tx *bolt.Tx) error{
		foreign: func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("users")); return err },
		otherFormat: func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(metaBucket)
			if err != nil {
				return err
			}
			return b.Put(formatKey, []byte("iotnode-outbox/9"))
		},
	} {
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(fill); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	locked := filepath.Join(dir, "locked.db")
	openOutbox(t, locked, OutboxOptions{NoSync: true})

	tests := []struct {
		name string
		path string
		opts OutboxOptions
		want string
	}{
		{"negative MaxBytes", filepath.Join(dir, "a.db"), OutboxOptions{MaxBytes: -1}, "outbox $: MaxBytes -1: want 0 (default) or more"},
		{"negative MaxMemoryBytes", filepath.Join(dir, "a.db"), OutboxOptions{MaxMemoryBytes: -1}, "outbox $: MaxMemoryBytes -1: want 0 (default) or more"},
		{"not bbolt", garbage, OutboxOptions{}, "outbox $: not an outbox file, or damaged beyond repair (invalid database); move it away to start with an empty outbox"},
		{"another bbolt file", foreign, OutboxOptions{}, `outbox $: outbox $: a bbolt file of something else (no "meta" bucket); want an outbox file`},
		{"other format", otherFormat, OutboxOptions{}, `outbox $: outbox $: format "iotnode-outbox/9": want "iotnode-outbox/1"`},
		{"directory below a file", filepath.Join(file, "o.db"), OutboxOptions{}, "outbox $: create its directory: not a directory"},
		{"locked by another opener", locked, OutboxOptions{}, "outbox $: another process has it open (waited 1s for its lock)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := OpenOutbox(tt.path, tt.opts)
			if want := strings.ReplaceAll(tt.want, "$", tt.path); errText(err) != want {
				t.Fatalf("OpenOutbox error:\n got %s\nwant %s", errText(err), want)
			}
		})
	}
}

// record returns a valid record for m.
func record(t *testing.T, m message.Message) []byte {
	t.Helper()
	body, err := message.AppendJSON(nil, &m)
	if err != nil {
		t.Fatal(err)
	}
	rec := []byte{recordVersion, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(rec[1:], crc32.Checksum(body, castagnoli))
	return append(rec, body...)
}

func key(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func TestOutboxCorruptRecords(t *testing.T) {
	// Each case adds g1 g2 g3 (seq 1..3, priority LOW), then damages the
	// store directly before reopening it.
	tests := []struct {
		name        string
		damage      func(t *testing.T, b *bolt.Bucket)
		openCorrupt int64  // counted by OpenOutbox
		openHeld    int64  // Stats().Guaranteed after OpenOutbox
		want        string // what Begin hands out after reopening
		corrupt     int64  // counted in the end
	}{
		{name: "flipped body byte", damage: func(t *testing.T, b *bolt.Bucket) {
			v := append([]byte(nil), b.Get(key(2))...)
			v[len(v)-3] ^= 1
			put(t, b, key(2), v)
		}, openCorrupt: 1, openHeld: 2, want: "g1 g3", corrupt: 1},
		{name: "flipped checksum", damage: func(t *testing.T, b *bolt.Bucket) {
			v := append([]byte(nil), b.Get(key(1))...)
			v[2] ^= 0x80
			put(t, b, key(1), v)
		}, openCorrupt: 1, openHeld: 2, want: "g2 g3", corrupt: 1},
		{name: "torn record", damage: func(t *testing.T, b *bolt.Bucket) {
			put(t, b, key(3), b.Get(key(3))[:3])
		}, openCorrupt: 1, openHeld: 2, want: "g1 g2", corrupt: 1},
		{name: "unknown version", damage: func(t *testing.T, b *bolt.Bucket) {
			v := append([]byte(nil), b.Get(key(2))...)
			v[0] = 7
			put(t, b, key(2), v)
		}, openCorrupt: 1, openHeld: 2, want: "g1 g3", corrupt: 1},
		{name: "bad key", damage: func(t *testing.T, b *bolt.Bucket) {
			put(t, b, []byte("k"), record(t, msg("kk", low, g)))
		}, openCorrupt: 1, openHeld: 3, want: "g1 g2 g3", corrupt: 1},
		{name: "checksum fine, json not", damage: func(t *testing.T, b *bolt.Bucket) {
			body := []byte(`{"clientId":`)
			rec := []byte{recordVersion, 0, 0, 0, 0}
			binary.BigEndian.PutUint32(rec[1:], crc32.Checksum(body, castagnoli))
			put(t, b, key(2), append(rec, body...))
		}, openHeld: 3, want: "g1 g3", corrupt: 1},
		{name: "not a guaranteed message", damage: func(t *testing.T, b *bolt.Bucket) {
			put(t, b, key(2), record(t, msg("b2", low, be)))
		}, openHeld: 3, want: "g1 g3", corrupt: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "outbox.db")
			o, err := OpenOutbox(path, OutboxOptions{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			add(t, o, msg("g1", low, g), msg("g2", low, g), msg("g3", low, g))
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error { tt.damage(t, tx.Bucket(priorityNames[low])); return nil }); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			o = openOutbox(t, path, OutboxOptions{NoSync: true})
			if st := o.Stats(); st.Corrupt != tt.openCorrupt || st.Guaranteed != tt.openHeld {
				t.Fatalf("stats after open = %+v, want Corrupt %d, Guaranteed %d", st, tt.openCorrupt, tt.openHeld)
			}
			if got := drain(t, o); got != tt.want {
				t.Fatalf("Begin after the damage = %s, want %s", got, tt.want)
			}
			st := o.Stats()
			if st.Corrupt != tt.corrupt || st.Queued != 0 || st.QueuedBytes != 0 || st.Guaranteed != 0 || st.GuaranteedBytes != 0 {
				t.Fatalf("stats at the end = %+v, want Corrupt %d and nothing queued", st, tt.corrupt)
			}
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			// The corrupt record was deleted: a third open finds nothing.
			o = openOutbox(t, path, OutboxOptions{NoSync: true})
			if st := o.Stats(); st.Corrupt != 0 || st.Queued != 0 {
				t.Fatalf("stats after the third open = %+v, want all zero", st)
			}
		})
	}
}

func put(t *testing.T, b *bolt.Bucket, k, v []byte) {
	t.Helper()
	if err := b.Put(k, v); err != nil {
		t.Fatal(err)
	}
}

func TestOutboxDiskErrors(t *testing.T) {
	// Closing the database under the outbox makes every transaction fail.
	o, err := OpenOutbox(filepath.Join(t.TempDir(), "outbox.db"), OutboxOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	add(t, o, msg("g1", low, g), msg("b1", low, be))
	b := begin(t, o, 1, 0)
	if err := o.db.Close(); err != nil {
		t.Fatal(err)
	}
	want := "outbox end: batch 1: delete 1 delivered messages from " + o.path + ": database not open; every message of the batch stays queued"
	if err := o.End(b, []int{0}); errText(err) != want {
		t.Fatalf("End = %v, want %s", err, want)
	}
	if _, err := o.Add(t.Context(), msg("g2", low, g)); errText(err) != "outbox add: write 1 guaranteed messages to "+o.path+": database not open" {
		t.Fatalf("Add = %v", err)
	}
	if _, err := o.Begin(5, 0); errText(err) != "outbox begin: read "+o.path+": database not open" {
		t.Fatalf("Begin = %v", err)
	}
	want2 := OutboxStats{Queued: 2, QueuedBytes: sizeOf(msg("g1", low, g), msg("b1", low, be)),
		Guaranteed: 1, GuaranteedBytes: sizeOf(msg("g1", low, g)), Commits: 2}
	if st := o.Stats(); st != want2 {
		t.Fatalf("stats = %+v, want %+v", st, want2)
	}
	// The best-effort message is still held in memory, in order.
	if l := o.lanes[low]; len(l.back) != 1 || l.back[0].msg.ClientID != "g1" || len(l.mem) != 1 {
		t.Fatalf("lane = %+v", l)
	}
}

func TestOutboxGroupCommit(t *testing.T) {
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"), OutboxOptions{}) // real fsync
	const callers, each = 16, 20
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				if _, err := o.Add(t.Context(), msg(fmt.Sprintf("%02d-%02d", c, i), low, g)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	st := o.Stats()
	if st.Guaranteed != callers*each {
		t.Fatalf("Guaranteed = %d, want %d", st.Guaranteed, callers*each)
	}
	if st.Commits >= callers*each {
		t.Fatalf("%d commits for %d Adds: no group commit", st.Commits, callers*each)
	}
	t.Logf("%d Adds by %d callers in %d commits", callers*each, callers, st.Commits)
	// Each caller's messages keep their order.
	last := map[string]string{}
	for _, id := range strings.Fields(drain(t, o)) {
		c, i, _ := strings.Cut(id, "-")
		if i <= last[c] && last[c] != "" {
			t.Fatalf("caller %s: %s after %s", c, i, last[c])
		}
		last[c] = i
	}
}

func TestOutboxConcurrentStress(t *testing.T) {
	// Producers add mixed messages while consumers take batches and deliver
	// some of each: every guaranteed message is delivered exactly once, and
	// every best-effort one is delivered once or counted as dropped.
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"), OutboxOptions{MaxMemoryBytes: 4 * msgSize, NoSync: true})
	const producers, each = 4, 150
	var mu sync.Mutex
	delivered := map[string]int{}
	var prod, cons sync.WaitGroup
	stop := make(chan struct{})
	for p := range producers {
		prod.Go(func() {
			for i := range each {
				r := g
				if i%3 == 0 {
					r = be
				}
				m1 := msg(fmt.Sprintf("%s-%d-%d", r, p, i), message.Priority(i%5), r)
				m2 := msg(fmt.Sprintf("%s-%d-%d-b", g, p, i), message.Priority((i+2)%5), g)
				if _, err := o.Add(t.Context(), m1, m2); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for c := range 3 {
		cons.Go(func() {
			turn := 0
			for {
				b, err := o.Begin(1+c*5, 0)
				if err != nil {
					t.Error(err)
					return
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
				for i := range b.Messages {
					if turn++; turn%4 != 0 { // every fourth is "rejected" and comes back
						ok = append(ok, i)
					}
				}
				if err := o.End(b, ok); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, i := range ok {
					delivered[b.Messages[i].ClientID]++
				}
				mu.Unlock()
			}
		})
	}
	prod.Wait()
	close(stop)
	cons.Wait()
	st := o.Stats()
	if st.Queued != 0 || st.QueuedBytes != 0 || st.Guaranteed != 0 || st.GuaranteedBytes != 0 || st.InFlight != 0 {
		t.Fatalf("stats after the drain = %+v, want nothing held", st)
	}
	var nG, nBE int64
	for id, n := range delivered {
		if n != 1 {
			t.Fatalf("%s delivered %d times", id, n)
		}
		if strings.HasPrefix(id, g.String()) {
			nG++
		} else {
			nBE++
		}
	}
	if wantG := int64(producers * (each + each*2/3)); nG != wantG {
		t.Fatalf("guaranteed delivered = %d, want %d", nG, wantG)
	}
	if nBE+st.Dropped != producers*each/3 {
		t.Fatalf("best effort delivered %d + dropped %d != added %d", nBE, st.Dropped, producers*each/3)
	}
	t.Logf("delivered %d guaranteed, %d best effort; dropped %d; %d commits", nG, nBE, st.Dropped, st.Commits)
}
