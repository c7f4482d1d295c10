package pgstore

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/iotnode/iotnode/cloud/store"
	"github.com/jackc/pgx/v5"
)

// metaRow is the meta table's row: the counters of the store.
type metaRow struct {
	messageSeq, messageCount, lastReceived, requestSeq int64
}

// loadMeta reads the meta row once per transaction. Writers hold the writer
// lock, so the row cannot change under them; readers read their snapshot.
func (t *Tx) loadMeta() (*metaRow, error) {
	if t.meta != nil {
		return t.meta, nil
	}
	var m metaRow
	err := t.queryRow(`SELECT message_seq, message_count, message_last_received, request_seq FROM {s}.meta WHERE id = 1`).
		Scan(&m.messageSeq, &m.messageCount, &m.lastReceived, &m.requestSeq)
	if err != nil {
		return nil, fmt.Errorf("read store counters: %w", err)
	}
	t.meta = &m
	return t.meta, nil
}

// flush writes the meta row back if the transaction changed it.
func (t *Tx) flush() error {
	if err := t.send(); err != nil {
		return err
	}
	if !t.metaDirty {
		return nil
	}
	m := t.meta
	_, err := t.exec(`UPDATE {s}.meta SET message_seq = $1, message_count = $2, message_last_received = $3, request_seq = $4 WHERE id = 1`,
		m.messageSeq, m.messageCount, m.lastReceived, m.requestSeq)
	if err != nil {
		return fmt.Errorf("write store counters: %w", err)
	}
	t.metaDirty = false
	return nil
}

// AppendMessage stores m and sets m.Seq. If m.Received is earlier than the
// last stored message's receive time, it is raised to it.
//
// Sequence numbers are assigned in commit order because every writer holds
// the writer lock (a transaction-level advisory lock, released only by
// COMMIT or ROLLBACK, after the commit is visible) from before it reads the
// counter until it commits: the transaction that draws N commits or rolls
// back before any other can draw a number, so a snapshot that sees message
// N sees every committed message below N, and a reader paging with
// Query.After never skips a message committed later with a smaller number.
// A PostgreSQL SEQUENCE would not do: A draws 10, B draws 11 and commits
// first, a reader pages to After=11, and then A commits 10 behind it.
func (t *Tx) AppendMessage(m *store.Message) error {
	meta, err := t.loadMeta()
	if err != nil {
		return fmt.Errorf("append message: %w", err)
	}
	if m.Received < meta.lastReceived {
		m.Received = meta.lastReceived
	}
	raw := []byte(m.Raw)
	if len(raw) == 0 {
		raw = []byte("null")
	}
	seq := meta.messageSeq + 1
	// Queued: it goes with the next statement or at commit, whose error
	// fails the transaction.
	t.queue(`INSERT INTO {s}.messages (seq, received, source, type, raw) VALUES ($1, $2, $3, $4, $5)`,
		seq, m.Received, []byte(m.Source), []byte(m.Type), raw)
	meta.messageSeq, meta.lastReceived = seq, m.Received
	meta.messageCount++
	t.metaDirty = true
	m.Seq = uint64(seq)
	return nil
}

// LastMessageSeq is the sequence number of the newest message the store ever
// kept (pruned or not), 0 if none.
func (t *Tx) LastMessageSeq() uint64 {
	m, err := t.loadMeta()
	if err != nil {
		t.fail(err)
		return 0
	}
	return uint64(m.messageSeq)
}

// MessageCount is the number of stored messages.
func (t *Tx) MessageCount() int {
	m, err := t.loadMeta()
	if err != nil {
		t.fail(err)
		return 0
	}
	return int(m.messageCount)
}

