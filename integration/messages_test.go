package integration

import (
	"slices"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
	cloudclient "github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/domain/message"
)

// The cloud stores what Set, Update-Finish, Raise and Submit queue: each
// message with the format URN of the model and the values given, typed as
// the model says.
func TestMessagesArriveAtCloud(t *testing.T) {
	c := startCloud(t)
	d, v := activated(t, provision(t, c, api.DeviceTypeDirect, "light-1"), lightURN)
	endpoint := d.EndpointID()
	since := time.UnixMilli(1_700_000_000_000).UTC()

	if err := v.Set("power", true); err != nil {
		t.Fatal(err)
	}
	if err := v.Update().Set("brightness", 40).Set("label", "hall").Finish(); err != nil {
		t.Fatal(err)
	}
	if err := v.CreateAlert(lightURN+":button_pressed").Set("presses", 2).Set("image", "https://example.com/a.jpg").
		Severity(message.SeverityCritical).Raise(); err != nil {
		t.Fatal(err)
	}
	if err := v.CreateAlert(lightURN+":button_pressed").Set("presses", 3).Raise(); err != nil {
		t.Fatal(err)
	}
	if err := v.CreateData(lightURN+":energy").Set("wattHours", 12.5).Set("since", since).Submit(); err != nil {
		t.Fatal(err)
	}
	closeDevice(t, d) // flushes: everything is at the cloud after this

	attrs := lightURN + ":attributes"
	q := cloudclient.MessageQuery{Source: endpoint}
	tests := []struct {
		name     string
		typ      message.Type
		format   string
		want     map[string]any
		severity message.Severity
		descr    string
		qos      [2]any // priority, reliability
	}{
		{"Set", message.TypeData, attrs, map[string]any{"power": true}, "", "",
			[2]any{message.PriorityLow, message.BestEffort}},
		{"Update-Finish in one message", message.TypeData, attrs, map[string]any{"brightness": int64(40), "label": "hall"}, "", "",
			[2]any{message.PriorityLow, message.BestEffort}},
		{"alert with every field", message.TypeAlert, lightURN + ":button_pressed",
			map[string]any{"presses": int64(2), "image": "https://example.com/a.jpg"},
			message.SeverityCritical, "The push button was pressed", [2]any{message.PriorityHighest, message.GuaranteedDelivery}},
		{"alert with defaults", message.TypeAlert, lightURN + ":button_pressed", map[string]any{"presses": int64(3)},
			message.SeveritySignificant, "The push button was pressed", [2]any{message.PriorityHighest, message.GuaranteedDelivery}},
		{"custom data", message.TypeData, lightURN + ":energy", map[string]any{"wattHours": 12.5, "since": since.UnixMilli()}, "", "",
			[2]any{message.PriorityLow, message.BestEffort}},
	}
	all := awaitMessages(t, c, q, 1, func(*message.Message) bool { return true })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var found []message.Message
			for i := range all {
				m := &all[i]
				if m.Type != tt.typ || (m.Data == nil && m.Alert == nil) {
					continue
				}
				format := ""
				if m.Data != nil {
					format = m.Data.Format
				} else {
					format = m.Alert.Format
				}
				if format == tt.format && sameFields(fields(m), tt.want) {
					found = append(found, *m)
				}
			}
			if len(found) != 1 {
				t.Fatalf("%d stored %s message(s) with format %s and fields %v, want 1; stored:\n%s",
					len(found), tt.typ, tt.format, tt.want, describe(all))
			}
			m := found[0]
			if m.Source != endpoint || m.ClientID == "" {
				t.Errorf("source %q, clientId %q: want %q and a clientId", m.Source, m.ClientID, endpoint)
			}
			if m.Priority != tt.qos[0] || m.Reliability != tt.qos[1] {
				t.Errorf("priority %v, reliability %v: want %v, %v", m.Priority, m.Reliability, tt.qos[0], tt.qos[1])
			}
			if m.Alert != nil && (m.Alert.Severity != tt.severity || m.Alert.Description != tt.descr) {
				t.Errorf("severity %q, description %q: want %q, %q", m.Alert.Severity, m.Alert.Description, tt.severity, tt.descr)
			}
		})
	}

	t.Run("resources report", func(t *testing.T) {
		reports := awaitMessages(t, c, cloudclient.MessageQuery{Source: endpoint, Type: string(message.TypeResourcesReport)}, 1,
			func(m *message.Message) bool {
				return m.Report != nil && slices.ContainsFunc(m.Report.Resources, func(r message.Resource) bool {
					return r.Path == "deviceModels/"+lightURN+"/actions/schedule"
				})
			})
		if reports[0].Report.EndpointName != endpoint {
			t.Errorf("report endpoint %q, want %q", reports[0].Report.EndpointName, endpoint)
		}
	})

	// The cloud keeps the last reported attribute values.
	t.Run("attributes at the cloud", func(t *testing.T) {
		got, err := c.Client().Attributes(t.Context(), endpoint, lightURN)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"power": true, "brightness": float64(40), "label": "hall"}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("attribute %s = %#v at the cloud, want %#v (all: %v)", k, got[k], w, got)
			}
		}
	})
}

// sameFields reports whether got has exactly the fields of want with equal
// values (and equal Go types, as decoded from the wire).
func sameFields(got, want map[string]any) bool {
	if len(got) != len(want) {
		return false
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			return false
		}
	}
	return true
}
