package device

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

// fakePolicies is a ports.PolicySource in memory: the raw policy of each
// (model URN, device), failures on demand, and a record of every call.
type fakePolicies struct {
	mu       sync.Mutex
	policies map[string]string // "urn|device" -> raw JSON
	errs     []error           // the next calls fail with these, in order
	hang     bool              // calls wait until ctx ends (a cloud that never answers)
	calls    []string          // "urn|device" of every call
	times    []time.Time
}

func newFakePolicies() *fakePolicies { return &fakePolicies{policies: map[string]string{}} }

func (f *fakePolicies) set(urn, device, raw string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if raw == "" {
		delete(f.policies, urn+"|"+device)
		return
	}
	f.policies[urn+"|"+device] = raw
}

func (f *fakePolicies) DevicePolicy(ctx context.Context, urn, device string) ([]byte, error) {
	f.mu.Lock()
	f.calls = append(f.calls, urn+"|"+device)
	f.times = append(f.times, time.Now())
	hang := f.hang
	var err error
	if len(f.errs) > 0 {
		err, f.errs = f.errs[0], f.errs[1:]
	}
	raw, ok := f.policies[urn+"|"+device]
	f.mu.Unlock()
	switch {
	case hang:
		<-ctx.Done()
		return nil, ctx.Err()
	case err != nil:
		return nil, err
	case !ok:
		return nil, &ports.CloudError{Op: "fetch the device policy", Status: 200, Permanent: true, Index: -1,
			Err: fmt.Errorf("no policy is assigned (%w)", ports.ErrNotFound)}
	}
	return []byte(raw), nil
}

func (f *fakePolicies) DevicePolicyByID(context.Context, string, string) ([]byte, error) {
	return nil, errors.New("not used by the device")
}

func (f *fakePolicies) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

var _ ports.PolicySource = (*fakePolicies)(nil)

// policyRig is a rig whose device fetches policies from a fakePolicies.
func policyRig() (*rig, *fakePolicies) {
	r := newRig(true)
	src := newFakePolicies()
	r.cfg.Policies = src
	return r, src
}

const policyURL = "deviceModels/urn:oracle:iot:dcd:capability:device_policy/policyChanged"

// pushPolicyChange has the cloud push a policyChanged request with body.
func pushPolicyChange(r *rig, id, body string) {
	r.cloud.push(newRequest(id, testEP, "POST", policyURL, body, nil))
}

func TestOfferWithoutPolicySourceIsSet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		d := r.device(t)
		v := virtualDevice(t, d, "humidity_sensor")
		if err := v.Offer("humidity", 41); err != nil {
			t.Fatal(err)
		}
		if err := v.Set("humidity", 42); err != nil {
			t.Fatal(err)
		}
		setErr := v.Set("humidity", 140)
		offerErr := v.Offer("humidity", 140)
		if setErr == nil || offerErr == nil || offerErr.Error() != setErr.Error() {
			t.Errorf("Offer(140) = %v, Set(140) = %v: want the same error", offerErr, setErr)
		}
		settle(time.Second)
		data := r.cloud.sentData(humidityURN + ":attributes")
		if len(data) != 2 || field(data[0], "humidity") != int64(41) || field(data[1], "humidity") != int64(42) {
			t.Fatalf("sent %+v", data)
		}
		if data[0].Priority != data[1].Priority || data[0].Reliability != data[1].Reliability {
			t.Errorf("Offer sent %s %s, Set %s %s", data[0].Priority, data[0].Reliability, data[1].Priority, data[1].Reliability)
		}
		if id := v.PolicyID(); id != "" {
			t.Errorf("PolicyID() = %q without a policy source", id)
		}
		closeDevice(t, d)
		if err := v.Offer("humidity", 1); !errors.Is(err, ErrClosed) || err.Error() != `offer attribute "humidity": device closed` {
			t.Errorf("Offer after Close: %v", err)
		}
	})
}

