package device

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/virtual"
)

// inbox is the request buffer: requests received and not yet answered,
// bounded in encoded bytes. The receiver offers the cloud only the free
// space (acceptBytes), which keeps the bound; requests that a transport
// pushes unasked are taken even beyond it. Safe for concurrent use.
type inbox struct {
	size  int
	bell  chan struct{} // wakes the request dispatcher: new requests or new handlers
	space chan struct{} // wakes the receiver: space was freed

	mu   sync.Mutex
	used int
	reqs []request
}

// request is one buffered request with the bytes it holds.
type request struct {
	msg  message.Message
	size int
}

func newInbox(size int) *inbox {
	return &inbox{size: size, bell: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

func (b *inbox) free() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return max(b.size-b.used, 0)
}

func (b *inbox) push(m message.Message) {
	r := request{msg: m, size: max(message.EncodedSize(&m), 0)}
	b.mu.Lock()
	b.used += r.size
	b.reqs = append(b.reqs, r)
	b.mu.Unlock()
	b.ring()
}

func (b *inbox) take() []request {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.reqs
	b.reqs = nil
	return out
}

// release frees the bytes of an answered (or dropped) request.
func (b *inbox) release(r request) {
	b.mu.Lock()
	b.used -= r.size
	b.mu.Unlock()
	select {
	case b.space <- struct{}{}:
	default:
	}
}

func (b *inbox) ring() {
	select {
	case b.bell <- struct{}{}:
	default:
	}
}

// dispatchRequests is the request dispatcher's loop. It routes each request
// by (destination, url): a capability resource of the device's own endpoint
// is answered here; a resource of a virtual device goes to that device's
// callback goroutine; anything else waits until the settle time after the
// start has passed (its virtual device may not be created yet) and is then
// answered 404. It returns when ctx ends, dropping what was not dispatched.
func (p *dispatcher) dispatchRequests(ctx context.Context) {
	defer close(p.reqDone)
	settleAt := p.started.Add(p.set.settleTime)
	var pending []request
	for {
		var settle <-chan time.Time
		if len(pending) > 0 {
			settle = p.dev.clock.After(settleAt.Sub(p.dev.clock.Now()))
		}
		select {
		case <-ctx.Done():
			p.drop(append(pending, p.inbox.take()...))
			return
		case <-p.inbox.bell:
		case <-settle:
		}
		settled := !p.dev.clock.Now().Before(settleAt)
		work := append(pending, p.inbox.take()...)
		pending = nil
		for i, r := range work {
			if ctx.Err() != nil {
				pending = append(pending, work[i:]...)
				break
			}
			if !p.route(ctx, r, settled) {
				pending = append(pending, r)
			}
		}
	}
}

// drop releases requests that will not be answered.
func (p *dispatcher) drop(reqs []request) {
	for _, r := range reqs {
		p.inbox.release(r)
	}
	if len(reqs) > 0 {
		p.dev.stats.dropped.Add(uint64(len(reqs)))
		p.reqLog.Warn("requests dropped at close; the cloud times them out", "requests", len(reqs))
	}
}

// route dispatches one request and reports whether it was; false means it
// waits for a handler.
func (p *dispatcher) route(ctx context.Context, r request, settled bool) bool {
	m := &r.msg
	dest := m.Destination
	if dest == "" {
		dest = p.endpoint
	}
	url := strings.Trim(m.Request.URL, "/")
	if dest == p.endpoint {
		if c := capabilityAt(url); c != nil {
			status, body := p.serveCapability(ctx, c, m)
			p.reqLog.Debug("capability request answered", "request_id", m.ID, "url", url, "status", status)
			p.respond(p.response(m, status, body))
			p.inbox.release(r)
			return true
		}
	}
	if v := p.lookup(dest, urnOf(url)); v != nil {
		v.postRequest(ctx, r)
		return true
	}
	if !settled {
		return false
	}
	p.reqLog.Info("request for an unknown resource answered 404", "request_id", m.ID, "destination", dest, "url", url)
	p.respond(p.response(m, virtual.StatusNotFound,
		[]byte(fmt.Sprintf("no resource %q on endpoint %q", m.Request.URL, dest))))
	p.inbox.release(r)
	return true
}
