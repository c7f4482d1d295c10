package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
	"github.com/iotnode/iotnode/ports/porttest"
)

var (
	errUnavailable = &ports.CloudError{Op: "send messages", Status: 503, Index: -1, Err: errors.New("service unavailable")}
	errRefused     = &ports.CloudError{Op: "send messages", Index: -1, Err: errors.New("dial tcp 127.0.0.1:8443: connection refused")}
	errAuth        = &ports.CloudError{Op: "send messages", Status: 401, Index: -1, Err: ports.ErrUnauthorized}
	errTimeout     = &ports.CloudError{Op: "send messages", Index: -1, Err: errors.New("no answer from https://127.0.0.1:8443 within 300ms")}
)

func TestMemOutboxConformance(t *testing.T) {
	porttest.Outbox(t, func(t *testing.T, maxBytes int) ports.Outbox { return newMemOutbox(maxBytes) })
}

func TestMemOutboxErrors(t *testing.T) {
	o := newMemOutbox(1024)
	m := porttest.Msg("a", message.PriorityLow, message.BestEffort)
	m.Priority = 9
	if _, err := o.Add(t.Context(), m); err == nil || err.Error() != "outbox add: message 0: priority 9 out of range, expected 0..4" {
		t.Errorf("Add: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := o.Add(ctx); err == nil || err.Error() != "outbox add: context canceled" {
		t.Errorf("Add with a canceled context: %v", err)
	}
	if _, err := o.Begin(0, 0); err == nil || err.Error() != "outbox begin: max 0, expected at least 1" {
		t.Errorf("Begin: %v", err)
	}
	big := porttest.Msg("g", message.PriorityLow, message.GuaranteedDelivery)
	big.Data.Fields[0].Value = strings.Repeat("x", 2000)
	_, err := o.Add(t.Context(), big)
	if !errors.Is(err, ports.ErrOutboxFull) || !strings.HasPrefix(err.Error(), "outbox add: 2") {
		t.Errorf("Add of a guaranteed message too big: %v", err)
	}
}

func TestBackoffDelay(t *testing.T) {
	s := defaultSettings()
	s.jitter = func(limit time.Duration) time.Duration { return limit }
	tests := []struct {
		failures   int
		retryAfter time.Duration
		want       time.Duration
	}{
		{1, 0, time.Second},
		{2, 0, 2 * time.Second},
		{5, 0, 16 * time.Second},
		{6, 0, 30 * time.Second},
		{100, 0, 30 * time.Second},
		{1, 10 * time.Second, 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.failures, tt.retryAfter), func(t *testing.T) {
			if got := s.backoffDelay(tt.failures, tt.retryAfter); got != tt.want {
				t.Fatalf("backoffDelay(%d, %s) = %s, want %s", tt.failures, tt.retryAfter, got, tt.want)
			}
		})
	}
	s.jitter = func(time.Duration) time.Duration { return 0 }
	if got := s.backoffDelay(3, 0); got != minBackoff {
		t.Errorf("a zero draw waits %s, want %s", got, minBackoff)
	}
	for range 100 {
		if d := fullJitter(time.Second); d < 0 || d >= time.Second {
			t.Fatalf("fullJitter(1s) = %s", d)
		}
	}
	if fullJitter(0) != 0 {
		t.Error("fullJitter(0) != 0")
	}
}

func TestBreaker(t *testing.T) {
	b := breaker{threshold: 2, pause: time.Minute}
	now := time.UnixMilli(0)
	if opened, first := b.failure(now); opened || first {
		t.Fatal("opened after one failure")
	}
	if opened, first := b.failure(now); !opened || !first {
		t.Fatal("not opened after two failures")
	}
	if w := b.wait(now.Add(time.Second)); w != 59*time.Second {
		t.Fatalf("wait %s", w)
	}
	if opened, _ := b.failure(now.Add(time.Second)); opened {
		t.Fatal("a failure while open counted")
	}
	if opened, first := b.failure(now.Add(time.Minute)); !opened || first {
		t.Fatal("a failed probe did not reopen it, or counted as first")
	}
	b.success()
	if w := b.wait(now.Add(time.Minute)); w != 0 {
		t.Fatalf("wait %s after success", w)
	}
}

func TestTransientFailuresAreRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		d := r.device(t)
		v := virtualDevice(t, d, "humidity_sensor")
		var sink errorSink
		v.OnError(sink.add)
		settle(time.Second) // the resources reports go out
		before := d.Stats()

		r.cloud.mu.Lock()
		r.cloud.sendErrs = []error{errUnavailable, errUnavailable, &ports.CloudError{Op: "send messages", Status: 429, RetryAfter: 10 * time.Second, Index: -1, Err: errors.New("slow down")}}
		r.cloud.mu.Unlock()
		start := time.Now()
		if err := v.Set("humidity", 55); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) != 0 {
			t.Fatal("Set waited")
		}
		settle(2900 * time.Millisecond) // attempts at 0.02 s, 1.02 s, 3.02 s
		if n := len(r.cloud.sentData(humidityURN + ":attributes")); n != 0 {
			t.Fatalf("delivered %d messages through failures", n)
		}
		settle(200 * time.Millisecond) // third attempt fails with Retry-After 10 s
		settle(9500 * time.Millisecond)
		if n := len(r.cloud.sentData(humidityURN + ":attributes")); n != 0 {
			t.Fatal("Retry-After was not honoured")
		}
		settle(time.Second)
		got := r.cloud.sentData(humidityURN + ":attributes")
		if len(got) != 1 || field(got[0], "humidity") != int64(55) {
			t.Fatalf("delivered %+v", got)
		}
		s := d.Stats()
		if s.Retried-before.Retried != 3 || s.ProtocolErrors-before.ProtocolErrors != 3 || s.Sent-before.Sent != 1 {
			t.Errorf("stats before %+v after %+v", before, s)
		}
		want := "send messages: the cloud is unreachable or failing; the messages stay queued and are retried with backoff: send messages: cloud answered 503: service unavailable"
		if evs := sink.all(); len(evs) != 1 || evs[0].Err.Error() != want || len(evs[0].Messages) != 1 || evs[0].Device != v {
			t.Errorf("OnError got %q", sink.texts())
		}
		closeDevice(t, d)
	})
}

func TestCloudUnreachable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		r.cloud.sendErr = func([]message.Message) error { return errRefused }
		r.cloud.pollErr = errRefused
		d := r.device(t)
		v := virtualDevice(t, d, "humidity_sensor")
		var sink errorSink
		v.OnError(sink.add)
		start := time.Now()
		for i := range 10 {
			if err := v.Set("humidity", i); err != nil {
				t.Fatal(err)
			}
		}
		if err := v.CreateAlert(humidityURN+":too_humid").Set("humidity", 99).Raise(); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) != 0 {
			t.Fatal("Set waited for the cloud")
		}
		settle(time.Minute)
		start = time.Now()
		err := d.Close(context.Background())
		// The flush gets the close timeout less the callbacks' reserve
		// (a tenth); the callbacks then return at once.
		if elapsed, want := time.Since(start), DefaultCloseTimeout*9/10; elapsed != want {
			t.Errorf("Close took %s, want the flush's share %s of the close timeout %s", elapsed, want, DefaultCloseTimeout)
		}
		want := "close device dev-ep-1: 13 message(s) not sent (a durable outbox keeps them for the next start): " +
			"send messages: dial tcp 127.0.0.1:8443: connection refused"
		if err == nil || err.Error() != want {
			t.Fatalf("Close: %v\nwant   %s", err, want)
		}
		texts := sink.texts()
		if len(texts) != 2 || !strings.HasPrefix(texts[0], "send messages: the cloud is unreachable or failing") ||
			texts[1] != "close: 13 message(s) not sent (a durable outbox keeps them for the next start): send messages: dial tcp 127.0.0.1:8443: connection refused" {
			t.Errorf("OnError got %q", texts)
		}
		if evs := sink.all(); len(evs) == 2 && len(evs[1].Messages) != 11 {
			t.Errorf("the close report names %d messages, want the 11 of the virtual device", len(evs[1].Messages))
		}
		if s := d.Stats(); s.Sent != 0 || s.ProtocolErrors == 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

func TestCloseWithinContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		r.cloud.sendErr = func([]message.Message) error { return errRefused }
		d := r.device(t)
		v := virtualDevice(t, d, "humidity_sensor")
		if err := v.Set("humidity", 1); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		err := d.Close(ctx)
		if elapsed := time.Since(start); elapsed != 900*time.Millisecond {
			t.Errorf("Close took %s, want the flush's share 900ms of the context's 1s", elapsed)
		}
		if err == nil || !strings.Contains(err.Error(), "3 message(s) not sent") {
			t.Fatalf("Close: %v", err)
		}
	})
}

