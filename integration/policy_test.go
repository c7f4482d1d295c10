package integration

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
	cloudclient "github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/domain/message"
)

// Device policies end to end, through the enterprise API and the device
// API of the reference cloud:
//
//  1. a policy assigned to the humidity model before the device activates
//     is fetched when the virtual device is created, and Offer applies it
//     (a filterCondition drops a value, an alertCondition raises an ALERT
//     and lets the value through);
//  2. a policy assigned to the device itself is pushed (policyChanged),
//     takes precedence over the model's, and its mean window sends one
//     averaged value when the window ends, with no Offer after it;
//  3. deleting the policies is pushed too: the model's policy applies
//     again, then none, and Offer sends like Set.
func TestDevicePolicyEndToEnd(t *testing.T) {
	c := startCloud(t)
	ctx := t.Context()
	addPolicy := func(doc string) string {
		t.Helper()
		raw, err := c.Client().AddPolicy(ctx, []byte(doc), humidityURN)
		if err != nil {
			t.Fatal(err)
		}
		var p struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(raw, &p); err != nil || p.ID == "" {
			t.Fatalf("add policy answered %s (%v); want an object with an id", raw, err)
		}
		return p.ID
	}
	filterAndAlert := addPolicy(`{"description":"drop impossible values, alert when humid","enabled":true,"pipelines":[
		{"attributeName":"humidity","pipeline":[
			{"id":"filterCondition","parameters":{"condition":"$(humidity) > 90"}},
			{"id":"alertCondition","parameters":{"condition":"$(humidity) > 70",
				"alert":{"urn":"` + humidityURN + `:too_humid","fields":{"humidity":"$(humidity)"},"severity":"SIGNIFICANT"},
				"filter":false}}]}]}`)
	if err := c.Client().AssignPolicy(ctx, filterAndAlert, api.PolicyAssignment{DeviceModel: humidityURN}); err != nil {
		t.Fatal(err)
	}

	path := provision(t, c, api.DeviceTypeDirect, "policy-humidity-1")
	d, v := activated(t, path, humidityURN)
	endpoint := d.EndpointID()
	awaitPolicy := func(want string) {
		t.Helper()
		if !eventually(ctx, waitFor, func() bool { return v.PolicyID() == want }) {
			t.Fatalf("the virtual device applies policy %q, want %q", v.PolicyID(), want)
		}
	}
	var sent []int // humidity values offered so far, across phases, to tell phases apart at the cloud
	offer := func(values ...int) {
		t.Helper()
		for _, h := range values {
			if err := v.Offer("humidity", h); err != nil {
				t.Fatalf("Offer(humidity, %d): %v", h, err)
			}
			sent = append(sent, h)
		}
	}
	humidities := func(msgs []message.Message) []int {
		var out []int
		for i := range msgs {
			if h, ok := fields(&msgs[i])["humidity"]; ok && msgs[i].Type == message.TypeData {
				var n int
				fmt.Sscan(fmt.Sprint(h), &n)
				out = append(out, n)
			}
		}
		return out
	}
	dataQ := cloudclient.MessageQuery{Source: endpoint, Type: string(message.TypeData)}
	alertQ := cloudclient.MessageQuery{Source: endpoint, Type: string(message.TypeAlert)}

	// 1. The model's policy, fetched at creation.
	awaitPolicy(filterAndAlert)
	offer(50, 95, 80)
	awaitMessages(t, c, dataQ, 1, dataWith(humidityURN+":attributes", "humidity", 80))
	alerts := awaitMessages(t, c, alertQ, 1, func(m *message.Message) bool { return m.Alert != nil })
	if got := humidities(mustMessages(t, c, dataQ)); !slices.Equal(got, []int{50, 80}) {
		t.Fatalf("phase 1: the cloud has humidity values %v, want [50 80] (95 filtered out)", got)
	}
	if a := alerts[0].Alert; a.Format != humidityURN+":too_humid" || fmt.Sprint(fields(&alerts[0])["humidity"]) != "80" || a.Severity != "SIGNIFICANT" {
		t.Fatalf("phase 1: alert %+v, want too_humid with humidity 80, SIGNIFICANT", *a)
	}
	t.Logf("phase 1: offered 50, 95, 80 under %s: the cloud got 50 and 80, and a too_humid alert for 80", filterAndAlert)

	// 2. The device's own policy, pushed; a 1 s mean window.
	mean := addPolicy(`{"description":"one mean a second","enabled":true,"pipelines":[
		{"attributeName":"humidity","pipeline":[{"id":"mean","parameters":{"window":1000}}]}]}`)
	if err := c.Client().AssignPolicy(ctx, mean, api.PolicyAssignment{DeviceModel: humidityURN, Devices: []string{endpoint}}); err != nil {
		t.Fatal(err)
	}
	awaitPolicy(mean)
	start := time.Now()
	offer(10, 20, 30)
	awaitMessages(t, c, dataQ, 1, dataWith(humidityURN+":attributes", "humidity", 20))
	t.Logf("phase 2: offered 10, 20, 30 under %s: the cloud got their mean, 20, %s after the first offer", mean, time.Since(start).Round(time.Millisecond))
	if got := humidities(mustMessages(t, c, dataQ)); !slices.Equal(got, []int{50, 80, 20}) {
		t.Fatalf("phase 2: the cloud has humidity values %v, want [50 80 20] (one mean for 10, 20, 30)", got)
	}

	// 3. Deletions, pushed: the model's policy again, then none.
	if err := c.Client().DeletePolicy(ctx, mean); err != nil {
		t.Fatal(err)
	}
	awaitPolicy(filterAndAlert)
	if err := c.Client().DeletePolicy(ctx, filterAndAlert); err != nil {
		t.Fatal(err)
	}
	awaitPolicy("")
	offer(99)
	awaitMessages(t, c, dataQ, 1, dataWith(humidityURN+":attributes", "humidity", 99))
	if got := humidities(mustMessages(t, c, dataQ)); !slices.Equal(got, []int{50, 80, 20, 99}) {
		t.Fatalf("phase 3: the cloud has humidity values %v, want [50 80 20 99]", got)
	}
	if n := len(mustMessages(t, c, alertQ)); n != 1 {
		t.Fatalf("the cloud has %d alerts, want the one of phase 1", n)
	}
	t.Logf("phase 3: both policies deleted: Offer(99) went out as a Set; offered in all %v", sent)
	s := d.Stats()
	t.Logf("device: sent %d, received %d requests", s.Sent, s.Received)
}

// mustMessages returns the messages the cloud stored for q.
func mustMessages(t testing.TB, c *cloud, q cloudclient.MessageQuery) []message.Message {
	t.Helper()
	msgs, err := storedMessages(t.Context(), c.Client(), q)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}
