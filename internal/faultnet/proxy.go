package faultnet

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Direction is one way through the proxy.
type Direction int

const (
	// Upstream is from the client to the upstream server.
	Upstream Direction = iota
	// Downstream is from the upstream server to the client.
	Downstream
)

func (d Direction) String() string {
	switch d {
	case Upstream:
		return "upstream"
	case Downstream:
		return "downstream"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

const (
	dialTimeout = 5 * time.Second
	chunkSize   = 32 << 10
	// queueChunks bounds what a reader queues ahead of its writer (a
	// delayed or paced direction): 64 chunks of up to 32 KiB.
	queueChunks = 64
)

// Stats are a proxy's counters since Listen.
type Stats struct {
	Accepted int64 // connections accepted
	Active   int64 // connections open now
	Resets   int64 // connections reset by ResetAll
	// UpstreamFailures counts connections reset because the upstream could
	// not be dialed.
	UpstreamFailures int64
	BytesUpstream    int64 // bytes forwarded from clients to the upstream
	BytesDownstream  int64 // bytes forwarded from the upstream to clients
	Dropped          int64 // bytes read and swallowed by a black hole
}

// Proxy is a running fault-injecting proxy. Knobs may be changed at any
// time; they apply to the bytes read after the change (latency) or
// written after it (bandwidth, black hole).
type Proxy struct {
	upstream string
	addr     string

	latency   [2]atomic.Int64 // per Direction, nanoseconds
	bandwidth atomic.Int64    // bytes/s per connection and direction; 0: unlimited

	accepted, resets, upFailures, bytesUp, bytesDown, dropped atomic.Int64

	mu      sync.Mutex
	ln      net.Listener // nil while refusing
	links   map[*link]struct{}
	hole    bool      // a black hole is on
	holeEnd time.Time // when it ends by itself; zero: when cleared
	closed  bool
	wg      sync.WaitGroup // every goroutine
}

// Listen starts a proxy on 127.0.0.1 (a free port: see Addr) to upstream,
// which must be a loopback address (127.0.0.0/8, ::1 or localhost) and a
// port. The upstream is dialed for each connection, so it need not be up
// yet. The caller must Close the proxy.
func Listen(upstream string) (*Proxy, error) {
	host, _, err := net.SplitHostPort(upstream)
	if err != nil {
		return nil, fmt.Errorf("faultnet: upstream %q: %w", upstream, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("faultnet: upstream %q: want a loopback address (127.0.0.1, ::1 or localhost)", upstream)
	}
	p := &Proxy{upstream: upstream, links: map[*link]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultnet: listen on 127.0.0.1: %w", err)
	}
	p.addr = ln.Addr().String()
	p.ln = ln
	p.wg.Go(func() { p.accept(ln) })
	return p, nil
}

// Addr returns the address clients connect to, host:port; it stays the
// same for the proxy's life, across Refuse.
func (p *Proxy) Addr() string { return p.addr }

// Upstream returns the address the proxy forwards to.
func (p *Proxy) Upstream() string { return p.upstream }

// SetLatency delays every chunk of bytes going in dir by d (0 removes the
// delay). Chunks keep their order; a delayed direction still streams (the
// proxy reads ahead, up to 2 MiB per connection and direction).
func (p *Proxy) SetLatency(dir Direction, d time.Duration) {
	p.latency[dir].Store(int64(max(d, 0)))
}

// SetBandwidth caps each connection's throughput in each direction to
// bytesPerSecond; 0 (or less) removes the cap.
func (p *Proxy) SetBandwidth(bytesPerSecond int64) {
	p.bandwidth.Store(max(bytesPerSecond, 0))
}

// ResetAll resets every open connection now: both the client and the
// upstream side get a TCP RST (ECONNRESET on their next read or write).
// It returns how many connections it reset. New connections are accepted
// as before.
func (p *Proxy) ResetAll() int {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.end(true)
	}
	p.resets.Add(int64(len(links)))
	return len(links)
}

// BlackHole makes the network swallow everything: open connections stay
// open but what either side sends is read and dropped, and new connections
// are accepted, read and never forwarded (they stay in the hole even after
// it ends, like a half-open connection, until a side closes them). A
// duration d > 0 ends the hole by itself after d; d <= 0 keeps it until
// ClearBlackHole. Bytes dropped mid-stream are lost: a stream that resumes
// after the hole has a gap, which TLS or a framing protocol detects.
func (p *Proxy) BlackHole(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hole = true
	p.holeEnd = time.Time{}
	if d > 0 {
		p.holeEnd = time.Now().Add(d)
	}
}

// ClearBlackHole ends a black hole.
func (p *Proxy) ClearBlackHole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hole = false
}

// inHole reports whether a black hole is on now.
func (p *Proxy) inHole() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hole && (p.holeEnd.IsZero() || time.Now().Before(p.holeEnd))
}

// Refuse stops (on) or resumes (off) accepting connections. While it
// refuses, the proxy's port is closed, so connecting fails at once with
// ECONNREFUSED; open connections are left alone. Resuming listens on the
// same address again, which fails only if another program took the port
// meanwhile.
func (p *Proxy) Refuse(on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return errors.New("faultnet: proxy closed")
	case on && p.ln != nil:
		err := p.ln.Close()
		p.ln = nil
		if err != nil {
			return fmt.Errorf("faultnet: stop listening on %s: %w", p.addr, err)
		}
	case !on && p.ln == nil:
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			return fmt.Errorf("faultnet: listen on %s again: %w", p.addr, err)
		}
		p.ln = ln
		p.wg.Go(func() { p.accept(ln) })
	}
	return nil
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := len(p.links)
	p.mu.Unlock()
	return Stats{
		Accepted:         p.accepted.Load(),
		Active:           int64(active),
		Resets:           p.resets.Load(),
		UpstreamFailures: p.upFailures.Load(),
		BytesUpstream:    p.bytesUp.Load(),
		BytesDownstream:  p.bytesDown.Load(),
		Dropped:          p.dropped.Load(),
	}
}

