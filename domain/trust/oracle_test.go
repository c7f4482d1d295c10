package trust

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// encodeOracle encodes a or fails the test.
func encodeOracle(t testing.TB, a *Assets, passphrase string) []byte {
	t.Helper()
	b, err := EncodeOracle(a, passphrase, &countingReader{next: 0x20})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sealOracle encrypts an arbitrary plaintext (padding included) in Oracle's
// format, with a one-line base64 block and a "#" line, as the JS library
// writes.
func sealOracle(t testing.TB, plain []byte, passphrase string) []byte {
	t.Helper()
	if len(plain)%aes.BlockSize != 0 {
		t.Fatalf("plaintext is %d bytes; pad it", len(plain))
	}
	iv := bytes.Repeat([]byte{9}, aes.BlockSize)
	block, err := oracleCipher(passphrase, iv)
	if err != nil {
		t.Fatal(err)
	}
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, plain)
	return []byte("!" + b64(append(iv, ct...)) + "\n#")
}

// pad adds PKCS#7 padding.
func pad(p []byte) []byte {
	n := aes.BlockSize - len(p)%aes.BlockSize
	return append(bytes.Clone(p), bytes.Repeat([]byte{byte(n)}, n)...)
}

func TestOracleRoundTrip(t *testing.T) {
	full := fullAssets(t)
	tests := []struct {
		name string
		a    *Assets
	}{
		{name: "minimal", a: minimalAssets()},
		{name: "activated", a: &Assets{
			ServerURI: "https://iot.example.com", ClientID: "d", SharedSecret: []byte("s"),
			EndpointID: "0-AE", PrivateKey: full.PrivateKey, PublicKey: full.PublicKey,
		}},
		{name: "http and trust anchors", a: &Assets{
			ServerURI: "http://127.0.0.1:8080", ClientID: "d", SharedSecret: []byte("s"), TrustAnchors: full.TrustAnchors,
		}},
		{name: "gateway with devices", a: &Assets{
			ServerURI: "https://iot.example.com:443", ClientID: "g", SharedSecret: []byte("s"), Devices: full.Devices,
		}},
		{name: "everything", a: full},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := encodeOracle(t, tt.a, "changeit")
			s := string(b)
			comments := "\n#serverUri:" + tt.a.ServerURI + "\n#clientId:" + tt.a.ClientID + "\n"
			if s[0] != '!' || !strings.HasSuffix(s, comments) {
				t.Fatalf("layout: want \"!\" + base64 + %q, got\n%q", comments, s)
			}
			lines := strings.Split(strings.TrimSuffix(s[1:], comments), "\r\n")
			for i, l := range lines {
				if len(l) > oracleLineLen || (len(l) < oracleLineLen && i != len(lines)-1) || strings.ContainsAny(l, "\r\n") {
					t.Errorf("base64 line %d is %q; want %d characters (fewer on the last), CRLF between lines", i+1, l, oracleLineLen)
				}
			}
			a, f, err := Decode(b, "changeit")
			if err != nil {
				t.Fatal(err)
			}
			if f != FormatOracle {
				t.Errorf("format = %v, want oracle", f)
			}
			assertAssets(t, a, tt.a)
		})
	}
}

func TestOracleLayouts(t *testing.T) {
	b64Block, comments, _ := strings.Cut(katOracle[1:], "\n#")
	oneLine := strings.ReplaceAll(b64Block, "\r\n", "")
	tests := []struct {
		name, file string
	}{
		{name: "one line as JavaScript writes it", file: "!" + oneLine + "\n#"},
		{name: "LF line breaks", file: "!" + strings.ReplaceAll(b64Block, "\r\n", "\n") + "\n#" + comments},
		{name: "no comment lines", file: "!" + b64Block},
		{name: "no comment lines, trailing line break", file: "!" + b64Block + "\r\n"},
		{name: "short lines", file: "!" + oneLine[:10] + "\n" + oneLine[10:20] + "\r\n" + oneLine[20:] + "\n#x:y\n"},
		{name: "padding dropped", file: "!" + strings.TrimRight(oneLine, "=") + "\n"},
		{name: "comment without colon", file: "!" + oneLine + "\n#\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, f, err := Decode([]byte(tt.file), katPassphrase)
			if err != nil {
				t.Fatal(err)
			}
			if f != FormatOracle {
				t.Errorf("format = %v", f)
			}
			assertAssets(t, a, katAssets())
		})
	}
}

