package mqtt_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqttadapter "github.com/iotnode/iotnode/adapters/mqtt"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/ports"
)

// TestExchange covers the messages call: the published array, the answer
// with the publish's correlation data, error answers and lost answers.
func TestExchange(t *testing.T) {
	encoded, err := message.Encode([]message.Message{dataMessage("c-1")})
	if err != nil {
		t.Fatal(err)
	}
	bad := dataMessage("c-2")
	bad.Type = "NOPE"
	tests := []struct {
		name    string
		msgs    []message.Message
		accept  int
		h       handler
		wantIDs []string
		wantErr string           // %s is the server URI
		want    ports.CloudError // Status, Permanent, Index when wantErr is not "<nil>"
	}{
		{name: "answer with requests", msgs: []message.Message{dataMessage("c-1")}, h: answer(requestJSON("r-1")),
			wantIDs: []string{"r-1"}, wantErr: "<nil>"},
		{name: "only the answer with the same correlation data counts", msgs: []message.Message{dataMessage("c-1")},
			h: func(publishRec) []reply {
				return []reply{{Payload: []byte(`{"status":400,"message":"not yours"}`), Error: true, Corr: []byte("someone else")},
					{Payload: []byte(requestJSON("r-1"))}}
			},
			wantIDs: []string{"r-1"}, wantErr: "<nil>"},
		{name: "a late answer's requests are kept", msgs: []message.Message{dataMessage("c-1")},
			h: func(publishRec) []reply {
				return []reply{{Payload: []byte(requestJSON("late")), Corr: []byte("an earlier call")}, {Payload: []byte(requestJSON("r-1"))}}
			},
			wantIDs: []string{"r-1", "late"}, wantErr: "<nil>"},
		{name: "error answer names the message", msgs: []message.Message{dataMessage("c-1")},
			h:       errorAnswer(`{"status":400,"message":"bad message","index":0,"field":"payload.data"}`),
			wantErr: `exchange messages: cloud answered 400 for message 0: bad message (field "payload.data")`,
			want:    ports.CloudError{Status: 400, Permanent: true, Index: 0}},
		{name: "401 is unauthorized", msgs: []message.Message{dataMessage("c-1")},
			h:       errorAnswer(`{"status":401,"message":"endpoint disabled"}`),
			wantErr: `exchange messages: cloud answered 401: endpoint disabled (unauthorized)`,
			want:    ports.CloudError{Status: 401, Permanent: true, Index: -1}},
		{name: "429 is transient", msgs: []message.Message{dataMessage("c-1")},
			h:       errorAnswer(`{"status":429,"message":"slow down"}`),
			wantErr: `exchange messages: cloud answered 429: slow down`,
			want:    ports.CloudError{Status: 429, Index: -1}},
		{name: "408 is transient", msgs: []message.Message{dataMessage("c-1")},
			h:       errorAnswer(`{"status":408}`),
			wantErr: `exchange messages: cloud answered 408: request timeout`,
			want:    ports.CloudError{Status: 408, Index: -1}},
		{name: "5xx is transient", msgs: []message.Message{dataMessage("c-1")},
			h:       errorAnswer(`{"status":503,"message":"store unavailable"}`),
			wantErr: `exchange messages: cloud answered 503: store unavailable`,
			want:    ports.CloudError{Status: 503, Index: -1}},
		{name: "error that is not a document", msgs: []message.Message{dataMessage("c-1")},
			h:       errorAnswer(`oops`),
			wantErr: `exchange messages: the cloud answered with an error that is not an error document {"status","message"}: "oops"`,
			want:    ports.CloudError{Index: -1}},
		{name: "answer that is not messages is transient", msgs: []message.Message{dataMessage("c-1")},
			h:       answer(`{"x":1}`),
			wantErr: `exchange messages: the answer is not a JSON array of messages: expected a JSON array of messages, got an object`,
			want:    ports.CloudError{Index: -1}},
		{name: "lost answer", msgs: []message.Message{dataMessage("c-1")}, h: noAnswer,
			wantErr: `exchange messages: no answer from %s within 300ms`,
			want:    ports.CloudError{Index: -1}},
		{name: "bad message names its index", msgs: []message.Message{dataMessage("c-1"), bad},
			wantErr: `exchange messages: encode message 1: field "type": unknown message type "NOPE"`,
			want:    ports.CloudError{Permanent: true, Index: 1}},
		{name: "negative acceptBytes", accept: -1,
			wantErr: `exchange messages: acceptBytes is -1; expected the free space of the request buffer, 0 to 2147483647`,
			want:    ports.CloudError{Permanent: true, Index: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t, false)
			if tt.h != nil {
				fc.handle("messages", tt.h)
			}
			c, _ := fc.client(fc.assets(true), func(cfg *mqttadapter.Config) { cfg.Timeout = 300 * time.Millisecond })
			in, err := c.Exchange(t.Context(), tt.msgs, tt.accept, 0)
			wantErr := tt.wantErr
			if strings.Contains(wantErr, "%s") {
				wantErr = fmt.Sprintf(wantErr, fc.uri())
			}
			if errText(err) != wantErr {
				t.Fatalf("error = %s\n want %s", errText(err), wantErr)
			}
			if err != nil {
				var ce *ports.CloudError
				if !errors.As(err, &ce) || ce.Status != tt.want.Status || ce.Permanent != tt.want.Permanent || ce.Index != tt.want.Index {
					t.Errorf("error = %#v, want %+v", err, tt.want)
				}
				if tt.want.Status == 401 && !errors.Is(err, ports.ErrUnauthorized) {
					t.Errorf("a 401 does not wrap ErrUnauthorized")
				}
				return
			}
			if got := ids(in); !slices.Equal(got, tt.wantIDs) {
				t.Errorf("requests = %q, want %q", got, tt.wantIDs)
			}
			pubs := fc.published("messages")
			if len(pubs) != 1 || string(pubs[0].Payload) != string(encoded) || len(pubs[0].Corr) != 16 {
				t.Errorf("publishes = %+v\nwant one with %s and 16 bytes of correlation data", pubs, encoded)
			}
		})
	}
}