// A send begun before Close has no deadline of its own: Close cuts it when
// the flush's share of the close timeout passes, even without a context
// deadline, and its messages stay in the outbox.
func TestCloseCutsASendInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		r.cloud.sendDelay = 10 * time.Second // a cloud that accepts connections and never answers
		d := r.device(t, WithCloseTimeout(time.Second))
		v := virtualDevice(t, d, "humidity_sensor")
		var sink errorSink
		v.OnError(sink.add)
		if err := v.Set("humidity", 60); err != nil {
			t.Fatal(err)
		}
		settle(100 * time.Millisecond) // the batch delay passed: the send is in flight
		if queued, open := memHeld(d); queued != 0 || open != 3 {
			t.Fatalf("the outbox holds %d queued and %d in-flight messages, want the 3 in flight", queued, open)
		}
		start := time.Now()
		err := d.Close(context.Background())
		if elapsed := time.Since(start); elapsed != 900*time.Millisecond {
			t.Errorf("Close took %s, want the flush's share 900ms of the close timeout 1s", elapsed)
		}
		const left = "3 message(s) not sent (a durable outbox keeps them for the next start): a send was cut short by the close deadline: context canceled"
		if err == nil || err.Error() != "close device dev-ep-1: "+left {
			t.Fatalf("Close: %v\nwant   close device dev-ep-1: %s", err, left)
		}
		if queued, open := memHeld(d); queued != 3 || open != 0 {
			t.Errorf("the outbox holds %d queued and %d in-flight messages after Close, want the 3 of the cut send queued", queued, open)
		}
		if texts := sink.texts(); len(texts) != 1 || texts[0] != "close: "+left {
			t.Errorf("OnError got %q, want the close report", texts)
		}
	})
}

// Close with a context deadline keeps a share of it for the callback
// goroutines: they deliver the close report, however long the flush took,
// and are not reported blocked. Like the integration test's cloud that is
// down behind a 300 ms HTTP timeout.
func TestCloseReservesTimeForCallbacks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		r.cloud.sendDelay = 300 * time.Millisecond
		r.cloud.sendErr = func([]message.Message) error { return errTimeout }
		r.cloud.pollErr = errRefused
		d := r.device(t)
		v := virtualDevice(t, d, "humidity_sensor")
		var sink errorSink
		v.OnError(func(ev ErrorEvent) {
			time.Sleep(time.Millisecond) // the application's handling takes a moment
			sink.add(ev)
		})
		if err := v.Set("humidity", 61); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		err := d.Close(ctx)
		if elapsed := time.Since(start); elapsed > time.Second {
			t.Errorf("Close took %s, want at most the context's 1s", elapsed)
		}
		const left = "3 message(s) not sent (a durable outbox keeps them for the next start): " +
			"send messages: no answer from https://127.0.0.1:8443 within 300ms"
		if err == nil || err.Error() != "close device dev-ep-1: "+left {
			t.Fatalf("Close: %v\nwant   close device dev-ep-1: %s", err, left)
		}
		texts := sink.texts() // delivered before Close returned
		if len(texts) != 2 || !strings.HasPrefix(texts[0], "send messages: the cloud is unreachable or failing") || texts[1] != "close: "+left {
			t.Errorf("OnError got %q, want the outage and then the close report", texts)
		}
	})
}

func TestCloseFlushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		d := r.device(t, WithBatchDelay(time.Hour)) // only Close sends
		v := virtualDevice(t, d, "humidity_sensor")
		for i := range 250 {
			if err := v.Set("humidity", i%100); err != nil {
				t.Fatal(err)
			}
		}
		settle(time.Minute)
		if n := len(r.cloud.sent()); n != 0 {
			t.Fatalf("%d messages sent before Close", n)
		}
		closeDevice(t, d)
		if n := len(r.cloud.sentData(humidityURN + ":attributes")); n != 250 {
			t.Fatalf("Close flushed %d messages, want 250", n)
		}
		r.cloud.mu.Lock()
		batches := len(r.cloud.batches)
		r.cloud.mu.Unlock()
		if batches != 3 {
			t.Errorf("%d batches, want 3 of at most %d messages", batches, DefaultMaxMessagesPerConnection)
		}
	})
}

func TestCloseBeforeStart(t *testing.T) {
	d := newRig(true).device(t)
	closeDevice(t, d)
	closeDevice(t, d)
	if err := d.Start(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
}

func TestCloseWaitsForBlockedCallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		d := r.device(t)
		v := virtualDevice(t, d, "light_switch")
		release := make(chan struct{})
		v.OnChange(func(ChangeEvent) { <-release })
		r.cloud.push(patch("b1", lightURN, `{"power":true}`))
		settle(time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err := d.Close(ctx)
		want := "close device dev-ep-1: the callback goroutine of virtual device dev-ep-1 (urn:com:example:iot:device:light_switch) " +
			"was still running when the close deadline passed (a callback blocks): context deadline exceeded"
		if err == nil || err.Error() != want {
			t.Fatalf("Close: %v\nwant   %s", err, want)
		}
		close(release)
		<-v.done
	})
}

