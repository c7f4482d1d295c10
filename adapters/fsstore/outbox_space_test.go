package fsstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/internal/faultfs"
	"github.com/iotnode/iotnode/ports"
)

// diskFullErr is the text of an Add refused by a full disk.
var diskFullErr = regexp.MustCompile(`^outbox add: write 1 guaranteed messages to /data/outbox: write seg-[0-9a-f]{16}\.wal: no space left on device$`)

// checkCrashConsistent opens what a power loss now would leave and checks
// that it holds exactly want (in order), and nothing damaged.
func checkCrashConsistent(t *testing.T, fsys *faultfs.FS, want []string) {
	t.Helper()
	snap := fsys.Snapshot()
	snap.SetSpace(-1)
	o := openOutbox(t, "/data/outbox", OutboxOptions{FS: faultFS{snap}})
	if st := o.Stats(); st.Corrupt != 0 || st.Torn != 0 {
		t.Fatalf("after a power loss: %d corrupt, %d torn; want none", st.Corrupt, st.Torn)
	}
	if got := strings.Join(peek(t, o), " "); got != strings.Join(want, " ") {
		t.Fatalf("after a power loss the outbox holds\n%s\nwant\n%s", got, strings.Join(want, " "))
	}
}

func TestOutboxDiskFull(t *testing.T) {
	ctx := t.Context()
	t.Run("the outbox fills the disk, then delivering frees it", func(t *testing.T) {
		fsys := faultfs.New(faultfs.Options{})
		fsys.SetSpace(24 << 10)
		o := openOutbox(t, "/data/outbox", OutboxOptions{FS: faultFS{fsys}, segmentBytes: 2 << 10})
		var acked []string
		var err error
		for i := 0; err == nil; i++ {
			id := fmt.Sprintf("g%03d", i)
			if _, err = o.Add(ctx, msg(id, low, g)); err == nil {
				acked = append(acked, id)
			}
		}
		if !diskFullErr.MatchString(errText(err)) || !errors.Is(err, syscall.ENOSPC) || errors.Is(err, ports.ErrOutboxFull) {
			t.Fatalf("Add on a full disk = %v; want %s, wrapping ENOSPC", err, diskFullErr)
		}
		// More Adds fail the same way and add nothing.
		before := o.Stats()
		for range 3 {
			if _, err := o.Add(ctx, msg("late", low, g), msg("late-be", low, be)); err == nil {
				t.Fatal("Add on a full disk succeeded")
			}
		}
		if after := o.Stats(); after.Queued != before.Queued || after.Guaranteed != before.Guaranteed || after.DiskBytes != before.DiskBytes {
			t.Fatalf("stats after refused Adds = %+v, want %+v", after, before)
		}
		checkDiskBound(t, o)
		// A power loss now loses nothing and finds nothing damaged.
		checkCrashConsistent(t, fsys, acked)

		// The cloud comes back: the dispatcher delivers while the disk is
		// still full; the acknowledgements go to the reserved space and the
		// delivered segments are deleted.
		if got := drain(t, o); got != strings.Join(acked, " ") {
			t.Fatalf("drained %s, want %s", got, strings.Join(acked, " "))
		}
		if st := o.Stats(); st.Queued != 0 || st.DiskBytes > 4<<10 {
			t.Fatalf("stats after the drain = %+v, want nothing queued and at most two segments on disk", st)
		}
		checkDiskBound(t, o)
		// And the outbox works again, without anyone doing anything.
		for i := range 20 {
			add(t, o, msg(fmt.Sprintf("n%02d", i), low, g))
		}
		checkCrashConsistent(t, fsys, strings.Fields("n00 n01 n02 n03 n04 n05 n06 n07 n08 n09 n10 n11 n12 n13 n14 n15 n16 n17 n18 n19"))
		t.Logf("disk of %d bytes: %d messages accepted before it was full, then delivered and 20 more accepted", 24<<10, len(acked))
	})
	t.Run("another process fills the disk, then frees it", func(t *testing.T) {
		fsys := faultfs.New(faultfs.Options{})
		o := openOutbox(t, "/data/outbox", OutboxOptions{FS: faultFS{fsys}})
		add(t, o, msg("g0", low, g), msg("g1", low, g))
		b := begin(t, o, 1, 0)
		fsys.SetSpace(fsys.Used()) // full now
		if _, err := o.Add(ctx, msg("g2", low, g)); !diskFullErr.MatchString(errText(err)) {
			t.Fatalf("Add on a full disk = %v; want %s", err, diskFullErr)
		}
		// Delivering still works (through the reserve).
		if err := o.End(b, []int{0}); err != nil {
			t.Fatalf("End on a full disk = %v", err)
		}
		if st := o.Stats(); st.ReserveBytes != 0 {
			t.Fatalf("after the reserve was given back, Stats().ReserveBytes = %d, want 0", st.ReserveBytes)
		}
		checkDiskBound(t, o)
		checkCrashConsistent(t, fsys, []string{"g1"})
		// The room the reserve gave back is kept for acknowledgements.
		_, err := o.Add(ctx, msg("g2", low, g))
		if want := "outbox add: write 1 guaranteed messages to /data/outbox: the disk is full (131072 bytes are kept free for acknowledgements): " +
			"write RESERVE: no space left on device"; errText(err) != want || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Add after the reserve was used = %v, want %s", err, want)
		}
		fsys.SetSpace(-1) // space returns
		add(t, o, msg("g3", low, g))
		if got := drain(t, o); got != "g1 g3" {
			t.Fatalf("after the disk had room again = %s, want g1 g3", got)
		}
		checkCrashConsistent(t, fsys, nil)
	})
}

