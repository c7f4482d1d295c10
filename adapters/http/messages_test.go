package http_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	httpadapter "github.com/iotnode/iotnode/adapters/http"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/ports"
)

func dataMessage() message.Message {
	return message.Message{
		ClientID: "c-1", Source: endpointID, Priority: message.PriorityLow, Reliability: message.BestEffort,
		EventTime: t0, Type: message.TypeData,
		Data: &message.Data{Format: "urn:com:example:thing:attributes", Fields: []message.Field{{Name: "humidity", Value: int64(40)}}},
	}
}

const requestJSON = `[{"id":"r-1","clientId":"rc-1","source":"app","destination":"ep-1","priority":"HIGH","reliability":"BEST_EFFORT","eventTime":1740830400000,"type":"REQUEST","payload":{"method":"PUT","url":"deviceModels/urn:com:example:thing/attributes/x","headers":{},"params":{},"body":"eyJ2YWx1ZSI6MX0="}}]`

func TestExchange(t *testing.T) {
	encoded, err := message.Encode([]message.Message{dataMessage()})
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		status int
		header map[string]string
		body   string
	}
	tests := []struct {
		name        string
		msgs        []message.Message
		acceptBytes int
		wait        time.Duration
		answer      answer
		wantQuery   string // "-" when no call is expected
		wantBody    string
		wantIDs     []string
		wantErr     string
		want        ports.CloudError // Status, Permanent, RetryAfter, Index when wantErr is set
	}{
		{name: "poll without waiting", acceptBytes: 4192, answer: answer{status: 200, body: "[]"},
			wantQuery: "acceptBytes=4192", wantBody: "[]", wantErr: "<nil>"},
		{name: "send and long poll", msgs: []message.Message{dataMessage()}, acceptBytes: 10000, wait: 1500 * time.Millisecond,
			answer: answer{status: 202, body: requestJSON}, wantQuery: "acceptBytes=10000&iot.sync&iot.timeout=2",
			wantBody: string(encoded), wantIDs: []string{"r-1"}, wantErr: "<nil>"},
		{name: "wait without acceptBytes does not long poll", acceptBytes: 0, wait: 5 * time.Second,
			answer: answer{status: 200, body: ""}, wantQuery: "acceptBytes=0", wantBody: "[]", wantErr: "<nil>"},
		{name: "empty answer", acceptBytes: 100, answer: answer{status: 202, body: " \n"},
			wantQuery: "acceptBytes=100", wantBody: "[]", wantErr: "<nil>"},
		{name: "request buffer too small", acceptBytes: 100,
			answer:    answer{status: 200, header: map[string]string{"x-min-acceptbytes": "5000"}},
			wantQuery: "acceptBytes=100", wantBody: "[]",
			wantErr: "exchange messages: cloud answered 200: the request buffer is too small: the cloud holds a request of 5000 bytes but acceptBytes is 100; make the request buffer at least 5000 bytes",
			want:    ports.CloudError{Status: 200, Index: -1}},
		{name: "bad message names its index", msgs: []message.Message{dataMessage(), dataMessage()}, acceptBytes: 100,
			answer:    answer{status: 400, body: `{"status":400,"message":"message 1: payload.format is missing","index":1,"field":"payload.format"}`},
			wantQuery: "acceptBytes=100", wantBody: "-",
			wantErr: "exchange messages: cloud answered 400 for message 1: message 1: payload.format is missing",
			want:    ports.CloudError{Status: 400, Permanent: true, Index: 1}},
		{name: "too many requests with Retry-After seconds", acceptBytes: 100,
			answer:    answer{status: 429, header: map[string]string{"Retry-After": "7"}, body: `{"status":429,"message":"slow down"}`},
			wantQuery: "acceptBytes=100", wantBody: "[]",
			wantErr: "exchange messages: cloud answered 429: slow down",
			want:    ports.CloudError{Status: 429, Index: -1, RetryAfter: 7 * time.Second}},
		{name: "unavailable with Retry-After date", acceptBytes: 100,
			answer:    answer{status: 503, header: map[string]string{"Retry-After": t0.Add(30 * time.Second).Format(http.TimeFormat)}},
			wantQuery: "acceptBytes=100", wantBody: "[]",
			wantErr: "exchange messages: cloud answered 503: service unavailable",
			want:    ports.CloudError{Status: 503, Index: -1, RetryAfter: 30 * time.Second}},
		{name: "server error with text body", acceptBytes: 100,
			answer:    answer{status: 500, header: map[string]string{"Retry-After": "soon"}, body: "internal boom\n"},
			wantQuery: "acceptBytes=100", wantBody: "[]",
			wantErr: "exchange messages: cloud answered 500: internal boom",
			want:    ports.CloudError{Status: 500, Index: -1}},
		{name: "request timeout is transient", acceptBytes: 100, answer: answer{status: 408},
			wantQuery: "acceptBytes=100", wantBody: "[]",
			wantErr: "exchange messages: cloud answered 408: request timeout",
			want:    ports.CloudError{Status: 408, Index: -1}},
		{name: "forbidden is permanent", acceptBytes: 100, answer: answer{status: 403, body: `{"status":403,"message":"device is disabled"}`},
			wantQuery: "acceptBytes=100", wantBody: "[]",
			wantErr: "exchange messages: cloud answered 403: device is disabled",
			want:    ports.CloudError{Status: 403, Permanent: true, Index: -1}},
		{name: "not found", acceptBytes: 100, answer: answer{status: 404, body: `{"status":404,"message":"unknown endpoint"}`},
			wantQuery: "acceptBytes=100", wantBody: "[]",
			wantErr: "exchange messages: cloud answered 404: unknown endpoint (not found)",
			want:    ports.CloudError{Status: 404, Permanent: true, Index: -1}},
		{name: "redirect is not followed", acceptBytes: 100,
			answer:    answer{status: 302, header: map[string]string{"Location": "https://elsewhere.example/"}},
			wantQuery: "acceptBytes=100", wantBody: "[]",
			wantErr: `exchange messages: cloud answered 302: the cloud redirects to "https://elsewhere.example/"; expected an answer at ` + "SERVER" + ` (check the server URI of the provisioning file)`,
			want:    ports.CloudError{Status: 302, Permanent: true, Index: -1}},
		{name: "answer that is not messages is transient", acceptBytes: 100, answer: answer{status: 200, body: `[{"type":"NOPE"}]`},
			wantQuery: "acceptBytes=100", wantBody: "[]",
			wantErr: `exchange messages: cloud answered 200: the answer is not a JSON array of messages: message 0: field "type": unknown message type "NOPE"`,
			want:    ports.CloudError{Status: 200, Index: -1}},
		{name: "negative acceptBytes", acceptBytes: -1, wantQuery: "-",
			wantErr: "exchange messages: acceptBytes is -1; expected the free space of the request buffer, 0 or more",
			want:    ports.CloudError{Permanent: true, Index: -1}},
		{name: "message that cannot be encoded", msgs: []message.Message{dataMessage(), {ClientID: "x", Type: "BOGUS"}}, acceptBytes: 100, wantQuery: "-",
			wantErr: "ENCODE",
			want:    ports.CloudError{Permanent: true, Index: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t)
			fc.handle("POST /iot/api/v2/messages", func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.answer.header {
					w.Header()[k] = []string{v} // as written, not canonicalized
				}
				w.WriteHeader(tt.answer.status)
				_, _ = io.WriteString(w, tt.answer.body)
			})
			c := fc.client(true, nil)
			got, err := c.Exchange(t.Context(), tt.msgs, tt.acceptBytes, tt.wait)
			wantErr := strings.ReplaceAll(tt.wantErr, "SERVER", fc.srv.URL)
			if wantErr == "ENCODE" {
				_, encErr := message.Encode(tt.msgs)
				wantErr = "exchange messages: " + encErr.Error()
			}
			if errText(err) != wantErr {
				t.Errorf("error = %s\n want %s", errText(err), wantErr)
			}
			var ids []string
			for _, m := range got {
				ids = append(ids, m.ID)
			}
			if strings.Join(ids, ",") != strings.Join(tt.wantIDs, ",") {
				t.Errorf("got messages %v, want %v", ids, tt.wantIDs)
			}
			if err != nil {
				var ce *ports.CloudError
				if !errors.As(err, &ce) {
					t.Fatalf("error %T is not a CloudError", err)
				}
				if ce.Status != tt.want.Status || ce.Permanent != tt.want.Permanent || ce.Index != tt.want.Index || ce.RetryAfter != tt.want.RetryAfter {
					t.Errorf("CloudError{Status %d, Permanent %v, Index %d, RetryAfter %s}, want {%d, %v, %d, %s}",
						ce.Status, ce.Permanent, ce.Index, ce.RetryAfter, tt.want.Status, tt.want.Permanent, tt.want.Index, tt.want.RetryAfter)
				}
			}
			calls := fc.recordedCalls("/iot/api/v2/messages")
			if tt.wantQuery == "-" {
				if len(calls) != 0 {
					t.Errorf("%d calls, want none", len(calls))
				}
				return
			}
			if len(calls) != 1 {
				t.Fatalf("%d calls, want 1 (no retries)", len(calls))
			}
			if calls[0].RawQuery != tt.wantQuery {
				t.Errorf("query = %q, want %q", calls[0].RawQuery, tt.wantQuery)
			}
			if tt.wantBody != "-" && string(calls[0].Body) != tt.wantBody {
				t.Errorf("body = %s\n want %s", calls[0].Body, tt.wantBody)
			}
		})
	}
}