func TestPermanentRefusalIsDeadLettered(t *testing.T) {
	for _, named := range []bool{true, false} {
		t.Run(fmt.Sprint("index named ", named), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(true)
				d := r.device(t)
				v := virtualDevice(t, d, "light_switch")
				var sink errorSink
				v.OnError(sink.add)
				settle(time.Second)
				r.cloud.mu.Lock()
				r.cloud.sendErr = func(batch []message.Message) error {
					for i, m := range batch {
						if m.Type == message.TypeData && field(m, "label") == "bad" {
							index := -1
							if named {
								index = i
							}
							return &ports.CloudError{Op: "send messages", Status: 400, Permanent: true, Index: index,
								Err: errors.New(`field "label": refused`)}
						}
					}
					return nil
				}
				r.cloud.mu.Unlock()
				for _, label := range []string{"a", "b", "c", "bad", "d", "e", "f", "g", "h"} {
					if err := v.Set("label", label); err != nil {
						t.Fatal(err)
					}
				}
				settle(time.Second)
				var got []string
				for _, m := range r.cloud.sentData(lightURN + ":attributes") {
					got = append(got, field(m, "label").(string))
				}
				if want := []string{"a", "b", "c", "d", "e", "f", "g", "h"}; !slices.Equal(got, want) {
					t.Errorf("delivered %q, want %q", got, want)
				}
				evs := sink.all()
				if len(evs) != 1 || len(evs[0].Messages) != 1 || field(evs[0].Messages[0], "label") != "bad" {
					t.Fatalf("OnError got %+v", evs)
				}
				msg := evs[0].Err.Error()
				if !strings.HasPrefix(msg, "message id-") || !strings.HasSuffix(msg, ` refused by the cloud, not retried: send messages: cloud answered 400: field "label": refused`) &&
					!strings.HasSuffix(msg, ` refused by the cloud, not retried: send messages: cloud answered 400 for message 3: field "label": refused`) {
					t.Errorf("OnError text %q", msg)
				}
				if s := d.Stats(); s.DeadLettered != 1 {
					t.Errorf("dead-lettered %d, want 1", s.DeadLettered)
				}
				closeDevice(t, d)
			})
		})
	}
}

func TestAuthBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		r.cloud.sendErr = func([]message.Message) error { return errAuth }
		r.cloud.pollErr = errAuth
		d := r.device(t)
		v := virtualDevice(t, d, "humidity_sensor")
		var sink errorSink
		v.OnError(sink.add)
		if err := v.Set("humidity", 50); err != nil {
			t.Fatal(err)
		}
		settle(10 * time.Second)
		texts := sink.texts()
		if len(texts) != 1 || !strings.Contains(texts[0], "the cloud refused the device's credentials 3 times in a row; sends and polls pause for 1m0s at a time and queued messages are kept: send messages: cloud answered 401: unauthorized") {
			t.Fatalf("OnError got %q", texts)
		}
		r.cloud.mu.Lock()
		calls := r.cloud.sendCalls + r.cloud.polls
		r.cloud.mu.Unlock()
		settle(45 * time.Second)
		r.cloud.mu.Lock()
		if now := r.cloud.sendCalls + r.cloud.polls; now != calls {
			t.Errorf("%d calls while the breaker was open", now-calls)
		}
		r.cloud.mu.Unlock()
		settle(20 * time.Second) // a probe fails: open again, no new report
		if n := len(sink.texts()); n != 1 {
			t.Errorf("%d reports after a failed probe, want 1", n)
		}
		r.cloud.mu.Lock()
		r.cloud.sendErr, r.cloud.pollErr = nil, nil
		r.cloud.mu.Unlock()
		settle(2 * time.Minute)
		if got := r.cloud.sentData(humidityURN + ":attributes"); len(got) != 1 {
			t.Fatalf("after the breaker closed, delivered %d messages, want 1", len(got))
		}
		closeDevice(t, d)
	})
}

// capabilityURL returns the URL of a capability resource.
func capabilityURL(capURN, name string) string { return "deviceModels/" + capURN + "/" + name }

