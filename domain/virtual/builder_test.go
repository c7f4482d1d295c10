package virtual_test

import (
	"testing"

	"github.com/iotnode/iotnode/domain/message"
)

func TestNewAlertAndNewDataFormats(t *testing.T) {
	tests := []struct {
		name    string
		alert   bool
		urn     string
		wantErr string
	}{
		{"alert format", true, "urn:test:thermostat:overheat", ""},
		{"data format", false, "urn:test:thermostat:usage", ""},
		{"unknown alert format", true, "urn:test:thermostat:nope", `alert format "urn:test:thermostat:nope": not in device model "urn:test:thermostat"`},
		{"unknown data format", false, "urn:x", `data format "urn:x": not in device model "urn:test:thermostat"`},
		{"data format as alert", true, "urn:test:thermostat:usage", `alert format "urn:test:thermostat:usage": has type DATA, expected ALERT`},
		{"alert format as data", false, "urn:test:thermostat:overheat", `data format "urn:test:thermostat:overheat": has type ALERT, expected DATA`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := thermostat(t)
			var err error
			if tt.alert {
				_, err = d.NewAlert(tt.urn)
			} else {
				_, err = d.NewData(tt.urn)
			}
			if errText(err) != tt.wantErr {
				t.Errorf("error = %q, want %q", errText(err), tt.wantErr)
			}
		})
	}
}

func TestAlertBuild(t *testing.T) {
	type set struct {
		field string
		v     any
	}
	tests := []struct {
		name        string
		file, urn   string
		sets        []set
		severity    message.Severity
		description string
		wantFields  string
		wantSev     message.Severity
		wantDesc    string
		wantErr     string
	}{
		{
			name: "required field only, defaults", file: "temperature_sensor.json", urn: "urn:com:oracle:iot:device:temperature_sensor:too_hot",
			sets:       []set{{"maxThreshold", 70}, {"temp", 81.5}},
			wantFields: "temp=81.5 maxThreshold=70", wantSev: message.SeveritySignificant, wantDesc: "temp above maxThreshold",
		},
		{
			name: "optional field, severity, description, last set wins", file: "temperature_sensor.json", urn: "urn:com:oracle:iot:device:temperature_sensor:too_hot",
			sets:     []set{{"unit", "C"}, {"temp", 80}, {"maxThreshold", 70}, {"temp", 90}},
			severity: message.SeverityCritical, description: "boiler on fire",
			wantFields: `temp=90 unit="C" maxThreshold=70`, wantSev: message.SeverityCritical, wantDesc: "boiler on fire",
		},
		{
			name: "format without description falls back to its name", file: "thermostat.json", urn: "urn:test:thermostat:overheat",
			sets:       []set{{"temperature", 100}},
			wantFields: "temperature=100", wantSev: message.SeveritySignificant, wantDesc: "overheat",
		},
		{
			name: "missing required fields", file: "temperature_sensor.json", urn: "urn:com:oracle:iot:device:temperature_sensor:too_hot",
			sets: []set{{"unit", "F"}},
			wantErr: `alert "urn:com:oracle:iot:device:temperature_sensor:too_hot": field "temp" is required` + "\n" +
				`alert "urn:com:oracle:iot:device:temperature_sensor:too_hot": field "maxThreshold" is required`,
		},
		{
			name: "every kind of fault", file: "temperature_sensor.json", urn: "urn:com:oracle:iot:device:temperature_sensor:too_hot",
			sets: []set{{"temp", "hot"}, {"colour", "red"}, {"maxThreshold", 70}}, severity: "PANIC",
			wantErr: `alert "urn:com:oracle:iot:device:temperature_sensor:too_hot": field "temp": want NUMBER, got "hot"` + "\n" +
				`alert "urn:com:oracle:iot:device:temperature_sensor:too_hot": field "colour": not in the format, expected one of temp, unit, maxThreshold` + "\n" +
				`alert "urn:com:oracle:iot:device:temperature_sensor:too_hot": severity "PANIC" is not one of LOW, NORMAL, SIGNIFICANT, CRITICAL`,
		},
		{
			name: "wrong type is not also reported missing", file: "humidity_sensor.json", urn: "urn:com:oracle:iot:device:humidity_sensor:too_humid",
			sets:    []set{{"humidity", "wet"}},
			wantErr: `alert "urn:com:oracle:iot:device:humidity_sensor:too_humid": field "humidity": want INTEGER, got "wet"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := loadModel(t, tt.file)
			d := newDevice(m)
			b, err := d.NewAlert(tt.urn)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.sets {
				b = b.Set(s.field, s.v)
			}
			if tt.severity != "" {
				b = b.Severity(tt.severity)
			}
			if tt.description != "" {
				b = b.Description(tt.description)
			}
			msg, err := b.Build(t0)
			if errText(err) != tt.wantErr {
				t.Fatalf("Build error = %q\nwant              %q", errText(err), tt.wantErr)
			}
			if err != nil {
				return
			}
			if msg.Type != message.TypeAlert || msg.Source != ep || msg.ClientID != "id-1" || !msg.EventTime.Equal(t0) || msg.Alert == nil {
				t.Fatalf("envelope = %+v", msg)
			}
			a := msg.Alert
			if a.Format != tt.urn || a.Severity != tt.wantSev || a.Description != tt.wantDesc {
				t.Errorf("alert = %q %q %q, want %q %q %q", a.Format, a.Severity, a.Description, tt.urn, tt.wantSev, tt.wantDesc)
			}
			if got := fields(a.Fields); got != tt.wantFields {
				t.Errorf("fields = %s, want %s", got, tt.wantFields)
			}
			again, err := b.Build(t0)
			if err != nil || again.ClientID != "id-2" {
				t.Errorf("second Build = %q, %v, want a new clientId id-2", again.ClientID, err)
			}
		})
	}
}

func TestDataBuild(t *testing.T) {
	tests := []struct {
		name       string
		sets       [][2]any
		wantFields string
		wantErr    string
	}{
		{"required only", [][2]any{{"kwh", 1.25}}, "kwh=1.25", ""},
		{"in format order", [][2]any{{"from", int64(1700000000000)}, {"kwh", 2}}, "kwh=2 from=1700000000000", ""},
		{"missing and wrong", [][2]any{{"from", "yesterday"}}, "",
			`data "urn:test:thermostat:usage": field "from": want DATETIME (epoch milliseconds or an RFC 3339 string), got "yesterday"` + "\n" +
				`data "urn:test:thermostat:usage": field "kwh" is required`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := thermostat(t)
			b, err := d.NewData("urn:test:thermostat:usage")
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.sets {
				b = b.Set(s[0].(string), s[1])
			}
			m, err := b.Build(t0)
			if errText(err) != tt.wantErr {
				t.Fatalf("Build error = %q\nwant              %q", errText(err), tt.wantErr)
			}
			if err != nil {
				return
			}
			if m.Type != message.TypeData || m.Source != ep || m.Priority != message.PriorityLow || m.Data.Format != "urn:test:thermostat:usage" {
				t.Errorf("message = %+v", m)
			}
			if got := fields(m.Data.Fields); got != tt.wantFields {
				t.Errorf("fields = %s, want %s", got, tt.wantFields)
			}
		})
	}
}