// TestExchangeConcurrent: parallel calls each get the answer with their
// own correlation data, whatever the order of the answers.
func TestExchangeConcurrent(t *testing.T) {
	const n = 20
	fc := newFakeCloud(t, false)
	fc.handle("messages", noAnswer)
	c, _ := fc.client(fc.assets(true))
	var wg sync.WaitGroup
	errs := make([]string, n)
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("c-%d", i)
			in, err := c.Exchange(t.Context(), []message.Message{dataMessage(id)}, 0, 0)
			if got := ids(in); err != nil || !slices.Equal(got, []string{"r-" + id}) {
				errs[i] = fmt.Sprintf("%s: got %q, %v", id, got, err)
			}
		})
	}
	eventually(t, "all publishes", func() bool { return len(fc.published("messages")) == n })
	pubs := fc.published("messages")
	for _, p := range slices.Backward(pubs) {
		msgs, err := message.Decode(p.Payload)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("publish %s: %v", p.Payload, err)
		}
		fc.publish("devices/ep-1/messages", []byte(requestJSON("r-"+msgs[0].ClientID)), p.Corr)
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			t.Error(e)
		}
	}
}

// TestPushes: requests the cloud pushes without correlation data are
// buffered and returned by the next Exchange, after the answer's requests.
func TestPushes(t *testing.T) {
	fc := newFakeCloud(t, false)
	fc.handle("messages", answer(requestJSON("r-1")))
	c, logs := fc.client(fc.assets(true))
	if _, err := c.Exchange(t.Context(), nil, 0, 0); err != nil { // connects
		t.Fatal(err)
	}
	fc.push(endpointID, requestJSON("p-1"))
	fc.push(endpointID, "not json")
	fc.push(endpointID, requestJSON("p-2"))
	eventually(t, "the bad push", func() bool {
		return strings.Contains(logs.String(), "ignoring a push that is not a JSON array of messages")
	})
	in, err := c.Exchange(t.Context(), []message.Message{dataMessage("c-1")}, 0, 0)
	if got := ids(in); err != nil || !slices.Equal(got, []string{"r-1", "p-1", "p-2"}) {
		t.Fatalf("Exchange = %q, %v; want the answer's r-1, then the pushed p-1, p-2", got, err)
	}
	in, err = c.Exchange(t.Context(), nil, 0, 0)
	if err != nil || len(in) != 0 {
		t.Errorf("the next poll = %q, %v; want nothing (each push is returned once)", ids(in), err)
	}
}