func TestOfferWithoutAssignedPolicyIsSet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, src := policyRig()
		d := r.device(t)
		v := virtualDevice(t, d, "humidity_sensor")
		synctest.Wait()
		if got, want := src.callLog(), []string{humidityURN + "|" + testEP}; !slices.Equal(got, want) {
			t.Fatalf("policy fetches %q, want %q", got, want)
		}
		if err := v.Offer("humidity", 41); err != nil {
			t.Fatal(err)
		}
		settle(time.Second)
		if data := r.cloud.sentData(humidityURN + ":attributes"); len(data) != 1 || field(data[0], "humidity") != int64(41) {
			t.Fatalf("sent %+v", data)
		}
		if got, ok := v.Get("humidity"); !ok || got.Int() != 41 {
			t.Errorf("Get = %v, %v", got, ok)
		}
		closeDevice(t, d)
	})
}

func TestPolicyFetchRetriesWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, src := policyRig()
		unreachable := &ports.CloudError{Op: "fetch the device policy", Err: errors.New("connection refused"), Index: -1}
		src.errs = []error{unreachable, unreachable, unreachable}
		d := r.device(t, WithBackoff(time.Second, 4*time.Second))
		start := time.Now()
		virtualDevice(t, d, "humidity_sensor")
		settle(time.Minute)
		src.mu.Lock()
		var offsets []time.Duration
		for _, at := range src.times {
			offsets = append(offsets, at.Sub(start))
		}
		src.mu.Unlock()
		// The test backoff waits its full ceiling: 1 s, 2 s, 4 s.
		if want := []time.Duration{0, time.Second, 3 * time.Second, 7 * time.Second}; !slices.Equal(offsets, want) {
			t.Errorf("fetches at %v, want %v", offsets, want)
		}
		if n := strings.Count(r.logs.String(), "device policy not fetched; retrying with backoff"); n != 1 {
			t.Errorf("outage warned %d times, want once:\n%s", n, r.logs)
		}
		closeDevice(t, d)
	})
}

func TestPolicyFetchPermanentErrorReachesOnError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, src := policyRig()
		src.hang = true // until OnError is set
		d := r.device(t)
		v := virtualDevice(t, d, "humidity_sensor")
		synctest.Wait() // the first fetch hangs
		sink := &errorSink{}
		v.OnError(sink.add)
		src.mu.Lock()
		src.hang = false
		src.errs = []error{&ports.CloudError{Op: "fetch the device policy", Status: 403, Permanent: true, Index: -1,
			Err: errors.New("forbidden")}}
		src.mu.Unlock()
		pushPolicyChange(r, "p1", `[{"deviceModelUrn":"`+humidityURN+`","id":"p","lastModified":1,"op":"assigned"}]`)
		settle(time.Second)
		// The first fetch hung; the push canceled it, fetched again and failed.
		if calls := src.callLog(); len(calls) != 2 {
			t.Errorf("%d fetches, want 2 (the hung one, then the push's)", len(calls))
		}
		want := []string{`device policy for model "urn:com:oracle:iot:device:humidity_sensor" on device dev-ep-1 not fetched, ` +
			`the current one stays: fetch the device policy: cloud answered 403: forbidden`}
		closeDevice(t, d)
		if got := sink.texts(); !slices.Equal(got, want) {
			t.Errorf("OnError got %q, want %q", got, want)
		}
	})
}