func TestOutboxSegments(t *testing.T) {
	ctx := t.Context()
	big := func(id string, p message.Priority) message.Message {
		m := msg(id, p, g)
		m.Data.Fields[0].Value = strings.Repeat("x", 400)
		return m
	}
	t.Run("a drained backlog leaves one segment", func(t *testing.T) {
		fsys := faultfs.New(faultfs.Options{})
		o := openOutbox(t, "/data/outbox", OutboxOptions{FS: faultFS{fsys}, segmentBytes: 4 << 10})
		for i := range 100 {
			add(t, o, big(fmt.Sprintf("m%03d", i), low))
		}
		if n := len(o.w.segs); n < 10 {
			t.Fatalf("%d segments for 50 KB, want at least 10", n)
		}
		drain(t, o)
		if n, st := len(o.w.segs), o.Stats(); n != 1 || st.DiskBytes > 4<<10+600 || o.w.compacted != 0 {
			t.Fatalf("after the drain: %d segments, %d bytes, %d compactions; want 1 segment, no compaction (FIFO frees whole segments)",
				n, st.DiskBytes, o.w.compacted)
		}
		names, err := fsys.ReadDir("/data/outbox")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(names, " "); !regexp.MustCompile(`^RESERVE seg-[0-9a-f]{16}\.wal$`).MatchString(got) {
			t.Fatalf("files after the drain: %s, want RESERVE and one segment", got)
		}
	})
	t.Run("a starved priority is compacted, disk stays bounded", func(t *testing.T) {
		// LOW messages pile up (never sent) while HIGHEST ones flow: each
		// segment keeps a little live data among delivered records. The
		// LOW ones end up taking most of MaxBytes: compaction under the
		// bound's pressure keeps room for the HIGHEST ones.
		fsys := faultfs.New(faultfs.Options{})
		const bound = 128 << 10
		o := openOutbox(t, "/data/outbox", OutboxOptions{FS: faultFS{fsys}, MaxBytes: bound, segmentBytes: 4 << 10})
		var lows []string
		maxDisk := int64(0)
		for i := range 400 {
			id := fmt.Sprintf("l%03d", i)
			lows = append(lows, id)
			if _, err := o.Add(ctx, msg(id, low, g), big(fmt.Sprintf("h%03d", i), highest)); err != nil {
				t.Fatal(err)
			}
			b := begin(t, o, 1, 0) // the HIGHEST one only
			if b.Messages[0].Priority != highest {
				t.Fatalf("took %s, want the HIGHEST message", b.Messages[0].ClientID)
			}
			if err := o.End(b, []int{0}); err != nil {
				t.Fatal(err)
			}
			st := o.Stats()
			maxDisk = max(maxDisk, checkDiskBound(t, o))
			if limit := 2*(st.GuaranteedBytes+st.Guaranteed*recordOverhead) + 3*o.segBytes; st.DiskBytes > limit {
				t.Fatalf("after %d rounds: %d bytes on disk, over 2 × the records held + 3 segments, %d", i+1, st.DiskBytes, limit)
			}
		}
		if o.w.compacted == 0 {
			t.Fatal("no segment was compacted")
		}
		st := o.Stats()
		t.Logf("400 LOW messages held (%d bytes of JSON) while 400 HIGHEST ones of %d bytes each passed: %d compactions, %d segments deleted, at most %d bytes in the directory (MaxBytes %d)",
			st.GuaranteedBytes, message.EncodedSize(new(big("h000", highest))), o.w.compacted, o.w.removed, maxDisk, bound)
		checkCrashConsistent(t, fsys, lows)
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		o2 := openOutbox(t, "/data/outbox", OutboxOptions{FS: faultFS{fsys}, MaxBytes: bound, segmentBytes: 4 << 10})
		checkDiskBound(t, o2)
		if got := drain(t, o2); got != strings.Join(lows, " ") {
			t.Fatalf("after reopening: %s", got)
		}
	})
}

