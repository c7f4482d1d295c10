package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/domain/message"
)

// A device with offer: true runs its values through the device policy the
// cloud assigned to its model: here a filter drops every brightness above
// 15, so once the policy is in place only the 10s of the sim's 10/20 steps
// reach the cloud.
func TestRunAppliesDevicePolicies(t *testing.T) {
	t.Parallel()
	c := startCloud(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	raw, err := c.cl.AddPolicy(ctx, []byte(`{"description":"no bright values","enabled":true,"pipelines":[
		{"attributeName":"brightness","pipeline":[{"id":"filterCondition","parameters":{"condition":"$(brightness) > 15"}}]}]}`), urnLight)
	if err != nil {
		t.Fatal(err)
	}
	var p struct{ ID string }
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	if err := c.cl.AssignPolicy(ctx, p.ID, api.PolicyAssignment{DeviceModel: urnLight}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c.provision(t, dir, false)
	cfg := strings.Replace(runConfig, "        dim: {waveform: steps, values: [10, 20], every: 1s}",
		"        dim: {waveform: steps, values: [10, 20], every: 100ms}", 1)
	cfg = strings.Replace(cfg, "    sample_interval: 100ms\n", "    sample_interval: 100ms\n    offer: true\n", 1)
	cfg = strings.Replace(cfg, "      fail_every: 3\n", "", 1) // every read succeeds: no backoff between samples
	if !strings.Contains(cfg, "offer: true") || !strings.Contains(cfg, "every: 100ms") || strings.Contains(cfg, "fail_every") {
		t.Fatal("the test's config edit did not apply: runConfig changed")
	}
	path := write(t, dir, "iotnode.yaml", cfg)

	m := NewMain()
	m.testDrivers = map[string]driver{"sim_stuck_on": stuckOnDriver(m.Clock)}
	started := make(chan *node, 1)
	m.onRunning = func(n *node, addr net.Addr) { started <- n }
	done := make(chan result, 1)
	go func() { done <- runMain(t, ctx, m, nil, "run", "--config", path) }()
	var n *node
	select {
	case n = <-started:
	case r := <-done:
		t.Fatalf("run ended before it ran: exit %d\n%s", r.code, r.stderr)
	case <-time.After(60 * time.Second):
		t.Fatal("run did not start within 60s")
	}
	vd := n.devices[0].vd
	for deadline := time.Now().Add(20 * time.Second); vd.PolicyID() != p.ID; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the node's device applies policy %q, want %q", vd.PolicyID(), p.ID)
		}
	}
	applied := time.Now().UnixMilli()
	time.Sleep(1500 * time.Millisecond) // 15 samples, about half of them 20
	cancel()
	select {
	case r := <-done:
		if r.code != ExitOK {
			t.Fatalf("run: exit %d\n%s", r.code, r.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop within 20s of the cancel")
	}

	list, err := c.cl.Messages(t.Context(), client.MessageQuery{Source: n.dcd.EndpointID(), Type: "DATA", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var after []string
	for _, item := range list.Items {
		var msg message.Message
		if err := json.Unmarshal(item.Message, &msg); err != nil {
			t.Fatal(err)
		}
		if msg.Data == nil || msg.EventTime.UnixMilli() <= applied {
			continue
		}
		for _, f := range msg.Data.Fields {
			if f.Name == "brightness" {
				after = append(after, fmt.Sprint(f.Value))
			}
		}
	}
	if len(after) < 3 {
		t.Fatalf("brightness values after the policy was applied: %v, want several 10s", after)
	}
	for _, v := range after {
		if v != "10" {
			t.Fatalf("brightness values after the policy was applied: %v, want only 10 (20 filtered out)", after)
		}
	}
	t.Logf("policy %s applied; brightness values after it: %v", p.ID, after)
}
