package message

import "testing"

func TestEffectiveMethod(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"plain", Request{Method: "put"}, "PUT"},
		{"no method", Request{}, ""},
		{"override", Request{Method: "POST", Headers: map[string][]string{"x-http-method-override": {"patch", "GET"}}}, "PATCH"},
		{"override any case", Request{Method: "POST", Headers: map[string][]string{"X-HTTP-Method-Override": {"Patch"}}}, "PATCH"},
		{"override empty list", Request{Method: "POST", Headers: map[string][]string{"x-http-method-override": {}}}, "POST"},
		{"override empty value", Request{Method: "POST", Headers: map[string][]string{"X-Http-Method-Override": {""}}}, "POST"},
		{"lower case wins", Request{Method: "POST", Headers: map[string][]string{
			"X-HTTP-METHOD-OVERRIDE": {"DELETE"}, "x-http-method-override": {"PATCH"}, "X-Http-Method-Override": {"PUT"}}}, "PATCH"},
		{"sorted spelling wins", Request{Method: "POST", Headers: map[string][]string{
			"x-Http-Method-Override": {"DELETE"}, "X-HTTP-METHOD-OVERRIDE": {"PUT"}, "X-Http-Method-Override": {"GET"}}}, "PUT"},
		{"empty lower case falls back", Request{Method: "POST", Headers: map[string][]string{
			"x-http-method-override": {""}, "X-Http-Method-Override": {"put"}}}, "PUT"},
		{"other headers", Request{Method: "get", Headers: map[string][]string{"Content-Type": {"application/json"}}}, "GET"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range 20 { // map order must not matter
				if got := tc.req.EffectiveMethod(); got != tc.want {
					t.Fatalf("EffectiveMethod() = %q, want %q", got, tc.want)
				}
			}
		})
	}
}

func TestReconciliationMark(t *testing.T) {
	tests := []struct {
		name  string
		paths []string
		want  string
	}{
		{"none", nil, "d41d8cd98f00b204e9800998ecf8427e"},
		{"one", []string{"abc"}, "900150983cd24fb0d6963f7d28e17f72"},
		{"concatenated", []string{"a", "b", "c"}, "900150983cd24fb0d6963f7d28e17f72"},
		{"order matters", []string{"c", "b", "a"}, "3944b025c9ca7eec3154b44666ae04a0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ReconciliationMark(tc.paths); got != tc.want {
				t.Errorf("ReconciliationMark(%q) = %s, want %s", tc.paths, got, tc.want)
			}
		})
	}
}