// PruneMessages deletes the oldest messages while there are more than max
// (0 = no cap) or while they were received before cutoff (epoch ms; 0 = no
// age limit), deleting at most budget messages. It returns how many it
// deleted.
func (t *Tx) PruneMessages(cutoff int64, max, budget int) (int, error) {
	if budget <= 0 {
		return 0, nil
	}
	meta, err := t.loadMeta()
	if err != nil {
		return 0, fmt.Errorf("prune messages: %w", err)
	}
	// Both conditions hold for a prefix of the messages in seq order
	// (received never decreases with seq), so the doomed are the oldest n.
	n := int64(0)
	if max > 0 && meta.messageCount > int64(max) {
		n = meta.messageCount - int64(max)
	}
	if n < int64(budget) && cutoff != 0 {
		var old int64
		err := t.queryRow(`SELECT count(*) FROM (SELECT 1 FROM {s}.messages WHERE received < $1 ORDER BY received, seq LIMIT $2) AS o`,
			cutoff, budget).Scan(&old)
		if err != nil {
			return 0, fmt.Errorf("prune messages: %w", err)
		}
		n = max64(n, old)
	}
	n = min(n, int64(budget))
	if n == 0 {
		return 0, nil
	}
	tag, err := t.exec(`DELETE FROM {s}.messages WHERE seq IN (SELECT seq FROM {s}.messages ORDER BY seq LIMIT $1)`, n)
	if err != nil {
		return 0, fmt.Errorf("prune messages: %w", err)
	}
	deleted := tag.RowsAffected()
	meta.messageCount = max64(0, meta.messageCount-deleted)
	t.metaDirty = true
	return int(deleted), nil
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// Messages returns up to q.Limit matching messages in sequence order, and
// whether more match (see store.Tx).
func (t *Tx) Messages(q store.Query) ([]store.Message, bool, error) {
	if q.Limit <= 0 {
		return nil, false, fmt.Errorf("query messages: limit %d, expected > 0", q.Limit)
	}
	meta, err := t.loadMeta()
	if err != nil {
		return nil, false, fmt.Errorf("query messages: %w", err)
	}
	if last := uint64(meta.messageSeq); q.After > last {
		return nil, false, fmt.Errorf("query messages after %d: %w (seq %d)", q.After, store.ErrCursorAhead, last)
	}
	// lo bounds received from below: Since, raised to the receive time of
	// the first message after the cursor (received never decreases with
	// seq), so that the index range starts at the cursor, not at Since.
	lo := int64(math.MinInt64)
	if q.Since > 0 {
		lo = q.Since
	}
	if q.After > 0 {
		var r int64
		err := t.queryRow(`SELECT received FROM {s}.messages WHERE seq > $1 ORDER BY seq LIMIT 1`, int64(q.After)).Scan(&r)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, false, nil // nothing stored after the cursor
		}
		if err != nil {
			return nil, false, fmt.Errorf("query messages: %w", err)
		}
		lo = max64(lo, r)
	}
	sql := `SELECT seq, received, source, type, raw FROM {s}.messages WHERE received >= $1 AND seq > $2`
	args := []any{lo, int64(q.After)}
	if q.Source != "" {
		args = append(args, []byte(q.Source))
		sql += fmt.Sprintf(" AND source = $%d", len(args))
	}
	if q.Type != "" {
		args = append(args, []byte(q.Type))
		sql += fmt.Sprintf(" AND type = $%d", len(args))
	}
	if q.Newest {
		sql += " ORDER BY received DESC, seq DESC"
	} else {
		sql += " ORDER BY received, seq"
	}
	args = append(args, q.Limit+1)
	sql += fmt.Sprintf(" LIMIT $%d", len(args))
	rows, err := t.query(sql, args...)
	if err != nil {
		return nil, false, fmt.Errorf("query messages: %w", err)
	}
	var out []store.Message
	more := false
	for rows.Next() {
		if len(out) == q.Limit {
			more = true
			break
		}
		var seq int64
		var m store.Message
		var src, typ, raw []byte
		if err := rows.Scan(&seq, &m.Received, &src, &typ, &raw); err != nil {
			rows.Close()
			return nil, false, fmt.Errorf("query messages: %w", err)
		}
		m.Seq, m.Source, m.Type, m.Raw = uint64(seq), string(src), string(typ), raw
		out = append(out, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("query messages: %w", err)
	}
	if q.Newest {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out, more, nil
}

// Seen reports whether (source, clientID) was remembered with an expiry after now.
func (t *Tx) Seen(source, clientID string, now time.Time) bool {
	if exp, ok := t.remembered[source+"\x00"+clientID]; ok && exp > now.UnixMilli() {
		return true
	}
	// Without sending the queue: its only dedup writes are in remembered,
	// and a queued one that is not can only extend an expiry.
	var seen bool
	err := t.tx.QueryRow(t.ctx, t.sql(`SELECT EXISTS (SELECT 1 FROM {s}.dedup WHERE source = $1 AND client_id = $2 AND expires > $3)`),
		[]byte(source), []byte(clientID), now.UnixMilli()).Scan(&seen)
	if err != nil {
		t.fail(fmt.Errorf("check client id: %w", err))
		return false
	}
	return seen
}

// Remember records (source, clientID) until the time until.
func (t *Tx) Remember(source, clientID string, until time.Time) error {
	t.queue(`INSERT INTO {s}.dedup (source, client_id, expires) VALUES ($1, $2, $3)
		ON CONFLICT (source, client_id) DO UPDATE SET expires = EXCLUDED.expires`,
		[]byte(source), []byte(clientID), until.UnixMilli())
	if t.remembered == nil {
		t.remembered = map[string]int64{}
	}
	t.remembered[source+"\x00"+clientID] = until.UnixMilli()
	return nil
}

// PruneDedup forgets at most budget keys that expired at or before now and
// returns how many it forgot.
func (t *Tx) PruneDedup(now time.Time, budget int) (int, error) {
	if budget <= 0 {
		return 0, nil
	}
	tag, err := t.exec(`DELETE FROM {s}.dedup WHERE (source, client_id) IN
		(SELECT source, client_id FROM {s}.dedup WHERE expires <= $1 ORDER BY expires LIMIT $2)`,
		now.UnixMilli(), budget)
	if err != nil {
		return 0, fmt.Errorf("prune client ids: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