func TestOracleWrongPassphrase(t *testing.T) {
	for _, a := range []*Assets{katAssets(), fullAssets(t)} {
		b := encodeOracle(t, a, "right")
		for i := range 50 {
			p := fmt.Sprintf("wrong-%d", i)
			got, f, err := Decode(b, p)
			if !errors.Is(err, ErrPassphrase) || err.Error() != "decode oracle file: wrong passphrase or damaged file" {
				t.Fatalf("passphrase %q: Decode = %v", p, err)
			}
			if got != nil || f != FormatOracle {
				t.Fatalf("Decode returned %v, %v with the error", got, f)
			}
		}
	}
}

// TestOracleTampering: the format has no MAC, so a changed byte may decode to
// changed assets, but it must never panic, and what decodes must be valid.
func TestOracleTampering(t *testing.T) {
	orig := []byte(katOracle)
	for i := range orig {
		for _, m := range []byte{0x01, 0xFF} {
			b := bytes.Clone(orig)
			b[i] ^= m
			a, _, err := Decode(b, katPassphrase)
			switch {
			case err != nil && (a != nil || !isRejected(err)):
				t.Fatalf("byte %d ^ %#02x: Decode = %v, %v", i, m, a, err)
			case err == nil && a.Validate() != nil:
				t.Fatalf("byte %d ^ %#02x: decoded invalid assets: %v", i, m, a.Validate())
			}
		}
	}
}

func TestOracleTruncated(t *testing.T) {
	end := strings.Index(katOracle, "#") - 1 // the LF before the comments is not needed
	whole := len(strings.TrimRight(katOracle[:end], "="))
	for n := 1; n < whole; n++ {
		if a, _, err := Decode([]byte(katOracle[:n]), katPassphrase); err == nil || a != nil || !isRejected(err) {
			t.Fatalf("first %d bytes: Decode = %v, %v", n, a, err)
		}
	}
	for n := whole; n <= len(katOracle); n++ {
		if _, _, err := Decode([]byte(katOracle[:n]), katPassphrase); err != nil {
			t.Fatalf("first %d bytes (padding or comments cut): %v", n, err)
		}
	}
}

