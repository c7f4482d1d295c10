package client

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
)

// seen is one request the fake server received.
type seen struct {
	Method, URI, Auth, ContentType, Body string
}

// fake is an httptest TLS server that records each request and answers with
// the canned status and body.
type fake struct {
	mu     sync.Mutex
	got    []seen
	status int
	body   string
	srv    *httptest.Server
}

func newFake(t *testing.T) *fake {
	f := &fake{status: 200}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.got = append(f.got, seen{r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"), r.Header.Get("Content-Type"), string(b)})
		status, body := f.status, f.body
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) client(t *testing.T) *Client {
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate())
	c, err := New(f.srv.URL+"/", "tok-123\n", WithCAPool(pool), WithPollInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCalls(t *testing.T) {
	const urn = "urn:com:example:thing"
	tests := []struct {
		name     string
		answer   string
		call     func(ctx context.Context, c *Client) (any, error)
		want     seen // Auth is always checked to be "Bearer tok-123"
		wantOut  any
		wantNoCT bool
	}{
		{
			name:    "AddModel",
			answer:  `{"urn":"urn:com:example:thing"}`,
			call:    func(ctx context.Context, c *Client) (any, error) { return c.AddModel(ctx, []byte(`{"urn":"x"}`)) },
			want:    seen{Method: "POST", URI: "/iot/api/v2/deviceModels", Body: `{"urn":"x"}`},
			wantOut: json.RawMessage(`{"urn":"urn:com:example:thing"}`),
		},
		{
			name:    "Models",
			answer:  `{"items":[{"urn":"a"}],"hasMore":true}`,
			call:    func(ctx context.Context, c *Client) (any, error) { return c.Models(ctx) },
			want:    seen{Method: "GET", URI: "/iot/api/v2/deviceModels"},
			wantOut: api.List[json.RawMessage]{Items: []json.RawMessage{json.RawMessage(`{"urn":"a"}`)}, HasMore: true},
		},
		{
			name:    "Model keeps the colons of the URN",
			answer:  `{"urn":"a"}`,
			call:    func(ctx context.Context, c *Client) (any, error) { return c.Model(ctx, urn) },
			want:    seen{Method: "GET", URI: "/iot/api/v2/deviceModels/urn:com:example:thing"},
			wantOut: json.RawMessage(`{"urn":"a"}`),
		},
		{
			name:   "RegisterDevice",
			answer: `{"id":"D1","hardwareId":"hw","type":"GATEWAY","state":"REGISTERED","sharedSecret":"s3","created":5}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.RegisterDevice(ctx, api.RegisterDevice{HardwareID: "hw", Type: api.DeviceTypeGateway})
			},
			want:    seen{Method: "POST", URI: "/iot/api/v2/devices", Body: `{"hardwareId":"hw","type":"GATEWAY"}`},
			wantOut: api.Device{ID: "D1", HardwareID: "hw", Type: "GATEWAY", State: "REGISTERED", SharedSecret: "s3", Created: 5},
		},
		{
			name:    "Devices",
			answer:  `{"items":[{"id":"D1"}],"hasMore":false}`,
			call:    func(ctx context.Context, c *Client) (any, error) { return c.Devices(ctx) },
			want:    seen{Method: "GET", URI: "/iot/api/v2/devices"},
			wantOut: api.List[api.Device]{Items: []api.Device{{ID: "D1"}}},
		},
		{
			name:    "Device escapes the id",
			answer:  `{"id":"a/b"}`,
			call:    func(ctx context.Context, c *Client) (any, error) { return c.Device(ctx, "a/b") },
			want:    seen{Method: "GET", URI: "/iot/api/v2/devices/a%2Fb"},
			wantOut: api.Device{ID: "a/b"},
		},
		{
			name:   "ProvisioningFile returns raw bytes",
			answer: "!abc\n#serverUri:https://x\n",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.ProvisioningFile(ctx, "D1", api.ProvisioningFileRequest{Passphrase: "pw", Format: "oracle"})
			},
			want:    seen{Method: "POST", URI: "/iot/api/v2/devices/D1/provisioningFile", Body: `{"passphrase":"pw","format":"oracle"}`},
			wantOut: []byte("!abc\n#serverUri:https://x\n"),
		},
		{
			name:   "Messages with a query",
			answer: `{"items":[{"receivedTime":7,"message":{"type":"DATA"}}],"hasMore":false}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Messages(ctx, MessageQuery{Source: "E1", Type: "DATA", Since: 1700000000000, Limit: 5})
			},
			want:    seen{Method: "GET", URI: "/iot/api/v2/messages?limit=5&since=1700000000000&source=E1&type=DATA"},
			wantOut: api.MessageList{Items: []api.Message{{Received: 7, Message: json.RawMessage(`{"type":"DATA"}`)}}},
		},
		{
			name:    "Messages without a query",
			answer:  `{"items":[],"hasMore":false}`,
			call:    func(ctx context.Context, c *Client) (any, error) { return c.Messages(ctx, MessageQuery{}) },
			want:    seen{Method: "GET", URI: "/iot/api/v2/messages"},
			wantOut: api.MessageList{Items: []api.Message{}},
		},
		{
			name:   "Messages after a cursor",
			answer: `{"items":[{"seq":8,"receivedTime":7,"message":{}}],"hasMore":true,"next":8}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Messages(ctx, MessageQuery{After: 7, Limit: 1})
			},
			want:    seen{Method: "GET", URI: "/iot/api/v2/messages?after=7&limit=1"},
			wantOut: api.MessageList{Items: []api.Message{{Seq: 8, Received: 7, Message: json.RawMessage(`{}`)}}, HasMore: true, Next: 8},
		},
		{
			name:    "Messages oldest first from the start",
			answer:  `{"items":[],"hasMore":false,"next":0}`,
			call:    func(ctx context.Context, c *Client) (any, error) { return c.Messages(ctx, MessageQuery{Oldest: true}) },
			want:    seen{Method: "GET", URI: "/iot/api/v2/messages?after=0"},
			wantOut: api.MessageList{Items: []api.Message{}},
		},
		{
			name:    "Attributes",
			answer:  `{"humidity":40}`,
			call:    func(ctx context.Context, c *Client) (any, error) { return c.Attributes(ctx, "E1", urn) },
			want:    seen{Method: "GET", URI: "/iot/api/v2/devices/E1/deviceModels/urn:com:example:thing/attributes"},
			wantOut: map[string]any{"humidity": 40.0},
		},
		{
			name:   "SetAttribute",
			answer: `{"requestId":"R1"}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.SetAttribute(ctx, "E1", urn, "maxThreshold", 90)
			},
			want:    seen{Method: "PUT", URI: "/iot/api/v2/devices/E1/deviceModels/urn:com:example:thing/attributes/maxThreshold", Body: `{"value":90}`},
			wantOut: "R1",
		},
		{
			name:    "CallAction without argument sends an empty object",
			answer:  `{"requestId":"R2"}`,
			call:    func(ctx context.Context, c *Client) (any, error) { return c.CallAction(ctx, "E1", urn, "reset", nil) },
			want:    seen{Method: "POST", URI: "/iot/api/v2/devices/E1/deviceModels/urn:com:example:thing/actions/reset", Body: `{}`},
			wantOut: "R2",
		},
		{
			name:   "CallAction with a value",
			answer: `{"requestId":"R3"}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.CallAction(ctx, "E1", urn, "power", map[string]any{"value": true})
			},
			want:    seen{Method: "POST", URI: "/iot/api/v2/devices/E1/deviceModels/urn:com:example:thing/actions/power", Body: `{"value":true}`},
			wantOut: "R3",
		},
		{
			name:    "Request",
			answer:  `{"id":"R1","status":"COMPLETED","response":{"statusCode":200,"body":"OK"}}`,
			call:    func(ctx context.Context, c *Client) (any, error) { return c.Request(ctx, "R1") },
			want:    seen{Method: "GET", URI: "/iot/api/v2/requests/R1"},
			wantOut: api.Request{ID: "R1", Status: "COMPLETED", Response: &api.Response{StatusCode: 200, Body: "OK"}},
		},
		{
			name:   "AddPolicy sets deviceModelUrn",
			answer: `{"id":"P1"}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.AddPolicy(ctx, []byte(`{"pipelines":[],"enabled":true}`), urn)
			},
			want:    seen{Method: "POST", URI: "/iot/api/v2/devicePolicies", Body: `{"deviceModelUrn":"urn:com:example:thing","enabled":true,"pipelines":[]}`},
			wantOut: json.RawMessage(`{"id":"P1"}`),
		},
		{
			name:    "Policies of a model",
			answer:  `{"items":[],"hasMore":false}`,
			call:    func(ctx context.Context, c *Client) (any, error) { return c.Policies(ctx, urn) },
			want:    seen{Method: "GET", URI: "/iot/api/v2/devicePolicies?deviceModel=urn%3Acom%3Aexample%3Athing"},
			wantOut: api.List[json.RawMessage]{Items: []json.RawMessage{}},
		},
		{
			name:    "Policy",
			answer:  `{"id":"P1"}`,
			call:    func(ctx context.Context, c *Client) (any, error) { return c.Policy(ctx, "P1") },
			want:    seen{Method: "GET", URI: "/iot/api/v2/devicePolicies/P1"},
			wantOut: json.RawMessage(`{"id":"P1"}`),
		},
		{
			name:   "AssignPolicy",
			answer: `{}`,
			call: func(ctx context.Context, c *Client) (any, error) {
				return nil, c.AssignPolicy(ctx, "P1", api.PolicyAssignment{DeviceModel: urn, Devices: []string{"E1", "E2"}})
			},
			want: seen{Method: "POST", URI: "/iot/api/v2/devicePolicies/P1/assignments", Body: `{"deviceModel":"urn:com:example:thing","devices":["E1","E2"]}`},
		},
		{
			name:     "DeletePolicy",
			answer:   ``,
			call:     func(ctx context.Context, c *Client) (any, error) { return nil, c.DeletePolicy(ctx, "P1") },
			want:     seen{Method: "DELETE", URI: "/iot/api/v2/devicePolicies/P1"},
			wantNoCT: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.body = tt.answer
			out, err := tt.call(t.Context(), f.client(t))
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantOut != nil && !reflect.DeepEqual(out, tt.wantOut) {
				t.Errorf("result = %#v\nwant     %#v", out, tt.wantOut)
			}
			if len(f.got) != 1 {
				t.Fatalf("server saw %d requests, want 1", len(f.got))
			}
			want := tt.want
			want.Auth = "Bearer tok-123"
			if want.Body != "" {
				want.ContentType = "application/json"
			}
			if got := f.got[0]; got != want {
				t.Errorf("server saw %+v\nwant          %+v", got, want)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		wantErr    string
		wantStatus int
	}{
		{
			name:       "api.Error body",
			status:     404,
			body:       `{"status":404,"message":"device \"D9\" not found"}`,
			wantErr:    `get device D9: server answered 404 Not Found: device "D9" not found`,
			wantStatus: 404,
		},
		{
			name:       "api.Error with index and field",
			status:     400,
			body:       `{"status":400,"message":"value out of range","index":2,"field":"payload.data.humidity"}`,
			wantErr:    `get device D9: server answered 400 Bad Request: value out of range (message 2, field "payload.data.humidity")`,
			wantStatus: 400,
		},
		{
			name:       "plain text body",
			status:     502,
			body:       "bad gateway\n",
			wantErr:    `get device D9: server answered 502 Bad Gateway: bad gateway`,
			wantStatus: 502,
		},
		{
			name:       "empty body",
			status:     401,
			wantErr:    `get device D9: server answered 401 Unauthorized: no message`,
			wantStatus: 401,
		},
		{
			name:    "2xx with a body that is not JSON",
			status:  200,
			body:    "<html>",
			wantErr: `decode answer of GET https://HOST/iot/api/v2/devices/D9: invalid character '<' looking for beginning of value`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.status, f.body = tt.status, tt.body
			_, err := f.client(t).Device(t.Context(), "D9")
			want := strings.ReplaceAll(tt.wantErr, "https://HOST", f.srv.URL)
			if err == nil || err.Error() != want && err.Error() != "get device D9: "+want {
				t.Fatalf("err = %v\nwant %s", err, want)
			}
			var ae *APIError
			if tt.wantStatus != 0 && (!errors.As(err, &ae) || ae.Status != tt.wantStatus) {
				t.Fatalf("err %v is not an *APIError with status %d", err, tt.wantStatus)
			}
			if IsNotFound(err) != (tt.wantStatus == 404) {
				t.Errorf("IsNotFound = %v", IsNotFound(err))
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct{ url, token, want string }{
		{"127.0.0.1:8443", "t", `cloud url "127.0.0.1:8443": expected https://HOST[:PORT] (or http:// for a cloud started with --insecure-http)`},
		{"ftp://x", "t", `cloud url "ftp://x": expected https://HOST[:PORT] (or http:// for a cloud started with --insecure-http)`},
		{"https://x/?a=b", "t", `cloud url "https://x/?a=b": expected no user, query or fragment`},
		{"https://x", " \n", `admin token is empty: expected the content of the cloud's admin.token file`},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			_, err := New(tt.url, tt.token)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v\nwant %s", err, tt.want)
			}
		})
	}
}

func TestUnknownCAIsRefused(t *testing.T) {
	f := newFake(t)
	c, err := New(f.srv.URL, "t", WithCAPool(x509.NewCertPool()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Devices(t.Context())
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("err = %v, want an unknown authority error", err)
	}
}

func TestAddPolicyRejectsNonObject(t *testing.T) {
	f := newFake(t)
	_, err := f.client(t).AddPolicy(t.Context(), []byte(`[1]`), "urn:x")
	want := "add device policy: the policy is not a JSON object: json: cannot unmarshal array into Go value of type map[string]json.RawMessage"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if len(f.got) != 0 {
		t.Fatal("a request was sent")
	}
}

func TestWaitRequest(t *testing.T) {
	var n int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		status := []string{"PENDING", "DELIVERED", "COMPLETED"}[min(n-1, 2)]
		mu.Unlock()
		fmt.Fprintf(w, `{"id":"R1","status":%q}`, status)
	}))
	defer srv.Close()
	c, err := New(srv.URL, "t", WithPollInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.WaitRequest(t.Context(), "R1")
	if err != nil || r.Status != "COMPLETED" || n != 3 {
		t.Fatalf("WaitRequest = %+v, %v after %d polls; want COMPLETED after 3", r, err, n)
	}

	t.Run("context ends first", func(t *testing.T) {
		stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"id":"R2","status":"PENDING"}`)
		}))
		defer stuck.Close()
		c, _ := New(stuck.URL, "t", WithPollInterval(time.Millisecond))
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		r, err := c.WaitRequest(ctx, "R2")
		if r.Status != "PENDING" || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitRequest = %+v, %v; want PENDING and a deadline error", r, err)
		}
	})
}

// pager serves GET messages from n stored messages (seq 1..n, all received
// in one millisecond) as the cloud does with after and limit, and records the
// queries.
func pager(t *testing.T, n int) (*Client, *[]string) {
	var mu sync.Mutex
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		after, _ := strconv.Atoi(r.URL.Query().Get("after"))
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		list := api.MessageList{Items: []api.Message{}, Next: uint64(n)}
		for seq := after + 1; seq <= n; seq++ {
			if len(list.Items) == limit {
				list.HasMore, list.Next = true, list.Items[limit-1].Seq
				break
			}
			list.Items = append(list.Items, api.Message{Seq: uint64(seq), Received: 7, Message: json.RawMessage(`{}`)})
		}
		json.NewEncoder(w).Encode(list)
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, "t")
	if err != nil {
		t.Fatal(err)
	}
	return c, &queries
}

func TestAllMessages(t *testing.T) {
	t.Run("every page once", func(t *testing.T) {
		c, queries := pager(t, 250)
		var got []uint64
		for m, err := range c.AllMessages(t.Context(), MessageQuery{Source: "E1", Limit: 100}) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, m.Seq)
		}
		if len(got) != 250 || got[0] != 1 || got[249] != 250 {
			t.Fatalf("got %d messages %v..., want seq 1..250", len(got), got[:min(len(got), 3)])
		}
		for i := 1; i < len(got); i++ {
			if got[i] != got[i-1]+1 {
				t.Fatalf("seq %d follows %d", got[i], got[i-1])
			}
		}
		want := []string{"after=0&limit=100&source=E1", "after=100&limit=100&source=E1", "after=200&limit=100&source=E1"}
		if !reflect.DeepEqual(*queries, want) {
			t.Fatalf("queries %q\nwant    %q", *queries, want)
		}
	})
	t.Run("from a cursor, stopped early", func(t *testing.T) {
		c, queries := pager(t, 250)
		var got []uint64
		for m, err := range c.AllMessages(t.Context(), MessageQuery{After: 240, Limit: 5}) {
			if err != nil {
				t.Fatal(err)
			}
			if got = append(got, m.Seq); len(got) == 7 {
				break
			}
		}
		if !reflect.DeepEqual(got, []uint64{241, 242, 243, 244, 245, 246, 247}) || len(*queries) != 2 {
			t.Fatalf("got %v after %d queries, want 241..247 after 2", got, len(*queries))
		}
	})
	t.Run("a server that does not advance", func(t *testing.T) {
		f := newFake(t)
		f.body = `{"items":[],"hasMore":true,"next":3}`
		var errs []error
		for _, err := range f.client(t).AllMessages(t.Context(), MessageQuery{After: 3}) {
			errs = append(errs, err)
		}
		want := "list messages after 3: the server answered hasMore with next 3, expected a later cursor"
		if len(errs) != 1 || errs[0] == nil || errs[0].Error() != want {
			t.Fatalf("errors %v, want %q", errs, want)
		}
	})
	t.Run("a failed call", func(t *testing.T) {
		f := newFake(t)
		f.status, f.body = 400, `{"status":400,"message":"query parameter after is 9, beyond the newest message (seq 3)"}`
		var errs []error
		for _, err := range f.client(t).AllMessages(t.Context(), MessageQuery{After: 9}) {
			errs = append(errs, err)
		}
		want := "list messages: server answered 400 Bad Request: query parameter after is 9, beyond the newest message (seq 3)"
		if len(errs) != 1 || errs[0] == nil || errs[0].Error() != want {
			t.Fatalf("errors %v, want %q", errs, want)
		}
	})
}
