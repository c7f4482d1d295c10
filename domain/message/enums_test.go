package message

import (
	"encoding/json"
	"testing"
)

func TestPriority(t *testing.T) {
	tests := []struct {
		p    Priority
		name string
	}{
		{PriorityLowest, "LOWEST"}, {PriorityLow, "LOW"}, {PriorityMedium, "MEDIUM"},
		{PriorityHigh, "HIGH"}, {PriorityHighest, "HIGHEST"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.String(); got != tc.name {
				t.Errorf("String() = %q", got)
			}
			if got, err := ParsePriority(tc.name); err != nil || got != tc.p {
				t.Errorf("ParsePriority = %v, %v", got, err)
			}
			text, err := tc.p.MarshalText()
			if err != nil || string(text) != tc.name {
				t.Errorf("MarshalText = %s, %v", text, err)
			}
			var back Priority
			if err := back.UnmarshalText(text); err != nil || back != tc.p {
				t.Errorf("UnmarshalText = %v, %v", back, err)
			}
		})
	}
	if PriorityLow <= PriorityLowest || PriorityHighest <= PriorityHigh {
		t.Error("priorities do not compare in order")
	}
	errorTests := []struct {
		name string
		run  func() error
		want string
	}{
		{"parse unknown", func() error { _, err := ParsePriority("URGENT"); return err }, `unknown priority "URGENT"`},
		{"parse lower case", func() error { _, err := ParsePriority("low"); return err }, `unknown priority "low"`},
		{"marshal out of range", func() error { _, err := Priority(7).MarshalText(); return err }, `marshal priority: invalid value 7, expected 0..4`},
		{"unmarshal unknown", func() error { var p Priority; return p.UnmarshalText([]byte("")) }, `unknown priority ""`},
	}
	for _, tc := range errorTests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); err == nil || err.Error() != tc.want {
				t.Errorf("error = %v, want %s", err, tc.want)
			}
		})
	}
	if got := Priority(-1).String(); got != "Priority(-1)" {
		t.Errorf("String of invalid = %q", got)
	}
}

func TestReliability(t *testing.T) {
	tests := []struct {
		r    Reliability
		name string
	}{
		{BestEffort, "BEST_EFFORT"}, {GuaranteedDelivery, "GUARANTEED_DELIVERY"}, {NoGuarantee, "NO_GUARANTEE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.String(); got != tc.name {
				t.Errorf("String() = %q", got)
			}
			if got, err := ParseReliability(tc.name); err != nil || got != tc.r {
				t.Errorf("ParseReliability = %v, %v", got, err)
			}
			text, err := tc.r.MarshalText()
			if err != nil || string(text) != tc.name {
				t.Errorf("MarshalText = %s, %v", text, err)
			}
			var back Reliability
			if err := back.UnmarshalText(text); err != nil || back != tc.r {
				t.Errorf("UnmarshalText = %v, %v", back, err)
			}
		})
	}
	errorTests := []struct {
		name string
		run  func() error
		want string
	}{
		{"parse unknown", func() error { _, err := ParseReliability("MAYBE"); return err }, `unknown reliability "MAYBE"`},
		{"marshal out of range", func() error { _, err := Reliability(3).MarshalText(); return err }, `marshal reliability: invalid value 3, expected 0..2`},
		{"unmarshal unknown", func() error { var r Reliability; return r.UnmarshalText([]byte("best_effort")) }, `unknown reliability "best_effort"`},
	}
	for _, tc := range errorTests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); err == nil || err.Error() != tc.want {
				t.Errorf("error = %v, want %s", err, tc.want)
			}
		})
	}
	if got := Reliability(9).String(); got != "Reliability(9)" {
		t.Errorf("String of invalid = %q", got)
	}
}

func TestTextMarshalingInStructs(t *testing.T) {
	type cfg struct {
		P Priority    `json:"p"`
		R Reliability `json:"r"`
	}
	b, err := json.Marshal(cfg{PriorityHigh, NoGuarantee})
	if err != nil || string(b) != `{"p":"HIGH","r":"NO_GUARANTEE"}` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	var back cfg
	if err := json.Unmarshal(b, &back); err != nil || back != (cfg{PriorityHigh, NoGuarantee}) {
		t.Errorf("Unmarshal = %v, %v", back, err)
	}
}

func TestValidEnums(t *testing.T) {
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"type DATA", TypeData.Valid(), true},
		{"type ALERT", TypeAlert.Valid(), true},
		{"type REQUEST", TypeRequest.Valid(), true},
		{"type RESPONSE", TypeResponse.Valid(), true},
		{"type RESOURCES_REPORT", TypeResourcesReport.Valid(), true},
		{"type empty", Type("").Valid(), false},
		{"type lower case", Type("data").Valid(), false},
		{"type RESPONSE_WAIT", Type("RESPONSE_WAIT").Valid(), false},
		{"severity LOW", SeverityLow.Valid(), true},
		{"severity NORMAL", SeverityNormal.Valid(), true},
		{"severity SIGNIFICANT", SeveritySignificant.Valid(), true},
		{"severity CRITICAL", SeverityCritical.Valid(), true},
		{"severity empty", Severity("").Valid(), false},
		{"severity HIGH", Severity("HIGH").Valid(), false},
		{"report UPDATE", ReportUpdate.Valid(), true},
		{"report DELETE", ReportDelete.Valid(), true},
		{"report RECONCILIATION", ReportReconciliation.Valid(), true},
		{"report other", ReportType("ADD").Valid(), false},
		{"priority -1", Priority(-1).Valid(), false},
		{"priority 5", Priority(5).Valid(), false},
		{"reliability 3", Reliability(3).Valid(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("Valid() = %v, want %v", tc.got, tc.want)
			}
		})
	}
}
