package fsstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/internal/faultfs"
)

func TestAckFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		seqs []uint64
		size int // payload bytes
	}{
		{"one", []uint64{1}, 3},
		{"a run", []uint64{7, 8, 9, 10}, 6},
		{"far apart", []uint64{5, 1000, 1 << 40}, 1 + 1 + 1 + 2 + 6},
		{"largest", []uint64{maxSeq}, 1 + 1 + 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := appendAckFrame(nil, tt.seqs)
			p, n, ok := frameAt(f, 0)
			if !ok || n != len(f) || len(p) != tt.size {
				t.Fatalf("frame of %d bytes: valid %v, %d bytes, payload %d; want payload %d", len(f), ok, n, len(p), tt.size)
			}
			got, err := parseAck(p)
			if err != nil || !slices.Equal(got, tt.seqs) {
				t.Fatalf("parseAck = %v, %v; want %v", got, err, tt.seqs)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	ack := func(b ...byte) []byte { return append([]byte{kindAck}, b...) }
	msgPayload := func(prio byte, seq uint64) []byte {
		return binary.LittleEndian.AppendUint64([]byte{kindMessage, prio}, seq)
	}
	header := func(format string, seq uint64) []byte {
		return binary.LittleEndian.AppendUint64(append([]byte{kindHeader}, format...), seq)
	}
	tests := []struct {
		name  string
		parse func() error
		want  string
	}{
		{"header of another format", func() error { _, _, err := parseHeader(header("iotnode-outbox/9", 1)); return err },
			`format "iotnode-outbox/9": want "iotnode-outbox/2"`},
		{"header too short", func() error { _, _, err := parseHeader(header("", 1)); return err }, "header frame of 9 bytes, too short"},
		{"header number out of range", func() error { _, _, err := parseHeader(header(walFormat, maxSeq+1)); return err },
			"sequence number 4611686018427387905 out of range"},
		{"message too short", func() error { _, _, _, err := parseMessage([]byte{kindMessage, 1}); return err },
			"message frame of 2 bytes, shorter than its 10-byte prefix"},
		{"message priority", func() error { _, _, _, err := parseMessage(msgPayload(9, 1)); return err }, "priority 9: want 0..4"},
		{"message number 0", func() error { _, _, _, err := parseMessage(msgPayload(1, 0)); return err }, "sequence number 0 out of range"},
		{"ack without count", func() error { _, err := parseAck(ack()); return err }, "acknowledgement frame does not decode"},
		{"ack count too big", func() error { _, err := parseAck(ack(5, 1)); return err }, "acknowledgement frame does not decode"},
		{"ack zero gap", func() error { _, err := parseAck(ack(2, 1, 0)); return err }, "acknowledgement frame does not decode"},
		{"ack trailing bytes", func() error { _, err := parseAck(ack(1, 1, 1)); return err }, "acknowledgement frame does not decode"},
		{"ack beyond the largest number", func() error {
			_, err := parseAck(binary.AppendUvarint(ack(2, 1), maxSeq))
			return err
		}, "acknowledgement frame does not decode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errText(tt.parse()); got != tt.want {
				t.Fatalf("error = %s, want %s", got, tt.want)
			}
		})
	}
}

// testSegment returns a header and three message frames, and the frames'
// offsets.
func testSegment(t testing.TB) ([]byte, []int) {
	data := appendHeaderFrame(nil, 0)
	offs := []int{0}
	for i := range 3 {
		m := msg(fmt.Sprint("g", i), message.PriorityLow, message.GuaranteedDelivery)
		body, err := message.AppendJSON(nil, &m)
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, len(data))
		data = appendMessageFrame(data, m.Priority, uint64(i+1), body)
	}
	return data, offs
}

