package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// Request statuses (the same strings as the enterprise API).
const (
	RequestPending   = "PENDING"
	RequestDelivered = "DELIVERED"
	RequestCompleted = "COMPLETED"
	RequestFailed    = "FAILED"
	RequestExpired   = "EXPIRED"
)

// Request is a request message sent to a device, with its delivery status.
type Request struct {
	ID          string `json:"id"`
	Destination string `json:"destination"` // endpoint the request is for (an ICD's id for ICD requests)
	RouteTo     string `json:"routeTo"`     // endpoint that fetches it (the ICD's gateway for ICD requests)
	Method      string `json:"method"`
	URL         string `json:"url"`
	Status      string `json:"status"`
	Created     int64  `json:"created"`
	Updated     int64  `json:"updated"`
	Expires     int64  `json:"expires"` // epoch ms; unanswered by then = EXPIRED
	// Wire is the REQUEST message exactly as it is delivered (compact JSON).
	Wire     json.RawMessage `json:"wire"`
	Response *Response       `json:"response,omitempty"`
	Seq      uint64          `json:"seq"` // position in RouteTo's queue
}

// Response is a device's answer to a request.
type Response struct {
	StatusCode int                 `json:"statusCode"`
	Headers    map[string][]string `json:"headers,omitempty"`
	Body       []byte              `json:"body,omitempty"`
}

// queue key: lp(routeTo) seq(8) -> request id.

// EnqueueRequest stores r with status PENDING at the end of r.RouteTo's queue.
func (t *boltTx) EnqueueRequest(r *Request) error {
	if r.ID == "" || r.RouteTo == "" {
		return fmt.Errorf("enqueue request: id %q and route %q must not be empty", r.ID, r.RouteTo)
	}
	if t.b(bucketRequests).Get([]byte(r.ID)) != nil {
		return fmt.Errorf("enqueue request %s: %w", r.ID, ErrExists)
	}
	q := t.b(bucketQueue)
	seq, err := q.NextSequence()
	if err != nil {
		return fmt.Errorf("enqueue request %s: %w", r.ID, err)
	}
	r.Seq, r.Status = seq, RequestPending
	if err := q.Put(queueKey(r.RouteTo, seq), []byte(r.ID)); err != nil {
		return fmt.Errorf("enqueue request %s: %w", r.ID, err)
	}
	return t.PutRequest(r)
}

func queueKey(routeTo string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(lp(nil, routeTo), seq)
}

// Request returns the request with that id, or an error wrapping ErrNotFound.
func (t *boltTx) Request(id string) (*Request, error) {
	var r Request
	found, err := getJSON(t.b(bucketRequests), []byte(id), &r)
	if err != nil {
		return nil, fmt.Errorf("request %q: %w", id, err)
	}
	if !found {
		return nil, fmt.Errorf("request %q: %w", id, ErrNotFound)
	}
	return &r, nil
}

// PutRequest replaces the stored request r. A request whose status is no
// longer PENDING leaves its queue.
func (t *boltTx) PutRequest(r *Request) error {
	if r.Status != RequestPending {
		if err := t.b(bucketQueue).Delete(queueKey(r.RouteTo, r.Seq)); err != nil {
			return err
		}
	}
	if err := putJSON(t.b(bucketRequests), []byte(r.ID), r); err != nil {
		return fmt.Errorf("put request %s: %w", r.ID, err)
	}
	return nil
}

// Queued reports whether any request waits in routeTo's queue.
func (t *boltTx) Queued(routeTo string) bool {
	prefix := lp(nil, routeTo)
	k, _ := t.b(bucketQueue).Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix)
}

// TakeRequests walks routeTo's queue in order. A request that expired
// (Expires <= now) is marked EXPIRED and skipped. For the others it calls fit:
// true marks the request DELIVERED and takes it out of the queue, false stops
// the walk (the request stays first in line). It returns the taken requests.
func (t *boltTx) TakeRequests(routeTo string, now int64, fit func(*Request) bool) ([]*Request, error) {
	prefix := lp(nil, routeTo)
	var ids [][]byte
	c := t.b(bucketQueue).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		ids = append(ids, append([]byte(nil), v...))
	}
	var taken []*Request
	for _, id := range ids {
		r, err := t.Request(string(id))
		if err != nil {
			return nil, fmt.Errorf("take requests for %s: %w", routeTo, err)
		}
		if r.Expires > 0 && r.Expires <= now {
			r.Status, r.Updated = RequestExpired, now
		} else if fit(r) {
			r.Status, r.Updated = RequestDelivered, now
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
