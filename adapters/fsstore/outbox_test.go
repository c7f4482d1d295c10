package fsstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/internal/faultfs"
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

// diskBound returns the MaxBytes that holds the guaranteed messages of the
// conformance suite's bound of jsonBytes (0: the default). The suite
// bounds encoded JSON; MaxBytes bounds the directory: the reserve file, a
// segment header and 22 bytes of framing per record more. A quarter more
// than the JSON covers the framing of the suite's messages (about 200
// bytes each) that fit, and not of one more.
func diskBound(jsonBytes int) int64 {
	if jsonBytes == 0 {
		return 0
	}
	return minReserveBytes + segHeaderSize + int64(jsonBytes)*5/4
}

func TestOutboxConformance(t *testing.T) {
	for _, tt := range []struct {
		fs     string
		noSync bool
	}{{"os", true}, {"os", false}, {"fault", false}} {
		t.Run(fmt.Sprintf("%s/nosync=%v", tt.fs, tt.noSync), func(t *testing.T) {
			porttest.Outbox(t, func(t *testing.T, maxBytes int) ports.Outbox {
				fsys, path := testFS(t, tt.fs)
				return openOutbox(t, path, OutboxOptions{MaxBytes: diskBound(maxBytes), MaxMemoryBytes: maxBytes, NoSync: tt.noSync, FS: fsys})
			})
		})
	}
}

func TestOutboxReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "outbox")
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
	// The log: a header, five message records, one acknowledgement of g2.
	disk := int64(len(appendHeaderFrame(nil, 0))) + 5*recordOverhead + gHeld + sizeOf(msg("g2", highest, g)) +
		int64(len(appendAckFrame(nil, []uint64{3})))
	want := OutboxStats{Queued: 6, QueuedBytes: gHeld + sizeOf(msg("b1", low, be), msg("n1", highest, ng)),
		Guaranteed: 4, GuaranteedBytes: gHeld, InFlight: 2, Commits: 3, DiskBytes: disk, ReserveBytes: 128 << 10}
	if st := o.Stats(); st != want {
		t.Fatalf("stats = %+v, want %+v", st, want)
	}
	if o.Path() != path {
		t.Fatalf("Path = %s, want %s", o.Path(), path)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := os.ReadDir(path)
	if err != nil {
		t.Fatal(err)
	}
	var listing []string
	for _, f := range files {
		fi, err := f.Info()
		if err != nil {
			t.Fatal(err)
		}
		listing = append(listing, fmt.Sprintf("%s %04o", f.Name(), fi.Mode().Perm()))
	}
	if got, want := strings.Join(listing, ", "), "LOCK 0600, RESERVE 0600, seg-0000000000000001.wal 0600"; got != want {
		t.Fatalf("outbox directory: %s; want %s", got, want)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("outbox directory: %v, %v; want mode 0700", fi, err)
	}

	o2 := openOutbox(t, path, OutboxOptions{})
	want = OutboxStats{Queued: 4, QueuedBytes: gHeld, Guaranteed: 4, GuaranteedBytes: gHeld, DiskBytes: disk, ReserveBytes: 128 << 10}
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
	if n := o2.lastSeq.Load(); n != 9 {
		t.Fatalf("last sequence number = %d, want 9 (7 before the reopen, then 2)", n)
	}
}

