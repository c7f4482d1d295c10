package http_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"testing"

	httpadapter "github.com/iotnode/iotnode/adapters/http"
	"github.com/iotnode/iotnode/ports"
)

const humidityURN = "urn:com:oracle:iot:device:humidity_sensor"

func humidityModel(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../../testdata/devicemodels/humidity_sensor.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestModel(t *testing.T) {
	model := humidityModel(t)
	draft := bytes.Replace(model, []byte(`"draft": false`), []byte(`"draft": true`), 1)
	tests := []struct {
		name        string
		urn         string
		allowDrafts bool
		status      int
		body        []byte
		wantErr     string
		notFound    bool
	}{
		{name: "model", urn: humidityURN, status: 200, body: model, wantErr: "<nil>"},
		{name: "draft allowed", urn: humidityURN, allowDrafts: true, status: 200, body: draft, wantErr: "<nil>"},
		{name: "draft refused", urn: humidityURN, status: 200, body: draft,
			wantErr: `fetch device model "urn:com:oracle:iot:device:humidity_sensor": cloud answered 200: the model is a draft; drafts are refused unless AllowDraftModels is set`},
		{name: "unknown", urn: humidityURN, status: 404, body: []byte(`{"status":404,"message":"unknown device model"}`),
			wantErr: `fetch device model "urn:com:oracle:iot:device:humidity_sensor": cloud answered 404: unknown device model (not found)`, notFound: true},
		{name: "another model", urn: "urn:com:example:other", status: 200, body: model,
			wantErr: `fetch device model "urn:com:example:other": cloud answered 200: the cloud answered with model "urn:com:oracle:iot:device:humidity_sensor"; expected "urn:com:example:other"`},
		{name: "not a model", urn: humidityURN, status: 200, body: []byte(`[]`),
			wantErr: `fetch device model "urn:com:oracle:iot:device:humidity_sensor": cloud answered 200: the cloud's model is not usable: device model: want a JSON object, got array`},
		{name: "empty urn", urn: "",
			wantErr: "fetch device model: the URN is empty; expected a device model URN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t)
			fc.handle("GET /iot/api/v2/deviceModels/"+tt.urn, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = w.Write(tt.body)
			})
			c := fc.client(true, nil, func(cfg *httpadapter.Config) { cfg.AllowDraftModels = tt.allowDrafts })
			m, err := c.Model(t.Context(), tt.urn)
			if errText(err) != tt.wantErr || errors.Is(err, ports.ErrNotFound) != tt.notFound {
				t.Fatalf("error = %s (not found %v)\n want %s", errText(err), errors.Is(err, ports.ErrNotFound), tt.wantErr)
			}
			if err != nil {
				return
			}
			if m.URN != tt.urn || !bytes.Equal(m.Raw, tt.body) {
				t.Errorf("model %s, raw kept %v", m.URN, bytes.Equal(m.Raw, tt.body))
			}
			calls := fc.recordedCalls("/iot/api/v2/deviceModels/" + tt.urn)
			if len(calls) != 1 || calls[0].RawQuery != "expand=formats" || calls[0].Method != http.MethodGet {
				t.Errorf("calls = %+v, want one GET with expand=formats", calls)
			}
		})
	}
}