// TestExchangeTimeouts proves the long-poll and call timeouts.
func TestExchangeTimeouts(t *testing.T) {
	tests := []struct {
		name    string
		msgs    []message.Message
		accept  int
		wait    time.Duration
		wantErr string
	}{
		{name: "long poll runs out: no messages", accept: 100, wait: time.Millisecond, wantErr: "<nil>"},
		{name: "long poll with messages runs out: transient", msgs: []message.Message{dataMessage()}, accept: 100, wait: time.Millisecond,
			wantErr: "exchange messages: no answer from SERVER within the long poll's 1.05s; the messages may not have arrived"},
		{name: "plain call runs out", accept: 100,
			wantErr: "exchange messages: no answer from SERVER within 200ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fc := newFakeCloud(t)
			// The cloud never answers (an answer racing the client's
			// timeout would be taken, rightly).
			release := make(chan struct{})
			fc.handle("POST /iot/api/v2/messages", func(w http.ResponseWriter, r *http.Request) { <-release })
			t.Cleanup(func() { close(release) }) // before the server closes
			c := fc.client(true, nil, func(cfg *httpadapter.Config) {
				cfg.Timeout = 200 * time.Millisecond
				cfg.LongPollOffset = 50 * time.Millisecond
			})
			start := time.Now()
			got, err := c.Exchange(t.Context(), tt.msgs, tt.accept, tt.wait)
			if want := strings.ReplaceAll(tt.wantErr, "SERVER", fc.srv.URL); errText(err) != want || got != nil {
				t.Errorf("Exchange = %v, %s\n want nil, %s", got, errText(err), want)
			}
			if err != nil && ports.IsPermanent(err) {
				t.Errorf("timeout %v is permanent", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}

// TestExchangeCanceled proves the caller's context wins over everything.
func TestExchangeCanceled(t *testing.T) {
	fc := newFakeCloud(t)
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before the server closes
	var once sync.Once
	fc.handle("POST /iot/api/v2/messages", func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { started <- struct{}{} })
		<-release // never answers: an answer racing the cancel would be taken, rightly
	})
	c := fc.client(true, nil)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-started
		cancel()
	}()
	_, err := c.Exchange(ctx, nil, 100, time.Minute)
	if errText(err) != "exchange messages: context canceled" || !errors.Is(err, context.Canceled) {
		t.Errorf("error = %s, want exchange messages: context canceled", errText(err))
	}
}

// TestClosed proves calls after Close fail with ports.ErrClosed.
func TestClosed(t *testing.T) {
	fc := newFakeCloud(t)
	c := fc.client(true, nil)
	c.Close()
	c.Close()
	_, err := c.Exchange(t.Context(), nil, 100, 0)
	if errText(err) != "exchange messages: the https transport is closed (closed)" || !errors.Is(err, ports.ErrClosed) {
		t.Errorf("error = %s", errText(err))
	}
	if n := len(fc.tokenCalls()); n != 0 {
		t.Errorf("%d token calls after Close", n)
	}
}