func TestPolicyChangedRequests(t *testing.T) {
	change := func(urn, id, op string) string {
		return fmt.Sprintf(`[{"deviceModelUrn":%q,"id":%q,"lastModified":1700000000000,"op":%q}]`, urn, id, op)
	}
	const want = `expected a JSON array [{"deviceModelUrn":"<urn>","id":"<policy id>","lastModified":<ms>,"op":"changed|assigned|unassigned"}, ...]`
	tests := []struct {
		name   string
		body   string
		status int
		answer string
		// fetches are the policy fetches the push caused, beyond the
		// first fetch of each virtual device.
		fetches []string
	}{
		{name: "changed", body: change(humidityURN, "p1", "changed"), status: 200, answer: "OK",
			fetches: []string{humidityURN + "|" + testEP}},
		{name: "assigned, op in capitals", body: change(lightURN, "p1", "ASSIGNED"), status: 200, answer: "OK",
			fetches: []string{lightURN + "|" + testEP}},
		{name: "base64 text", body: base64.StdEncoding.EncodeToString([]byte(change(humidityURN, "p1", "changed"))),
			status: 200, answer: "OK", fetches: []string{humidityURN + "|" + testEP}},
		{name: "without model: every model", body: `[{"op":"changed"}]`, status: 200, answer: "OK",
			fetches: []string{lightURN + "|" + testEP, humidityURN + "|" + testEP}}, // sorted
		{name: "another model", body: change("urn:x", "p1", "changed"), status: 200, answer: "OK"},
		{name: "unassigned, not the installed policy", body: change(humidityURN, "p1", "unassigned"), status: 200, answer: "OK"},
		{name: "empty array", body: `[]`, status: 200, answer: "OK"},
		{name: "object", body: `{"op":"changed"}`, status: 400,
			answer: `policyChanged: body "{\"op\":\"changed\"}" is not an array of changes, ` + want},
		{name: "empty", body: ``, status: 400, answer: `policyChanged: body "" is not an array of changes, ` + want},
		{name: "wrong type", body: `[{"op":1}]`, status: 400,
			answer: `policyChanged: body "[{\"op\":1}]" is not an array of changes, ` + want},
		{name: "unknown op", body: change(humidityURN, "p1", "renamed"), status: 400,
			answer: `policyChanged: change 0: op "renamed" is unknown, ` + want},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r, src := policyRig()
				d := r.device(t)
				virtualDevice(t, d, "humidity_sensor")
				virtualDevice(t, d, "light_switch")
				synctest.Wait()
				before := len(src.callLog())
				pushPolicyChange(r, "c1", tt.body)
				settle(time.Second)
				resp := r.cloud.response(t, "c1")
				if resp.StatusCode != tt.status || string(resp.Body) != tt.answer {
					t.Errorf("answered %d %q, want %d %q", resp.StatusCode, resp.Body, tt.status, tt.answer)
				}
				got := src.callLog()[before:]
				slices.Sort(got)
				if !slices.Equal(got, tt.fetches) {
					t.Errorf("fetches %q, want %q", got, tt.fetches)
				}
				closeDevice(t, d)
			})
		})
	}
}

func TestPolicyChangedWithoutPolicySource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(true)
		d := r.device(t)
		virtualDevice(t, d, "humidity_sensor")
		pushPolicyChange(r, "c1", `[{"deviceModelUrn":"`+humidityURN+`","id":"p1","lastModified":1,"op":"changed"}]`)
		settle(time.Second)
		if resp := r.cloud.response(t, "c1"); resp.StatusCode != 200 {
			t.Errorf("answered %d %q", resp.StatusCode, resp.Body)
		}
		if !strings.Contains(r.logs.String(), "ignored: the device has no policy source") {
			t.Errorf("logs:\n%s", r.logs)
		}
		closeDevice(t, d)
	})
}

func TestGatewayFetchesPoliciesOfItsDevices(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, src := policyRig()
		g := r.gateway(t)
		m := loadModel(t, "humidity_sensor")
		for _, ep := range []string{"icd-a", "icd-b", testEP} {
			if _, err := g.CreateVirtualDevice(ep, m); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := g.CreateVirtualDevice("icd-a", loadModel(t, "light_switch")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		got := src.callLog()
		slices.Sort(got)
		humidity := []string{humidityURN + "|" + testEP, humidityURN + "|icd-a", humidityURN + "|icd-b"}
		want := append([]string{lightURN + "|icd-a"}, humidity...) // sorted
		if !slices.Equal(got, want) {
			t.Errorf("fetches %q, want %q", got, want)
		}
		// A change of the humidity policy fetches it again for every
		// virtual device of that model.
		pushPolicyChange(r, "c1", `[{"deviceModelUrn":"`+humidityURN+`","id":"p1","lastModified":1,"op":"changed"}]`)
		settle(time.Second)
		got = src.callLog()[len(want):]
		slices.Sort(got)
		if !slices.Equal(got, humidity) {
			t.Errorf("fetches after the push %q, want %q", got, humidity)
		}
		if err := g.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPolicyFetchCanceledAtClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, src := policyRig()
		src.hang = true
		d := r.device(t)
		v := virtualDevice(t, d, "humidity_sensor")
		if err := v.Offer("humidity", 3); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		closeDevice(t, d)
		if took := time.Since(start); took > time.Second {
			t.Errorf("Close took %s with a fetch hanging", took)
		}
		if data := r.cloud.sentData(humidityURN + ":attributes"); len(data) != 1 {
			t.Errorf("sent %+v", data)
		}
	})
}

