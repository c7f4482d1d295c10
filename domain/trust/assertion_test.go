package trust_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/domain/trust"
)

// t0 is 2025-03-01 12:00:00 UTC; exp is then 1740831300.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func deviceKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	der, err := os.ReadFile(filepath.Join("testdata", "device-key.pk8.der"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := trust.ParseDeviceKey(der)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestClientAssertion checks known answers computed without Go: the HS256
// token with Python's hmac and base64 modules, the RS256 signature with
// "openssl dgst -sha256 -sign" over the same signing input with
// testdata/device-key.pk8.der.
func TestClientAssertion(t *testing.T) {
	key := deviceKey(t)
	tests := []struct {
		name    string
		id      string
		secret  []byte
		key     *rsa.PrivateKey
		now     time.Time
		want    string
		wantErr string
	}{
		{name: "HS256 before activation", id: "kat-device-1", secret: []byte("s3cr3t-shared"), now: t0,
			want: "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9." +
				"eyJpc3MiOiJrYXQtZGV2aWNlLTEiLCJzdWIiOiJrYXQtZGV2aWNlLTEiLCJhdWQiOiJvcmFjbGUvaW90L29hdXRoMi90b2tlbiIsImV4cCI6MTc0MDgzMTMwMH0." +
				"xRLuPBQGsHIws4DT6oy910zREFYhgrq2cfniIl7Y7rA"},
		{name: "RS256 after activation, secret ignored", id: "kat-endpoint-1", secret: []byte("ignored"), key: key, now: t0.Add(999 * time.Millisecond),
			want: "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." +
				"eyJpc3MiOiJrYXQtZW5kcG9pbnQtMSIsInN1YiI6ImthdC1lbmRwb2ludC0xIiwiYXVkIjoib3JhY2xlL2lvdC9vYXV0aDIvdG9rZW4iLCJleHAiOjE3NDA4MzEzMDB9." +
				"AqqDJSP5q3E9dVI1IDW9ng7nzLNgoOlKwdTAKxxJ7IhZhYeBp-JltIkaGyYOXI1-C5BIMqlZjOlcWlyB-SgzNIxVVwP70-6-iUOYF5rYjFmQE5Sj5JPIesblJkSep4zvOmsxGDnbLG39lrnejLdnxlICaKBbfTOgwqaoJXCH759QYM9OkM0-aSaPpWEt86UQ5aFD3JnnhvjwA0iigQAPyQQ_uDeftDI3pUZkn3eXHIFC1r7Ykep76Pscq_EVhhUWxcc_kcjIky_KAa6PTheo9eWPSbddGPM1RXHcG7YX9l1HAf9JIo-JpvftUhGY9q14FMrwfhrv06z58JiBlnqCaQ"},
		{name: "no ID", secret: []byte("s"), now: t0,
			wantErr: "the client assertion needs an ID; expected the activation ID or the endpoint ID"},
		{name: "nothing to sign with", id: "dev-1", now: t0,
			wantErr: `no device key and no shared secret to sign the client assertion of "dev-1" with`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := trust.ClientAssertion(tt.id, tt.secret, tt.key, tt.now)
			if errText(err) != orNil(tt.wantErr) || got != tt.want {
				t.Errorf("ClientAssertion = %q, %s\n want %q, %s", got, errText(err), tt.want, orNil(tt.wantErr))
			}
			if strings.Contains(got, "=") {
				t.Errorf("the assertion has padding: %s", got)
			}
		})
	}
}

// TestClientAssertionBadKey: a key that cannot sign (here one without its
// private part) gives an error, not a token.
func TestClientAssertionBadKey(t *testing.T) {
	k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: deviceKey(t).N, E: 3}}
	_, err := trust.ClientAssertion("dev-1", nil, k, t0)
	if err == nil || !strings.HasPrefix(err.Error(), "sign the client assertion with the device key: ") {
		t.Errorf("error = %v, want a signing error", err)
	}
}

func TestParseDeviceKey(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), fixedReader{})
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, _ := os.ReadFile(filepath.Join("testdata", "device-key.pk8.der"))
	tests := []struct {
		name    string
		der     []byte
		wantErr string
	}{
		{name: "RSA", der: rsaDER},
		{name: "ECDSA", der: ecDER, wantErr: "the device key of the provisioning file is an ECDSA key; RS256 client assertions need an RSA key"},
		{name: "junk", der: []byte{1, 2, 3}, wantErr: "the device key of the provisioning file is not PKCS#8 DER: asn1: structure error: tags don't match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := trust.ParseDeviceKey(tt.der)
			if errText(err) != orNil(tt.wantErr) || (err == nil) != (k != nil) {
				t.Errorf("ParseDeviceKey = %v, %s; want %s", k != nil, errText(err), orNil(tt.wantErr))
			}
		})
	}
}

// fixedReader is a deterministic entropy source for test keys.
type fixedReader struct{}

func (fixedReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i)
	}
	return len(p), nil
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func orNil(s string) string {
	if s == "" {
		return "<nil>"
	}
	return s
}
