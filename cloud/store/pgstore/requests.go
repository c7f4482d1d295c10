package pgstore

import (
	"encoding/json"
	"fmt"

	"github.com/iotnode/iotnode/cloud/store"
)

// EnqueueRequest stores r with status PENDING at the end of r.RouteTo's
// queue. Queue positions come from the meta row, so they increase in commit
// order and a rolled-back transaction leaves no gap.
func (t *Tx) EnqueueRequest(r *store.Request) error {
	if r.ID == "" || r.RouteTo == "" {
		return fmt.Errorf("enqueue request: id %q and route %q must not be empty", r.ID, r.RouteTo)
	}
	_, found, err := t.get("requests", "id", r.ID)
	if err != nil {
		return fmt.Errorf("enqueue request %s: %w", r.ID, err)
	}
	if found {
		return fmt.Errorf("enqueue request %s: %w", r.ID, store.ErrExists)
	}
	meta, err := t.loadMeta()
	if err != nil {
		return fmt.Errorf("enqueue request %s: %w", r.ID, err)
	}
	seq := meta.requestSeq + 1
	if _, err := t.exec(`INSERT INTO {s}.request_queue (route_to, seq, id) VALUES ($1, $2, $3)`,
		[]byte(r.RouteTo), seq, []byte(r.ID)); err != nil {
		return fmt.Errorf("enqueue request %s: %w", r.ID, err)
	}
	meta.requestSeq = seq
	t.metaDirty = true
	r.Seq, r.Status = uint64(seq), store.RequestPending
	return t.PutRequest(r)
}

// Request returns the request with that id, or an error wrapping store.ErrNotFound.
func (t *Tx) Request(id string) (*store.Request, error) {
	v, found, err := t.get("requests", "id", id)
	if err != nil {
		return nil, fmt.Errorf("request %q: %w", id, err)
	}
	if !found {
		return nil, fmt.Errorf("request %q: %w", id, store.ErrNotFound)
	}
	var r store.Request
	if err := decode(v, id, &r); err != nil {
		return nil, fmt.Errorf("request %q: %w", id, err)
	}
	return &r, nil
}

// PutRequest replaces the stored request r. A request whose status is no
// longer PENDING leaves its queue.
func (t *Tx) PutRequest(r *store.Request) error {
	if r.Status != store.RequestPending {
		if _, err := t.exec(`DELETE FROM {s}.request_queue WHERE route_to = $1 AND seq = $2`, []byte(r.RouteTo), int64(r.Seq)); err != nil {
			return fmt.Errorf("put request %s: %w", r.ID, err)
		}
	}
	data, err := json.Marshal(r)
	if err == nil {
		err = t.put("requests", "id", r.ID, data)
	}
	if err != nil {
		return fmt.Errorf("put request %s: %w", r.ID, err)
	}
	return nil
}

// Queued reports whether any request waits in routeTo's queue.
func (t *Tx) Queued(routeTo string) bool {
	var queued bool
	err := t.queryRow(`SELECT EXISTS (SELECT 1 FROM {s}.request_queue WHERE route_to = $1)`, []byte(routeTo)).Scan(&queued)
	if err != nil {
		t.fail(fmt.Errorf("queued requests for %s: %w", routeTo, err))
		return false
	}
	return queued
}

// TakeRequests walks routeTo's queue in order (see store.Tx).
func (t *Tx) TakeRequests(routeTo string, now int64, fit func(*store.Request) bool) ([]*store.Request, error) {
	var ids []string
	rows, err := t.query(`SELECT id FROM {s}.request_queue WHERE route_to = $1 ORDER BY seq`, []byte(routeTo))
	if err != nil {
		return nil, fmt.Errorf("take requests for %s: %w", routeTo, err)
	}
	for rows.Next() {
		var id []byte
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("take requests for %s: %w", routeTo, err)
		}
		ids = append(ids, string(id))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("take requests for %s: %w", routeTo, err)
	}
	var taken []*store.Request
	for _, id := range ids {
		r, err := t.Request(id)
		if err != nil {
			return nil, fmt.Errorf("take requests for %s: %w", routeTo, err)
		}
		if r.Expires > 0 && r.Expires <= now {
			r.Status, r.Updated = store.RequestExpired, now
		} else if fit(r) {
			r.Status, r.Updated = store.RequestDelivered, now
			taken = append(taken, r)
		} else {
			break
		}
		if err := t.PutRequest(r); err != nil {
			return nil, fmt.Errorf("take requests for %s: %w", routeTo, err)
		}
	}
	return taken, nil
}
