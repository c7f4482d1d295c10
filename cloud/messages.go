package cloud

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/store"
	"github.com/iotnode/iotnode/domain/message"
)

// DefaultAcceptBytes is the acceptBytes assumed when a device sends none
// (Java's default request buffer).
const DefaultAcceptBytes = 4192

// pruneBudget bounds the retention work done by one messages POST.
const pruneBudget = 512

// source of the REQUEST messages the cloud queues (the requester).
const requestSource = "iotcloud"

// validationError turns a failed Validate into the 400 of the batch: the
// message text lists every problem; Field is the first problem's field path
// (Validate's errors read `field "<path>": <problem>`).
func validationError(i int, err error) *httpError {
	problems := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		problems = j.Unwrap()
	}
	field := ""
	if first := problems[0].Error(); strings.HasPrefix(first, "field ") {
		if q, err := strconv.QuotedPrefix(first[len("field "):]); err == nil {
			field, _ = strconv.Unquote(q)
		}
	}
	e := errorf(http.StatusBadRequest, "message %d: %s", i, strings.ReplaceAll(err.Error(), "\n", "; "))
	e.index, e.field = &i, field
	return e
}

type ingested struct {
	stored, duplicates int
	completed          []string // request ids answered
	ignored            []string // response request ids that matched nothing of the sender
}

// handleMessagesPost is POST messages (§3a): store the device's messages,
// then answer with the requests pending for it and its ICDs.
func (s *Server) handleMessagesPost(w http.ResponseWriter, r *http.Request, d *store.Device) error {
	q := r.URL.Query()
	accept := DefaultAcceptBytes
	if v := q.Get("acceptBytes"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errorf(http.StatusBadRequest, "query parameter acceptBytes is %q, expected a non-negative integer", v)
		}
		accept = n
	}
	var wait time.Duration
	if q.Has("iot.sync") {
		wait = MaxPollTimeout
		if v := q.Get("iot.timeout"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return errorf(http.StatusBadRequest, "query parameter iot.timeout is %q, expected a non-negative number of seconds", v)
			}
			wait = min(time.Duration(n)*time.Second, MaxPollTimeout)
		}
	}
	body, err := readBody(w, r, MaxBodyBytes)
	if err != nil {
		return err
	}
	msgs, err := message.Decode(body)
	if err != nil {
		e := errorf(http.StatusBadRequest, "%v", err)
		var de *message.DecodeError
		if errors.As(err, &de) {
			if de.Index >= 0 {
				e.index = &de.Index
			}
			e.field = de.Field
		}
		return e
	}
	raws := make([][]byte, len(msgs))
	var icds map[string]bool
	for i := range msgs {
		m := &msgs[i]
		if err := m.Validate(); err != nil {
			return validationError(i, err)
		}
		if m.Source != d.EndpointID {
			if icds == nil {
				if icds, err = s.icdsOf(d.EndpointID); err != nil {
					return err
				}
			}
			if !icds[m.Source] {
				s.log.Warn("message rejected: spoofed source", "endpoint_id", d.EndpointID, "source", m.Source, "index", i)
				e := errorf(http.StatusForbidden, "message %d: source %q is neither the sending endpoint %q nor one of its indirectly connected devices", i, m.Source, d.EndpointID)
				e.index, e.field = &i, "source"
				return e
			}
		}
		if raws[i], err = message.AppendJSON(nil, m); err != nil {
			return validationError(i, err)
		}
	}
	if len(msgs) > 0 {
		res, err := s.ingest(d.EndpointID, msgs, raws)
		if err != nil {
			return err
		}
		s.log.Debug("messages received", "endpoint_id", d.EndpointID, "stored", res.stored, "duplicates", res.duplicates)
		for _, id := range res.ignored {
			s.log.Warn("response ignored: no such request for its source", "endpoint_id", d.EndpointID, "request_id", id)
		}
	} else {
		s.touch(d.EndpointID)
	}
	status := http.StatusOK
	if len(msgs) > 0 {
		status = http.StatusAccepted
	}
	out, minAccept, err := s.deliver(r, d.EndpointID, accept, wait)
	if err != nil {
		return err
	}
	if minAccept > 0 {
		w.Header().Set("X-min-acceptBytes", strconv.Itoa(minAccept))
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(status)
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(status)
	w.Write(out)
	return nil
}

