package trust

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

const testIterations = MinIterations

// encodeV2 encodes a with test settings or fails the test.
func encodeV2(t testing.TB, a *Assets, passphrase string) []byte {
	t.Helper()
	b, err := EncodeV2(a, passphrase, &countingReader{next: 0x80}, WithIterations(testIterations))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sealV2 seals an arbitrary payload under a well-formed v2 header, to test
// what Decode does with authenticated but malformed contents.
func sealV2(t testing.TB, plain []byte, passphrase string) []byte {
	t.Helper()
	salt, nonce := bytes.Repeat([]byte{1}, v2SaltLen), bytes.Repeat([]byte{2}, v2NonceLen)
	header := fmt.Sprintf("iotnode-trust/2 kdf=pbkdf2-sha256 iter=%d salt=%x aead=aes-256-gcm nonce=%x", testIterations, salt, nonce)
	aead, err := v2Cipher(passphrase, salt, testIterations)
	if err != nil {
		t.Fatal(err)
	}
	sealed := aead.Seal(nil, nonce, plain, []byte(header))
	return fmt.Appendf(nil, "%s\n%s\n", header, b64(sealed))
}

func TestV2RoundTrip(t *testing.T) {
	full := fullAssets(t)
	tests := []struct {
		name string
		a    *Assets
	}{
		{name: "minimal", a: minimalAssets()},
		{name: "activated", a: &Assets{
			ServerURI: "mqtts://iot.example.com:8883", ClientID: "d", SharedSecret: []byte{0},
			EndpointID: "0-AE", PrivateKey: full.PrivateKey, PublicKey: full.PublicKey,
		}},
		{name: "trust anchors only", a: &Assets{
			ServerURI: "http://127.0.0.1:8080", ClientID: "d", SharedSecret: []byte("s"), TrustAnchors: full.TrustAnchors,
		}},
		{name: "gateway with devices", a: &Assets{
			ServerURI: "https://[::1]:443", ClientID: "g", SharedSecret: []byte("s"), Devices: full.Devices,
		}},
		{name: "everything", a: full},
		{name: "non-ASCII IDs", a: &Assets{
			ServerURI: "https://bücher.example:443", ClientID: "capteur-é", SharedSecret: []byte("s"), EndpointID: "端点",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := encodeV2(t, tt.a, "correct horse battery staple")
			lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			if !strings.HasPrefix(lines[0], "iotnode-trust/2 kdf=pbkdf2-sha256 iter=1000 salt=") {
				t.Errorf("header = %q", lines[0])
			}
			for i, l := range lines[1:] {
				if len(l) > v2LineLen || (len(l) < v2LineLen && i != len(lines)-2) {
					t.Errorf("body line %d has %d characters, want %d (fewer on the last)", i+1, len(l), v2LineLen)
				}
			}
			for i, c := range b {
				if c > 0x7E || (c < 0x20 && c != '\n') {
					t.Fatalf("byte %d is %q; want printable ASCII", i, c)
				}
			}
			a, f, err := Decode(b, "correct horse battery staple")
			if err != nil {
				t.Fatal(err)
			}
			if f != FormatV2 {
				t.Errorf("format = %v, want v2", f)
			}
			assertAssets(t, a, tt.a)
		})
	}
}

func TestV2RandomnessIsUsed(t *testing.T) {
	a := minimalAssets()
	one, err := EncodeV2(a, "p", &countingReader{next: 0}, WithIterations(testIterations))
	if err != nil {
		t.Fatal(err)
	}
	two, err := EncodeV2(a, "p", &countingReader{next: 1}, WithIterations(testIterations))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(one, two) {
		t.Fatal("different randomness gave the same file")
	}
	if !bytes.Contains(one, []byte("salt=000102030405060708090a0b0c0d0e0f aead=aes-256-gcm nonce=101112131415161718191a1b\n")) {
		t.Errorf("salt and nonce are not the first 28 random bytes:\n%s", one)
	}
}

func TestV2DefaultIterations(t *testing.T) {
	if testing.Short() {
		t.Skip("600,000 PBKDF2 iterations")
	}
	b, err := EncodeV2(minimalAssets(), "p", &countingReader{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("iotnode-trust/2 kdf=pbkdf2-sha256 iter=600000 salt=")) {
		t.Fatalf("header = %q", bytes.SplitN(b, []byte("\n"), 2)[0])
	}
}

func TestV2WrongPassphrase(t *testing.T) {
	b := encodeV2(t, fullAssets(t), "right")
	for _, p := range []string{"wrong", "", "Right", "right ", strings.Repeat("x", 1000)} {
		t.Run(fmt.Sprintf("%.10q", p), func(t *testing.T) {
			a, f, err := Decode(b, p)
			if !errors.Is(err, ErrPassphrase) || err.Error() != "decode v2 file: wrong passphrase or damaged file" {
				t.Fatalf("Decode = %v", err)
			}
			if a != nil || f != FormatV2 {
				t.Errorf("Decode returned %v, %v with the error", a, f)
			}
		})
	}
}

// TestV2EveryByteFlipped changes each byte of a file in nine ways; no change
// may decode.
func TestV2EveryByteFlipped(t *testing.T) {
	orig := encodeV2(t, minimalAssets(), "p")
	masks := []byte{0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF}
	counts := map[error]int{}
	for i := range orig {
		for _, m := range masks {
			b := bytes.Clone(orig)
			b[i] ^= m
			a, _, err := Decode(b, "p")
			if err == nil || a != nil || !isRejected(err) {
				t.Fatalf("byte %d ^ %#02x: Decode = %v, %v; want ErrPassphrase or ErrFormat", i, m, a, err)
			}
			if errors.Is(err, ErrPassphrase) {
				counts[ErrPassphrase]++
			} else {
				counts[ErrFormat]++
			}
		}
	}
	t.Logf("%d bytes × %d masks: %d ErrPassphrase, %d ErrFormat", len(orig), len(masks), counts[ErrPassphrase], counts[ErrFormat])
}

func TestV2Truncated(t *testing.T) {
	orig := encodeV2(t, fullAssets(t), "p")
	for n := range len(orig) - 1 { // without its final line break the file is still whole
		if a, _, err := Decode(orig[:n], "p"); err == nil || a != nil || !isRejected(err) {
			t.Fatalf("first %d of %d bytes: Decode = %v, %v", n, len(orig), a, err)
		}
	}
	if _, _, err := Decode(orig[:len(orig)-1], "p"); err != nil {
		t.Fatalf("without the final line break: %v", err)
	}
}

func TestV2Header(t *testing.T) {
	orig := string(encodeV2(t, minimalAssets(), "p"))
	header, body, _ := strings.Cut(orig, "\n")
	const prefix = "decode v2 file: unsupported or malformed provisioning file: "
	const want6 = "iotnode-trust/2 kdf=pbkdf2-sha256 iter=N salt=HEX aead=aes-256-gcm nonce=HEX"
	tests := []struct {
		name        string
		old, new    string // replace in the header
		wantErr     string // after prefix
		wantPassErr bool   // a well-formed but changed header: ErrPassphrase
	}{
		{name: "version 3", old: "trust/2 ", new: "trust/3 ", wantErr: `header: version "3" is not supported; this build reads version 2`},
		{name: "version 20", old: "trust/2 ", new: "trust/20 ", wantErr: `header: version "20" is not supported; this build reads version 2`},
		{name: "no version", old: "trust/2 ", new: "trust/ ", wantErr: `header: version "" is not supported; this build reads version 2`},
		{name: "iterations too low", old: "iter=1000", new: "iter=999", wantErr: "header: iteration count 999 is outside the accepted range 1000..10000000"},
		{name: "iterations too high", old: "iter=1000", new: "iter=10000001", wantErr: "header: iteration count 10000001 is outside the accepted range 1000..10000000"},
		{name: "iterations overflow", old: "iter=1000", new: "iter=99999999999999999999999999999999", wantErr: "header: iteration count 999999999999999999999999 is outside the accepted range 1000..10000000"},
		{name: "iterations zero", old: "iter=1000", new: "iter=0", wantErr: "header: iteration count 0 is outside the accepted range 1000..10000000"},
		{name: "iterations leading zero", old: "iter=1000", new: "iter=01000", wantErr: `header: iteration count "01000" is not a decimal number without leading zeros`},
		{name: "iterations negative", old: "iter=1000", new: "iter=-1000", wantErr: `header: iteration count "-1000" is not a decimal number without leading zeros`},
		{name: "iterations empty", old: "iter=1000", new: "iter=", wantErr: `header: iteration count "" is not a decimal number without leading zeros`},
		{name: "iterations changed in range", old: "iter=1000", new: "iter=1001", wantPassErr: true},
		{name: "kdf", old: "kdf=pbkdf2-sha256", new: "kdf=scrypt", wantErr: `header: key derivation "scrypt" is not supported; expected pbkdf2-sha256`},
		{name: "aead", old: "aead=aes-256-gcm", new: "aead=chacha20-poly1305", wantErr: `header: cipher "chacha20-poly1305" is not supported; expected aes-256-gcm`},
		{name: "salt short", old: "salt=808182838485868788898a8b8c8d8e8f", new: "salt=808182838485868788898a8b8c8d8e", wantErr: "header: salt is 15 bytes; expected 16..64"},
		{name: "salt long", old: "salt=808182838485868788898a8b8c8d8e8f", new: "salt=" + strings.Repeat("ab", 65), wantErr: "header: salt is 65 bytes; expected 16..64"},
		{name: "salt upper case", old: "salt=808182838485868788898a8b8c8d8e8f", new: "salt=808182838485868788898A8B8C8D8E8F", wantErr: `header: salt "808182838485868788898A8B" is not lowercase hexadecimal`},
		{name: "salt odd", old: "salt=808182838485868788898a8b8c8d8e8f", new: "salt=808", wantErr: `header: salt "808" is not lowercase hexadecimal`},
		{name: "salt longer in range", old: "salt=808182838485868788898a8b8c8d8e8f", new: "salt=808182838485868788898a8b8c8d8e8f00", wantPassErr: true},
		{name: "nonce short", old: "nonce=909192939495969798999a9b", new: "nonce=909192939495969798999a", wantErr: "header: nonce is 11 bytes; expected 12"},
		{name: "field renamed", old: "iter=", new: "rounds=", wantErr: `header: field 3 is "rounds=1000"; expected iter=… (` + want6 + ")"},
		{name: "fields reordered", old: "kdf=pbkdf2-sha256 iter=1000", new: "iter=1000 kdf=pbkdf2-sha256", wantErr: `header: field 2 is "iter=1000"; expected kdf=… (` + want6 + ")"},
		{name: "field missing", old: " aead=aes-256-gcm", new: "", wantErr: "header: 5 space-separated fields; expected 6: " + want6},
		{name: "double space", old: " iter", new: "  iter", wantErr: "header: 7 space-separated fields; expected 6: " + want6},
		{name: "trailing space", old: header, new: header + " ", wantErr: "header: 7 space-separated fields; expected 6: " + want6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(header, tt.old) {
				t.Fatalf("header %q lacks %q", header, tt.old)
			}
			b := []byte(strings.Replace(header, tt.old, tt.new, 1) + "\n" + body)
			_, f, err := Decode(b, "p")
			if f != FormatV2 {
				t.Errorf("format = %v, want v2", f)
			}
			if tt.wantPassErr {
				if !errors.Is(err, ErrPassphrase) {
					t.Fatalf("Decode = %v, want ErrPassphrase", err)
				}
				return
			}
			if !errors.Is(err, ErrFormat) || err.Error() != prefix+tt.wantErr {
				t.Fatalf("Decode =\n%v\nwant\n%s%s", err, prefix, tt.wantErr)
			}
		})
	}
}

func TestV2Base64(t *testing.T) {
	// katV2's body starts at offset 130 and ends in "fg==" at offset 275: one
	// byte in the last group.
	const prefix = "decode v2 file: unsupported or malformed provisioning file: base64 block: "
	tests := []struct {
		name, old, new, want string
	}{
		{name: "missing padding", old: "ffg==\n", new: "ffg\n", want: prefix + "invalid base64 at offset 275 of the file"},
		{name: "non-zero trailing bits", old: "ffg==\n", new: "ffh==\n", want: prefix + "invalid base64 at offset 277 of the file"},
		{name: "padding inside", old: "ffsJ", new: "ff=J", want: prefix + "invalid base64 at offset 132 of the file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := strings.Replace(katV2, tt.old, tt.new, 1)
			if file == katV2 {
				t.Fatalf("katV2 lacks %q", tt.old)
			}
			_, _, err := Decode([]byte(file), katPassphrase)
			if !errors.Is(err, ErrFormat) || err.Error() != tt.want {
				t.Fatalf("Decode =\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}

func TestV2Layout(t *testing.T) {
	orig := string(encodeV2(t, fullAssets(t), "p"))
	header, body, _ := strings.Cut(orig, "\n")
	oneLine := strings.ReplaceAll(body, "\n", "")
	tests := []struct {
		name string
		file string
		want string // "" means it decodes
	}{
		{name: "CRLF line endings", file: strings.ReplaceAll(orig, "\n", "\r\n")},
		{name: "body on one line", file: header + "\n" + oneLine},
		{name: "body re-wrapped and indented", file: header + "\n  " + oneLine[:10] + "\n\t" + oneLine[10:] + "\n\n"},
		{name: "byte-order mark and blank lines first", file: "\uFEFF\n\n" + orig},
		{name: "no line break after header", file: header, want: "decode v2 file: unsupported or malformed provisioning file: the header line has no line break after it; the file is truncated"},
		{name: "empty body", file: header + "\n", want: "decode v2 file: unsupported or malformed provisioning file: the sealed payload is 0 bytes; expected at least the 16-byte GCM tag"},
		{name: "short body", file: header + "\nAAAA\n", want: "decode v2 file: unsupported or malformed provisioning file: the sealed payload is 3 bytes; expected at least the 16-byte GCM tag"},
		{
			name: "comment after body",
			file: orig + "#serverUri:https://iot.example.com\n",
			want: fmt.Sprintf("decode v2 file: unsupported or malformed provisioning file: base64 block: unexpected byte '#' at offset %d of the file; expected base64 and line breaks", len(orig)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _, err := Decode([]byte(tt.file), "p")
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				assertAssets(t, a, fullAssets(t))
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Decode =\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}

// TestV2Payload checks contents that decrypt but break the rules: a writer
// bug, so ErrFormat with the detail.
func TestV2Payload(t *testing.T) {
	const prefix = "decode v2 file: unsupported or malformed provisioning file: "
	valid := marshalRecords(minimalAssets())
	tests := []struct {
		name  string
		plain []byte
		want  string // "" means it decodes to minimalAssets
	}{
		{name: "unknown tag skipped", plain: appendRecord(bytes.Clone(valid), 9, []byte("future"))},
		{name: "empty", plain: nil, want: prefix + "payload: tag 1 (server URI) is missing"},
		{name: "shared secret missing", plain: valid[:len(valid)-9], want: prefix + "payload: tag 3 (shared secret) is missing"},
		{name: "record runs past the end", plain: valid[:len(valid)-1], want: prefix + "payload: record at offset 41 (tag 3): length 6 runs past the end (5 bytes left)"},
		{
			name:  "invalid contents",
			plain: marshalRecords(&Assets{ServerURI: "ftp://x", ClientID: "c", SharedSecret: []byte("s")}),
			want:  prefix + `contents: server URI "ftp://x": scheme "ftp" is not supported; expected https, mqtts, http or mqtt`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _, err := Decode(sealV2(t, tt.plain, "p"), "p")
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				assertAssets(t, a, minimalAssets())
				return
			}
			if !errors.Is(err, ErrFormat) || err.Error() != tt.want {
				t.Fatalf("Decode =\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}

func TestEncodeV2Errors(t *testing.T) {
	tests := []struct {
		name       string
		a          *Assets
		passphrase string
		rand       func() *countingReader
		badRand    bool
		opts       []Option
		want       string
	}{
		{name: "nil assets", a: nil, passphrase: "p", want: "encode v2 file: assets are nil"},
		{name: "invalid assets", a: &Assets{ServerURI: "https://h:1"}, passphrase: "p", want: "encode v2 file: client ID is missing\nshared secret is missing"},
		{name: "empty passphrase", a: minimalAssets(), passphrase: "", want: "encode v2 file: passphrase is empty"},
		{name: "nil random source", a: minimalAssets(), passphrase: "p", rand: func() *countingReader { return nil }, want: "encode v2 file: random source is nil"},
		{name: "random source fails", a: minimalAssets(), passphrase: "p", badRand: true, want: "encode v2 file: read random salt and nonce: entropy exhausted"},
		{name: "too few iterations", a: minimalAssets(), passphrase: "p", opts: []Option{WithIterations(999)}, want: "encode v2 file: iteration count 999 is outside the accepted range 1000..10000000"},
		{name: "too many iterations", a: minimalAssets(), passphrase: "p", opts: []Option{WithIterations(MaxIterations + 1)}, want: "encode v2 file: iteration count 10000001 is outside the accepted range 1000..10000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			opts := append([]Option{WithIterations(testIterations)}, tt.opts...)
			switch {
			case tt.badRand:
				_, err = EncodeV2(tt.a, tt.passphrase, failingReader{}, opts...)
			case tt.rand != nil:
				_, err = EncodeV2(tt.a, tt.passphrase, nil, opts...)
			default:
				_, err = EncodeV2(tt.a, tt.passphrase, &countingReader{}, opts...)
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("EncodeV2 = %v, want %q", err, tt.want)
			}
		})
	}
}

// BenchmarkDecodeV2 measures Decode of a v2 file at DefaultIterations: the
// start-up cost of a node.
func BenchmarkDecodeV2(b *testing.B) {
	file, err := EncodeV2(fullAssets(b), "correct horse battery staple", &countingReader{})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := Decode(file, "correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}