func TestCapabilityResources(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		d := r.device(t)
		start := time.Now()
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		settle(time.Second)
		do := func(id, method, url, body string) *message.Response {
			t.Helper()
			r.cloud.push(newRequest(id, testEP, method, url, body, nil))
			settle(100 * time.Millisecond)
			return r.cloud.response(t, id)
		}
		expect := func(id string, resp *message.Response, status int, body string) {
			t.Helper()
			if resp.StatusCode != status || string(resp.Body) != body {
				t.Errorf("%s answered %d %s, want %d %s", id, resp.StatusCode, resp.Body, status, body)
			}
		}
		md, diag, pol := model.CapMessageDispatcher, model.CapDiagnostics, model.CapDevicePolicy

		resp := do("c1", "GET", capabilityURL(md, "counters"), "")
		var counters countersBody
		if err := json.Unmarshal(resp.Body, &counters); err != nil || resp.StatusCode != 200 {
			t.Fatalf("counters answered %d %s", resp.StatusCode, resp.Body)
		}
		if counters.TotalMessagesSent == 0 || counters.TotalMessagesReceived != 1 || counters.TotalBytesReceived == 0 || counters.TotalMessagesQueued == 0 {
			t.Errorf("counters %+v", counters)
		}
		expect("c2", do("c2", "PUT", capabilityURL(md, "reset"), ""), 200, "OK")
		if s := d.Stats(); s.Sent > 1 || s.Received > 1 {
			t.Errorf("stats after reset %+v", s)
		}
		expect("c3", do("c3", "POST", capabilityURL(md, "counters"), ""), 405,
			"deviceModels/urn:oracle:iot:dcd:capability:message_dispatcher/counters: method POST not allowed, expected GET")

		expect("p1", do("p1", "GET", capabilityURL(md, "pollingInterval"), ""), 200, `{"pollingInterval":3000,"value":3000}`)
		expect("p2", do("p2", "PUT", capabilityURL(md, "pollingInterval"), `{"value":5000}`), 200, "OK")
		expect("p3", do("p3", "GET", capabilityURL(md, "pollingInterval"), ""), 200, `{"pollingInterval":5000,"value":5000}`)
		expect("p4", do("p4", "PUT", capabilityURL(md, "pollingInterval"), `{"pollingInterval":10}`), 200, "OK")
		expect("p5", do("p5", "GET", capabilityURL(md, "pollingInterval"), ""), 200, `{"pollingInterval":1000,"value":1000}`)
		expect("p6", do("p6", "PUT", capabilityURL(md, "pollingInterval"), `{"value":"fast"}`), 400,
			`pollingInterval: body {"value":"fast"}, expected {"pollingInterval": <ms>} or {"value": <ms>} with a whole number of milliseconds, 0 or more`)
		expect("p7", do("p7", "PUT", capabilityURL(md, "pollingInterval"), `[1]`), 400,
			`pollingInterval: body is not a JSON object, expected {"pollingInterval": <ms>} or {"value": <ms>} with a whole number of milliseconds, 0 or more`)
		expect("p8", do("p8", "DELETE", capabilityURL(md, "pollingInterval"), ""), 405,
			"deviceModels/urn:oracle:iot:dcd:capability:message_dispatcher/pollingInterval: method DELETE not allowed, expected GET or PUT")

		resp = do("i1", "GET", capabilityURL(diag, "info"), "")
		var info map[string]any
		if err := json.Unmarshal(resp.Body, &info); err != nil || resp.StatusCode != 200 {
			t.Fatalf("info answered %d %s", resp.StatusCode, resp.Body)
		}
		if info["startTime"] != float64(start.UnixMilli()) || info["version"] == "" || info["ipAddress"] == nil || info["macAddress"] == nil {
			t.Errorf("info %v", info)
		}
		if free, ok := info["freeDiskSpace"].(float64); !ok || free <= 0 || info["totalDiskSpace"].(float64) < free {
			t.Errorf("disk space %v of %v", info["freeDiskSpace"], info["totalDiskSpace"])
		}

		expect("y1", do("y1", "PUT", capabilityURL(pol, "policyChanged"), `[{"op":"changed"}]`), 200, "OK")
		expect("y2", do("y2", "POST", capabilityURL(pol, "policyChanged"), `[]`), 200, "OK")
		expect("y3", do("y3", "GET", capabilityURL(pol, "policyChanged"), ""), 405,
			"deviceModels/urn:oracle:iot:dcd:capability:device_policy/policyChanged: method GET not allowed, expected PUT or POST")
		d.disp.mu.Lock()
		if d.disp.policyChanges != 2 {
			t.Errorf("%d policy changes recorded, want 2", d.disp.policyChanges)
		}
		d.disp.mu.Unlock()

		r.cloud.push(newRequest("u1", testEP, "GET", "deviceModels/"+md+"/nothing", "", nil))
		settle(10 * time.Second) // unknown resources wait for the settle time
		expect("u1", r.cloud.response(t, "u1"), 404,
			`no resource "deviceModels/urn:oracle:iot:dcd:capability:message_dispatcher/nothing" on endpoint "dev-ep-1"`)
		closeDevice(t, d)
	})
}