// TestPushBuffer: beyond Config.PushBuffer the oldest pushes are dropped,
// with a warning.
func TestPushBuffer(t *testing.T) {
	fc := newFakeCloud(t, false)
	size := len(requestJSON("p-1")) - 2 // one request, without the array's brackets
	c, logs := fc.client(fc.assets(true), func(cfg *mqttadapter.Config) { cfg.PushBuffer = size * 3 / 2 })
	if _, err := c.Exchange(t.Context(), nil, 0, 0); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"p-1", "p-2", "p-3"} {
		fc.push(endpointID, requestJSON(id))
	}
	const warning = `level=WARN msg="the push buffer is full: dropped the oldest pushed requests; call Exchange more often or raise PushBuffer" logger=iotnode.mqtt dropped=1 held=1`
	eventually(t, "two drops", func() bool { return strings.Count(logs.String(), warning) == 2 })
	in, err := c.Exchange(t.Context(), nil, 0, 0)
	if got := ids(in); err != nil || !slices.Equal(got, []string{"p-3"}) {
		t.Errorf("Exchange = %q, %v; want only the newest, p-3", got, err)
	}
}

// TestPresenceRefresh: a poll republishes an unchanged acceptBytes once
// Config.PresenceRefresh has passed since it was last published (by the
// client's clock), so that a bridged cloud keeps the idle device present; a
// change publishes at once; a negative PresenceRefresh never republishes.
func TestPresenceRefresh(t *testing.T) {
	type step struct {
		advance time.Duration // of the fake clock, before the call
		accept  int
		wait    time.Duration
		msgs    bool // an Exchange with a message: the transmitter's path
	}
	const ms = time.Millisecond
	tests := []struct {
		name    string
		refresh time.Duration
		steps   []step
		want    []int // acceptBytes publishes, in order
	}{
		{name: "default: republished after 4 minutes, not before", steps: []step{
			{accept: 5000, wait: ms},
			{advance: 2 * time.Minute, accept: 5000, wait: ms},
			{advance: 2*time.Minute - time.Second, accept: 5000, wait: ms},
			{advance: time.Second, accept: 5000, wait: ms}, // 4 minutes
			{advance: time.Minute, accept: 5000, wait: ms},
			{advance: 3 * time.Minute, accept: 5000, wait: ms}, // 4 more
		}, want: []int{5000, 5000, 5000}},
		{name: "a poll without wait refreshes too", steps: []step{
			{accept: 5000},
			{advance: 4 * time.Minute, accept: 5000},
		}, want: []int{5000, 5000}},
		{name: "a change publishes at once and restarts the interval", steps: []step{
			{accept: 5000, wait: ms},
			{advance: time.Second, accept: 7000, wait: ms},
			{advance: 4*time.Minute - time.Second, accept: 7000, wait: ms},
			{advance: time.Second, accept: 7000, wait: ms},
		}, want: []int{5000, 7000, 7000}},
		{name: "custom interval", refresh: time.Minute, steps: []step{
			{accept: 5000, wait: ms},
			{advance: 59 * time.Second, accept: 5000, wait: ms},
			{advance: time.Second, accept: 5000, wait: ms},
		}, want: []int{5000, 5000}},
		{name: "negative never republishes", refresh: -1, steps: []step{
			{accept: 5000, wait: ms},
			{advance: time.Hour, accept: 5000, wait: ms},
			{advance: 1, accept: 6000, wait: ms},
		}, want: []int{5000, 6000}},
		{name: "a send does not refresh", steps: []step{
			{accept: 5000, wait: ms},
			{advance: 5 * time.Minute, accept: 5000, msgs: true},
		}, want: []int{5000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t, false)
			c, _ := fc.client(fc.assets(true), func(cfg *mqttadapter.Config) { cfg.PresenceRefresh = tt.refresh })
			for i, s := range tt.steps {
				fc.clock.Advance(s.advance)
				var msgs []message.Message
				if s.msgs {
					msgs = []message.Message{dataMessage(fmt.Sprintf("c-%d", i))}
				}
				if _, err := c.Exchange(t.Context(), msgs, s.accept, s.wait); err != nil {
					t.Fatalf("step %d: Exchange(acceptBytes %d): %v", i, s.accept, err)
				}
			}
			// A last, different value marks the end: the publishes of one
			// connection reach the cloud in order.
			const end = 99999
			if _, err := c.Exchange(t.Context(), nil, end, 0); err != nil {
				t.Fatalf("Exchange(acceptBytes %d): %v", end, err)
			}
			offers := func() []int {
				var got []int
				for _, p := range fc.published("messages/acceptBytes") {
					got = append(got, int(binary.BigEndian.Uint32(p.Payload)))
				}
				return got
			}
			eventually(t, "the last offer", func() bool { return slices.Contains(offers(), end) })
			if got, want := offers(), append(slices.Clone(tt.want), end); !slices.Equal(got, want) {
				t.Errorf("acceptBytes publishes = %v, want %v", got, want)
			}
		})
	}
}

