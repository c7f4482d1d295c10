package fsstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/iotnode/iotnode/domain/message"
)

// The outbox log (format "iotnode-outbox/2") is a sequence of segment
// files, seg-<16 hex digits>.wal, numbered in the order they were created.
// Each holds frames, appended and never changed:
//
//	offset 0   4 bytes  n, the payload's length (little-endian)
//	offset 4   4 bytes  CRC-32C (Castagnoli) of the payload
//	offset 8   4 bytes  CRC-32C of bytes 0..7, so that a frame's start can
//	                    be recognised after damage without trusting n
//	offset 12  n bytes  payload; its first byte is the kind:
//
//	'H' header, the first frame of every segment: the format name, then
//	    the last sequence number handed out when the segment was made
//	    (8 bytes little-endian), so that numbers never go back even when
//	    every message was delivered and older segments were deleted;
//	'M' a GUARANTEED_DELIVERY message: its priority (1 byte), its sequence
//	    number (8 bytes little-endian), then its compact JSON
//	    (message.AppendJSON);
//	'A' acknowledgement: the sequence numbers of messages that left the
//	    outbox (delivered, or found corrupt, or whose write failed):
//	    a uvarint count, the smallest number as a uvarint, then the
//	    ascending gaps between the next ones as uvarints.
//
// A message is in the outbox when the log holds an 'M' frame for its
// number and no 'A' frame that lists it; copies of one 'M' frame (made by
// compaction) are the same message. An 'A' frame always follows, in log
// order, the 'M' frames it lists.
const (
	walFormat       = "iotnode-outbox/2"
	frameHeaderSize = 12
	kindHeader      = 'H'
	kindMessage     = 'M'
	kindAck         = 'A'
	msgPrefixSize   = 1 + 1 + 8 // kind, priority, sequence number
	// recordOverhead is what a message's frame adds to its JSON.
	recordOverhead = frameHeaderSize + msgPrefixSize
	// segHeaderSize is the size of a segment's header frame.
	segHeaderSize = frameHeaderSize + 1 + int64(len(walFormat)) + 8
	// maxPayload bounds a frame's payload (and so a message's JSON).
	maxPayload = 1 << 30
	// maxSeq bounds sequence numbers: a larger one in a frame is damage
	// (at a million messages a second it takes 146,000 years to reach).
	maxSeq = 1 << 62
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// startFrame appends room for a frame header to b; finishFrame fills it in
// once the payload follows it.
func startFrame(b []byte) ([]byte, int) {
	return append(b, make([]byte, frameHeaderSize)...), len(b)
}

// finishFrame fills in the header of the frame starting at b[start:],
// whose payload is the rest of b.
func finishFrame(b []byte, start int) {
	h := b[start : start+frameHeaderSize]
	p := b[start+frameHeaderSize:]
	binary.LittleEndian.PutUint32(h[0:], uint32(len(p)))
	binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(p, castagnoli))
	binary.LittleEndian.PutUint32(h[8:], crc32.Checksum(h[:8], castagnoli))
}

// appendHeaderFrame appends a segment's header frame.
func appendHeaderFrame(b []byte, lastSeq uint64) []byte {
	b, start := startFrame(b)
	b = append(b, kindHeader)
	b = append(b, walFormat...)
	b = binary.LittleEndian.AppendUint64(b, lastSeq)
	finishFrame(b, start)
	return b
}

// appendMessageFrame appends the frame of a message with its JSON.
func appendMessageFrame(b []byte, p message.Priority, seq uint64, json []byte) []byte {
	b, start := startFrame(b)
	b = append(b, kindMessage, byte(p))
	b = binary.LittleEndian.AppendUint64(b, seq)
	b = append(b, json...)
	finishFrame(b, start)
	return b
}

// appendAckFrame appends an acknowledgement of seqs, which must be sorted
// and distinct.
func appendAckFrame(b []byte, seqs []uint64) []byte {
	b, start := startFrame(b)
	b = append(b, kindAck)
	b = binary.AppendUvarint(b, uint64(len(seqs)))
	prev := uint64(0)
	for i, s := range seqs {
		if i == 0 {
			b = binary.AppendUvarint(b, s)
		} else {
			b = binary.AppendUvarint(b, s-prev)
		}
		prev = s
	}
	finishFrame(b, start)
	return b
}

// headerAt returns the payload length of the frame whose header starts at
// b[off:], if the header is whole and its checksum right.
func headerAt(b []byte, off int) (n int, ok bool) {
	if len(b)-off < frameHeaderSize {
		return 0, false
	}
	h := b[off : off+frameHeaderSize]
	if crc32.Checksum(h[:8], castagnoli) != binary.LittleEndian.Uint32(h[8:]) {
		return 0, false
	}
	n = int(binary.LittleEndian.Uint32(h[0:]))
	return n, n >= 1 && n <= maxPayload
}