// Close stops listening, closes every connection and returns once every
// goroutine of the proxy ended. It may be called more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	var err error
	if p.ln != nil {
		err = p.ln.Close()
		p.ln = nil
	}
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.end(false)
	}
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("faultnet: close %s: %w", p.addr, err)
	}
	return nil
}

// accept serves ln until it is closed (by Refuse or Close).
func (p *Proxy) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed; a transient error on loopback is not expected
		}
		p.accepted.Add(1)
		l := &link{p: p, client: c, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close() // too late
			return
		}
		p.links[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(l.run)
	}
}

// link is one client connection and its upstream connection.
type link struct {
	p      *Proxy
	client net.Conn
	done   chan struct{} // closed when the link ends

	mu       sync.Mutex
	server   net.Conn // nil until dialed
	ended    bool
	halfDone int // directions that ended cleanly (EOF forwarded)
}

// run dials the upstream (unless a black hole swallows the connection)
// and starts the four pumps.
func (l *link) run() {
	p := l.p
	if p.inHole() {
		l.swallow()
		return
	}
	server, err := net.DialTimeout("tcp", p.upstream, dialTimeout)
	if err != nil {
		p.upFailures.Add(1)
		l.end(true)
		return
	}
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		_ = server.Close() // the link was reset or closed meanwhile
		return
	}
	l.server = server
	l.mu.Unlock()
	for _, d := range []struct {
		dir      Direction
		src, dst net.Conn
		count    *atomic.Int64
	}{{Upstream, l.client, server, &p.bytesUp}, {Downstream, server, l.client, &p.bytesDown}} {
		q := make(chan chunk, queueChunks)
		p.wg.Go(func() { l.read(d.dir, d.src, q) })
		p.wg.Go(func() { l.write(d.dir, d.dst, q, d.count) })
	}
}

// swallow reads and drops what the client sends until it closes or the
// link ends.
func (l *link) swallow() {
	buf := make([]byte, chunkSize)
	for {
		n, err := l.client.Read(buf)
		l.p.dropped.Add(int64(n))
		if err != nil {
			l.end(false)
			return
		}
	}
}

// chunk is bytes read from one side, due at the other side at due.
type chunk struct {
	data []byte
	due  time.Time
}

// read reads src into q until EOF (then closes q) or an error (then ends
// the link).
func (l *link) read(dir Direction, src net.Conn, q chan<- chunk) {
	defer close(q)
	for {
		buf := make([]byte, chunkSize)
		n, err := src.Read(buf)
		if n > 0 {
			if l.p.inHole() {
				l.p.dropped.Add(int64(n))
			} else {
				c := chunk{data: buf[:n], due: time.Now().Add(time.Duration(l.p.latency[dir].Load()))}
				select {
				case q <- c:
				case <-l.done:
					return
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			l.end(false)
			return
		}
	}
}

// write writes what q brings to dst at its due time and paced to the
// bandwidth cap; when q is closed (EOF from the other side) it half-closes
// dst, and the link ends once both directions did.
func (l *link) write(dir Direction, dst net.Conn, q <-chan chunk, count *atomic.Int64) {
	next := time.Now() // when the pacing allows the next byte
	for c := range q {
		if !l.sleepUntil(c.due) {
			return
		}
		for data := c.data; len(data) > 0; {
			if l.p.inHole() {
				l.p.dropped.Add(int64(len(data)))
				break
			}
			part := data
			if rate := l.p.bandwidth.Load(); rate > 0 {
				// ~50 ms slices, each sent when the cap has let it through.
				part = data[:min(len(data), int(max(rate/20, 1)))]
				next = later(next, time.Now()).Add(time.Duration(int64(len(part)) * int64(time.Second) / rate))
				if !l.sleepUntil(next) {
					return
				}
			}
			if _, err := dst.Write(part); err != nil {
				l.end(false)
				return
			}
			count.Add(int64(len(part)))
			data = data[len(part):]
		}
	}
	select {
	case <-l.done:
		return
	default:
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite() // forward the EOF; a failure shows on the other direction
	}
	l.mu.Lock()
	l.halfDone++
	both := l.halfDone == 2
	l.mu.Unlock()
	if both {
		l.end(false)
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sleepUntil waits until t, or returns false when the link ends first.
func (l *link) sleepUntil(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-l.done:
		return false
	}
}

// end ends the link once: it closes both connections (with a TCP RST when
// reset), which stops the pumps, and forgets the link.
func (l *link) end(reset bool) {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return
	}
	l.ended = true
	server := l.server
	l.mu.Unlock()
	close(l.done)
	for _, c := range []net.Conn{l.client, server} {
		if c == nil {
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok && reset {
			_ = tc.SetLinger(0) // close sends RST
		}
		_ = c.Close() // the link is over either way
	}
	l.p.mu.Lock()
	delete(l.p.links, l)
	l.p.mu.Unlock()
}
