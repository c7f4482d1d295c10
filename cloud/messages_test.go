package cloud

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/domain/message"
)

func intp(i int) *int { return &i }

func TestMessagesBadInput(t *testing.T) {
	e := newEnv(t)
	e.addModels()
	d := e.register(api.DeviceTypeDirect, 0)
	d.activate(humidityURN)
	ok := dataMsg("ok-1", d.endpointID, humidityURN+":attributes", `{"humidity":50}`)
	tests := []struct {
		name   string
		query  string
		body   string
		status int
		msg    string
		index  *int
		field  string
	}{
		{name: "malformed JSON", body: `[` + ok + `,{"clientId":`, status: 400, index: intp(1), field: "clientId",
			msg: `message 1: field "clientId": invalid JSON at byte offset 272: unexpected end of input`},
		{name: "not an array", body: `{"clientId":"x"}`, status: 400,
			msg: `expected a JSON array of messages, got an object`},
		{name: "wrong JSON type", body: `[` + ok + `,{"clientId":7}]`, status: 400, index: intp(1), field: "clientId",
			msg: `message 1: field "clientId": expected a string, got a number`},
		{name: "unknown type", body: `[{"clientId":"a","source":"` + d.endpointID + `","type":"GOSSIP","payload":{}}]`, status: 400, index: intp(0), field: "type",
			msg: `message 0: field "type": unknown message type "GOSSIP"`},
		{name: "missing clientId", body: `[` + ok + `,` + strings.Replace(ok, `"clientId":"ok-1",`, "", 1) + `]`, status: 400, index: intp(1), field: "clientId",
			msg: `message 1: field "clientId": missing; every message needs a unique client ID`},
		{name: "response without requestId", body: `[` + responseMsg("r1", d.endpointID, "", 200, "OK") + `]`, status: 400, index: intp(0), field: "payload.requestId",
			msg: `message 0: field "payload.requestId": missing; expected the id of the REQUEST answered`},
		{name: "spoofed source", body: `[` + ok + `,` + dataMsg("x-2", "0-SOMEONEELSE", "urn:x", `{"a":1}`) + `]`, status: 403, index: intp(1), field: "source",
			msg: `message 1: source "0-SOMEONEELSE" is neither the sending endpoint "` + d.endpointID + `" nor one of its indirectly connected devices`},
		{name: "bad acceptBytes", query: "?acceptBytes=-1", body: "[]", status: 400,
			msg: `query parameter acceptBytes is "-1", expected a non-negative integer`},
		{name: "bad iot.timeout", query: "?acceptBytes=100&iot.sync&iot.timeout=soon", body: "[]", status: 400,
			msg: `query parameter iot.timeout is "soon", expected a non-negative number of seconds`},
		{name: "body over 1 MiB", body: "[" + strings.Repeat(" ", MaxBodyBytes) + "]", status: 413,
			msg: `request body is 1048578 bytes, expected at most 1048576 (1 MiB)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := d.send(tt.query, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			ae := r.apiError(t)
			if ae.Message != tt.msg || ae.Status != tt.status || ae.Field != tt.field || deref(ae.Index) != deref(tt.index) {
				t.Fatalf("got   %q index %v field %q\nwant  %q index %v field %q", ae.Message, deref(ae.Index), ae.Field, tt.msg, deref(tt.index), tt.field)
			}
		})
	}
	t.Run("chunked body over 1 MiB", func(t *testing.T) {
		h := d.headers()
		r := e.do("POST", "/iot/api/v2/messages", io.MultiReader(strings.NewReader("["), strings.NewReader(strings.Repeat(" ", MaxBodyBytes))), h)
		if ae := r.apiError(t); r.status != 413 || ae.Message != "request body is larger than 1048576 bytes (1 MiB)" {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	// Nothing of the rejected batches was stored.
	var list api.List[api.Message]
	e.mustAdmin(200, "GET", api.Root+"/messages", nil, &list)
	if len(list.Items) != 0 {
		t.Fatalf("stored %d messages of rejected batches", len(list.Items))
	}
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestMessagesReplay(t *testing.T) {
	e := newEnv(t)
	e.addModels()
	d := e.register(api.DeviceTypeDirect, 0)
	d.activate(humidityURN)
	m1 := dataMsg("dup-1", d.endpointID, humidityURN+":attributes", `{"humidity":50}`)
	m2 := dataMsg("dup-2", d.endpointID, humidityURN+":attributes", `{"humidity":51}`)
	for i, body := range []string{"[" + m1 + "]", "[" + m1 + "," + m2 + "," + m2 + "]"} {
		if r := d.send("", body); r.status != http.StatusAccepted {
			t.Fatalf("batch %d: %d %s", i, r.status, r.body)
		}
	}
	var list api.List[api.Message]
	e.mustAdmin(200, "GET", api.Root+"/messages?source="+d.endpointID, nil, &list)
	if len(list.Items) != 2 {
		t.Fatalf("stored %d messages, want 2 (replays acknowledged, not stored)", len(list.Items))
	}
	// After the window the same clientId is new again.
	e.clock.Advance(DefaultDedupWindow + time.Second)
	d.getToken("")
	d.send("", "["+m1+"]")
	e.mustAdmin(200, "GET", api.Root+"/messages?source="+d.endpointID, nil, &list)
	if len(list.Items) != 3 {
		t.Fatalf("stored %d messages, want 3 after the dedup window", len(list.Items))
	}
}

// TestMessagesPaging lists 250 messages received in one millisecond (three
// batches of one device; the test clock stands still) 100 at a time with the
// after cursor: three pages, every message once, in the order sent.
func TestMessagesPaging(t *testing.T) {
	e := newEnv(t)
	e.addModels()
	d := e.register(api.DeviceTypeDirect, 0)
	d.activate(humidityURN)
	other := e.register(api.DeviceTypeDirect, 1)
	other.activate(humidityURN)
	var sent []string
	for _, n := range []int{100, 100, 50} {
		var batch []string
		for range n {
			id := fmt.Sprintf("m-%03d", len(sent))
			sent = append(sent, id)
			batch = append(batch, dataMsg(id, d.endpointID, humidityURN+":attributes", `{"humidity":50}`))
		}
		if r := d.send("", "["+strings.Join(batch, ",")+"]"); r.status != http.StatusAccepted {
			t.Fatalf("batch: %d %s", r.status, r.body)
		}
	}
	clientIDs := func(items []api.Message) []string {
		var out []string
		for _, m := range items {
			var w struct {
				ClientID string `json:"clientId"`
			}
			if err := json.Unmarshal(m.Message, &w); err != nil {
				t.Fatalf("stored message %s: %v", m.Message, err)
			}
			out = append(out, w.ClientID)
		}
		return out
	}
	ms := e.clock.Now().UnixMilli()
	for _, start := range []string{"after=0", "since=" + strconv.FormatInt(ms, 10)} {
		t.Run(start, func(t *testing.T) {
			var got []string
			var seqs []uint64
			cursor := start
			for i, n := range []int{100, 100, 50} {
				var list api.MessageList
				e.mustAdmin(200, "GET", api.Root+"/messages?source="+d.endpointID+"&limit=100&"+cursor, nil, &list)
				if len(list.Items) != n || list.HasMore != (i < 2) {
					t.Fatalf("page %d (%s): %d messages, hasMore %v; want %d, %v", i+1, cursor, len(list.Items), list.HasMore, n, i < 2)
				}
				for _, m := range list.Items {
					if m.Received != ms {
						t.Fatalf("message %d received at %d, want %d (the same millisecond)", m.Seq, m.Received, ms)
					}
					seqs = append(seqs, m.Seq)
				}
				if last := list.Items[n-1].Seq; list.Next != last {
					t.Fatalf("page %d: next %d, want the last seq %d", i+1, list.Next, last)
				}
				got = append(got, clientIDs(list.Items)...)
				cursor = "after=" + strconv.FormatUint(list.Next, 10)
			}
			if !reflect.DeepEqual(got, sent) {
				t.Fatalf("listed %d messages %v...\nwant %d in the order sent", len(got), got[:min(len(got), 5)], len(sent))
			}
			for i := 1; i < len(seqs); i++ {
				if seqs[i] != seqs[i-1]+1 {
					t.Fatalf("seq %d follows %d", seqs[i], seqs[i-1])
				}
			}
		})
	}

	// The client's AllMessages pages the same way.
	cl, err := client.New(e.ts.URL, adminToken, client.WithHTTPClient(e.ts.Client()))
	if err != nil {
		t.Fatal(err)
	}
	var all []api.Message
	for m, err := range cl.AllMessages(t.Context(), client.MessageQuery{Source: d.endpointID, Limit: 100}) {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, m)
	}
	if got := clientIDs(all); !reflect.DeepEqual(got, sent) {
		t.Fatalf("AllMessages listed %d messages, want the %d sent in order", len(got), len(sent))
	}

	// Past the end: nothing more; another device's message moves next past it.
	last := all[len(all)-1].Seq
	q := api.Root + "/messages?source=" + d.endpointID + "&after=" + strconv.FormatUint(last, 10)
	var list api.MessageList
	e.mustAdmin(200, "GET", q, nil, &list)
	if len(list.Items) != 0 || list.HasMore || list.Next != last {
		t.Fatalf("after the last message: %+v, want no items and next %d", list, last)
	}
	other.send("", "["+dataMsg("o-1", other.endpointID, humidityURN+":attributes", `{"humidity":60}`)+"]")
	e.mustAdmin(200, "GET", q, nil, &list)
	if len(list.Items) != 0 || list.HasMore || list.Next != last+1 {
		t.Fatalf("after another device's message: %+v, want no items and next %d", list, last+1)
	}
	e.mustAdmin(200, "GET", api.Root+"/messages?limit=1", nil, &list)
	if len(list.Items) != 1 || list.Items[0].Seq != last+1 || !list.HasMore || list.Next != last+1 {
		t.Fatalf("newest: %+v, want the other device's message, seq %d", list, last+1)
	}

	// A cursor beyond the newest message is refused.
	r := e.admin("GET", api.Root+"/messages?after="+strconv.FormatUint(last+2, 10), nil)
	want := fmt.Sprintf("query parameter after is %d, beyond the newest message (seq %d): expected the seq of a message or the next of an earlier answer of this cloud (was its data directory reset?)", last+2, last+1)
	if ae := r.apiError(t); r.status != 400 || ae.Status != 400 || ae.Message != want {
		t.Fatalf("after beyond the newest: %d %q\nwant 400 %q", r.status, ae.Message, want)
	}
}

func TestMessagesAcceptBytes(t *testing.T) {
	e := newEnv(t)
	e.addModels()
	d := e.register(api.DeviceTypeDirect, 0)
	d.activate(humidityURN)
	var ids []string
	for _, v := range []int{61, 62, 63} {
		var acc api.Accepted
		e.mustAdmin(202, "PUT", api.Root+"/devices/"+d.endpointID+"/deviceModels/"+humidityURN+"/attributes/maxThreshold", api.SetAttribute{Value: v}, &acc)
		ids = append(ids, acc.RequestID)
	}
	var req api.Request
	e.mustAdmin(200, "GET", api.Root+"/requests/"+ids[0], nil, &req)

	// Too small for the first request: nothing, and the size needed.
	r := d.send("?acceptBytes=10", "")
	need := r.header.Get("X-min-acceptBytes")
	if r.status != 200 || len(r.body) != 0 || need == "" {
		t.Fatalf("small buffer: %d %q X-min-acceptBytes=%q", r.status, r.body, need)
	}
	// Exactly the size needed: one request.
	r = d.send("?acceptBytes="+need, "")
	msgs, err := message.Decode(r.body)
	if err != nil || len(msgs) != 1 || msgs[0].ID != ids[0] || fmt.Sprint(len(r.body)) != need {
		t.Fatalf("exact buffer (%s): %d %s %v", need, r.status, r.body, err)
	}
	// acceptBytes=0: no room, nothing delivered, no header.
	r = d.send("?acceptBytes=0", "")
	if r.status != 200 || string(r.body) != "[]" || r.header.Get("X-min-acceptBytes") != "" {
		t.Fatalf("zero buffer: %d %q %v", r.status, r.body, r.header)
	}
	// Default (4192) takes the other two.
	r = d.send("", "")
	msgs, err = message.Decode(r.body)
	if err != nil || len(msgs) != 2 || msgs[0].ID != ids[1] || msgs[1].ID != ids[2] {
		t.Fatalf("default buffer: %s %v", r.body, err)
	}
	e.mustAdmin(200, "GET", api.Root+"/requests/"+ids[2], nil, &req)
	if req.Status != api.RequestDelivered {
		t.Fatalf("status %s", req.Status)
	}
	// Unanswered past the TTL: EXPIRED.
	e.clock.Advance(DefaultRequestTTL + time.Second)
	e.mustAdmin(200, "GET", api.Root+"/requests/"+ids[2], nil, &req)
	if req.Status != api.RequestExpired {
		t.Fatalf("status %s, want EXPIRED", req.Status)
	}
}

func TestLongPoll(t *testing.T) {
	e := newEnv(t)
	e.addModels()
	d := e.register(api.DeviceTypeDirect, 0)
	d.activate(humidityURN)

	t.Run("times out empty", func(t *testing.T) {
		start := time.Now()
		r := d.send("?acceptBytes=4192&iot.sync&iot.timeout=1", "")
		if r.status != 200 || string(r.body) != "[]" || time.Since(start) < time.Second {
			t.Fatalf("%d %q after %s", r.status, r.body, time.Since(start))
		}
	})
	t.Run("wakes on a request", func(t *testing.T) {
		got := make(chan response, 1)
		go func() { got <- d.send("?acceptBytes=4192&iot.sync&iot.timeout=30", "") }()
		time.Sleep(200 * time.Millisecond) // let the poll start waiting
		var acc api.Accepted
		e.mustAdmin(202, "PUT", api.Root+"/devices/"+d.endpointID+"/deviceModels/"+humidityURN+"/attributes/maxThreshold", api.SetAttribute{Value: 70}, &acc)
		select {
		case r := <-got:
			msgs, err := message.Decode(r.body)
			if r.status != 200 || err != nil || len(msgs) != 1 || msgs[0].ID != acc.RequestID {
				t.Fatalf("%d %s %v", r.status, r.body, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("long poll not woken by a queued request")
		}
	})
	t.Run("Drain ends it and later ones, the server keeps serving", func(t *testing.T) {
		got := make(chan response, 1)
		go func() { got <- d.send("?acceptBytes=4192&iot.sync&iot.timeout=30", "") }()
		time.Sleep(200 * time.Millisecond)
		e.srv.Drain()
		select {
		case r := <-got:
			if r.status != 200 || string(r.body) != "[]" {
				t.Fatalf("%d %s", r.status, r.body)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Drain did not end the long poll")
		}
		start := time.Now()
		if r := d.send("?acceptBytes=4192&iot.sync&iot.timeout=30", ""); r.status != 200 || time.Since(start) > 5*time.Second {
			t.Fatalf("long poll after Drain: %d %s after %s", r.status, r.body, time.Since(start))
		}
		e.srv.Drain() // idempotent
		e.restart()
		d.getToken("")
	})
	t.Run("Close ends it", func(t *testing.T) {
		got := make(chan response, 1)
		go func() { got <- d.send("?acceptBytes=4192&iot.sync&iot.timeout=30", "") }()
		time.Sleep(200 * time.Millisecond)
		closed := make(chan error, 1)
		go func() { closed <- e.srv.Close() }()
		select {
		case r := <-got:
			if r.status != 200 || string(r.body) != "[]" {
				t.Fatalf("%d %s", r.status, r.body)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not end the long poll")
		}
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
		r := d.send("", "")
		if ae := r.apiError(t); r.status != 503 || ae.Message != "iotcloud is shutting down" {
			t.Fatalf("after Close: %d %s", r.status, r.body)
		}
		e.open()
	})
}
