package cloud

import (
	"encoding/json"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/store"
	"github.com/iotnode/iotnode/domain/message"
)

type pushEntry struct {
	DeviceModelURN string `json:"deviceModelUrn"`
	ID             string `json:"id"`
	LastModified   int64  `json:"lastModified"`
	Op             string `json:"op"`
}

// expectPush polls d and checks it got exactly one policyChanged request with op.
func expectPush(t *testing.T, d *device, op string) pushEntry {
	t.Helper()
	r := d.send("", "")
	msgs, err := message.Decode(r.body)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("poll of %s: %s %v", d.endpointID, r.body, err)
	}
	req := msgs[0].Request
	if req.Method != "POST" || req.URL != "deviceModels/urn:oracle:iot:dcd:capability:device_policy/policyChanged" || msgs[0].Destination != d.endpointID {
		t.Fatalf("push %s", r.body)
	}
	var entries []pushEntry
	if err := json.Unmarshal(req.Body, &entries); err != nil || len(entries) != 1 || entries[0].Op != op {
		t.Fatalf("push body %s: %v, want op %s", req.Body, err, op)
	}
	return entries[0]
}

func expectNoPush(t *testing.T, d *device) {
	t.Helper()
	if r := d.send("", ""); string(r.body) != "[]" {
		t.Fatalf("unexpected push to %s: %s", d.endpointID, r.body)
	}
}

