package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/iotnode/iotnode/client"
	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/auth"
	cloudclient "github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/ports"
)

const (
	tokenPath    = "/iot/api/v2/oauth2/token"
	messagesPath = "/iot/api/v2/messages"
)

// statuses returns the statuses of the calls to path whose body contains
// marker ("" matches every call).
func statuses(calls []call, path, marker string) []int {
	var out []int
	for _, c := range calls {
		if c.path == path && bytes.Contains(c.body, []byte(marker)) {
			out = append(out, c.status)
		}
	}
	return out
}

// An access token that expired is replaced once, and the message that met
// the expiry is stored once, whether the device notices the expiry itself
// (its clock passed the token's lifetime) or the cloud tells it with a 401
// (only the cloud's clock moved; the new assertion then also meets the
// cloud's clock-skew check, a 403 with currentTime).
func TestTokenExpiryRefreshesOnceWithoutDuplicates(t *testing.T) {
	for _, tt := range []struct {
		name          string
		deviceClock   bool  // the device's clock moves with the cloud's
		tokenStatuses []int // of the token calls after the expiry
	}{
		{"device clock expires the token", true, []int{200}},
		{"cloud answers 401", false, []int{403, 200}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := startCloud(t)
			rec := newRecorder(c)
			clock := &skewClock{}
			if tt.deviceClock {
				clock = c.clock
			}
			w := wireDevice(t, provision(t, c, api.DeviceTypeDirect, "light-1"), rec, clock)
			if err := w.Activate(t.Context(), lightURN); err != nil {
				t.Fatal(err)
			}
			endpoint := w.EndpointID()
			v := virtualDevice(t, w.DirectlyConnectedDevice, endpoint, lightURN)
			if err := v.Set("label", "before expiry"); err != nil {
				t.Fatal(err)
			}
			q := cloudclient.MessageQuery{Source: endpoint, Type: string(message.TypeData)}
			awaitMessages(t, c, q, 1, dataWith(lightURN+":attributes", "label", "before expiry"))

			mark := rec.count()
			c.clock.advance(auth.TokenLifetime + time.Minute)
			if err := v.Set("label", "after expiry"); err != nil {
				t.Fatal(err)
			}
			awaitMessages(t, c, q, 1, dataWith(lightURN+":attributes", "label", "after expiry"))
			closeDevice(t, w) // the receiver stops: no call is left to make

			calls, _ := rec.since(mark)
			if got := statuses(calls, tokenPath, ""); !slices.Equal(got, tt.tokenStatuses) {
				t.Errorf("token calls after the expiry answered %v, want %v", got, tt.tokenStatuses)
			}
			unauthorized := 0
			for _, c := range calls {
				if c.status == 401 {
					unauthorized++
				}
			}
			if tt.deviceClock && unauthorized != 0 {
				t.Errorf("%d calls answered 401, want none: the device should renew a token it knows expired", unauthorized)
			}
			if !tt.deviceClock && unauthorized == 0 {
				t.Error("no call answered 401: the cloud's clock did not expire the token")
			}
			sends := statuses(calls, messagesPath, `"label":"after expiry"`)
			accepted := 0
			for _, s := range sends {
				if s >= 200 && s < 300 {
					accepted++
				} else if s != 401 {
					t.Errorf("a send of the message answered %d", s)
				}
			}
			if accepted != 1 || len(sends) > 2 {
				t.Errorf("the message was sent with answers %v: want one accepted send, after at most one 401", sends)
			}
			if got := awaitMessages(t, c, q, 1, dataWith(lightURN+":attributes", "label", "after expiry")); len(got) != 1 {
				t.Errorf("the cloud stored the message %d times, want once", len(got))
			}
		})
	}
}

// blackHole accepts TCP connections on addr and never answers: a cloud that
// hangs. close stops it and waits for its goroutine.
type blackHole struct {
	ln    net.Listener
	done  chan struct{}
	mu    sync.Mutex
	conns []net.Conn
}

func startBlackHole(t testing.TB, addr string) *blackHole {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := &blackHole{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, conn)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(b.close)
	return b
}

func (b *blackHole) close() {
	b.ln.Close()
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		c.Close()
	}
	b.conns = nil
}

// timed runs fn and fails the test when it takes limit or longer.
func timed(t *testing.T, what string, limit time.Duration, fn func() error) error {
	t.Helper()
	start := time.Now()
	err := fn()
	if d := time.Since(start); d >= limit {
		t.Errorf("%s took %s, want less than %s", what, d.Round(time.Millisecond), limit)
	}
	return err
}