func TestNetworkCostOption(t *testing.T) {
	r := newRig(true)
	if _, err := NewDirectlyConnectedDevice(r.cfg, WithNetworkCost("cellular")); err != nil {
		t.Errorf("WithNetworkCost(cellular): %v", err)
	}
	_, err := NewDirectlyConnectedDevice(r.cfg, WithNetworkCost("wifi"))
	want := `new directly connected device: option WithNetworkCost: "WIFI", expected ETHERNET, CELLULAR or SATELLITE`
	if err == nil || err.Error() != want {
		t.Errorf("WithNetworkCost(wifi): %v, want %s", err, want)
	}
}

// sentTypes returns the types of the sent messages of source, for messages.
func sentTypes(msgs []message.Message) []message.Type {
	var out []message.Type
	for _, m := range msgs {
		out = append(out, m.Type)
	}
	return out
}

// policyJSON returns a device policy with the given pipelines (JSON
// objects, comma-separated).
func policyJSON(id string, pipelines string) string {
	return `{"id":"` + id + `","description":"test","enabled":true,"lastModified":1700000000000,"pipelines":[` + pipelines + `]}`
}

// pipelineJSON returns one pipeline of attr with one function.
func pipelineJSON(attr, fn, params string) string {
	return `{"attributeName":"` + attr + `","pipeline":[{"id":"` + fn + `","parameters":` + params + `}]}`
}

// withPolicy returns a device whose virtual device of the named model has
// the policy raw installed.
func withPolicy(t *testing.T, r *rig, src *fakePolicies, name, urn, raw string, opts ...Option) (*DirectlyConnectedDevice, *VirtualDevice) {
	t.Helper()
	src.set(urn, testEP, raw)
	d := r.device(t, opts...)
	v := virtualDevice(t, d, name)
	synctest.Wait()
	if v.PolicyID() == "" {
		t.Fatalf("no policy installed; logs:\n%s", r.logs)
	}
	return d, v
}

func TestOfferFilterCondition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, src := policyRig()
		d, v := withPolicy(t, r, src, "humidity_sensor", humidityURN,
			policyJSON("p1", pipelineJSON("humidity", "filterCondition", `{"condition":"$(humidity) > 90"}`)))
		for _, h := range []int{50, 95, 60} {
			if err := v.Offer("humidity", h); err != nil {
				t.Fatal(err)
			}
		}
		// Out of range, but the policy sees it first and its filter drops it.
		if err := v.Offer("humidity", 140); err != nil {
			t.Errorf("Offer(140) = %v, want nil (filtered out)", err)
		}
		setErr := v.Set("humidity", "wet")
		if err := v.Offer("humidity", "wet"); err == nil || err.Error() != setErr.Error() {
			t.Errorf("Offer(wet) = %v, want Set's %v", err, setErr)
		}
		if err, want := v.Offer("nope", 1), `attribute "nope": not in device model "`+humidityURN+`"`; err == nil || err.Error() != want {
			t.Errorf("Offer(nope) = %v, want %s", err, want)
		}
		settle(time.Second)
		if got, want := humidities(r.cloud.sent()), []int64{50, 60}; !slices.Equal(got, want) {
			t.Errorf("sent humidity %v, want %v", got, want)
		}
		if got, _ := v.Get("humidity"); got.Int() != 60 {
			t.Errorf("Get = %v, want the last value sent", got)
		}
		closeDevice(t, d)
	})
}

func TestOfferMeanWindowWithoutFurtherOffers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, src := policyRig()
		d, v := withPolicy(t, r, src, "humidity_sensor", humidityURN,
			policyJSON("p1", pipelineJSON("humidity", "mean", `{"window":10000}`)))
		start := time.Now()
		for _, h := range []int{40, 50, 60} {
			if err := v.Offer("humidity", h); err != nil {
				t.Fatal(err)
			}
			settle(2 * time.Second)
		}
		if got := humidities(r.cloud.sent()); len(got) != 0 {
			t.Fatalf("sent %v inside the window", got)
		}
		settle(5 * time.Second) // the window ends at start + 10 s
		data := r.cloud.sentData(humidityURN + ":attributes")
		if len(data) != 1 || field(data[0], "humidity") != int64(50) {
			t.Fatalf("sent %+v, want one mean of 50", data)
		}
		if at := data[0].EventTime; !at.Equal(start.Add(10 * time.Second)) {
			t.Errorf("eventTime %s, want the window's end %s", at, start.Add(10*time.Second))
		}
		if got, _ := v.Get("humidity"); got.Int() != 50 {
			t.Errorf("Get = %v, want the mean", got)
		}
		closeDevice(t, d)
	})
}

