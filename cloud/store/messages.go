package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Message is one received message.
type Message struct {
	// Seq is the message's sequence number, set by AppendMessage: 1 for the
	// first message the store ever kept, then increasing by one per message;
	// never reused, not even after the message is pruned. It lives in the
	// key, not in the JSON value.
	Seq uint64 `json:"-"`
	// Received is the receive time in epoch ms. AppendMessage keeps it
	// non-decreasing, so receive order, sequence order and storage order
	// agree.
	Received int64           `json:"received"`
	Source   string          `json:"source"`
	Type     string          `json:"type"`
	Raw      json.RawMessage `json:"message"` // the wire message, compact JSON
}

// messages key: received(8) seq(8); by source: lp(source) received seq; by
// type: lp(type) received seq. Index values are empty. seq is the messages
// bucket's sequence. Because received never decreases while seq grows, the
// keys of every bucket sort in sequence order too.
const tailLen = 16

// ErrCursorAhead: a query's After is beyond the newest sequence number the
// store has assigned (a cursor from another store, or from before the store
// was deleted).
var ErrCursorAhead = errors.New("cursor is beyond the newest message")

// AppendMessage stores m and sets m.Seq. If m.Received is earlier than the
// last stored message's receive time, it is raised to it (a clock that
// stepped back never reorders messages).
func (t *boltTx) AppendMessage(m *Message) error {
	meta, msgs := t.b(bucketMeta), t.b(bucketMsgs)
	if last := meta.Get(metaMsgLast); last != nil {
		if l := int64(binary.BigEndian.Uint64(last)); m.Received < l {
			m.Received = l
		}
	}
	seq, err := msgs.NextSequence()
	if err != nil {
		return fmt.Errorf("append message: %w", err)
	}
	m.Seq = seq
	tail := make([]byte, 0, tailLen)
	tail = binary.BigEndian.AppendUint64(tail, uint64(m.Received))
	tail = binary.BigEndian.AppendUint64(tail, seq)
	if err := msgs.Put(tail, encodeMessage(m)); err != nil {
		return fmt.Errorf("append message: %w", err)
	}
	if err := t.b(bucketMsgsSrc).Put(append(lp(nil, m.Source), tail...), nil); err != nil {
		return fmt.Errorf("append message: %w", err)
	}
	if err := t.b(bucketMsgsType).Put(append(lp(nil, m.Type), tail...), nil); err != nil {
		return fmt.Errorf("append message: %w", err)
	}
	if err := meta.Put(metaMsgLast, u64(uint64(m.Received))); err != nil {
		return err
	}
	return t.addCount(1)
}

func (t *boltTx) addCount(d int64) error {
	n := int64(t.MessageCount()) + d
	if n < 0 {
		n = 0
	}
	return t.b(bucketMeta).Put(metaMsgCount, u64(uint64(n)))
}

// LastMessageSeq is the sequence number of the newest message the store ever
// kept (pruned or not), 0 if none. Messages committed after this transaction
// began get larger numbers.
func (t *boltTx) LastMessageSeq() uint64 { return t.b(bucketMsgs).Sequence() }

// MessageCount is the number of stored messages.
func (t *boltTx) MessageCount() int {
	v := t.b(bucketMeta).Get(metaMsgCount)
	if len(v) != 8 {
		return 0
	}
	return int(binary.BigEndian.Uint64(v))
}

// PruneMessages deletes the oldest messages while there are more than max
// (0 = no cap) or while they were received before cutoff (epoch ms; 0 = no
// age limit), deleting at most budget messages so that one call is bounded.
// It returns how many it deleted.
func (t *boltTx) PruneMessages(cutoff int64, max, budget int) (int, error) {
	msgs := t.b(bucketMsgs)
	count := t.MessageCount()
	var doomed [][]byte
	var rec []*Message
	c := msgs.Cursor()
	for k, v := c.First(); k != nil && len(doomed) < budget; k, v = c.Next() {
		over := max > 0 && count-len(doomed) > max
		old := int64(binary.BigEndian.Uint64(k[:8])) < cutoff
		if !over && !old {
			break
		}
		var m Message
		if err := jsonUnmarshal(v, &m); err != nil {
			return 0, fmt.Errorf("prune messages: %w", err)
		}
		doomed = append(doomed, append([]byte(nil), k...))
		rec = append(rec, &m)
	}
	for i, k := range doomed {
		if err := msgs.Delete(k); err != nil {
			return 0, err
		}
		if err := t.b(bucketMsgsSrc).Delete(append(lp(nil, rec[i].Source), k...)); err != nil {
			return 0, err
		}
		if err := t.b(bucketMsgsType).Delete(append(lp(nil, rec[i].Type), k...)); err != nil {
			return 0, err
		}
	}
	if len(doomed) > 0 {
		if err := t.addCount(-int64(len(doomed))); err != nil {
			return 0, err
		}
	}
	return len(doomed), nil
}