// icdsOf returns the endpoint ids of the indirect devices of gateway gw.
func (s *Server) icdsOf(gw string) (map[string]bool, error) {
	out := map[string]bool{}
	err := s.store.View(func(tx store.Tx) error {
		devs, err := tx.Devices()
		for _, d := range devs {
			if d.Gateway == gw && d.Type == api.DeviceTypeIndirect {
				out[d.EndpointID] = true
			}
		}
		return err
	})
	return out, err
}

// ingest stores a validated batch in one transaction (group-committed with
// concurrent batches): replays are skipped, attribute values and request
// responses applied, retention enforced.
func (s *Server) ingest(sender string, msgs []message.Message, raws [][]byte) (ingested, error) {
	var res ingested
	err := s.store.Batch(func(tx store.Tx) error {
		res = ingested{} // Batch may run this more than once
		now := s.now()
		ms := now.UnixMilli()
		until := now.Add(s.cfg.DedupWindow)
		attrs := map[[2]string]map[string]json.RawMessage{} // (source, urn) -> values, merged once per batch
		for i := range msgs {
			m := &msgs[i]
			if tx.Seen(m.Source, m.ClientID, now) {
				res.duplicates++
				continue
			}
			if err := tx.AppendMessage(&store.Message{Received: ms, Source: m.Source, Type: string(m.Type), Raw: raws[i]}); err != nil {
				return err
			}
			if err := tx.Remember(m.Source, m.ClientID, until); err != nil {
				return err
			}
			res.stored++
			switch {
			case m.Type == message.TypeData && strings.HasSuffix(m.Data.Format, attributesSuffix):
				key := [2]string{m.Source, strings.TrimSuffix(m.Data.Format, attributesSuffix)}
				vals := attrs[key]
				if vals == nil {
					vals = make(map[string]json.RawMessage, len(m.Data.Fields))
					attrs[key] = vals
				}
				for _, f := range m.Data.Fields {
					v := f.Value
					if t, ok := v.(time.Time); ok {
						v = t.UnixMilli()
					}
					b, err := json.Marshal(v)
					if err != nil {
						continue // Validate guarantees encodable values
					}
					vals[f.Name] = b
				}
			case m.Type == message.TypeResponse:
				ok, err := s.completeRequest(tx, m, ms)
				if err != nil {
					return err
				}
				if ok {
					res.completed = append(res.completed, m.Response.RequestID)
				} else {
					res.ignored = append(res.ignored, m.Response.RequestID)
				}
			}
		}
		for key, vals := range attrs {
			if err := tx.MergeAttributes(key[0], key[1], vals, ms); err != nil {
				return err
			}
		}
		if res.stored > 0 {
			cutoff := now.Add(-s.cfg.MessageRetention).UnixMilli()
			if _, err := tx.PruneMessages(cutoff, s.cfg.MaxMessages, res.stored+pruneBudget); err != nil {
				return err
			}
			if _, err := tx.PruneDedup(now, res.stored+pruneBudget); err != nil {
				return err
			}
		}
		dev, err := tx.Device(sender)
		if err != nil {
			return err
		}
		dev.LastSeen = ms
		return tx.PutDevice(dev)
	})
	if err == nil {
		s.seenMu.Lock()
		s.seen[sender] = s.now().UnixMilli()
		s.seenMu.Unlock()
	}
	return res, err
}

const attributesSuffix = ":attributes"