// dirBytes returns the size of the files in the outbox directory.
func dirBytes(t *testing.T, o *Outbox) int64 {
	t.Helper()
	names, err := o.fsys.ReadDir(o.path)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, name := range names {
		data, err := readTestFile(o.fsys, filepath.Join(o.path, name))
		if err != nil {
			t.Fatal(err)
		}
		n += int64(len(data))
	}
	return n
}

// checkDiskBound checks the bound documented on OutboxOptions.MaxBytes:
// Stats().DiskBytes + Stats().ReserveBytes is what the directory holds,
// and at most MaxBytes + one segment. It returns that size.
func checkDiskBound(t *testing.T, o *Outbox) int64 {
	t.Helper()
	st := o.Stats()
	used := st.DiskBytes + st.ReserveBytes
	if dir := dirBytes(t, o); dir != used {
		t.Fatalf("the outbox directory holds %d bytes, Stats says %d+%d", dir, st.DiskBytes, st.ReserveBytes)
	}
	if bound := o.maxG + o.segBytes; used > bound {
		t.Fatalf("the outbox directory holds %d bytes, over MaxBytes %d + one segment %d", used, o.maxG, o.segBytes)
	}
	return used
}

func TestOutboxDiskBound(t *testing.T) {
	ctx := t.Context()
	t.Run("the cloud down: Adds fill the bound twice over", func(t *testing.T) {
		// Concurrent producers of three priorities keep adding while
		// nothing is delivered, until they tried twice what fits.
		fsys := faultfs.New(faultfs.Options{})
		const bound = 256 << 10
		o := openOutbox(t, "/data/outbox", OutboxOptions{FS: faultFS{fsys}, MaxBytes: bound})
		prios := []message.Priority{low, medium, highest}
		var maxRec int64 // the largest record of the workload (ids of 5 characters)
		for _, p := range prios {
			maxRec = max(maxRec, sizeOf(msg("00000", p, g))+recordOverhead)
		}
		fits := int(bound / maxRec) // about
		var mu sync.Mutex
		var accepted []string
		refused, tries := 0, 0
		var wg sync.WaitGroup
		for p := range 8 {
			wg.Go(func() {
				for i := 0; ; i++ {
					mu.Lock()
					if tries >= 2*fits {
						mu.Unlock()
						return
					}
					tries++
					mu.Unlock()
					id := fmt.Sprintf("%d%04d", p, i)
					_, err := o.Add(ctx, msg(id, prios[i%3], g))
					mu.Lock()
					switch {
					case err == nil:
						accepted = append(accepted, id)
					case errors.Is(err, ports.ErrOutboxFull):
						refused++
					default:
						t.Errorf("Add %s: %v", id, err)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		used := checkDiskBound(t, o)
		if used > bound {
			t.Fatalf("with nothing delivered the directory holds %d bytes, over MaxBytes %d", used, bound)
		}
		// Every Add was answered, and the room left is less than a record
		// (and the header of a segment the write might have started).
		if len(accepted)+refused != 2*fits || refused < fits/2 {
			t.Fatalf("%d accepted, %d refused of %d tries; want about half refused", len(accepted), refused, 2*fits)
		}
		if left := bound - used; left >= maxRec+segHeaderSize {
			t.Fatalf("refused with %d bytes left, room for another record of at most %d bytes", left, maxRec)
		}
		st := o.Stats()
		if st.Guaranteed != int64(len(accepted)) {
			t.Fatalf("the outbox holds %d messages, %d were accepted", st.Guaranteed, len(accepted))
		}
		got := strings.Fields(drain(t, o))
		slices.Sort(got)
		slices.Sort(accepted)
		if !slices.Equal(got, accepted) {
			t.Fatalf("drained %d messages, want the %d accepted ones exactly", len(got), len(accepted))
		}
		checkDiskBound(t, o)
		t.Logf("MaxBytes %d: %d of %d Adds accepted, %d refused; the directory held %d bytes (%d free), %d after the drain",
			bound, len(accepted), 2*fits, refused, used, bound-used, o.Stats().DiskBytes+o.Stats().ReserveBytes)
	})
	t.Run("deliveries leave holes: compaction makes room, the bound holds", func(t *testing.T) {
		// LOW messages are never delivered while HIGHEST ones are, in
		// random batches: every segment keeps some live records among
		// delivered ones. Adds keep coming after the bound is reached.
		fsys := faultfs.New(faultfs.Options{})
		const bound = 64 << 10
		o := openOutbox(t, "/data/outbox", OutboxOptions{FS: faultFS{fsys}, MaxBytes: bound, segmentBytes: 4 << 10})
		rng := rand.New(rand.NewPCG(1, 2))
		var lows []string
		var open []ports.Batch
		var maxUsed int64
		refusedAt := []int64{} // bytes held (JSON + framing) when an Add was refused
		for i := range 4000 {
			var m message.Message
			if rng.IntN(8) == 0 {
				m = msg(fmt.Sprintf("l%04d", i), low, g)
			} else {
				m = msg(fmt.Sprintf("h%04d", i), highest, g)
			}
			_, err := o.Add(ctx, m)
			switch {
			case err == nil && m.Priority == low:
				lows = append(lows, m.ClientID)
			case errors.Is(err, ports.ErrOutboxFull):
				st := o.Stats()
				refusedAt = append(refusedAt, st.GuaranteedBytes+st.Guaranteed*recordOverhead)
			case err != nil:
				t.Fatal(err)
			}
			maxUsed = max(maxUsed, checkDiskBound(t, o))
			if rng.IntN(3) == 0 { // the HIGHEST ones held, a few at a time
				b := begin(t, o, 1+rng.IntN(6), 0)
				if len(b.Messages) > 0 && b.Messages[0].Priority == highest {
					open = append(open, b)
				} else if err := o.End(b, nil); err != nil {
					t.Fatal(err)
				}
			}
			for len(open) > 0 && rng.IntN(2) == 0 {
				b := open[0]
				open = open[1:]
				var del []int
				for k, m := range b.Messages {
					if m.Priority == highest {
						del = append(del, k)
					}
				}
				if err := o.End(b, del); err != nil {
					t.Fatal(err)
				}
				maxUsed = max(maxUsed, checkDiskBound(t, o))
			}
		}
		for _, b := range open {
			if err := o.End(b, nil); err != nil {
				t.Fatal(err)
			}
		}
		if len(refusedAt) == 0 || o.w.compacted == 0 {
			t.Fatalf("%d Adds refused, %d compactions; want the workload to reach the bound and compact", len(refusedAt), o.w.compacted)
		}
		// Refused only when the held records take four fifths of the
		// room at least, less the segment appended to and one in flight.
		for _, held := range refusedAt {
			if held < 4*(o.room()-2*o.segBytes)/5 {
				t.Fatalf("an Add was refused with %d bytes of records held; want at least 4/5 of %d less two segments", held, o.room())
			}
		}
		got := strings.Fields(drain(t, o))
		var gotLows []string
		for _, id := range got {
			if strings.HasPrefix(id, "l") {
				gotLows = append(gotLows, id)
			}
		}
		if !slices.Equal(gotLows, lows) {
			t.Fatalf("%d LOW messages came back, want the %d accepted, in order", len(gotLows), len(lows))
		}
		t.Logf("MaxBytes %d, segments of %d: %d LOW messages kept, %d Adds refused (with at least %d bytes of records held), %d compactions; the directory peaked at %d bytes (bound + one segment: %d)",
			bound, o.segBytes, len(lows), len(refusedAt), slices.Min(refusedAt), o.w.compacted, maxUsed, bound+o.segBytes)
	})
	t.Run("a bound smaller than one segment never gets stuck", func(t *testing.T) {
		fsys := faultfs.New(faultfs.Options{})
		bound := minReserveBytes + 2*segHeaderSize + 3*int64(msgSize+recordOverhead) // three records; segments of 64 KiB
		o := openOutbox(t, "/data/outbox", OutboxOptions{FS: faultFS{fsys}, MaxBytes: bound})
		for i := range 500 {
			add(t, o, msg(fmt.Sprintf("a%d", i%10), low, g), msg(fmt.Sprintf("b%d", i%10), low, g), msg(fmt.Sprintf("c%d", i%10), low, g))
			if _, err := o.Add(ctx, msg("xx", low, g)); !errors.Is(err, ports.ErrOutboxFull) {
				t.Fatalf("round %d: a fourth message: %v, want ErrOutboxFull", i, err)
			}
			checkDiskBound(t, o)
			if got := drain(t, o); got != fmt.Sprintf("a%d b%d c%d", i%10, i%10, i%10) {
				t.Fatalf("round %d: drained %s", i, got)
			}
		}
		t.Logf("MaxBytes %d: 500 rounds of filling and delivering: %d segments compacted or deleted", bound, o.w.compacted+o.w.removed)
	})
}