func TestPolicies(t *testing.T) {
	e := newEnv(t)
	e.addModels()
	d := e.register(api.DeviceTypeDirect, 0)
	d.activate(humidityURN)
	other := e.register(api.DeviceTypeDirect, 1)
	other.activate(tempURN)
	gw := e.register(api.DeviceTypeGateway, 2)
	gw.activate(capIndirect)
	r := gw.call("POST", "/iot/api/v2/activation/indirect/device", `{"hardwareId":"icd-h","deviceModels":["`+humidityURN+`"]}`)
	var icd activationResponse
	json.Unmarshal(r.body, &icd)

	raw, err := os.ReadFile("../testdata/devicepolicies/humidity_sensor.policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	json.Unmarshal(raw, &doc)
	doc["deviceModelUrn"] = humidityURN
	var p store.Policy
	e.mustAdmin(201, "POST", api.Root+"/devicePolicies", doc, &p)
	if p.ID != "policy-humidity-1" || p.LastModified != e.clock.Now().UnixMilli() || !p.Enabled {
		t.Fatalf("created %+v", p)
	}
	expectNoPush(t, d) // not assigned yet

	e.mustAdmin(200, "POST", api.Root+"/devicePolicies/"+p.ID+"/assignments", api.PolicyAssignment{DeviceModel: humidityURN}, &p)
	if got := expectPush(t, d, "assigned"); got.ID != p.ID || got.DeviceModelURN != humidityURN || got.LastModified != p.LastModified {
		t.Fatalf("push %+v", got)
	}
	expectPush(t, gw, "assigned")
	expectNoPush(t, other)

	// The private API, as the device reads it.
	q := "?q=" + url.QueryEscape(`{"devices.id":"`+d.endpointID+`"}`) + "&fields=id,pipelines,enabled,lastModified"
	r = d.call("GET", "/iot/privateapi/v2/deviceModels/"+humidityURN+"/devicePolicies"+q, "")
	var found struct {
		Items []devicePolicy `json:"items"`
		Count int            `json:"count"`
	}
	if err := json.Unmarshal(r.body, &found); err != nil || r.status != 200 || found.Count != 1 || found.Items[0].ID != p.ID || !strings.Contains(string(found.Items[0].Pipelines), `"batchByTime"`) {
		t.Fatalf("find: %d %s", r.status, r.body)
	}
	r = d.call("GET", "/iot/privateapi/v2/deviceModels/"+humidityURN+"/devicePolicies/"+p.ID+"?fields=id,pipelines,enabled,lastModified", "")
	if r.status != 200 || !strings.HasPrefix(string(r.body), `{"id":"policy-humidity-1","description":`) {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	r = gw.call("GET", "/iot/privateapi/v2/deviceModels/"+humidityURN+"/devicePolicies/"+p.ID+"/devices?q="+url.QueryEscape(`{"directlyConnectedOwner":"`+gw.endpointID+`"}`)+"&fields=id", "")
	if r.status != 200 || string(r.body) != `{"items":[{"id":"`+icd.EndpointID+`"}],"count":1,"hasMore":false}` {
		t.Fatalf("devices: %d %s", r.status, r.body)
	}
	r = gw.call("GET", "/iot/privateapi/v2/deviceModels/"+humidityURN+"/devicePolicies?q="+url.QueryEscape(`{"devices.id":"`+icd.EndpointID+`"}`), "")
	if r.status != 200 || !strings.Contains(string(r.body), `"count":1`) {
		t.Fatalf("gateway find for its ICD: %d %s", r.status, r.body)
	}

	// Change: "changed" to every assigned device.
	e.clock.Advance(1000)
	doc["description"] = "changed"
	var changed store.Policy
	e.mustAdmin(200, "POST", api.Root+"/devicePolicies", doc, &changed)
	if changed.LastModified <= p.LastModified || !changed.AllDevices {
		t.Fatalf("changed %+v", changed)
	}
	expectPush(t, d, "changed")
	expectPush(t, gw, "changed")

	var list api.List[store.Policy]
	e.mustAdmin(200, "GET", api.Root+"/devicePolicies?deviceModel="+tempURN, nil, &list)
	if len(list.Items) != 0 {
		t.Fatalf("filtered list %+v", list)
	}
	e.mustAdmin(200, "GET", api.Root+"/devicePolicies", nil, &list)
	if len(list.Items) != 1 {
		t.Fatalf("list %+v", list)
	}

	e.mustAdmin(204, "DELETE", api.Root+"/devicePolicies/"+p.ID, nil, nil)
	expectPush(t, d, "unassigned")
	expectPush(t, gw, "unassigned")

	tests := []struct {
		name, method, path string
		dev                *device
		body               any
		status             int
		msg                string
	}{
		{name: "unknown function", method: "POST", path: api.Root + "/devicePolicies", status: 400,
			body: map[string]any{"deviceModelUrn": humidityURN, "pipelines": []any{map[string]any{"attributeName": "humidity", "pipeline": []any{map[string]any{"id": "explode"}}}}},
			msg:  `device policy: pipelines[0].pipeline[0].id is "explode", expected one of actionCondition, alertCondition, batchByCost, batchBySize, batchByTime, computedMetric, detectDuplicates, eliminateDuplicates, filterCondition, max, mean, min, sampleQuality, standardDeviation`},
		{name: "unknown attribute", method: "POST", path: api.Root + "/devicePolicies", status: 400,
			body: map[string]any{"deviceModelUrn": humidityURN, "pipelines": []any{map[string]any{"attributeName": "colour", "pipeline": []any{map[string]any{"id": "mean"}}}}},
			msg:  `device policy: pipelines[0].attributeName: device model urn:com:oracle:iot:device:humidity_sensor has no attribute "colour"`},
		{name: "unknown model", method: "POST", path: api.Root + "/devicePolicies", status: 400,
			body: map[string]any{"deviceModelUrn": "urn:x:nope", "pipelines": []any{}},
			msg:  `device model "urn:x:nope" is not registered`},
		{name: "deleted policy", method: "GET", path: api.Root + "/devicePolicies/" + p.ID, status: 404,
			msg: `device policy "policy-humidity-1" does not exist`},
		{name: "assign unknown policy", method: "POST", path: api.Root + "/devicePolicies/nope/assignments", body: api.PolicyAssignment{DeviceModel: humidityURN}, status: 404,
			msg: `device policy "nope" does not exist`},
		{name: "device asks for another device", dev: d, method: "GET", status: 403,
			path: "/iot/privateapi/v2/deviceModels/" + humidityURN + "/devicePolicies?q=" + url.QueryEscape(`{"devices.id":"`+other.endpointID+`"}`),
			msg:  `device policies: device "` + other.endpointID + `" is neither the caller "` + d.endpointID + `" nor one of its indirectly connected devices`},
		{name: "bad q", dev: d, method: "GET", status: 400,
			path: "/iot/privateapi/v2/deviceModels/" + humidityURN + "/devicePolicies?q=devices",
			msg:  `query parameter q is not a JSON object: invalid character 'd' looking for beginning of value`},
		{name: "gateway lists another owner", dev: gw, method: "GET", status: 403,
			path: "/iot/privateapi/v2/deviceModels/" + humidityURN + "/devicePolicies/x/devices?q=" + url.QueryEscape(`{"directlyConnectedOwner":"someone"}`),
			msg:  `device policies: directlyConnectedOwner is "someone", expected the caller "` + gw.endpointID + `"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r response
			if tt.dev != nil {
				r = tt.dev.call(tt.method, tt.path, "")
			} else {
				r = e.admin(tt.method, tt.path, tt.body)
			}
			if ae := r.apiError(t); r.status != tt.status || ae.Message != tt.msg {
				t.Fatalf("got   %d %q\nwant  %d %q", r.status, ae.Message, tt.status, tt.msg)
			}
		})
	}
	t.Run("assign to some devices", func(t *testing.T) {
		doc["id"] = "p2"
		e.mustAdmin(201, "POST", api.Root+"/devicePolicies", doc, nil)
		e.mustAdmin(200, "POST", api.Root+"/devicePolicies/p2/assignments", api.PolicyAssignment{DeviceModel: humidityURN, Devices: []string{icd.EndpointID}}, nil)
		expectPush(t, gw, "assigned")
		expectNoPush(t, d)
		r := e.admin("POST", api.Root+"/devicePolicies/p2/assignments", api.PolicyAssignment{Devices: []string{other.endpointID}})
		if ae := r.apiError(t); r.status != 400 || ae.Message != `policy assignment: device "`+other.endpointID+`" does not implement device model "`+humidityURN+`"` {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
}