// frameAt returns the payload of the valid frame starting at b[off:] and
// the frame's whole length.
func frameAt(b []byte, off int) (payload []byte, size int, ok bool) {
	n, ok := headerAt(b, off)
	if !ok || len(b)-off-frameHeaderSize < n {
		return nil, 0, false
	}
	p := b[off+frameHeaderSize : off+frameHeaderSize+n]
	if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(b[off+4:]) {
		return nil, 0, false
	}
	return p, frameHeaderSize + n, true
}

// scanResult is what scanFrames found besides the frames.
type scanResult struct {
	end     int  // where the valid frames end: the rest is a damaged tail
	corrupt int  // damaged stretches before end, each followed by a valid frame
	torn    bool // the tail is a write cut short (rather than a damaged frame)
}

// scanFrames calls visit for each valid frame of data, in order, with its
// offset and payload. A stretch that is not a valid frame is skipped up to
// the next offset where one starts (its header checksum makes a false
// start unlikely: 1 in 2^32 per offset, and the payload checksum must hold
// too). When no valid frame follows, the stretch is the tail: torn when it
// is what a write cut short leaves (a frame that reaches past the end, or
// zeros), damaged when it is one whole frame whose payload checksum fails.
func scanFrames(data []byte, visit func(off int, payload []byte)) scanResult {
	var r scanResult
	off := 0
	for off < len(data) {
		if p, size, ok := frameAt(data, off); ok {
			visit(off, p)
			off += size
			continue
		}
		next := -1
		for at := off + 1; at+frameHeaderSize <= len(data); at++ {
			if _, _, ok := frameAt(data, at); ok {
				next = at
				break
			}
		}
		if next < 0 {
			r.end = off
			n, ok := headerAt(data, off)
			r.torn = !ok || off+frameHeaderSize+n != len(data)
			if !r.torn {
				r.corrupt++
			}
			return r
		}
		r.corrupt++
		off = next
	}
	r.end = off
	return r
}

// parseHeader returns the format named by a header payload and, when it
// is this one's, the last sequence number it records.
func parseHeader(p []byte) (format string, seq uint64, err error) {
	n := len(p) - 1 - 8
	if n < 1 {
		return "", 0, fmt.Errorf("header frame of %d bytes, too short", len(p))
	}
	format = string(p[1 : 1+n])
	if format != walFormat {
		return format, 0, fmt.Errorf("format %q: want %q", format, walFormat)
	}
	seq = binary.LittleEndian.Uint64(p[1+n:])
	if seq > maxSeq {
		return format, 0, fmt.Errorf("sequence number %d out of range", seq)
	}
	return format, seq, nil
}

// parseMessage returns the parts of a message payload.
func parseMessage(p []byte) (prio message.Priority, seq uint64, json []byte, err error) {
	if len(p) < msgPrefixSize {
		return 0, 0, nil, fmt.Errorf("message frame of %d bytes, shorter than its %d-byte prefix", len(p), msgPrefixSize)
	}
	prio = message.Priority(p[1])
	if !prio.Valid() {
		return 0, 0, nil, fmt.Errorf("priority %d: want %d..%d", p[1], message.PriorityLowest, message.PriorityHighest)
	}
	seq = binary.LittleEndian.Uint64(p[2:])
	if seq == 0 || seq > maxSeq {
		return 0, 0, nil, fmt.Errorf("sequence number %d out of range", seq)
	}
	return prio, seq, p[msgPrefixSize:], nil
}

var errAckFrame = errors.New("acknowledgement frame does not decode")

// parseAck returns the sequence numbers of an acknowledgement payload.
func parseAck(p []byte) ([]uint64, error) {
	p = p[1:]
	count, k := binary.Uvarint(p)
	if k <= 0 || count > uint64(len(p)) { // each number takes a byte at least
		return nil, errAckFrame
	}
	p = p[k:]
	seqs := make([]uint64, 0, count)
	var s uint64
	for i := range count {
		v, k := binary.Uvarint(p)
		if k <= 0 || (i > 0 && v == 0) {
			return nil, errAckFrame
		}
		p = p[k:]
		if s += v; s > maxSeq {
			return nil, errAckFrame
		}
		seqs = append(seqs, s)
	}
	if len(p) != 0 {
		return nil, errAckFrame
	}
	return seqs, nil
}

// sortedUnique sorts seqs and drops repeats, in place.
func sortedUnique(seqs []uint64) []uint64 {
	slices.Sort(seqs)
	return slices.Compact(seqs)
}