func TestOutboxOrder(t *testing.T) {
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox"), OutboxOptions{NoSync: true})
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
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox"), OutboxOptions{NoSync: true})
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
		// Room for the reserve file, three records, and two segment
		// headers: the one written, and the one that Adds keep room for in
		// case their write starts a new segment.
		rec := int64(msgSize + recordOverhead)
		bound := minReserveBytes + 2*segHeaderSize + 3*rec
		path := filepath.Join(t.TempDir(), "outbox")
		o := openOutbox(t, path, OutboxOptions{MaxBytes: bound, NoSync: true})
		add(t, o, msg("g1", low, g), msg("g2", low, g))
		_, err := o.Add(ctx, msg("g3", low, g), msg("g4", low, g), msg("b1", low, be))
		want := fmt.Sprintf("outbox add: 2 guaranteed message(s) (%d bytes on disk) do not fit: the outbox %s holds 2 in %d of its %d bytes: outbox full",
			2*rec, path, minReserveBytes+segHeaderSize+2*rec, bound)
		if errText(err) != want || !errors.Is(err, ports.ErrOutboxFull) {
			t.Fatalf("Add over the bound = %v, want %s", err, want)
		}
		checkDiskBound(t, o)
		big := msg("big", low, g)
		big.Data.Fields[0].Value = strings.Repeat("x", 3*msgSize)
		_, err = o.Add(ctx, big)
		want = fmt.Sprintf("outbox add: 1 guaranteed message(s) take %d bytes on disk: want at most %d (MaxBytes %d less the 4096-byte reserve file and a 37-byte segment header): outbox full",
			message.EncodedSize(&big)+recordOverhead, segHeaderSize+3*rec, bound)
		if errText(err) != want || !errors.Is(err, ports.ErrOutboxFull) {
			t.Fatalf("Add of a huge message = %v, want %s", err, want)
		}
		add(t, o, msg("g3", low, g)) // exactly full
		checkDiskBound(t, o)
		if st := o.Stats(); st.DiskBytes+st.ReserveBytes != bound-segHeaderSize {
			t.Fatalf("a full outbox takes %d+%d bytes, want its bound %d less a segment header", st.DiskBytes, st.ReserveBytes, bound)
		}
		if _, err := o.Add(ctx, msg("g4", low, g)); !errors.Is(err, ports.ErrOutboxFull) {
			t.Fatalf("Add into a full outbox = %v, want ErrOutboxFull", err)
		}
		if got := drain(t, o); got != "g1 g2 g3" {
			t.Fatalf("contents = %s, want g1 g2 g3 (nothing of the refused Adds)", got)
		}
		add(t, o, msg("g5", low, g), msg("g6", low, g), msg("g7", low, g)) // room again
		checkDiskBound(t, o)
	})
	t.Run("drop oldest of the lowest priority", func(t *testing.T) {
		o := openOutbox(t, filepath.Join(t.TempDir(), "outbox"), OutboxOptions{MaxMemoryBytes: 3 * msgSize, NoSync: true})
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
		o := openOutbox(t, filepath.Join(t.TempDir(), "outbox"), OutboxOptions{MaxMemoryBytes: 3 * msgSize, NoSync: true})
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
		o := openOutbox(t, filepath.Join(t.TempDir(), "outbox"), OutboxOptions{MaxMemoryBytes: 2 * msgSize, NoSync: true})
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
	path := filepath.Join(t.TempDir(), "outbox")
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
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("an old bbolt outbox, say"), 0o600); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(dir, "foreign")
	if err := os.MkdirAll(foreign, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(foreign, "users.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	otherFormat := filepath.Join(dir, "other-format")
	if err := os.MkdirAll(otherFormat, 0o700); err != nil {
		t.Fatal(err)
	}
	header := appendHeaderFrame(nil, 0)
	copy(header[frameHeaderSize+1:], "iotnode-outbox/9")
	finishFrame(header, 0)
	if err := os.WriteFile(filepath.Join(otherFormat, "seg-0000000000000001.wal"), header, 0o600); err != nil {
		t.Fatal(err)
	}
	locked := filepath.Join(dir, "locked")
	openOutbox(t, locked, OutboxOptions{NoSync: true})

	tests := []struct {
		name string
		path string
		opts OutboxOptions
		want string
	}{
		{"negative MaxBytes", filepath.Join(dir, "a"), OutboxOptions{MaxBytes: -1}, "outbox $: MaxBytes -1: want 0 (default) or more"},
		{"negative MaxMemoryBytes", filepath.Join(dir, "a"), OutboxOptions{MaxMemoryBytes: -1}, "outbox $: MaxMemoryBytes -1: want 0 (default) or more"},
		{"a file", file, OutboxOptions{},
			"outbox $: a file, not a directory (an outbox of an older iotnode, in bbolt format?); move it away to start with an empty outbox"},
		{"directory below a file", filepath.Join(file, "o"), OutboxOptions{}, "outbox $: create its directory: not a directory"},
		{"foreign file", foreign, OutboxOptions{},
			`outbox $: holds "users.db", which is not an outbox file; want a directory of the outbox's own files (seg-*.wal, LOCK, RESERVE)`},
		{"other format", otherFormat, OutboxOptions{}, `outbox $: seg-0000000000000001.wal: format "iotnode-outbox/9": want "iotnode-outbox/2"`},
		{"locked by another opener", locked, OutboxOptions{}, "outbox $: another process has it open (waited 1s for its lock): locked by another holder"},
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

// frameOffsets returns the offsets of the valid frames of a segment.
func frameOffsets(data []byte) []int {
	var offs []int
	scanFrames(data, func(off int, _ []byte) { offs = append(offs, off) })
	return offs
}

// messageFrame returns a valid message frame of m with sequence number seq.
func messageFrame(t *testing.T, m message.Message, seq uint64) []byte {
	t.Helper()
	body, err := message.AppendJSON(nil, &m)
	if err != nil {
		t.Fatal(err)
	}
	return appendMessageFrame(nil, m.Priority, seq, body)
}

// replaceFrame returns data with frame i replaced by frame.
func replaceFrame(data []byte, i int, frame []byte) []byte {
	offs := append(frameOffsets(data), len(data))
	out := slices.Clone(data[:offs[i]])
	out = append(out, frame...)
	return append(out, data[offs[i+1]:]...)
}

func TestOutboxCorruptRecords(t *testing.T) {
	// Each case adds g1 g2 g3 (seq 1..3, priority LOW: frames 1..3 after
	// the header, frame 0), then damages the segment before reopening.
	tests := []struct {
		name        string
		damage      func(t *testing.T, data []byte) []byte
		openCorrupt int64  // counted by OpenOutbox
		openTorn    int64  // counted by OpenOutbox
		openHeld    int64  // Stats().Guaranteed after OpenOutbox
		want        string // what Begin hands out after reopening
		corrupt     int64  // counted in the end
	}{
		{name: "flipped body byte", damage: func(t *testing.T, d []byte) []byte {
			d[frameOffsets(d)[3]-3] ^= 1 // in g2's JSON
			return d
		}, openCorrupt: 1, openHeld: 2, want: "g1 g3", corrupt: 1},
		{name: "flipped header checksum", damage: func(t *testing.T, d []byte) []byte {
			d[frameOffsets(d)[1]+9] ^= 0x80
			return d
		}, openCorrupt: 1, openHeld: 2, want: "g2 g3", corrupt: 1},
		{name: "length made huge", damage: func(t *testing.T, d []byte) []byte {
			d[frameOffsets(d)[2]+3] = 0x7f
			return d
		}, openCorrupt: 1, openHeld: 2, want: "g1 g3", corrupt: 1},
		{name: "garbage between records", damage: func(t *testing.T, d []byte) []byte {
			at := frameOffsets(d)[2]
			return slices.Concat(d[:at], []byte(strings.Repeat("garbage!", 9)), d[at:])
		}, openCorrupt: 1, openHeld: 3, want: "g1 g2 g3", corrupt: 1},
		{name: "damaged segment header", damage: func(t *testing.T, d []byte) []byte {
			d[frameHeaderSize+2] ^= 1
			return d
		}, openCorrupt: 1, openHeld: 3, want: "g1 g2 g3", corrupt: 1},
		{name: "damaged last record", damage: func(t *testing.T, d []byte) []byte {
			d[len(d)-2] ^= 1
			return d
		}, openCorrupt: 1, openHeld: 2, want: "g1 g2", corrupt: 1},
		{name: "torn last record", damage: func(t *testing.T, d []byte) []byte {
			return d[:frameOffsets(d)[3]+20]
		}, openTorn: 1, openHeld: 2, want: "g1 g2"},
		{name: "torn in the frame header", damage: func(t *testing.T, d []byte) []byte {
			return d[:frameOffsets(d)[3]+5]
		}, openTorn: 1, openHeld: 2, want: "g1 g2"},
		{name: "zeros after the end", damage: func(t *testing.T, d []byte) []byte {
			return append(d, make([]byte, 100)...)
		}, openTorn: 1, openHeld: 3, want: "g1 g2 g3"},
		{name: "unknown record kind", damage: func(t *testing.T, d []byte) []byte {
			f, start := startFrame(nil)
			f = append(f, "Zzz"...)
			finishFrame(f, start)
			return replaceFrame(d, 2, f)
		}, openCorrupt: 1, openHeld: 2, want: "g1 g3", corrupt: 1},
		{name: "checksum fine, json not", damage: func(t *testing.T, d []byte) []byte {
			f, start := startFrame(nil)
			f = append(f, kindMessage, byte(low), 2, 0, 0, 0, 0, 0, 0, 0)
			f = append(f, `{"clientId":`...)
			finishFrame(f, start)
			return replaceFrame(d, 2, f)
		}, openHeld: 3, want: "g1 g3", corrupt: 1},
		{name: "not a guaranteed message", damage: func(t *testing.T, d []byte) []byte {
			return replaceFrame(d, 2, messageFrame(t, msg("b2", low, be), 2))
		}, openHeld: 3, want: "g1 g3", corrupt: 1},
		{name: "record of another number", damage: func(t *testing.T, d []byte) []byte {
			return replaceFrame(d, 2, messageFrame(t, msg("g9", low, g), 9))
		}, openHeld: 3, want: "g1 g3 g9"},
		{name: "priority out of range", damage: func(t *testing.T, d []byte) []byte {
			f := messageFrame(t, msg("g2", low, g), 2)
			f[frameHeaderSize+1] = 9
			finishFrame(f, 0)
			return replaceFrame(d, 2, f)
		}, openCorrupt: 1, openHeld: 2, want: "g1 g3", corrupt: 1},
	}
	for _, fsName := range []string{"os", "fault"} {
		for _, tt := range tests {
			t.Run(fsName+"/"+tt.name, func(t *testing.T) {
				fsys, path := testFS(t, fsName)
				opts := OutboxOptions{NoSync: fsName == "os", FS: fsys}
				o, err := OpenOutbox(path, opts)
				if err != nil {
					t.Fatal(err)
				}
				add(t, o, msg("g1", low, g), msg("g2", low, g), msg("g3", low, g))
				if err := o.Close(); err != nil {
					t.Fatal(err)
				}
				seg := filepath.Join(path, "seg-0000000000000001.wal")
				data, err := readTestFile(fsys, seg)
				if err != nil {
					t.Fatal(err)
				}
				if err := writeTestFile(fsys, seg, tt.damage(t, data)); err != nil {
					t.Fatal(err)
				}

				o = openOutbox(t, path, opts)
				if st := o.Stats(); st.Corrupt != tt.openCorrupt || st.Torn != tt.openTorn || st.Guaranteed != tt.openHeld {
					t.Fatalf("stats after open = %+v, want Corrupt %d, Torn %d, Guaranteed %d",
						st, tt.openCorrupt, tt.openTorn, tt.openHeld)
				}
				if got := drain(t, o); got != tt.want {
					t.Fatalf("Begin after the damage = %s, want %s", got, tt.want)
				}
				st := o.Stats()
				if st.Corrupt != tt.corrupt || st.Queued != 0 || st.QueuedBytes != 0 || st.Guaranteed != 0 || st.GuaranteedBytes != 0 {
					t.Fatalf("stats at the end = %+v, want Corrupt %d and nothing queued", st, tt.corrupt)
				}
				add(t, o, msg("g4", low, g))
				if err := o.Close(); err != nil {
					t.Fatal(err)
				}
				// The damage was cut off or compacted away: a third open
				// finds nothing wrong, and only the new message.
				o = openOutbox(t, path, opts)
				if st := o.Stats(); st.Corrupt != 0 || st.Torn != 0 || st.Queued != 1 {
					t.Fatalf("stats after the third open = %+v, want nothing damaged and 1 queued", st)
				}
				if got := drain(t, o); got != "g4" {
					t.Fatalf("after the third open = %s, want g4", got)
				}
			})
		}
	}
}

func TestOutboxDiskErrors(t *testing.T) {
	eio := syscall.EIO
	seg1 := "seg-0000000000000001.wal"
	tests := []struct {
		name    string
		fault   func(fsys *faultfs.FS)
		call    func(o *Outbox, b ports.Batch) error
		want    string
		reopen  string // what a reopened outbox holds
		corrupt int64
	}{
		{"add: fsync fails", func(fsys *faultfs.FS) { fsys.FailNext(faultfs.OpSync, 1, eio) },
			func(o *Outbox, _ ports.Batch) error { _, err := o.Add(t.Context(), msg("g2", low, g)); return err },
			"outbox add: write 1 guaranteed messages to $: fsync " + seg1 + ": input/output error", "g0 g1", 0},
		{"add: fsync and the cut fail", func(fsys *faultfs.FS) {
			fsys.FailNext(faultfs.OpSync, 1, eio)
			fsys.FailNext(faultfs.OpTruncate, 1, eio)
		},
			func(o *Outbox, _ ports.Batch) error { _, err := o.Add(t.Context(), msg("g2", low, g)); return err },
			"outbox add: write 1 guaranteed messages to $: fsync " + seg1 + ": input/output error", "g0 g1", 0},
		{"add: write fails", func(fsys *faultfs.FS) { fsys.FailNext(faultfs.OpWrite, 1, eio) },
			func(o *Outbox, _ ports.Batch) error { _, err := o.Add(t.Context(), msg("g2", low, g)); return err },
			"outbox add: write 1 guaranteed messages to $: write " + seg1 + ": input/output error", "g0 g1", 0},
		{"end: write fails", func(fsys *faultfs.FS) { fsys.FailNext(faultfs.OpWrite, 1, eio) },
			func(o *Outbox, b ports.Batch) error { return o.End(b, []int{0}) },
			"outbox end: batch 1: acknowledge 1 delivered messages in $: write " + seg1 + ": input/output error; every message of the batch stays queued",
			"g0 g1", 0},
		{"begin: read fails", func(fsys *faultfs.FS) { fsys.Crash() },
			func(o *Outbox, _ ports.Batch) error { _, err := o.Begin(5, 0); return err },
			"outbox begin: read $: " + seg1 + ": file system crashed", "g0 g1", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := faultfs.New(faultfs.Options{})
			path := "/data/outbox"
			o, err := OpenOutbox(path, OutboxOptions{FS: faultFS{fsys}})
			if err != nil {
				t.Fatal(err)
			}
			add(t, o, msg("g0", low, g), msg("b0", low, be))
			add(t, o, msg("g1", low, g))
			b := begin(t, o, 1, 0) // g0
			before := o.Stats()
			tt.fault(fsys)
			if err := tt.call(o, b); errText(err) != strings.ReplaceAll(tt.want, "$", path) {
				t.Fatalf("error:\n got %v\nwant %s", err, strings.ReplaceAll(tt.want, "$", path))
			}
			after := o.Stats()
			after.Commits, before.Commits = 0, 0
			after.InFlight, before.InFlight = 0, 0   // a failed End puts its batch back
			after.DiskBytes, before.DiskBytes = 0, 0 // a failed cut leaves the failed write on disk
			if after != before {
				t.Fatalf("stats after the failure = %+v, want %+v", after, before)
			}
			if fsys.Crashed() {
				fsys = fsys.Restart()
			} else {
				// The outbox recovers on its own: the next write works (and
				// acknowledges what the failed one may have left on disk).
				add(t, o, msg("g3", low, g))
				_ = o.End(b, nil) // unless the failed End put g0 back already
				if got := drain(t, o); got != "g0 b0 g1 g3" {
					t.Fatalf("after the failure = %s, want g0 b0 g1 g3", got)
				}
				if err := o.Close(); err != nil {
					t.Fatal(err)
				}
				// Nothing of it comes back after a power loss: the failed
				// message never does.
				fsys = fsys.Restart()
				o2 := openOutbox(t, path, OutboxOptions{FS: faultFS{fsys}})
				if got := drain(t, o2); got != "" {
					t.Fatalf("after a crash = %q, want nothing", got)
				}
				return
			}
			o2 := openOutbox(t, path, OutboxOptions{FS: faultFS{fsys}})
			if got := drain(t, o2); got != tt.reopen || o2.Stats().Corrupt != tt.corrupt {
				t.Fatalf("after a crash = %q (stats %+v), want %s", got, o2.Stats(), tt.reopen)
			}
		})
	}
}

func TestOutboxGroupCommit(t *testing.T) {
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox"), OutboxOptions{}) // real fsync
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
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox"), OutboxOptions{MaxMemoryBytes: 4 * msgSize, NoSync: true})
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

// A best-effort message dropped after a failed send may be at the cloud:
// it is counted in DroppedUnconfirmed as well as in Dropped.
func TestOutboxDroppedUnconfirmed(t *testing.T) {
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox"), OutboxOptions{MaxMemoryBytes: 3 * msgSize, NoSync: true})
	add(t, o, msg("b1", low, be), msg("b2", low, be), msg("b3", low, be))
	b, err := o.Begin(1, 0)
	if err != nil || len(b.Messages) != 1 {
		t.Fatalf("Begin = %v, %v", b.Messages, err)
	}
	if err := o.End(b, nil); err != nil { // the send failed: b1 goes back
		t.Fatal(err)
	}
	if n := add(t, o, msg("b4", low, be)); n != 1 {
		t.Fatalf("Add dropped %d, want 1 (b1, the oldest)", n)
	}
	if n := add(t, o, msg("b5", low, be)); n != 1 {
		t.Fatalf("Add dropped %d, want 1 (b2, never sent)", n)
	}
	if st := o.Stats(); st.Dropped != 2 || st.DroppedUnconfirmed != 1 {
		t.Fatalf("Dropped %d, DroppedUnconfirmed %d; want 2 and 1", st.Dropped, st.DroppedUnconfirmed)
	}
}