// encodeMessage is json.Marshal(m) without re-validating m.Raw, which the
// caller produced (compact JSON): messages are the hot path.
func encodeMessage(m *Message) []byte {
	src, _ := json.Marshal(m.Source) // strings never fail
	typ, _ := json.Marshal(m.Type)
	raw := m.Raw
	if len(raw) == 0 {
		raw = json.RawMessage("null")
	}
	b := make([]byte, 0, 48+len(src)+len(typ)+len(raw))
	b = append(b, `{"received":`...)
	b = strconv.AppendInt(b, m.Received, 10)
	b = append(b, `,"source":`...)
	b = append(b, src...)
	b = append(b, `,"type":`...)
	b = append(b, typ...)
	b = append(b, `,"message":`...)
	b = append(b, raw...)
	return append(b, '}')
}

// Query selects stored messages: those of Source and Type, received at or
// after Since and numbered above After.
type Query struct {
	Source string // "" = any
	Type   string // "" = any
	Since  int64  // epoch ms, inclusive; 0 = no lower bound
	// After is a cursor: only messages with a larger sequence number (0 = no
	// lower bound). It must not exceed LastMessageSeq.
	After uint64
	// Newest selects the newest matching messages instead of the oldest.
	Newest bool
	Limit  int // > 0
}

