package trust

import (
	"bytes"
	"testing"
)

func TestUnmarshalRecords(t *testing.T) {
	valid := marshalRecords(minimalAssets()) // 1 at 0, 2 at 30, 3 at 41
	device := func(nested []byte) []byte { return appendRecord(bytes.Clone(valid), tagConnectedDevice, nested) }
	tests := []struct {
		name    string
		payload []byte
		want    string // "" means valid
	}{
		{name: "valid", payload: valid},
		{name: "any order", payload: append(appendRecord(appendRecord(nil, 3, []byte("s")), 2, []byte("c")), valid[:30]...)},
		{name: "unknown tags", payload: appendRecord(appendRecord(bytes.Clone(valid), 0, nil), 255, []byte{1, 2})},
		{name: "repeated trust anchors and devices", payload: appendRecord(appendRecord(device(marshalRecords(minimalAssets())[30:]), 5, []byte("a")), 5, []byte("b"))},
		{name: "empty", payload: nil, want: "tag 1 (server URI) is missing"},
		{name: "client ID missing", payload: append(bytes.Clone(valid[:30]), valid[41:]...), want: "tag 2 (client ID) is missing"},
		{name: "short header", payload: append(bytes.Clone(valid), 4, 0), want: "record at offset 50: 2 bytes left, need at least a 3-byte tag and length"},
		{name: "overrun", payload: append(bytes.Clone(valid), 4, 0, 9, 'x'), want: "record at offset 50 (tag 4): length 9 runs past the end (1 bytes left)"},
		{name: "repeated server URI", payload: appendRecord(bytes.Clone(valid), 1, []byte("https://h:1")), want: "record at offset 50: tag 1 (server URI) repeats"},
		{name: "repeated endpoint ID", payload: appendRecord(appendRecord(bytes.Clone(valid), 4, []byte("e")), 4, []byte("e")), want: "record at offset 54: tag 4 (endpoint ID) repeats"},
		{name: "repeated private key", payload: appendRecord(appendRecord(bytes.Clone(valid), 6, []byte("k")), 6, []byte("k")), want: "record at offset 54: tag 6 (private key) repeats"},
		{
			name:    "device without secret",
			payload: device(appendRecord(nil, 2, []byte("h"))),
			want:    "record at offset 50 (connected device): record at offset 4: 0 bytes left, need at least a 3-byte tag and length",
		},
		{
			name:    "device truncated",
			payload: device([]byte{2, 0, 5, 'h'}),
			want:    "record at offset 50 (connected device): record at offset 0 (tag 2): length 5 runs past the end (1 bytes left)",
		},
		{
			name:    "device with wrong tags",
			payload: device(appendRecord(appendRecord(nil, 2, []byte("h")), 4, []byte("s"))),
			want:    "record at offset 50 (connected device): expected one tag 2 (hardware ID) and one tag 3 (shared secret) record, nothing else",
		},
		{
			name:    "device with trailing bytes",
			payload: device(append(appendRecord(appendRecord(nil, 2, []byte("h")), 3, []byte("s")), 0)),
			want:    "record at offset 50 (connected device): expected one tag 2 (hardware ID) and one tag 3 (shared secret) record, nothing else",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := unmarshalRecords(tt.payload)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unmarshalRecords: %v", err)
			case tt.want == "" && a == nil:
				t.Fatal("nil assets")
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Fatalf("unmarshalRecords = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestUnmarshalRecordsCopies(t *testing.T) {
	payload := marshalRecords(fullAssets(t))
	a, err := unmarshalRecords(payload)
	if err != nil {
		t.Fatal(err)
	}
	for i := range payload {
		payload[i] = 0
	}
	assertAssets(t, a, fullAssets(t))
}