// A cloud that is down or hangs never blocks the application: Set and Raise
// return at once, the failure reaches OnError, Close returns by its deadline,
// and the GUARANTEED_DELIVERY alert kept in the outbox is delivered after a
// restart of both sides.
func TestCloudUnreachable(t *testing.T) {
	c := startCloud(t)
	path := provision(t, c, api.DeviceTypeDirect, "humidity-1")
	opts := []client.Option{
		client.WithHTTPTimeout(time.Second),
		client.WithDeviceOptions(device.WithBackoff(50*time.Millisecond, 500*time.Millisecond),
			device.WithCloseTimeout(1500*time.Millisecond)),
	}
	d, v := activated(t, path, humidityURN, opts...)
	endpoint := d.EndpointID()
	errs := make(chan device.ErrorEvent, 16)
	v.OnError(func(ev device.ErrorEvent) { errs <- ev })
	if err := v.Set("humidity", 50); err != nil {
		t.Fatal(err)
	}
	awaitMessages(t, c, cloudclient.MessageQuery{Source: endpoint, Type: string(message.TypeData)}, 1,
		dataWith(humidityURN+":attributes", "humidity", 50))

	// The cloud goes down.
	c.stop(t)
	if err := timed(t, "Set with the cloud down", time.Second, func() error { return v.Set("humidity", 51) }); err != nil {
		t.Fatal(err)
	}
	raise := func() error { return v.CreateAlert(humidityURN+":too_humid").Set("humidity", 51).Raise() }
	if err := timed(t, "Raise with the cloud down", time.Second, raise); err != nil {
		t.Fatal(err)
	}
	ev := receive(t, errs, "OnError event")
	const outage = "send messages: the cloud is unreachable or failing; the messages stay queued and are retried with backoff: exchange messages: "
	var ce *ports.CloudError
	if msg := ev.Err.Error(); len(msg) <= len(outage) || msg[:len(outage)] != outage || !errors.As(ev.Err, &ce) || ports.IsPermanent(ev.Err) {
		t.Errorf("OnError got %v (%T), want a transient cloud error starting %q", ev.Err, ev.Err, outage)
	}
	if ev.Device != v || len(ev.Messages) == 0 || ev.Messages[0].Source != endpoint {
		t.Errorf("OnError event for %p with %d message(s), want the virtual device %p and the messages not sent", ev.Device, len(ev.Messages), v)
	}

	// The cloud's address now accepts connections and never answers.
	hole := startBlackHole(t, c.addr)
	if err := timed(t, "Set with the cloud hanging", time.Second, func() error { return v.Set("humidity", 52) }); err != nil {
		t.Fatal(err)
	}
	// The flush at Close is bounded by the close timeout (1.5 s, below the
	// context's 3 s, so that the callbacks are awaited within the context).
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	err := timed(t, "Close with a 1.5 s close timeout and the cloud hanging", 4*time.Second, func() error { return d.Close(ctx) })
	// Left: the alert (kept on disk), the two values (kept in memory only)
	// and perhaps a report. The last error is the send the deadline cut
	// short, or the send before it, which got no answer within the HTTP
	// timeout.
	leftover := regexp.MustCompile(`^close device ` + regexp.QuoteMeta(endpoint) +
		`: (\d+) message\(s\) not sent \(a durable outbox keeps them for the next start\): ` +
		`(a send was cut short by the close deadline: exchange messages: context deadline exceeded|` +
		`exchange messages: no answer from ` + regexp.QuoteMeta(c.URL()) + ` within 1s)$`)
	if err == nil || !leftover.MatchString(err.Error()) {
		t.Errorf("Close: %v, want an error matching %s", err, leftover)
	}
	if m := leftover.FindStringSubmatch(fmt.Sprint(err)); m != nil {
		if n, _ := strconv.Atoi(m[1]); n < 3 {
			t.Errorf("Close left %d messages, want at least 3 (two values and the alert)", n)
		}
	}
	// The last event tells the application what was left.
	var last device.ErrorEvent
	for done := false; !done; {
		select {
		case last = <-errs:
		default:
			done = true
		}
	}
	if last.Err == nil || len(last.Messages) < 3 || !bytes.HasPrefix([]byte(last.Err.Error()), []byte("close: ")) {
		t.Errorf("last OnError event %v with %d message(s), want the close report of the messages left", last.Err, len(last.Messages))
	}

	// Both come back: the alert was on disk and is delivered exactly once.
	hole.close()
	c.start(t)
	d2 := openDevice(t, path, opts...)
	if err := d2.Start(); err != nil {
		t.Fatal(err)
	}
	isAlert := func(m *message.Message) bool { return m.Alert != nil && fmt.Sprint(fields(m)["humidity"]) == "51" }
	aq := cloudclient.MessageQuery{Source: endpoint, Type: string(message.TypeAlert)}
	awaitMessages(t, c, aq, 1, isAlert)
	closeDevice(t, d2)
	if alerts := awaitMessages(t, c, aq, 1, isAlert); len(alerts) != 1 {
		t.Errorf("the alert was stored %d times, want once", len(alerts))
	}
}

// Close is bounded by the close timeout when its context has no deadline,
// also while a send is in flight to a cloud that accepts connections and
// never answers (device.WithCloseTimeout: it "bounds how long Close tries to
// send what is queued when its context has no earlier deadline").
func TestCloseHonoursCloseTimeoutWithSendInFlight(t *testing.T) {
	c := startCloud(t)
	const closeTimeout = time.Second
	d, v := activated(t, provision(t, c, api.DeviceTypeDirect, "humidity-1"), humidityURN,
		client.WithDeviceOptions(device.WithCloseTimeout(closeTimeout)))
	endpoint := d.EndpointID()
	v.OnError(func(device.ErrorEvent) {})
	c.stop(t)
	startBlackHole(t, c.addr)
	if err := timed(t, "Set with the cloud hanging", time.Second, func() error { return v.Set("humidity", 60) }); err != nil {
		t.Fatal(err)
	}
	// The transmitter took the message and waits for the cloud's answer.
	if !eventually(t.Context(), waitFor, func() bool { return d.OutboxStats().InFlight > 0 }) {
		t.Fatal("the transmitter never took the message out of the outbox")
	}
	err := timed(t, "Close without a context deadline, close timeout "+closeTimeout.String(), closeTimeout+2*time.Second, // generous for a loaded CI machine: the defect it guards against took 10 s
		func() error { return d.Close(context.Background()) })
	leftover := regexp.MustCompile(`^close device ` + regexp.QuoteMeta(endpoint) +
		`: \d+ message\(s\) not sent \(a durable outbox keeps them for the next start\): a send was cut short by the close deadline: `)
	if err == nil || !leftover.MatchString(err.Error()) {
		t.Errorf("Close: %v, want an error matching %s", err, leftover)
	}
}