// completeRequest records m (a RESPONSE) on the request it answers. It
// reports false when no request of that id was sent to m's source.
func (s *Server) completeRequest(tx store.Tx, m *message.Message, ms int64) (bool, error) {
	req, err := tx.Request(m.Response.RequestID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if req.Destination != m.Source {
		return false, nil
	}
	req.Status = store.RequestFailed
	if m.Response.StatusCode >= 200 && m.Response.StatusCode < 300 {
		req.Status = store.RequestCompleted
	}
	req.Updated = ms
	req.Response = &store.Response{StatusCode: m.Response.StatusCode, Headers: m.Response.Headers, Body: m.Response.Body}
	return true, tx.PutRequest(req)
}

// touchEvery throttles lastSeen writes for polls without messages.
const touchEvery = 10 * time.Second

// touch records that endpoint polled, at most once per touchEvery.
func (s *Server) touch(endpoint string) {
	ms := s.now().UnixMilli()
	s.seenMu.Lock()
	last := s.seen[endpoint]
	if ms-last < touchEvery.Milliseconds() {
		s.seenMu.Unlock()
		return
	}
	s.seen[endpoint] = ms
	s.seenMu.Unlock()
	err := s.store.Batch(func(tx store.Tx) error {
		d, err := tx.Device(endpoint)
		if err != nil {
			return err
		}
		if d.LastSeen < ms {
			d.LastSeen = ms
			return tx.PutDevice(d)
		}
		return nil
	})
	if err != nil {
		s.log.Warn("cannot record last seen", "endpoint_id", endpoint, "err", err)
	}
}

// deliver takes the requests pending for route that fit in accept bytes,
// waiting up to wait for one to arrive when there is none. It returns the
// compact JSON array to answer with, or minAccept > 0 when the first pending
// request alone is larger than accept.
func (s *Server) deliver(r *http.Request, route string, accept int, wait time.Duration) ([]byte, int, error) {
	var timer *time.Timer
	for {
		woken, stop := s.wake.subscribe(route)
		out, minAccept, err := s.take(route, accept)
		if err != nil || len(out) > 2 || minAccept > 0 || wait <= 0 {
			stop()
			return out, minAccept, err
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		}
		select {
		case <-woken:
			stop()
			continue
		case <-timer.C:
		case <-r.Context().Done():
		case <-s.draining:
		}
		stop()
		return out, 0, nil
	}
}

// take moves the pending requests of route that fit into accept bytes to
// DELIVERED and returns them as a compact JSON array.
func (s *Server) take(route string, accept int) ([]byte, int, error) {
	empty := []byte("[]")
	if accept <= 0 {
		return empty, 0, nil
	}
	queued := false
	if err := s.store.View(func(tx store.Tx) error { queued = tx.Queued(route); return nil }); err != nil || !queued {
		return empty, 0, err
	}
	var out []byte
	minAccept := 0
	err := s.store.Update(func(tx store.Tx) error {
		out, minAccept = append(out[:0], '['), 0
		_, err := tx.TakeRequests(route, s.now().UnixMilli(), func(req *store.Request) bool {
			need := len(req.Wire)
			if len(out) > 1 {
				need++ // the comma
			}
			if len(out)+need+1 > accept {
				if len(out) == 1 {
					minAccept = len(req.Wire) + 2
				}
				return false
			}
			if len(out) > 1 {
				out = append(out, ',')
			}
			out = append(out, req.Wire...)
			return true
		})
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	out = append(out, ']')
	return out, minAccept, nil
}

// handleMessagesGet is the enterprise GET
// messages?source=&type=&since=&after=&limit=. With since or after it pages
// oldest first; without them it answers the newest messages. next is the
// cursor of the following page (see api.MessageList).
func (s *Server) handleMessagesGet(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	sq := store.Query{Source: q.Get("source"), Type: q.Get("type"), Limit: 100}
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return errorf(http.StatusBadRequest, "query parameter since is %q, expected epoch milliseconds", v)
		}
		sq.Since = n
	}
	if q.Has("after") {
		v := q.Get("after")
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return errorf(http.StatusBadRequest, "query parameter after is %q, expected the seq of a message or the next of an earlier answer (a non-negative integer)", v)
		}
		sq.After = n
	}
	sq.Newest = sq.Since == 0 && !q.Has("after")
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return errorf(http.StatusBadRequest, "query parameter limit is %q, expected 1..1000", v)
		}
		sq.Limit = n
	}
	if sq.Type != "" {
		switch message.Type(sq.Type) {
		case message.TypeData, message.TypeAlert, message.TypeRequest, message.TypeResponse, message.TypeResourcesReport:
		default:
			return errorf(http.StatusBadRequest, "query parameter type is %q, expected DATA, ALERT, REQUEST, RESPONSE or RESOURCES_REPORT", sq.Type)
		}
	}
	var list api.MessageList
	err := s.store.View(func(tx store.Tx) error {
		last := tx.LastMessageSeq()
		if sq.After > last {
			return errorf(http.StatusBadRequest, "query parameter after is %d, beyond the newest message (seq %d): expected the seq of a message or the next of an earlier answer of this cloud (was its data directory reset?)", sq.After, last)
		}
		msgs, more, err := tx.Messages(sq)
		if err != nil {
			return err
		}
		list.HasMore = more
		list.Items = make([]api.Message, len(msgs))
		for i, m := range msgs {
			list.Items[i] = api.Message{Seq: m.Seq, Received: m.Received, Message: m.Raw}
		}
		// Oldest first with more to come, the page ends the scan; otherwise
		// nothing matching was stored between the page and last.
		list.Next = sq.After
		if len(msgs) > 0 {
			list.Next = msgs[len(msgs)-1].Seq
		}
		if sq.Newest || !more {
			list.Next = last
		}
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}