func TestScanFrames(t *testing.T) {
	seg, offs := testSegment(t)
	flip := func(at int) []byte { d := slices.Clone(seg); d[at] ^= 1; return d }
	tests := []struct {
		name    string
		data    []byte
		frames  []int
		end     int
		corrupt int
		torn    bool
	}{
		{"whole", seg, offs, len(seg), 0, false},
		{"empty", nil, nil, 0, 0, false},
		{"torn header", seg[:offs[3]+7], offs[:3], offs[3], 0, true},
		{"torn payload", seg[:len(seg)-1], offs[:3], offs[3], 0, true},
		{"zeros after", append(slices.Clone(seg), make([]byte, 40)...), offs, len(seg), 0, true},
		{"damaged payload in the middle", flip(offs[2] + 30), []int{0, offs[1], offs[3]}, len(seg), 1, false},
		{"damaged length in the middle", flip(offs[1] + 1), []int{0, offs[2], offs[3]}, len(seg), 1, false},
		{"damaged last payload", flip(len(seg) - 1), offs[:3], offs[3], 1, false},
		{"garbage in the middle", slices.Concat(seg[:offs[2]], []byte(strings.Repeat("x", 100)), seg[offs[2]:]),
			[]int{0, offs[1], offs[2] + 100, offs[3] + 100}, len(seg) + 100, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []int
			r := scanFrames(tt.data, func(off int, _ []byte) { got = append(got, off) })
			if !slices.Equal(got, tt.frames) || r.end != tt.end || r.corrupt != tt.corrupt || r.torn != tt.torn {
				t.Fatalf("frames %v, %+v; want frames %v, end %d, corrupt %d, torn %v",
					got, r, tt.frames, tt.end, tt.corrupt, tt.torn)
			}
		})
	}
}

// FuzzScanFrames: whatever the bytes, scanning does not panic, visits only
// valid frames in order, and the data up to its end scans the same again,
// with nothing left over.
func FuzzScanFrames(f *testing.F) {
	seg, offs := testSegment(f)
	f.Add(seg)
	f.Add(seg[:offs[2]+5])
	f.Add(slices.Concat(seg[:offs[1]], []byte("garbage"), seg[offs[1]:]))
	f.Add(appendAckFrame(nil, []uint64{1, 2, 300}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var offs []int
		r := scanFrames(data, func(off int, p []byte) {
			if len(offs) > 0 && off <= offs[len(offs)-1] {
				t.Fatalf("frame at %d after one at %d", off, offs[len(offs)-1])
			}
			if q, _, ok := frameAt(data, off); !ok || !bytes.Equal(p, q) {
				t.Fatalf("visited an invalid frame at %d", off)
			}
			offs = append(offs, off)
		})
		if r.end > len(data) || r.end < 0 {
			t.Fatalf("end %d of %d bytes", r.end, len(data))
		}
		var again []int
		r2 := scanFrames(data[:r.end], func(off int, _ []byte) { again = append(again, off) })
		if !slices.Equal(offs, again) || r2.end != r.end || r2.torn {
			t.Fatalf("rescanning up to the end: %v, %+v; first %v, %+v", again, r2, offs, r)
		}
	})
}

// FuzzOutboxReplay: whatever a segment holds, OpenOutbox opens it (unless
// it names another format), the outbox drains, and the damage is met only
// once: a second open finds nothing damaged and nothing queued.
func FuzzOutboxReplay(f *testing.F) {
	seg, offs := testSegment(f)
	f.Add(seg)
	f.Add(seg[:offs[3]+3])
	f.Add(slices.Concat(seg, appendAckFrame(nil, []uint64{2})))
	f.Add(slices.Concat(seg[:offs[1]], []byte("garbage"), seg[offs[1]:]))
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := faultfs.New(faultfs.Options{})
		const path = "/data/outbox"
		if err := fsys.MkdirAll(path, 0o700); err != nil {
			t.Fatal(err)
		}
		file, err := fsys.OpenFile(path+"/seg-0000000000000001.wal", os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := file.Write(data); err != nil {
			t.Fatal(err)
		}
		opts := OutboxOptions{FS: faultFS{fsys}}
		o, err := OpenOutbox(path, opts)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "outbox /data/outbox: seg-0000000000000001.wal: format ") {
				t.Fatalf("OpenOutbox: %v", err)
			}
			return
		}
		for {
			b, err := o.Begin(50, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Messages) == 0 {
				break
			}
			if err := o.End(b, allIndexes(b)); err != nil {
				t.Fatal(err)
			}
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		o, err = OpenOutbox(path, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		if st := o.Stats(); st.Corrupt != 0 || st.Torn != 0 || st.Queued != 0 {
			t.Fatalf("second open: %+v; want nothing damaged, nothing queued", st)
		}
	})
}
