package trust

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// countingReader is a deterministic "random" source: it yields next, next+1,
// ... (mod 256).
type countingReader struct{ next byte }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.next
		r.next++
	}
	return len(p), nil
}

// failingReader fails every read.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("entropy exhausted") }

// fixture reads a file from testdata.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// minimalAssets are assets right after provisioning: no endpoint, keys,
// anchors or devices.
func minimalAssets() *Assets {
	return &Assets{
		ServerURI:    "https://iot.example.com:443",
		ClientID:     "device-1",
		SharedSecret: []byte("s3cr3t"),
	}
}

// fullAssets are an activated gateway with every field set.
func fullAssets(t testing.TB) *Assets {
	t.Helper()
	return &Assets{
		ServerURI:    "https://iot.example.com:8443",
		ClientID:     "gateway-1",
		SharedSecret: []byte("gateway secret \x00\xff binary"),
		EndpointID:   "0-AEBAAA",
		TrustAnchors: [][]byte{fixture(t, "ca.der"), fixture(t, "ca.der")},
		PrivateKey:   fixture(t, "device-key.pk8.der"),
		PublicKey:    fixture(t, "device-key.spki.der"),
		Devices: []ConnectedDevice{
			{HardwareID: "sensor-a", SharedSecret: []byte("secret-a")},
			{HardwareID: "sensor-b", SharedSecret: []byte("secret-b")},
		},
	}
}

// ed25519Pair returns a deterministic Ed25519 key pair as PKCS#8 and SPKI DER.
func ed25519Pair(t testing.TB, seed byte) (priv, pub []byte) {
	t.Helper()
	k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	priv, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, err = x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

func assertAssets(t *testing.T, got, want *Assets) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("assets differ\n got: %#v\nwant: %#v", got, want)
		// %#v hides secrets; show which field differs.
		g, w := reflect.ValueOf(*got), reflect.ValueOf(*want)
		for i := range g.NumField() {
			if !reflect.DeepEqual(g.Field(i).Interface(), w.Field(i).Interface()) {
				t.Errorf("field %s differs", g.Type().Field(i).Name)
			}
		}
	}
}

// isRejected reports whether err is one of the two decode sentinels.
func isRejected(err error) bool {
	return errors.Is(err, ErrPassphrase) || errors.Is(err, ErrFormat)
}

// legacyKeys returns the RSA fixture as PKCS#1 private and public key DER,
// and a P-256 key as SEC 1 private key DER and its SubjectPublicKeyInfo DER.
func legacyKeys(t testing.TB) (pkcs1Priv, pkcs1Pub, sec1Priv, ecPub []byte) {
	t.Helper()
	k, err := x509.ParsePKCS8PrivateKey(fixture(t, "device-key.pk8.der"))
	if err != nil {
		t.Fatal(err)
	}
	rk := k.(*rsa.PrivateKey)
	ek, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	sec1Priv, err = x509.MarshalECPrivateKey(ek)
	if err != nil {
		t.Fatal(err)
	}
	ecPub, err = x509.MarshalPKIXPublicKey(&ek.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return x509.MarshalPKCS1PrivateKey(rk), x509.MarshalPKCS1PublicKey(&rk.PublicKey), sec1Priv, ecPub
}

// b64 is standard base64 with padding.
func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