// TestWaitForPush: an Exchange without messages and with a wait waits for
// a push, like a long poll.
func TestWaitForPush(t *testing.T) {
	fc := newFakeCloud(t, false)
	c, _ := fc.client(fc.assets(true))

	t.Run("push arrives", func(t *testing.T) {
		type result struct {
			in  []message.Message
			err error
		}
		done := make(chan result, 1)
		start := time.Now()
		go func() {
			in, err := c.Exchange(t.Context(), nil, 1000, 10*time.Second)
			done <- result{in, err}
		}()
		eventually(t, "the offer", func() bool { return len(fc.published("messages/acceptBytes")) == 1 })
		fc.push(endpointID, requestJSON("p-1"))
		r := <-done
		if got := ids(r.in); r.err != nil || !slices.Equal(got, []string{"p-1"}) || time.Since(start) > 5*time.Second {
			t.Errorf("Exchange = %q, %v after %s; want p-1 at once", got, r.err, time.Since(start))
		}
	})
	t.Run("wait runs out", func(t *testing.T) {
		start := time.Now()
		in, err := c.Exchange(t.Context(), nil, 1000, 100*time.Millisecond)
		if err != nil || in != nil || time.Since(start) < 100*time.Millisecond {
			t.Errorf("Exchange = %v, %v after %s; want nil, nil after 100ms", in, err, time.Since(start))
		}
	})
	t.Run("context ends", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Exchange(ctx, nil, 1000, 10*time.Second)
		if errText(err) != "exchange messages: context deadline exceeded" || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error = %v, want the context's", err)
		}
	})
	t.Run("no wait returns at once", func(t *testing.T) {
		in, err := c.Exchange(t.Context(), nil, 1000, 0)
		if err != nil || in != nil {
			t.Errorf("Exchange = %v, %v; want nil, nil", in, err)
		}
	})
}

// TestAcceptBytes: acceptBytes > 0 is published as 4 bytes big endian when
// it changes; the cloud's min-accept-bytes notice fails the next poll.
func TestAcceptBytes(t *testing.T) {
	fc := newFakeCloud(t, false)
	c, _ := fc.client(fc.assets(true))
	for _, accept := range []int{5000, 5000, 0, 70000, 70000} {
		if _, err := c.Exchange(t.Context(), nil, accept, 0); err != nil {
			t.Fatalf("Exchange(acceptBytes %d): %v", accept, err)
		}
	}
	// The cloud sees a publish just after its PUBACK.
	eventually(t, "two offers", func() bool { return len(fc.published("messages/acceptBytes")) >= 2 })
	var got []string
	for _, p := range fc.published("messages/acceptBytes") {
		got = append(got, fmt.Sprintf("%x", p.Payload))
	}
	if want := []string{"00001388", "00011170"}; !slices.Equal(got, want) {
		t.Errorf("acceptBytes publishes = %q, want %q (5000, then 70000; 0 and repeats publish nothing)", got, want)
	}
	if pubs := fc.published("messages"); len(pubs) != 0 {
		t.Errorf("polls published %d times on messages; want none", len(pubs))
	}

	fc.handle("messages/acceptBytes", func(publishRec) []reply {
		return []reply{{Payload: []byte{0, 0, 0x4e, 0x20}, NoCorr: true}} // 20000
	})
	_, err := c.Exchange(t.Context(), nil, 6000, 5*time.Second)
	const want = "exchange messages: the request buffer is too small: the cloud holds a request of 20000 bytes but acceptBytes is 6000; make the request buffer at least 20000 bytes"
	if errText(err) != want || ports.IsPermanent(err) {
		t.Errorf("error = %s (permanent %v)\n want %s, transient", errText(err), ports.IsPermanent(err), want)
	}
}
