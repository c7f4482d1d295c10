package trust

import (
	"errors"
	"testing"
)

func TestDecodeDetection(t *testing.T) {
	const prefix = "decode provisioning file: unsupported or malformed provisioning file: "
	tests := []struct {
		name, file, want string
	}{
		{name: "empty", file: "", want: prefix + "the file is empty"},
		{name: "white space", file: " \r\n\t\n", want: prefix + "the file is empty"},
		{name: "byte-order mark", file: "\uFEFF", want: prefix + "the file is empty"},
		{
			name: "JSON",
			file: `{"clientId":"x"}`,
			want: prefix + `it looks like JSON (Oracle's legacy JSON trusted-assets store?), which is not supported; expected a file starting with "iotnode-trust/2" (v2) or "!" (Oracle unified format)`,
		},
		{
			name: "later Oracle version",
			file: `"QUJDREVG`,
			want: prefix + `it starts with "\"QUJDREVG"; expected "iotnode-trust/2" (v2) or "!" (Oracle unified format)`,
		},
		{
			name: "binary",
			file: "\x00\x01\x02\xff",
			want: prefix + `it starts with "\x00\x01\x02\xff"; expected "iotnode-trust/2" (v2) or "!" (Oracle unified format)`,
		},
		{
			name: "PEM",
			file: "-----BEGIN CERTIFICATE-----\nMIIB",
			want: prefix + `it starts with "-----BEGIN CERTI"; expected "iotnode-trust/2" (v2) or "!" (Oracle unified format)`,
		},
		{
			name: "magic in upper case",
			file: "IOTNODE-TRUST/2 kdf=pbkdf2-sha256",
			want: prefix + `it starts with "IOTNODE-TRUST/2 "; expected "iotnode-trust/2" (v2) or "!" (Oracle unified format)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, f, err := Decode([]byte(tt.file), "p")
			if a != nil || f != 0 {
				t.Errorf("Decode returned %v, %v with the error", a, f)
			}
			if !errors.Is(err, ErrFormat) || errors.Is(err, ErrPassphrase) || err.Error() != tt.want {
				t.Fatalf("Decode =\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		format  Format
		wantErr string
	}{
		{name: "v2", text: "v2", format: FormatV2},
		{name: "oracle", text: "oracle", format: FormatOracle},
		{name: "unknown", text: "Oracle", wantErr: `provisioning-file format "Oracle" is not supported; expected v2 or oracle`},
		{name: "empty", text: "", wantErr: `provisioning-file format "" is not supported; expected v2 or oracle`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseFormat(tt.text)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || f != 0 {
					t.Fatalf("ParseFormat = %v, %v; want %q", f, err, tt.wantErr)
				}
				return
			}
			if err != nil || f != tt.format || f.String() != tt.text {
				t.Fatalf("ParseFormat = %v, %v; want %v", f, err, tt.format)
			}
		})
	}
	if s := Format(0).String(); s != "Format(0)" {
		t.Errorf("Format(0).String() = %q", s)
	}
}