func TestOfferAlertCondition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, src := policyRig()
		d, v := withPolicy(t, r, src, "humidity_sensor", humidityURN, policyJSON("p1", pipelineJSON("humidity", "alertCondition",
			`{"condition":"$(humidity) > $(maxThreshold)","alert":{"urn":"`+humidityURN+`:too_humid","fields":{"humidity":"$(humidity)"},"severity":"CRITICAL"},"filter":false}`)))
		for _, h := range []int{70, 85} {
			if err := v.Offer("humidity", h); err != nil {
				t.Fatal(err)
			}
		}
		settle(time.Second)
		var alerts []message.Message
		for _, m := range r.cloud.sent() {
			if m.Type == message.TypeAlert {
				alerts = append(alerts, m)
			}
		}
		if len(alerts) != 1 {
			t.Fatalf("%d alerts, want 1: %v", len(alerts), sentTypes(r.cloud.sent()))
		}
		a := alerts[0]
		if a.Alert.Format != humidityURN+":too_humid" || a.Alert.Severity != message.SeverityCritical ||
			a.Alert.Description != "Humidity is above maxThreshold" || len(a.Alert.Fields) != 1 ||
			a.Alert.Fields[0].Value != int64(85) || a.Priority != message.PriorityHighest || a.Reliability != message.GuaranteedDelivery {
			t.Errorf("alert %+v %+v", a, a.Alert)
		}
		if got, want := humidities(r.cloud.sent()), []int64{70, 85}; !slices.Equal(got, want) {
			t.Errorf("sent humidity %v, want %v (filter false lets values through)", got, want)
		}
		closeDevice(t, d)
	})
}

func TestOfferActionCondition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, src := policyRig()
		const lightEP = testEP
		d, v := withPolicy(t, r, src, "light_switch", lightURN, policyJSON("p1",
			pipelineJSON("brightness", "actionCondition", `{"condition":"$(brightness) > 90","action":{"name":"blink","arguments":[3]}}`)+","+
				pipelineJSON("label", "actionCondition", `{"condition":"1 > 0","action":{"name":"toggle"},"filter":false}`)))
		var mu sync.Mutex
		var calls []string
		if err := v.SetCallable("blink", func(ctx context.Context, args map[string]model.Value) error {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, "blink "+args["value"].String())
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		sink := &errorSink{}
		v.OnError(sink.add)
		if err := v.Offer("brightness", 95); err != nil {
			t.Fatal(err)
		}
		if err := v.Offer("brightness", 20); err != nil {
			t.Fatal(err)
		}
		if err := v.Offer("label", "hall"); err != nil { // toggle has no callable
			t.Fatal(err)
		}
		settle(time.Second)
		mu.Lock()
		if want := []string{"blink 3"}; !slices.Equal(calls, want) {
			t.Errorf("calls %q, want %q", calls, want)
		}
		mu.Unlock()
		var sent []any
		for _, m := range r.cloud.sentData(lightURN + ":attributes") {
			sent = append(sent, field(m, "brightness"), field(m, "label"))
		}
		// filter (default true) drops the value that called the action.
		if want := []any{int64(20), nil, nil, "hall"}; !slices.Equal(sent, want) {
			t.Errorf("sent %v, want %v", sent, want)
		}
		want := []string{`device policy "p1": action "toggle": no callable set on the virtual device of ` + lightEP + ` for ` + lightURN}
		closeDevice(t, d)
		if got := sink.texts(); !slices.Equal(got, want) {
			t.Errorf("OnError got %q, want %q", got, want)
		}
	})
}

