package fsstore

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
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
		// segment keeps a little live data among delivered records.
		fsys := faultfs.New(faultfs.Options{})
		o := openOutbox(t, "/data/outbox", OutboxOptions{FS: faultFS{fsys}, segmentBytes: 4 << 10})
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
			maxDisk = max(maxDisk, st.DiskBytes)
			if bound := 2*(st.GuaranteedBytes+st.Guaranteed*recordOverhead) + 3*o.segBytes; st.DiskBytes > bound {
				t.Fatalf("after %d rounds: %d bytes on disk, over the bound of %d", i+1, st.DiskBytes, bound)
			}
		}
		if o.w.compacted == 0 {
			t.Fatal("no segment was compacted")
		}
		st := o.Stats()
		t.Logf("400 LOW messages held (%d bytes of JSON) while 400 HIGHEST ones of %d bytes each passed: %d compactions, %d segments deleted, at most %d bytes on disk",
			st.GuaranteedBytes, message.EncodedSize(new(big("h000", highest))), o.w.compacted, o.w.removed, maxDisk)
		checkCrashConsistent(t, fsys, lows)
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		o2 := openOutbox(t, "/data/outbox", OutboxOptions{FS: faultFS{fsys}, segmentBytes: 4 << 10})
		if got := drain(t, o2); got != strings.Join(lows, " ") {
			t.Fatalf("after reopening: %s", got)
		}
	})
}