func TestDevicePolicy(t *testing.T) {
	const policy = `{"id":"p-1","enabled":true,"lastModified":1,"pipelines":[{"attributeName":"humidity","pipeline":[{"id":"mean","parameters":{"window":5000}}]}]}`
	tests := []struct {
		name     string
		status   int
		body     string
		want     string
		wantErr  string
		notFound bool
	}{
		{name: "assigned", status: 200, body: `{"items":[` + policy + `],"count":1}`, want: policy, wantErr: "<nil>"},
		{name: "none assigned", status: 200, body: `{"items":[],"count":0}`, notFound: true,
			wantErr: `fetch the device policy of "ep-1" for model "urn:com:oracle:iot:device:humidity_sensor": cloud answered 200: no policy is assigned (not found)`},
		{name: "unknown model", status: 404, body: `{"status":404,"message":"unknown device model"}`, notFound: true,
			wantErr: `fetch the device policy of "ep-1" for model "urn:com:oracle:iot:device:humidity_sensor": cloud answered 404: unknown device model (not found)`},
		{name: "item not an object", status: 200, body: `{"items":[1]}`,
			wantErr: `fetch the device policy of "ep-1" for model "urn:com:oracle:iot:device:humidity_sensor": cloud answered 200: items[0] is not a JSON object; expected a device policy`},
		{name: "not a list", status: 200, body: `[]`,
			wantErr: `fetch the device policy of "ep-1" for model "urn:com:oracle:iot:device:humidity_sensor": cloud answered 200: the answer is not a list {"items":[...]}: json: cannot unmarshal array into Go value of type struct { Items []json.RawMessage "json:\"items\"" }`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t)
			path := "/iot/privateapi/v2/deviceModels/" + humidityURN + "/devicePolicies"
			fc.handle("GET "+path, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			})
			c := fc.client(true, nil)
			got, err := c.DevicePolicy(t.Context(), humidityURN, endpointID)
			if errText(err) != tt.wantErr || string(got) != tt.want || errors.Is(err, ports.ErrNotFound) != tt.notFound {
				t.Fatalf("DevicePolicy = %s, %s\n want %s, %s", got, errText(err), tt.want, tt.wantErr)
			}
			q, _ := url.ParseQuery(fc.recordedCalls(path)[0].RawQuery)
			want := url.Values{"q": {`{"devices.id":"ep-1"}`}, "fields": {"id,pipelines,enabled,lastModified"}}
			if !reflect.DeepEqual(q, want) {
				t.Errorf("query = %v, want %v", q, want)
			}
		})
	}
	t.Run("empty arguments", func(t *testing.T) {
		fc := newFakeCloud(t)
		_, err := fc.client(true, nil).DevicePolicy(t.Context(), "", endpointID)
		if want := `fetch the device policy of "ep-1" for model "": the model URN or the device ID is empty`; errText(err) != want {
			t.Errorf("error = %s\n want %s", errText(err), want)
		}
	})
}