func TestBadPolicyReachesOnErrorAndOfferSends(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, src := policyRig()
		d := r.device(t)
		v := virtualDevice(t, d, "humidity_sensor")
		sink := &errorSink{}
		v.OnError(sink.add)
		synctest.Wait()
		src.set(humidityURN, testEP, policyJSON("p9", pipelineJSON("humidity", "meen", `{"window":1000}`)))
		pushPolicyChange(r, "c1", `[{"deviceModelUrn":"`+humidityURN+`","id":"p9","lastModified":1,"op":"assigned"}]`)
		settle(time.Second)
		if id := v.PolicyID(); id != "" {
			t.Errorf("PolicyID() = %q after a bad policy", id)
		}
		if err := v.Offer("humidity", 95); err != nil {
			t.Fatal(err)
		}
		settle(time.Second)
		if got := humidities(r.cloud.sent()); !slices.Equal(got, []int64{95}) {
			t.Errorf("sent %v, want Offer to send like Set", got)
		}
		want := []string{`device policy "p9" for model "` + humidityURN + `" on device dev-ep-1 not applied, Offer sends like Set: ` +
			`pipelines[0].pipeline[0]: function "meen" is unknown; expected one of actionCondition, alertCondition, batchByCost, ` +
			`batchBySize, batchByTime, computedMetric, detectDuplicates, eliminateDuplicates, filterCondition, max, mean, min, ` +
			`sampleQuality, standardDeviation`}
		closeDevice(t, d)
		if got := sink.texts(); !slices.Equal(got, want) {
			t.Errorf("OnError got %q,\nwant %q", got, want)
		}
	})
}

func TestPolicyChangedSwapsAndRemovesTheEngine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, src := policyRig()
		d, v := withPolicy(t, r, src, "humidity_sensor", humidityURN,
			policyJSON("p1", pipelineJSON("humidity", "mean", `{"window":10000}`)))
		for _, h := range []int{40, 60} {
			if err := v.Offer("humidity", h); err != nil {
				t.Fatal(err)
			}
		}
		settle(time.Second)
		push := func(id, policyID, op string) {
			t.Helper()
			pushPolicyChange(r, id, `[{"deviceModelUrn":"`+humidityURN+`","id":"`+policyID+`","lastModified":2,"op":"`+op+`"}]`)
			settle(time.Second)
			if resp := r.cloud.response(t, id); resp.StatusCode != 200 {
				t.Fatalf("%s answered %d %q", id, resp.StatusCode, resp.Body)
			}
		}

		// changed, same policy: the engine and what it holds stay.
		push("c0", "p1", "changed")
		if got := humidities(r.cloud.sent()); len(got) != 0 || v.PolicyID() != "p1" {
			t.Fatalf("an unchanged policy: sent %v, policy %q", got, v.PolicyID())
		}

		// changed: the old engine's held mean goes out, the new policy applies.
		src.set(humidityURN, testEP, policyJSON("p1", pipelineJSON("humidity", "filterCondition", `{"condition":"$(humidity) > 90"}`)))
		push("c1", "p1", "changed")
		if got := humidities(r.cloud.sent()); !slices.Equal(got, []int64{50}) {
			t.Fatalf("after the change sent %v, want the flushed mean 50", got)
		}
		for _, h := range []int{95, 30} {
			if err := v.Offer("humidity", h); err != nil {
				t.Fatal(err)
			}
		}
		settle(time.Second)
		if got := humidities(r.cloud.sent()); !slices.Equal(got, []int64{50, 30}) {
			t.Fatalf("with the new policy sent %v, want 95 filtered", got)
		}

		// unassigned: no policy any more, Offer sends like Set.
		src.set(humidityURN, testEP, "")
		push("c2", "p1", "unassigned")
		if id := v.PolicyID(); id != "" {
			t.Fatalf("PolicyID() = %q after unassigned", id)
		}
		if err := v.Offer("humidity", 95); err != nil {
			t.Fatal(err)
		}
		settle(time.Second)
		if got := humidities(r.cloud.sent()); !slices.Equal(got, []int64{50, 30, 95}) {
			t.Fatalf("without a policy sent %v", got)
		}

		// assigned: a policy again.
		src.set(humidityURN, testEP, policyJSON("p2", pipelineJSON("humidity", "filterCondition", `{"condition":"$(humidity) < 10"}`)))
		push("c3", "p2", "assigned")
		if id := v.PolicyID(); id != "p2" {
			t.Fatalf("PolicyID() = %q after assigned", id)
		}
		closeDevice(t, d)
	})
}

func TestCloseSendsWhatThePolicyHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, src := policyRig()
		d, v := withPolicy(t, r, src, "humidity_sensor", humidityURN,
			policyJSON("p1", pipelineJSON("humidity", "mean", `{"window":60000}`)+","+
				pipelineJSON("*", "batchBySize", `{"batchSize":10}`)))
		for _, h := range []int{40, 60} {
			if err := v.Offer("humidity", h); err != nil {
				t.Fatal(err)
			}
		}
		if err := v.Offer("maxThreshold", 90); err != nil { // held by the batch
			t.Fatal(err)
		}
		settle(time.Second)
		if got := r.cloud.sentData(humidityURN + ":attributes"); len(got) != 0 {
			t.Fatalf("sent %+v before Close", got)
		}
		closeDevice(t, d)
		var got []string
		for _, m := range r.cloud.sentData(humidityURN + ":attributes") {
			for _, f := range m.Data.Fields {
				got = append(got, fmt.Sprintf("%s=%v", f.Name, f.Value))
			}
		}
		slices.Sort(got)
		if want := []string{"humidity=50", "maxThreshold=90"}; !slices.Equal(got, want) {
			t.Errorf("sent at Close %q, want %q", got, want)
		}
	})
}

func TestBatchByTimeKeepsEventTimes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, src := policyRig()
		d, v := withPolicy(t, r, src, "humidity_sensor", humidityURN,
			policyJSON("p1", pipelineJSON("*", "batchByTime", `{"delayLimit":5000}`)))
		start := time.Now()
		for _, h := range []int{41, 42, 43} {
			if err := v.Offer("humidity", h); err != nil {
				t.Fatal(err)
			}
			settle(time.Second)
		}
		if got := humidities(r.cloud.sent()); len(got) != 0 {
			t.Fatalf("sent %v before the delay limit", got)
		}
		settle(3 * time.Second)
		data := r.cloud.sentData(humidityURN + ":attributes")
		if got := humidities(data); !slices.Equal(got, []int64{41, 42, 43}) {
			t.Fatalf("sent %v, want the batch", got)
		}
		for i, m := range data {
			if want := start.Add(time.Duration(i) * time.Second); !m.EventTime.Equal(want) {
				t.Errorf("message %d: eventTime %s, want the Offer's %s", i, m.EventTime, want)
			}
		}
		if n := len(r.cloud.batches); n != 1+1 { // the resources report, then the batch
			t.Errorf("%d sends, want the batch in one", n)
		}
		closeDevice(t, d)
	})
}

func TestPolicyErrorsReachOnError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, src := policyRig()
		d, v := withPolicy(t, r, src, "temperature_sensor", "urn:com:oracle:iot:device:temperature_sensor",
			policyJSON("p1", pipelineJSON("maxTemp", "computedMetric", `{"formula":"$(temp) + $(minTemp)"}`)))
		sink := &errorSink{}
		v.OnError(sink.add)
		if err := v.Offer("temp", 20.5); err != nil {
			t.Fatal(err)
		}
		settle(time.Second)
		closeDevice(t, d)
		want := []string{`device policy "p1": attribute "maxTemp": computedMetric: formula "$(temp) + $(minTemp)": $(minTemp) has no value`}
		if got := sink.texts(); !slices.Equal(got, want) {
			t.Errorf("OnError got %q, want %q", got, want)
		}
		if data := r.cloud.sentData("urn:com:oracle:iot:device:temperature_sensor:attributes"); len(data) != 1 || field(data[0], "temp") != 20.5 {
			t.Errorf("sent %+v, want temp alone", data)
		}
	})
}

func TestBatchByCostUsesTheNetworkCost(t *testing.T) {
	tests := []struct {
		name    string
		opts    []Option
		atOnce  []int64 // sent before Close
		atClose []int64 // sent by Close
	}{
		{name: "ethernet (default) sends", atOnce: []int64{41}, atClose: []int64{41}},
		{name: "satellite holds", opts: []Option{WithNetworkCost("satellite")}, atClose: []int64{41}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r, src := policyRig()
				d, v := withPolicy(t, r, src, "humidity_sensor", humidityURN,
					policyJSON("p1", pipelineJSON("*", "batchByCost", `{"networkCost":"CELLULAR"}`)), tt.opts...)
				if err := v.Offer("humidity", 41); err != nil {
					t.Fatal(err)
				}
				settle(time.Minute)
				if got := humidities(r.cloud.sent()); !slices.Equal(got, tt.atOnce) {
					t.Errorf("sent %v, want %v", got, tt.atOnce)
				}
				closeDevice(t, d)
				if got := humidities(r.cloud.sent()); !slices.Equal(got, tt.atClose) {
					t.Errorf("after Close sent %v, want %v", got, tt.atClose)
				}
			})
		})
	}
}

func TestOfferConcurrentWithPolicyChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, src := policyRig()
		d, v := withPolicy(t, r, src, "humidity_sensor", humidityURN,
			policyJSON("p1", pipelineJSON("humidity", "mean", `{"window":1000}`)))
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 50 {
					if err := v.Offer("humidity", (g*50+i)%100); err != nil {
						t.Error(err)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			})
		}
		for i := range 5 {
			time.Sleep(time.Second)
			src.set(humidityURN, testEP, policyJSON("p1", pipelineJSON("humidity", "mean", fmt.Sprintf(`{"window":%d}`, 1000+i))))
			pushPolicyChange(r, fmt.Sprintf("c%d", i), `[{"deviceModelUrn":"`+humidityURN+`","id":"p1","lastModified":2,"op":"changed"}]`)
		}
		wg.Wait()
		closeDevice(t, d)
		if got := humidities(r.cloud.sent()); len(got) < 5 {
			t.Errorf("sent %v: want a mean per window", got)
		}
	})
}

func TestPolicyActionFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, src := policyRig()
		d, v := withPolicy(t, r, src, "light_switch", lightURN, policyJSON("p1",
			pipelineJSON("brightness", "actionCondition", `{"condition":"$(brightness) > 90","action":{"name":"blink","arguments":["$(brightness) - 80"]}}`)))
		sink := &errorSink{}
		v.OnError(sink.add)
		if err := v.SetCallable("blink", func(context.Context, map[string]model.Value) error { return errors.New("relay stuck") }); err != nil {
			t.Fatal(err)
		}
		for _, b := range []int{95, 100} { // blink 15, then 20
			if err := v.Offer("brightness", b); err != nil {
				t.Fatal(err)
			}
		}
		settle(time.Second)
		if err := v.SetCallable("blink", func(context.Context, map[string]model.Value) error { panic("boom") }); err != nil {
			t.Fatal(err)
		}
		if err := v.Offer("brightness", 99); err != nil {
			t.Fatal(err)
		}
		settle(time.Second)
		closeDevice(t, d)
		want := []string{
			`device policy "p1": action "blink": relay stuck`,
			`device policy "p1": action "blink": relay stuck`,
			`callable of action "blink" panicked: boom`,
		}
		if got := sink.texts(); !slices.Equal(got, want) {
			t.Errorf("OnError got %q, want %q", got, want)
		}
	})
}

func TestDisabledPolicyIsNotApplied(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, src := policyRig()
		src.set(humidityURN, testEP, strings.Replace(policyJSON("p1", pipelineJSON("humidity", "filterCondition", `{"condition":"$(humidity) > 90"}`)),
			`"enabled":true`, `"enabled":false`, 1))
		d := r.device(t)
		v := virtualDevice(t, d, "humidity_sensor")
		synctest.Wait()
		if id := v.PolicyID(); id != "" {
			t.Errorf("PolicyID() = %q for a disabled policy", id)
		}
		if err := v.Offer("humidity", 95); err != nil {
			t.Fatal(err)
		}
		settle(time.Second)
		if got := humidities(r.cloud.sent()); !slices.Equal(got, []int64{95}) {
			t.Errorf("sent %v", got)
		}
		closeDevice(t, d)
	})
}

func TestOfferReportsAFullOutbox(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, src := policyRig()
		r.cloud.sendErr = func([]message.Message) error {
			return &ports.CloudError{Op: "send messages", Err: errors.New("connection refused"), Index: -1}
		}
		d, v := withPolicy(t, r, src, "humidity_sensor", humidityURN,
			policyJSON("p1", pipelineJSON("humidity", "filterCondition", `{"condition":"$(humidity) > 90"}`)),
			WithOutboxBytes(1024), WithDataQoS(message.PriorityLow, message.GuaranteedDelivery))
		var err error
		for i := 0; i < 100 && err == nil; i++ {
			err = v.Offer("humidity", 50)
		}
		if !errors.Is(err, ports.ErrOutboxFull) || !strings.HasPrefix(err.Error(), `offer attribute "humidity": queue 1 message(s): `) {
			t.Errorf("Offer into a full outbox: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		d.Close(ctx) // messages stay queued
	})
}
