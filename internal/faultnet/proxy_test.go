package faultnet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer starts a loopback server that echoes each connection until
// the client half-closes it, and returns its address. Cleanup stops it and
// waits for its goroutines.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				_, _ = io.Copy(c, c) // until EOF or an error
				_ = c.Close()
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// start returns a proxy to a new echo server, closed by Cleanup.
func start(t *testing.T) *Proxy {
	t.Helper()
	p, err := Listen(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func dial(t *testing.T, p *Proxy) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

// echo sends msg and reads it back within timeout.
func echo(c net.Conn, msg string, timeout time.Duration) error {
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// eventually polls cond for up to a second.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a second", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestForward(t *testing.T) {
	p := start(t)
	c := dial(t, p)
	if err := echo(c, "hello", time.Second); err != nil {
		t.Fatal(err)
	}
	// A half-close travels through: the echo server sees EOF, closes, and
	// the client reads EOF.
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("Read after the half-close = %d, %v; want EOF", n, err)
	}
	eventually(t, "the link ends", func() bool { return p.Stats().Active == 0 })
	if st := p.Stats(); st != (Stats{Accepted: 1, BytesUpstream: 5, BytesDownstream: 5}) {
		t.Fatalf("stats = %+v", st)
	}
}

func TestLatency(t *testing.T) {
	tests := []struct {
		name     string
		up, down time.Duration
	}{
		{"none", 0, 0},
		{"upstream", 60 * time.Millisecond, 0},
		{"downstream", 0, 60 * time.Millisecond},
		{"both", 40 * time.Millisecond, 30 * time.Millisecond},
	}
	p := start(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.SetLatency(Upstream, tt.up)
			p.SetLatency(Downstream, tt.down)
			c := dial(t, p)
			start := time.Now()
			if err := echo(c, "ping", 2*time.Second); err != nil {
				t.Fatal(err)
			}
			rtt := time.Since(start)
			// The upper bound only catches a delay applied twice or never
			// lifted: a loaded machine adds scheduling delays of its own.
			if want := tt.up + tt.down; rtt < want || rtt > want+2*time.Second {
				t.Fatalf("round trip %v, want %v (+ up to 2s of scheduling)", rtt, want)
			}
		})
	}
}