func TestOracleRecords(t *testing.T) {
	valid := marshalRecords(minimalAssets())
	wrong := "decode oracle file: wrong passphrase or damaged file"
	tests := []struct {
		name  string
		plain []byte // padded
		want  string // "" means it decodes to minimalAssets
	}{
		{name: "unknown tags skipped", plain: pad(appendRecord(appendRecord(bytes.Clone(valid), 0, nil), 200, []byte("x")))},
		{name: "empty padding block only", plain: pad(nil), want: wrong},
		{name: "padding zero", plain: append(bytes.Clone(valid), make([]byte, 16-len(valid)%16)...), want: wrong},
		{name: "padding inconsistent", plain: append(bytes.Clone(valid), append(bytes.Repeat([]byte{1}, 13-len(valid)%16), 2, 3, 3)...), want: wrong},
		{name: "shared secret missing", plain: pad(valid[:len(valid)-9]), want: wrong},
		{name: "record runs past the end", plain: pad(valid[:len(valid)-1]), want: wrong},
		{name: "repeated tag", plain: pad(appendRecord(bytes.Clone(valid), tagClientID, []byte("x"))), want: wrong},
		{name: "device with a third record", plain: pad(appendRecord(bytes.Clone(valid), tagConnectedDevice, appendRecord(appendRecord(appendRecord(nil, 2, []byte("h")), 3, []byte("s")), 4, nil))), want: wrong},
		{name: "device records swapped", plain: pad(appendRecord(bytes.Clone(valid), tagConnectedDevice, appendRecord(appendRecord(nil, 3, []byte("s")), 2, []byte("h")))), want: wrong},
		{
			name:  "invalid contents",
			plain: pad(marshalRecords(&Assets{ServerURI: "ws://iot.example.com:1883", ClientID: "c", SharedSecret: []byte("s")})),
			want:  `decode oracle file: unsupported or malformed provisioning file: contents: server URI "ws://iot.example.com:1883": scheme "ws" is not supported; expected https, mqtts, http or mqtt`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _, err := Decode(sealOracle(t, tt.plain, "p"), "p")
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				assertAssets(t, a, minimalAssets())
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Decode =\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}

func TestOracleFormatErrors(t *testing.T) {
	const prefix = "decode oracle file: unsupported or malformed provisioning file: "
	tests := []struct {
		name, file, want string
	}{
		{name: "version byte only", file: "!", want: prefix + "the encrypted block is 0 bytes; expected a 16-byte IV and a whole number (at least one) of 16-byte AES blocks"},
		{name: "comments only", file: "!\n#serverUri:https://h:1\n", want: prefix + "the encrypted block is 0 bytes; expected a 16-byte IV and a whole number (at least one) of 16-byte AES blocks"},
		{name: "IV only", file: "!" + b64(make([]byte, 16)), want: prefix + "the encrypted block is 16 bytes; expected a 16-byte IV and a whole number (at least one) of 16-byte AES blocks"},
		{name: "partial block", file: "!" + b64(make([]byte, 33)), want: prefix + "the encrypted block is 33 bytes; expected a 16-byte IV and a whole number (at least one) of 16-byte AES blocks"},
		{name: "stray byte", file: "!QUJD*REVG\n#", want: prefix + `base64 block: unexpected byte '*' at offset 5 of the file; expected base64, line breaks or a '#' comment`},
		{name: "padding inside", file: "!QU=DREVG", want: prefix + "base64 block: invalid base64 at offset 3 of the file"},
		{name: "dangling character", file: "!QUJDR", want: prefix + "base64 block: invalid base64 at offset 5 of the file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, f, err := Decode([]byte(tt.file), "p")
			if f != FormatOracle {
				t.Errorf("format = %v", f)
			}
			if !errors.Is(err, ErrFormat) || err.Error() != tt.want {
				t.Fatalf("Decode =\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}

func TestEncodeOracleErrors(t *testing.T) {
	tests := []struct {
		name       string
		a          *Assets
		passphrase string
		rand       func() any
		want       string
	}{
		{
			name: "mqtts", a: &Assets{ServerURI: "mqtts://iot.example.com:8883", ClientID: "c", SharedSecret: []byte("s")}, passphrase: "p",
			want: `encode oracle file: server URI "mqtts://iot.example.com:8883": Oracle's JavaScript library cannot read an mqtts URI from this format; use the cloud's https URI`,
		},
		{
			name: "IPv6 literal", a: &Assets{ServerURI: "https://[2001:db8::1]:443", ClientID: "c", SharedSecret: []byte("s")}, passphrase: "p",
			want: `encode oracle file: server URI "https://[2001:db8::1]:443": Oracle's JavaScript library cannot read an IPv6-literal host from this format; use a host name`,
		},
		{name: "nil assets", passphrase: "p", want: "encode oracle file: assets are nil"},
		{name: "invalid assets", a: &Assets{}, passphrase: "p", want: "encode oracle file: server URI is missing; expected scheme://host:port, e.g. https://iot.example.com:443\nclient ID is missing\nshared secret is missing"},
		{name: "empty passphrase", a: minimalAssets(), want: "encode oracle file: passphrase is empty"},
		{name: "nil random source", a: minimalAssets(), passphrase: "p", rand: func() any { return nil }, want: "encode oracle file: random source is nil"},
		{name: "random source fails", a: minimalAssets(), passphrase: "p", rand: func() any { return failingReader{} }, want: "encode oracle file: read random IV: entropy exhausted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			switch {
			case tt.rand == nil:
				_, err = EncodeOracle(tt.a, tt.passphrase, &countingReader{})
			case tt.rand() == nil:
				_, err = EncodeOracle(tt.a, tt.passphrase, nil)
			default:
				_, err = EncodeOracle(tt.a, tt.passphrase, failingReader{})
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("EncodeOracle =\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}

func BenchmarkDecodeOracle(b *testing.B) {
	file := encodeOracle(b, fullAssets(b), "changeit")
	for b.Loop() {
		if _, _, err := Decode(file, "changeit"); err != nil {
			b.Fatal(err)
		}
	}
}