func TestConnectivityTest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		d := r.device(t)
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		url := capabilityURL(model.CapDiagnostics, "testConnectivity")
		do := func(id, method, body string) *message.Response {
			t.Helper()
			r.cloud.push(newRequest(id, testEP, method, url, body, nil))
			settle(100 * time.Millisecond)
			return r.cloud.response(t, id)
		}
		expect := func(id string, resp *message.Response, status int, body string) {
			t.Helper()
			if resp.StatusCode != status || string(resp.Body) != body {
				t.Errorf("%s answered %d %s, want %d %s", id, resp.StatusCode, resp.Body, status, body)
			}
		}
		expect("t0", do("t0", "GET", ""), 200, `{"active":false,"count":0,"currentCount":0,"interval":0,"size":0}`)
		expect("t1", do("t1", "PUT", `{"active":true,"count":3,"interval":500,"size":5}`), 200, "OK")
		expect("t2", do("t2", "PUT", `{"active":true,"count":3,"interval":1000,"size":5}`), 409,
			`testConnectivity: a test is running; stop it first with {"active":false}`)
		expect("t3", do("t3", "GET", ""), 200, `{"active":true,"count":3,"currentCount":0,"interval":1000,"size":5}`)
		settle(3100 * time.Millisecond)
		msgs := r.cloud.sentData(model.FormatTestMessage)
		if len(msgs) != 3 {
			t.Fatalf("%d test messages, want 3", len(msgs))
		}
		for i, m := range msgs {
			if field(m, "current") != int64(i+1) || field(m, "count") != int64(3) || field(m, "payload") != "*****" ||
				m.Priority != message.PriorityLowest || m.Source != testEP {
				t.Errorf("test message %d: %+v %+v", i, m, m.Data.Fields)
			}
		}
		expect("t4", do("t4", "GET", ""), 200, `{"active":false,"count":3,"currentCount":3,"interval":1000,"size":5}`)

		want := `testConnectivity: body %s, expected {"active":true,"count":<1..1000000>,"interval":<ms>,"size":<0..65536>} or {"active":false}`
		expect("t5", do("t5", "PUT", `{"count":1}`), 400, fmt.Sprintf(want, `{"count":1}`))
		expect("t6", do("t6", "PUT", `{"active":true,"count":0,"interval":-1,"size":70000}`), 400,
			`testConnectivity: count, interval, size missing or out of range, expected {"active":true,"count":<1..1000000>,"interval":<ms>,"size":<0..65536>} or {"active":false}`)

		expect("t7", do("t7", "PUT", `{"active":true,"count":100,"interval":1000,"size":0}`), 200, "OK")
		settle(2500 * time.Millisecond)
		expect("t8", do("t8", "PUT", `{"active":false}`), 200, "OK")
		settle(10 * time.Second)
		if n := len(r.cloud.sentData(model.FormatTestMessage)); n != 5 {
			t.Errorf("%d test messages after the stopped test, want 5", n)
		}
		expect("t9", do("t9", "GET", ""), 200, `{"active":false,"count":100,"currentCount":2,"interval":1000,"size":0}`)

		// A running test ends with the device.
		expect("t10", do("t10", "PUT", `{"active":true,"count":100,"interval":1000,"size":0}`), 200, "OK")
		closeDevice(t, d)
	})
}

func TestUnknownResourcesWaitForTheSettleTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		d := r.device(t)
		virtualDevice(t, d, "humidity_sensor")
		r.cloud.push(
			patch("s1", lightURN, `{"power":true}`),
			newRequest("s2", testEP, "GET", "deviceModels/urn:unknown/attributes", "", nil),
			newRequest("s3", "someone-else", "GET", "whatever", "", nil),
		)
		settle(5 * time.Second)
		if r.cloud.hasResponse("s1") || r.cloud.hasResponse("s2") || r.cloud.hasResponse("s3") {
			t.Fatal("answered before the settle time")
		}
		virtualDevice(t, d, "light_switch")
		settle(100 * time.Millisecond)
		if resp := r.cloud.response(t, "s1"); resp.StatusCode != 200 {
			t.Errorf("s1 answered %d %q once its virtual device exists", resp.StatusCode, resp.Body)
		}
		if r.cloud.hasResponse("s2") {
			t.Fatal("s2 answered before the settle time")
		}
		settle(5 * time.Second)
		resp := r.cloud.response(t, "s2")
		if resp.StatusCode != 404 || string(resp.Body) != `no resource "deviceModels/urn:unknown/attributes" on endpoint "dev-ep-1"` {
			t.Errorf("s2 answered %d %q", resp.StatusCode, resp.Body)
		}
		if resp := r.cloud.response(t, "s3"); resp.StatusCode != 404 {
			t.Errorf("s3 answered %d %q", resp.StatusCode, resp.Body)
		}
		closeDevice(t, d)
	})
}

func TestResourcesReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		d := r.device(t)
		virtualDevice(t, d, "light_switch")
		settle(time.Second)
		var reports []*message.ResourcesReport
		for _, m := range r.cloud.sent() {
			if m.Type == message.TypeResourcesReport {
				if m.Priority != message.PriorityHighest || m.ID == "" || m.Source != testEP {
					t.Errorf("report envelope %+v", m)
				}
				reports = append(reports, m.Report)
			}
		}
		if len(reports) != 2 {
			t.Fatalf("%d reports, want 2", len(reports))
		}
		caps := []string{
			"deviceModels/urn:oracle:iot:dcd:capability:device_policy/policyChanged PUT",
			"deviceModels/urn:oracle:iot:dcd:capability:message_dispatcher/counters GET",
			"deviceModels/urn:oracle:iot:dcd:capability:message_dispatcher/reset PUT",
			"deviceModels/urn:oracle:iot:dcd:capability:message_dispatcher/pollingInterval GET,PUT",
			"deviceModels/urn:oracle:iot:dcd:capability:diagnostics/info GET",
			"deviceModels/urn:oracle:iot:dcd:capability:diagnostics/testConnectivity GET,PUT",
		}
		light := []string{
			"deviceModels/" + lightURN + "/attributes PATCH",
			"deviceModels/" + lightURN + "/attributes/power PUT",
			"deviceModels/" + lightURN + "/attributes/brightness PUT",
			"deviceModels/" + lightURN + "/attributes/label PUT",
			"deviceModels/" + lightURN + "/actions/blink POST",
			"deviceModels/" + lightURN + "/actions/toggle POST",
			"deviceModels/" + lightURN + "/actions/schedule POST",
		}
		for i, want := range [][]string{caps, append(slices.Clone(caps), light...)} {
			rep := reports[i]
			var got, paths []string
			for _, res := range rep.Resources {
				got = append(got, res.Path+" "+res.Methods)
				paths = append(paths, res.Path)
				if res.Name != res.Path || res.Status != "ADDED" {
					t.Errorf("resource %+v", res)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("report %d lists\n%q\nwant\n%q", i, got, want)
			}
			if rep.ReportType != message.ReportUpdate || rep.EndpointName != testEP || rep.ReconciliationMark != message.ReconciliationMark(paths) {
				t.Errorf("report %d: %+v", i, rep)
			}
		}
		closeDevice(t, d)
	})
}

func TestPollingWithoutLongPolls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		d := r.device(t, WithLongPolling(false, 0))
		virtualDevice(t, d, "light_switch")
		settle(100 * time.Millisecond)
		r.cloud.push(patch("l1", lightURN, `{"power":true}`))
		settle(2 * time.Second)
		if r.cloud.hasResponse("l1") {
			t.Fatal("answered before the next poll")
		}
		settle(time.Second)
		if resp := r.cloud.response(t, "l1"); resp.StatusCode != 200 {
			t.Errorf("l1 answered %d", resp.StatusCode)
		}
		r.cloud.mu.Lock()
		polls := r.cloud.polls
		r.cloud.mu.Unlock()
		if polls < 2 || polls > 3 {
			t.Errorf("%d polls in 3.1 s with a 3 s interval", polls)
		}
		closeDevice(t, d)
	})
}

func TestLongPollsThatReturnAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		r.cloud.noHold = true
		d := r.device(t)
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		settle(10 * time.Second)
		r.cloud.mu.Lock()
		polls := r.cloud.polls
		r.cloud.mu.Unlock()
		if polls != 4 { // at 0, 3, 6 and 9 s
			t.Errorf("%d polls in 10 s, want 4 (one per polling interval)", polls)
		}
		closeDevice(t, d)
	})
}

func TestReceiveErrorsBackOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		r.cloud.pollErr = &ports.CloudError{Op: "exchange messages", Status: 200, Index: -1, Err: errors.New("the request buffer is too small")}
		d := r.device(t)
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		settle(time.Minute)
		r.cloud.mu.Lock()
		polls := r.cloud.polls
		r.cloud.pollErr = nil
		r.cloud.mu.Unlock()
		// Backoffs of 1, 2, 4, 8 and 16 s: polls at 0, 1, 3, 7, 15 and 31 s,
		// then 30 s (the cap) until the next.
		if polls != 6 {
			t.Errorf("%d polls in a minute of errors, want 6", polls)
		}
		if !contains(r.logs.String(), "receive failed; retrying") {
			t.Error("receive errors were not logged")
		}
		closeDevice(t, d)
	})
}

func TestGatewayVirtualDevices(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		g := r.gateway(t)
		ep, err := g.RegisterDevice(context.Background(), "hw-1", map[string]string{MetaSerialNumber: "1"}, humidityURN)
		if err != nil {
			t.Fatal(err)
		}
		icd, err := g.CreateVirtualDevice(ep, loadModel(t, "humidity_sensor"))
		if err != nil {
			t.Fatal(err)
		}
		var got changes
		icd.OnChange(got.record("icd"))
		if err := icd.Set("humidity", 12); err != nil {
			t.Fatal(err)
		}
		r.cloud.push(patch("g1", humidityURN, `{"maxThreshold":90}`)) // to the gateway: no such device
		r.cloud.push(newRequest("g2", ep, "PATCH", "deviceModels/"+humidityURN+"/attributes", `{"maxThreshold":90}`, nil))
		settle(11 * time.Second)
		data := r.cloud.sentData(humidityURN + ":attributes")
		if len(data) != 2 || data[0].Source != ep || field(data[0], "humidity") != int64(12) || data[1].Source != ep {
			t.Errorf("ICD data %+v", data)
		}
		if resp := r.cloud.response(t, "g2"); resp.StatusCode != 200 {
			t.Errorf("g2 answered %d %q", resp.StatusCode, resp.Body)
		}
		if resp := r.cloud.response(t, "g1"); resp.StatusCode != 404 {
			t.Errorf("g1 answered %d %q", resp.StatusCode, resp.Body)
		}
		if evs := got.all(); !slices.Equal(evs, []string{"icd maxThreshold:80->90"}) {
			t.Errorf("ICD changes %q", evs)
		}
		var icdReport bool
		for _, m := range r.cloud.sent() {
			if m.Type == message.TypeResourcesReport && m.Report.EndpointName == ep {
				icdReport = m.Source == ep && len(m.Report.Resources) == 2
			}
		}
		if !icdReport {
			t.Error("no RESOURCES_REPORT for the ICD's two resources")
		}
		closeDevice(t, g.DirectlyConnectedDevice)
	})
}

func TestOutboxOverflow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		r.cloud.sendErr = func([]message.Message) error { return errRefused }
		d := r.device(t, WithOutboxBytes(2048))
		v := virtualDevice(t, d, "humidity_sensor")
		for i := range 40 {
			if err := v.Set("humidity", i); err != nil {
				t.Fatal(err)
			}
		}
		var err error
		for range 40 {
			if err = v.CreateAlert(humidityURN+":too_humid").Set("humidity", 99).Raise(); err != nil {
				break
			}
		}
		if !errors.Is(err, ports.ErrOutboxFull) || !strings.HasPrefix(err.Error(), `raise alert "urn:com:oracle:iot:device:humidity_sensor:too_humid": queue 1 message(s): outbox add: `) {
			t.Fatalf("Raise into a full outbox: %v", err)
		}
		if s := d.Stats(); s.Dropped == 0 {
			t.Errorf("nothing dropped: %+v", s)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		d.Close(ctx)
	})
}

func TestCloseWithRefusedCredentials(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		r.cloud.sendErr = func([]message.Message) error { return errAuth }
		r.cloud.pollErr = errAuth
		d := r.device(t)
		v := virtualDevice(t, d, "humidity_sensor")
		if err := v.Set("humidity", 50); err != nil {
			t.Fatal(err)
		}
		settle(10 * time.Second) // the breaker opens
		start := time.Now()
		err := d.Close(context.Background())
		if elapsed := time.Since(start); elapsed != 0 {
			t.Errorf("Close waited %s with the breaker open", elapsed)
		}
		want := "close device dev-ep-1: 3 message(s) not sent (a durable outbox keeps them for the next start): send messages: cloud answered 401: unauthorized"
		if err == nil || err.Error() != want {
			t.Fatalf("Close: %v\nwant   %s", err, want)
		}
	})
}
