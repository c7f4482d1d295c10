package mqtt_test

import (
	"bytes"
	"errors"
	"os"
	"testing"

	mqttadapter "github.com/iotnode/iotnode/adapters/mqtt"
	"github.com/iotnode/iotnode/ports"
)

const humidityURN = "urn:com:oracle:iot:device:humidity_sensor"

func TestModel(t *testing.T) {
	model, err := os.ReadFile("../../testdata/devicemodels/humidity_sensor.json")
	if err != nil {
		t.Fatal(err)
	}
	draft := bytes.Replace(model, []byte(`"draft": false`), []byte(`"draft": true`), 1)
	tests := []struct {
		name        string
		urn         string
		allowDrafts bool
		h           handler
		wantErr     string
		notFound    bool
	}{
		{name: "model", urn: humidityURN, h: answer(string(model)), wantErr: "<nil>"},
		{name: "draft allowed", urn: humidityURN, allowDrafts: true, h: answer(string(draft)), wantErr: "<nil>"},
		{name: "draft refused", urn: humidityURN, h: answer(string(draft)),
			wantErr: `fetch device model "urn:com:oracle:iot:device:humidity_sensor": the model is a draft; drafts are refused unless AllowDraftModels is set`},
		{name: "unknown", urn: humidityURN, h: errorAnswer(`{"status":404,"message":"unknown device model"}`),
			wantErr: `fetch device model "urn:com:oracle:iot:device:humidity_sensor": cloud answered 404: unknown device model (not found)`, notFound: true},
		{name: "another model", urn: "urn:com:example:other", h: answer(string(model)),
			wantErr: `fetch device model "urn:com:example:other": the cloud answered with model "urn:com:oracle:iot:device:humidity_sensor"; expected "urn:com:example:other"`},
		{name: "not a model", urn: humidityURN, h: answer(`[]`),
			wantErr: `fetch device model "urn:com:oracle:iot:device:humidity_sensor": the cloud's model is not usable: device model: want a JSON object, got array`},
		{name: "empty urn", urn: "",
			wantErr: "fetch device model: the URN is empty; expected a device model URN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t, false)
			if tt.h != nil {
				fc.handle("deviceModels", tt.h)
			}
			c, _ := fc.client(fc.assets(true), func(cfg *mqttadapter.Config) { cfg.AllowDraftModels = tt.allowDrafts })
			m, err := c.Model(t.Context(), tt.urn)
			if errText(err) != tt.wantErr || errors.Is(err, ports.ErrNotFound) != tt.notFound || (err != nil && !ports.IsPermanent(err)) {
				t.Fatalf("error = %s (not found %v)\n want %s", errText(err), errors.Is(err, ports.ErrNotFound), tt.wantErr)
			}
			pubs := fc.published("deviceModels")
			if tt.urn != "" && (len(pubs) != 1 || string(pubs[0].Payload) != `{"urn":"`+tt.urn+`"}`) {
				t.Errorf("publishes = %+v, want one with {\"urn\":%q}", pubs, tt.urn)
			}
			if err == nil && (m.URN != tt.urn || len(m.Raw) == 0) {
				t.Errorf("model %s, raw %d bytes", m.URN, len(m.Raw))
			}
		})
	}
}

// TestPublishRefused: a PUBACK with an error reason code fails the call;
// "not authorized" wraps ports.ErrUnauthorized.
func TestPublishRefused(t *testing.T) {
	tests := []struct {
		name      string
		code      byte
		wantErr   string
		permanent bool
	}{
		{name: "not authorized", code: 0x87, permanent: true,
			wantErr: `fetch device model "urn:com:oracle:iot:device:humidity_sensor": the broker refused the publish to iotcs/ep-1/deviceModels: not authorized (0x87); a device may publish only under iotcs/{its id}/ (unauthorized)`},
		{name: "quota exceeded", code: 0x97,
			wantErr: `fetch device model "urn:com:oracle:iot:device:humidity_sensor": the broker refused the publish to iotcs/ep-1/deviceModels: quota exceeded (0x97)`},
		{name: "payload format invalid", code: 0x99, permanent: true,
			wantErr: `fetch device model "urn:com:oracle:iot:device:humidity_sensor": the broker refused the publish to iotcs/ep-1/deviceModels: payload format invalid (0x99)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t, false)
			fc.refuse = map[string]byte{"deviceModels": tt.code}
			c, _ := fc.client(fc.assets(true))
			_, err := c.Model(t.Context(), humidityURN)
			if errText(err) != tt.wantErr || ports.IsPermanent(err) != tt.permanent || errors.Is(err, ports.ErrUnauthorized) != (tt.code == 0x87) {
				t.Errorf("error = %s (permanent %v)\n want %s (permanent %v)", errText(err), ports.IsPermanent(err), tt.wantErr, tt.permanent)
			}
		})
	}
}