func TestDevicePolicyByID(t *testing.T) {
	const policy = `{"id":"p 1","enabled":false,"pipelines":[]}`
	tests := []struct {
		name     string
		policyID string
		status   int
		body     string
		wantErr  string
		notFound bool
	}{
		{name: "policy", policyID: "p 1", status: 200, body: policy, wantErr: "<nil>"},
		{name: "unknown policy", policyID: "p 1", status: 404, body: `{"status":404,"message":"no such policy"}`, notFound: true,
			wantErr: `fetch device policy "p 1" of model "urn:com:oracle:iot:device:humidity_sensor": cloud answered 404: no such policy (not found)`},
		{name: "not an object", policyID: "p 1", status: 200, body: `"p 1"`,
			wantErr: `fetch device policy "p 1" of model "urn:com:oracle:iot:device:humidity_sensor": cloud answered 200: the answer is not a JSON object; expected a device policy`},
		{name: "empty id", policyID: "",
			wantErr: `fetch device policy "" of model "urn:com:oracle:iot:device:humidity_sensor": the model URN or the policy ID is empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t)
			path := "/iot/privateapi/v2/deviceModels/" + humidityURN + "/devicePolicies/" + tt.policyID
			fc.handle("GET "+path, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			})
			c := fc.client(true, nil)
			got, err := c.DevicePolicyByID(t.Context(), humidityURN, tt.policyID)
			if errText(err) != tt.wantErr || errors.Is(err, ports.ErrNotFound) != tt.notFound {
				t.Fatalf("error = %s\n want %s", errText(err), tt.wantErr)
			}
			if err == nil && string(got) != policy {
				t.Errorf("policy = %s", got)
			}
			if calls := fc.recordedCalls(path); err == nil && calls[0].RawQuery != "fields=id%2Cpipelines%2Cenabled%2ClastModified" {
				t.Errorf("query = %q", calls[0].RawQuery)
			}
		})
	}
}

func TestStorageURL(t *testing.T) {
	tests := []struct {
		name        string
		method      string
		status      int
		body        string
		wantURL     string
		wantHeaders map[string]string
		wantErr     string
		noCall      bool
	}{
		{name: "pre-authorized URL with signed headers", method: "PUT", status: 200,
			body:        `{"storageUrl":"https://objectstorage.example/n/ns/b/b/o/ep-1/photo.jpg","headers":{"(request-target)":"put /o","date":"Sat, 01 Mar 2025 12:00:00 GMT","content-length":12,"authorization":"Signature x"}}`,
			wantURL:     "https://objectstorage.example/n/ns/b/b/o/ep-1/photo.jpg",
			wantHeaders: map[string]string{"date": "Sat, 01 Mar 2025 12:00:00 GMT", "content-length": "12", "authorization": "Signature x"},
			wantErr:     "<nil>"},
		{name: "no headers", method: "GET", status: 200, body: `{"storageUrl":"https://127.0.0.1:9/o/photo.jpg"}`,
			wantURL: "https://127.0.0.1:9/o/photo.jpg", wantHeaders: map[string]string{}, wantErr: "<nil>"},
		{name: "classic storage only", method: "GET", status: 405, body: `{"status":405,"message":"method not allowed"}`,
			wantErr: `get a storage URL for "photo.jpg": cloud answered 405: the cloud offers only classic storage (answered 405); expected pre-authorized storage URLs (server 19.1.1 and later)`},
		{name: "relative url", method: "HEAD", status: 200, body: `{"storageUrl":"/o/photo.jpg"}`,
			wantErr: `get a storage URL for "photo.jpg": cloud answered 200: storageUrl "/o/photo.jpg" is not an absolute http(s) URL`},
		{name: "header of the wrong type", method: "PUT", status: 200, body: `{"storageUrl":"https://h/o","headers":{"x":true}}`,
			wantErr: `get a storage URL for "photo.jpg": cloud answered 200: header "x" has a bool value; expected a string`},
		{name: "server error", method: "PUT", status: 500, body: `{"status":500,"message":"object store down"}`,
			wantErr: `get a storage URL for "photo.jpg": cloud answered 500: object store down`},
		{name: "bad method", method: "DELETE", noCall: true,
			wantErr: `get a storage URL for "photo.jpg": method "DELETE" is not supported; expected PUT, GET or HEAD`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t)
			var got map[string]string
			fc.handle("POST /iot/api/v2/provisioner/storage", func(w http.ResponseWriter, r *http.Request) {
				_ = json.NewDecoder(r.Body).Decode(&got)
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			})
			c := fc.client(true, nil)
			u, h, err := c.StorageURL(t.Context(), "photo.jpg", tt.method)
			if errText(err) != tt.wantErr || u != tt.wantURL || !reflect.DeepEqual(h, tt.wantHeaders) {
				t.Fatalf("StorageURL = %q, %v, %s\n want %q, %v, %s", u, h, errText(err), tt.wantURL, tt.wantHeaders, tt.wantErr)
			}
			if tt.noCall {
				if got != nil {
					t.Error("the cloud was called")
				}
				return
			}
			if want := map[string]string{"object": "photo.jpg", "method": tt.method}; !reflect.DeepEqual(got, want) {
				t.Errorf("body = %v, want %v", got, want)
			}
		})
	}
	t.Run("empty object name", func(t *testing.T) {
		fc := newFakeCloud(t)
		_, _, err := fc.client(true, nil).StorageURL(t.Context(), "", "GET")
		if want := `get a storage URL for "": the object name is empty`; errText(err) != want {
			t.Errorf("error = %s\n want %s", errText(err), want)
		}
	})
}