func TestBandwidth(t *testing.T) {
	p := start(t)
	p.SetBandwidth(100_000) // bytes/s
	c := dial(t, p)
	msg := string(bytes.Repeat([]byte("x"), 20_000))
	start := time.Now()
	if err := echo(c, msg, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 180*time.Millisecond {
		t.Fatalf("20 KB through a 100 KB/s cap took %v, want at least 180ms", took)
	}
	p.SetBandwidth(0)
	if err := echo(c, msg, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestResetAll(t *testing.T) {
	p := start(t)
	c1, c2 := dial(t, p), dial(t, p)
	for _, c := range []net.Conn{c1, c2} {
		if err := echo(c, "up", time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.ResetAll(); n != 2 {
		t.Fatalf("ResetAll reset %d connections, want 2", n)
	}
	for _, c := range []net.Conn{c1, c2} {
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("Read after ResetAll = %v, want ECONNRESET", err)
		}
	}
	if err := echo(dial(t, p), "again", time.Second); err != nil {
		t.Fatalf("a new connection after ResetAll: %v", err)
	}
	if st := p.Stats(); st.Resets != 2 || st.Accepted != 3 {
		t.Fatalf("stats = %+v, want Resets 2, Accepted 3", st)
	}
}

func TestBlackHole(t *testing.T) {
	t.Run("until cleared", func(t *testing.T) {
		p := start(t)
		before := dial(t, p)
		if err := echo(before, "up", time.Second); err != nil {
			t.Fatal(err)
		}
		p.BlackHole(0)
		if err := echo(before, "ping", 150*time.Millisecond); !isTimeout(err) {
			t.Fatalf("echo in the hole = %v, want a timeout", err)
		}
		during := dial(t, p) // accepted, never forwarded
		if err := echo(during, "hello", 150*time.Millisecond); !isTimeout(err) {
			t.Fatalf("echo on a connection made in the hole = %v, want a timeout", err)
		}
		if st := p.Stats(); st.Dropped != 9 || st.Accepted != 2 {
			t.Fatalf("stats = %+v, want 9 bytes dropped, 2 accepted", st)
		}
		p.ClearBlackHole()
		// The old connection works again (what the hole swallowed is gone);
		// new connections work; the one made in the hole stays in it.
		if err := before.SetReadDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := echo(before, "pong", time.Second); err != nil {
			t.Fatalf("after the hole: %v", err)
		}
		if err := echo(dial(t, p), "new", time.Second); err != nil {
			t.Fatalf("a new connection after the hole: %v", err)
		}
		if err := echo(during, "still", 150*time.Millisecond); !isTimeout(err) {
			t.Fatalf("the connection made in the hole = %v, want a timeout", err)
		}
	})
	t.Run("for a duration", func(t *testing.T) {
		p := start(t)
		end := time.Now().Add(400 * time.Millisecond)
		p.BlackHole(400 * time.Millisecond)
		if err := echo(dial(t, p), "lost", 100*time.Millisecond); !isTimeout(err) {
			t.Fatalf("echo in the hole = %v, want a timeout", err)
		}
		time.Sleep(time.Until(end))
		if err := echo(dial(t, p), "back", time.Second); err != nil {
			t.Fatalf("after the hole ended by itself: %v", err)
		}
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestRefuse(t *testing.T) {
	p := start(t)
	open := dial(t, p)
	if err := p.Refuse(true); err != nil {
		t.Fatal(err)
	}
	if err := p.Refuse(true); err != nil {
		t.Fatalf("Refuse twice = %v", err)
	}
	if _, err := net.Dial("tcp", p.Addr()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Dial while refusing = %v, want ECONNREFUSED", err)
	}
	if err := echo(open, "still here", time.Second); err != nil {
		t.Fatalf("an open connection while refusing: %v", err)
	}
	if err := p.Refuse(false); err != nil {
		t.Fatal(err)
	}
	if err := echo(dial(t, p), "welcome back", time.Second); err != nil {
		t.Fatalf("after refusing: %v", err)
	}
}

func TestUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	p, err := Listen(down)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// The proxy accepts, fails to dial, and resets: the client sees it on
	// connecting or on its first read, depending on timing.
	c, err := net.Dial("tcp", p.Addr())
	if err == nil {
		defer c.Close()
		_, err = c.Read(make([]byte, 1))
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a connection through a proxy to nothing: %v, want ECONNRESET", err)
	}
	eventually(t, "the failure is counted", func() bool { return p.Stats().UpstreamFailures == 1 })
	if st := p.Stats(); st.UpstreamFailures != 1 {
		t.Fatalf("stats = %+v, want 1 upstream failure", st)
	}
}

func TestListenErrors(t *testing.T) {
	tests := []struct {
		upstream string
		want     string
	}{
		{"10.0.0.1:80", `faultnet: upstream "10.0.0.1:80": want a loopback address (127.0.0.1, ::1 or localhost)`},
		{"example.com:443", `faultnet: upstream "example.com:443": want a loopback address (127.0.0.1, ::1 or localhost)`},
		{"127.0.0.1", `faultnet: upstream "127.0.0.1": address 127.0.0.1: missing port in address`},
	}
	for _, tt := range tests {
		t.Run(tt.upstream, func(t *testing.T) {
			if _, err := Listen(tt.upstream); fmt.Sprint(err) != tt.want {
				t.Fatalf("Listen = %v, want %s", err, tt.want)
			}
		})
	}
	for _, ok := range []string{"127.0.0.2:1", "[::1]:1", "localhost:1"} {
		p, err := Listen(ok)
		if err != nil {
			t.Fatalf("Listen(%s) = %v", ok, err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCloseWaitsForEverything(t *testing.T) {
	p, err := Listen(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	p.SetLatency(Downstream, time.Hour) // a writer asleep
	slow := dial(t, p)
	if _, err := slow.Write([]byte("zzz")); err != nil {
		t.Fatal(err)
	}
	p.BlackHole(0)
	dial(t, p) // a connection swallowed by the hole
	eventually(t, "two connections", func() bool { return p.Stats().Active == 2 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close twice = %v", err)
	}
	if st := p.Stats(); st.Active != 0 {
		t.Fatalf("after Close: %+v", st)
	}
	if err := p.Refuse(false); fmt.Sprint(err) != "faultnet: proxy closed" {
		t.Fatalf("Refuse after Close = %v", err)
	}
	// goleak (TestMain) checks that no goroutine is left.
}
