package cloud

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/domain/message"
)

// TestFlow walks protocol.md §1-§5 over TLS as an Oracle client would:
// activation, data, an enterprise attribute set delivered in the PATCH form,
// the device's response, and the request's final status.
func TestFlow(t *testing.T) {
	e := newEnv(t)
	e.addModels()
	d := e.register(api.DeviceTypeDirect, 0)
	d.activate(humidityURN)

	r := d.call("GET", "/iot/api/v2/deviceModels/"+humidityURN+"?expand=formats", "")
	if r.status != 200 || !strings.Contains(string(r.body), `"urn":"urn:com:oracle:iot:device:humidity_sensor"`) {
		t.Fatalf("device model: %d %s", r.status, r.body)
	}
	r = d.send("?acceptBytes=4192", "["+dataMsg("c1", d.endpointID, humidityURN+":attributes", `{"humidity":55,"maxThreshold":80}`)+"]")
	if r.status != http.StatusAccepted || string(r.body) != "[]" {
		t.Fatalf("messages: %d %q", r.status, r.body)
	}
	var attrs map[string]any
	e.mustAdmin(200, "GET", api.Root+"/devices/"+d.endpointID+"/deviceModels/"+humidityURN+"/attributes", nil, &attrs)
	if attrs["humidity"] != 55.0 || attrs["maxThreshold"] != 80.0 {
		t.Fatalf("attributes %v", attrs)
	}

	var acc api.Accepted
	e.mustAdmin(http.StatusAccepted, "PUT", api.Root+"/devices/"+d.endpointID+"/deviceModels/"+humidityURN+"/attributes/maxThreshold", api.SetAttribute{Value: 90}, &acc)
	var req api.Request
	e.mustAdmin(200, "GET", api.Root+"/requests/"+acc.RequestID, nil, &req)
	if req.Status != api.RequestPending || req.Method != "PATCH" || req.URL != "deviceModels/"+humidityURN+"/attributes" {
		t.Fatalf("request %+v", req)
	}

	r = d.send("?acceptBytes=4192", "")
	if r.status != 200 {
		t.Fatalf("poll: %d %s", r.status, r.body)
	}
	msgs, err := message.Decode(r.body)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("poll body %s: %v", r.body, err)
	}
	got := msgs[0]
	if got.Type != message.TypeRequest || got.ID != acc.RequestID || got.Destination != d.endpointID ||
		got.Request.EffectiveMethod() != "PATCH" || string(got.Request.Body) != `{"maxThreshold":90}` {
		t.Fatalf("delivered request %s", r.body)
	}
	if strings.ContainsAny(string(r.body), " \n") {
		t.Fatalf("response is not compact JSON: %s", r.body)
	}
	e.mustAdmin(200, "GET", api.Root+"/requests/"+acc.RequestID, nil, &req)
	if req.Status != api.RequestDelivered {
		t.Fatalf("status %s, want DELIVERED", req.Status)
	}
	r = d.send("", "["+responseMsg("c2", d.endpointID, acc.RequestID, 200, "OK")+"]")
	if r.status != http.StatusAccepted {
		t.Fatalf("response: %d %s", r.status, r.body)
	}
	e.mustAdmin(200, "GET", api.Root+"/requests/"+acc.RequestID, nil, &req)
	if req.Status != api.RequestCompleted || req.Response == nil || req.Response.StatusCode != 200 || req.Response.Body != "OK" {
		t.Fatalf("request after response %+v", req)
	}

	var list api.List[api.Message]
	e.mustAdmin(200, "GET", api.Root+"/messages?source="+d.endpointID, nil, &list)
	if len(list.Items) != 2 || list.HasMore {
		t.Fatalf("messages %+v", list)
	}
	var first map[string]any
	json.Unmarshal(list.Items[0].Message, &first)
	if first["clientId"] != "c1" {
		t.Fatalf("first message %s", list.Items[0].Message)
	}
	_ = base64.StdEncoding
}
