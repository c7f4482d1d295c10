package http_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	httpadapter "github.com/iotnode/iotnode/adapters/http"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/internal/faultnet"
	"github.com/iotnode/iotnode/ports"
	"github.com/iotnode/iotnode/ports/porttest"
)

// behindProxy returns an HTTP/2 fake cloud, a fault-injecting proxy in
// front of it and a client that reaches the cloud through the proxy.
func behindProxy(t *testing.T, edit func(*httpadapter.Config)) (*fakeCloud, *faultnet.Proxy, *httpadapter.Client) {
	t.Helper()
	fc := startFakeCloud(t, true)
	proxy, err := faultnet.Listen(fc.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := proxy.Close(); err != nil {
			t.Error(err)
		}
	})
	a := fc.assets(true)
	a.ServerURI = "https://" + proxy.Addr() // the certificate names 127.0.0.1
	c := fc.client(true, nil, func(cfg *httpadapter.Config) {
		cfg.Trust = porttest.NewMemTrustStore(a)
		edit(cfg)
	})
	return fc, proxy, c
}

// TestBlackHole proves that a call in flight on a connection that goes
// dead (a black hole: the link stays up but carries nothing) fails within
// about PingAfter + PingTimeout (3 s + 2 s here), far below its Timeout.
func TestBlackHole(t *testing.T) {
	t.Parallel()
	fc, proxy, c := behindProxy(t, func(cfg *httpadapter.Config) {
		cfg.Timeout = 30 * time.Second
		cfg.PingAfter, cfg.PingTimeout = 3*time.Second, 2*time.Second
	})
	started := make(chan string, 1)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before the server closes
	fc.handle("POST /iot/api/v2/messages", func(w http.ResponseWriter, r *http.Request) {
		started <- r.Proto
		<-release // the answer never comes: the hole opens first
	})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Exchange(t.Context(), []message.Message{dataMessage()}, 100, 0)
		errc <- err
	}()
	if proto := <-started; proto != "HTTP/2.0" {
		t.Errorf("the call used %s, want HTTP/2.0 (the health check needs it)", proto)
	}
	proxy.BlackHole(0)
	start := time.Now()
	err := <-errc
	took := time.Since(start)
	const bound = 8 * time.Second // 3 s + 2 s, plus slack for -race
	if took > bound {
		t.Errorf("the call failed %s after the hole opened, want under %s (its Timeout is 30s)", took, bound)
	}
	if err == nil || ports.IsPermanent(err) || !strings.HasPrefix(err.Error(), "exchange messages: ") {
		t.Errorf("error = %v, want a transient exchange error", err)
	}
	t.Logf("failed after %s: %v", took.Round(time.Millisecond), err)
}

// TestLongPollWithPings proves that health checks do not cut a long poll:
// the server holds the poll for seconds, answering the pings meanwhile.
func TestLongPollWithPings(t *testing.T) {
	t.Parallel()
	const hold = 3 * time.Second
	fc, _, c := behindProxy(t, func(cfg *httpadapter.Config) {
		cfg.PingAfter = 200 * time.Millisecond // several pings during the poll
		cfg.PingTimeout = 200 * time.Millisecond
	})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	fc.handle("POST /iot/api/v2/messages", func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			t.Errorf("the long poll used %s, want HTTP/2.0", r.Proto)
		}
		select {
		case <-time.After(hold):
		case <-release:
			return
		}
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(requestJSON))
	})
	start := time.Now()
	got, err := c.Exchange(t.Context(), nil, 100, 5*time.Second)
	if err != nil || len(got) != 1 {
		t.Fatalf("Exchange = %v, %v; want the one message answered after %s", got, err, hold)
	}
	if took := time.Since(start); took < hold {
		t.Errorf("the long poll returned after %s, before the server answered at %s", took, hold)
	}
}