// Messages returns up to q.Limit matching messages in storage (= receive =
// sequence) order, and whether more match: after them, or before them with
// q.Newest. The page boundary is exact even when many messages share one
// receive millisecond, so paging with After = the last Seq returned sees
// every message once. Errors: ErrCursorAhead (wrapped) when q.After is
// beyond LastMessageSeq, or a corrupt store.
func (t *boltTx) Messages(q Query) ([]Message, bool, error) {
	if q.Limit <= 0 {
		return nil, false, fmt.Errorf("query messages: limit %d, expected > 0", q.Limit)
	}
	if last := t.LastMessageSeq(); q.After > last {
		return nil, false, fmt.Errorf("query messages after %d: %w (seq %d)", q.After, ErrCursorAhead, last)
	}
	var bucket *bolt.Bucket
	var prefix []byte
	switch {
	case q.Source != "":
		bucket, prefix = t.b(bucketMsgsSrc), lp(nil, q.Source)
	case q.Type != "":
		bucket, prefix = t.b(bucketMsgsType), lp(nil, q.Type)
	default:
		bucket = t.b(bucketMsgs)
	}
	msgs := t.b(bucketMsgs)
	// start is the smallest key that may match: the later of the Since and
	// After bounds.
	start := append([]byte(nil), prefix...)
	if q.Since > 0 {
		start = binary.BigEndian.AppendUint64(start, uint64(q.Since))
	}
	if q.After > 0 {
		tail, ok := t.afterTail(q.After)
		if !ok {
			return nil, false, nil // nothing stored after the cursor
		}
		if k := append(append([]byte(nil), prefix...), tail...); bytes.Compare(k, start) > 0 {
			start = k
		}
	}
	var out []Message
	more := false
	take := func(k []byte) (bool, error) {
		tail := k[len(prefix):]
		if len(tail) != tailLen {
			return false, fmt.Errorf("query messages: corrupt index key %x", k)
		}
		var m Message
		found, err := getJSON(msgs, tail, &m)
		if err != nil || !found {
			return false, fmt.Errorf("query messages: index key %x has no message (err %v)", k, err)
		}
		if q.Type != "" && m.Type != q.Type {
			return true, nil
		}
		if len(out) == q.Limit {
			more = true
			return false, nil
		}
		m.Seq = binary.BigEndian.Uint64(tail[8:])
		out = append(out, m)
		return true, nil
	}
	c := bucket.Cursor()
	if !q.Newest {
		for k, _ := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			ok, err := take(k)
			if err != nil {
				return nil, false, err
			}
			if !ok {
				break
			}
		}
		return out, more, nil
	}
	// Newest first from the end of the prefix range down to start, then
	// reversed.
	var k []byte
	if prefix == nil {
		k, _ = c.Last()
	} else {
		end := append(append([]byte(nil), prefix...), bytes.Repeat([]byte{0xFF}, tailLen+1)...)
		if k, _ = c.Seek(end); k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
	}
	for ; k != nil && bytes.HasPrefix(k, prefix) && bytes.Compare(k, start) >= 0; k, _ = c.Prev() {
		ok, err := take(k)
		if err != nil {
			return nil, false, err
		}
		if !ok {
			break
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, more, nil
}

// afterTail returns the key tail T such that, in the messages bucket and in
// every index range, the keys at or above T are exactly those of the
// messages numbered above after; ok is false when no stored message is.
//
// Keys are received(8) seq(8), so T is received(F) after+1, where F is the
// first stored message numbered above after. The messages bucket is keyed by
// time, not by sequence number, so received(F) is found by a binary search
// on the receive time: the last message received at or before t is numbered
// above after exactly when received(F) <= t. That costs one B+tree seek per
// halving of the stored time span (about 40 for a year of milliseconds) and
// needs no index by sequence number, which would cost every append a write.
func (t *boltTx) afterTail(after uint64) (tail []byte, ok bool) {
	c := t.b(bucketMsgs).Cursor()
	first, _ := c.First()
	last, _ := c.Last()
	if first == nil || binary.BigEndian.Uint64(last[8:]) <= after {
		return nil, false
	}
	// lastSeqBy is the number of the last message received at or before ms
	// (0 if none).
	lastSeqBy := func(ms uint64) uint64 {
		var k []byte
		if ms < math.MaxUint64 {
			k, _ = c.Seek(u64(ms + 1))
		}
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		if k == nil {
			return 0
		}
		return binary.BigEndian.Uint64(k[8:])
	}
	lo, hi := binary.BigEndian.Uint64(first[:8]), binary.BigEndian.Uint64(last[:8])
	for lo < hi { // invariant: lo <= received(F) <= hi
		mid := lo + (hi-lo)/2
		if lastSeqBy(mid) > after {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return binary.BigEndian.AppendUint64(u64(lo), after+1), true
}

// dedup key: lp(source) lp(clientID) -> expiry(8); by expiry: expiry(8) key.

func dedupKey(source, clientID string) []byte {
	return lp(lp(nil, source), clientID)
}

// Seen reports whether (source, clientID) was remembered with an expiry after now.
func (t *boltTx) Seen(source, clientID string, now time.Time) bool {
	v := t.b(bucketDedup).Get(dedupKey(source, clientID))
	return len(v) == 8 && int64(binary.BigEndian.Uint64(v)) > now.UnixMilli()
}

// Remember records (source, clientID) until the time until.
func (t *boltTx) Remember(source, clientID string, until time.Time) error {
	k := dedupKey(source, clientID)
	d, byExp := t.b(bucketDedup), t.b(bucketDedupExp)
	if old := d.Get(k); len(old) == 8 {
		if err := byExp.Delete(append(append([]byte(nil), old...), k...)); err != nil {
			return err
		}
	}
	exp := u64(uint64(until.UnixMilli()))
	if err := d.Put(k, exp); err != nil {
		return fmt.Errorf("remember client id: %w", err)
	}
	return byExp.Put(append(exp, k...), nil)
}

// PruneDedup forgets at most budget keys that expired at or before now and
// returns how many it forgot.
func (t *boltTx) PruneDedup(now time.Time, budget int) (int, error) {
	d, byExp := t.b(bucketDedup), t.b(bucketDedupExp)
	var doomed [][]byte
	c := byExp.Cursor()
	for k, _ := c.First(); k != nil && len(doomed) < budget; k, _ = c.Next() {
		if int64(binary.BigEndian.Uint64(k[:8])) > now.UnixMilli() {
			break
		}
		doomed = append(doomed, append([]byte(nil), k...))
	}
	for _, k := range doomed {
		if err := byExp.Delete(k); err != nil {
			return 0, err
		}
		if err := d.Delete(k[8:]); err != nil {
			return 0, err
		}
	}
	return len(doomed), nil
}
