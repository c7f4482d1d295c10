package cloud

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/domain/message"
)

// TestRestart closes the Server and opens a new one on the same DataDir:
// devices, messages, attribute values, pending requests and issued tokens survive.
func TestRestart(t *testing.T) {
	e := newEnv(t)
	e.addModels()
	d := e.register(api.DeviceTypeDirect, 0)
	d.activate(humidityURN)
	waiting := e.register(api.DeviceTypeGateway, 1) // registered, not activated

	var batch []string
	for i := range 10 {
		batch = append(batch, dataMsg(fmt.Sprintf("m-%d", i), d.endpointID, humidityURN+":attributes", fmt.Sprintf(`{"humidity":%d}`, i)))
	}
	if r := d.send("", "["+strings.Join(batch, ",")+"]"); r.status != 202 {
		t.Fatalf("send: %d %s", r.status, r.body)
	}
	var acc api.Accepted
	e.mustAdmin(202, "PUT", api.Root+"/devices/"+d.endpointID+"/deviceModels/"+humidityURN+"/attributes/maxThreshold", api.SetAttribute{Value: 99}, &acc)

	e.restart()

	var devs api.List[api.Device]
	e.mustAdmin(200, "GET", api.Root+"/devices", nil, &devs)
	if len(devs.Items) != 2 {
		t.Fatalf("devices after restart: %+v", devs)
	}
	got := mustDevice(t, e, d.activationID)
	if got.State != api.StateActivated || got.EndpointID != d.endpointID || got.LastSeen == 0 {
		t.Fatalf("device after restart: %+v", got)
	}
	if w := mustDevice(t, e, waiting.activationID); w.State != api.StateRegistered {
		t.Fatalf("registered device after restart: %+v", w)
	}
	var msgs api.List[api.Message]
	e.mustAdmin(200, "GET", api.Root+"/messages?limit=5", nil, &msgs)
	if len(msgs.Items) != 5 || !msgs.HasMore || !strings.Contains(string(msgs.Items[4].Message), `"m-9"`) {
		t.Fatalf("newest messages after restart: %+v", msgs)
	}
	e.mustAdmin(200, "GET", api.Root+"/messages?since=1&limit=5", nil, &msgs)
	if len(msgs.Items) != 5 || !msgs.HasMore || !strings.Contains(string(msgs.Items[0].Message), `"m-0"`) {
		t.Fatalf("oldest messages after restart: %+v", msgs)
	}
	var attrs map[string]int
	e.mustAdmin(200, "GET", api.Root+"/devices/"+d.endpointID+"/deviceModels/"+humidityURN+"/attributes", nil, &attrs)
	if attrs["humidity"] != 9 {
		t.Fatalf("attributes after restart: %v", attrs)
	}
	// The token issued before the restart still works; the request is still pending.
	r := d.send("", "["+batch[0]+"]") // a replay across the restart is still a replay
	out, err := message.Decode(r.body)
	if r.status != 202 || err != nil || len(out) != 1 || out[0].ID != acc.RequestID {
		t.Fatalf("poll after restart: %d %s %v", r.status, r.body, err)
	}
	e.mustAdmin(200, "GET", api.Root+"/messages?limit=1000", nil, &msgs)
	if len(msgs.Items) != 10 {
		t.Fatalf("%d messages, want 10 (the replay is not stored)", len(msgs.Items))
	}
}

func TestRetention(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMessages = 5 })
	e.addModels()
	d := e.register(api.DeviceTypeDirect, 0)
	d.activate(humidityURN)
	for i := range 12 {
		d.send("", "["+dataMsg(fmt.Sprintf("r-%d", i), d.endpointID, "urn:x:data", `{"i":1}`)+"]")
	}
	var msgs api.List[api.Message]
	e.mustAdmin(200, "GET", api.Root+"/messages?since=1", nil, &msgs)
	if len(msgs.Items) != 5 || !strings.Contains(string(msgs.Items[0].Message), `"r-7"`) {
		t.Fatalf("after count cap: %d items, first %s", len(msgs.Items), msgs.Items[0].Message)
	}
	e.clock.Advance(DefaultMessageRetention + time.Second)
	d.getToken("")
	d.send("", "["+dataMsg("late", d.endpointID, "urn:x:data", `{"i":1}`)+"]")
	e.mustAdmin(200, "GET", api.Root+"/messages?since=1", nil, &msgs)
	if len(msgs.Items) != 1 || !strings.Contains(string(msgs.Items[0].Message), `"late"`) {
		t.Fatalf("after age limit: %d items, want only \"late\"", len(msgs.Items))
	}
}
