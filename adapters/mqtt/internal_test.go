package mqtt

import (
	"errors"
	"testing"

	"github.com/iotnode/iotnode/ports"
)

func TestServerURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"mqtts://iot.example.com", "mqtts://iot.example.com:8883"},
		{"mqtts://iot.example.com:443/", "mqtts://iot.example.com:443"},
		{"mqtt://localhost", "mqtt://localhost:1883"},
		{"mqtt://[::1]", "mqtt://[::1]:1883"},
		{"mqtt://127.0.0.2:1884", "mqtt://127.0.0.2:1884"},
	}
	for _, tt := range tests {
		u, err := serverURL(tt.in)
		if err != nil || u.String() != tt.want {
			t.Errorf("serverURL(%q) = %v, %v; want %s", tt.in, u, err, tt.want)
		}
	}
}

func TestErrorAnswer(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		hint    string
		wantErr string
		want    ports.CloudError
	}{
		{name: "field only", doc: `{"status":400,"field":"urn"}`,
			wantErr: `op: cloud answered 400: problem (field "urn")`, want: ports.CloudError{Status: 400, Permanent: true, Index: -1}},
		{name: "field named in the message", doc: `{"status":400,"message":"bad urn","field":"urn"}`,
			wantErr: `op: cloud answered 400: bad urn`, want: ports.CloudError{Status: 400, Permanent: true, Index: -1}},
		{name: "401 with hint", doc: `{"status":401}`, hint: "check it",
			wantErr: `op: cloud answered 401: unauthorized; check it (unauthorized)`, want: ports.CloudError{Status: 401, Permanent: true, Index: -1}},
		{name: "no status", doc: `{"message":"something broke"}`,
			wantErr: `op: something broke`, want: ports.CloudError{Index: -1}},
		{name: "odd status", doc: `{"status":299}`,
			wantErr: `op: cloud answered 299: status 299`, want: ports.CloudError{Status: 299, Index: -1}},
		{name: "negative index", doc: `{"status":400,"message":"m","index":-1}`,
			wantErr: `op: cloud answered 400: m`, want: ports.CloudError{Status: 400, Permanent: true, Index: -1}},
		{name: "binary", doc: "\x00\x01",
			wantErr: `op: the cloud answered with an error that is not an error document {"status","message"}: 2 bytes of non-text`, want: ports.CloudError{Index: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ce := errorAnswer("op", []byte(tt.doc), tt.hint)
			if ce.Error() != tt.wantErr || ce.Status != tt.want.Status || ce.Permanent != tt.want.Permanent || ce.Index != tt.want.Index {
				t.Errorf("errorAnswer = %s %+v\n want %s %+v", ce, ce, tt.wantErr, tt.want)
			}
			if errors.Is(ce, ports.ErrUnauthorized) != (tt.want.Status == 401) {
				t.Errorf("unauthorized = %v", errors.Is(ce, ports.ErrUnauthorized))
			}
		})
	}
}

func TestReasonText(t *testing.T) {
	if got := reasonText(0x86); got != "bad user name or password (0x86)" {
		t.Errorf("reasonText(0x86) = %q", got)
	}
	if got := reasonText(0xFE); got != "reason code (0xFE)" {
		t.Errorf("reasonText(0xFE) = %q", got)
	}
}
