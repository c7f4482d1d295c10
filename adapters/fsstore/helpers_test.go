package fsstore

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/iotnode/iotnode/domain/trust"
)

// testIter is the PBKDF2 iteration count of every file the tests write.
const testIter = trust.MinIterations

const testPass = "correct horse battery staple"

// countingReader is a deterministic "random" source: next, next+1, ...
type countingReader struct{ next byte }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.next
		r.next++
	}
	return len(p), nil
}

// keyPair returns a deterministic Ed25519 key pair as PKCS#8 and SPKI DER,
// and a self-signed certificate for it.
func keyPair(t testing.TB, seed byte) (priv, pub, cert []byte) {
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
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(int64(seed) + 1),
		Subject:               pkix.Name{CommonName: "fsstore test CA"},
		NotBefore:             time.Unix(1700000000, 0),
		NotAfter:              time.Unix(1900000000, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	cert, err = x509.CreateCertificate(nil, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub, cert
}

// provisioned are assets right after provisioning, with one trust anchor.
func provisioned(t testing.TB) *trust.Assets {
	t.Helper()
	_, _, cert := keyPair(t, 7)
	return &trust.Assets{
		ServerURI:    "https://127.0.0.1:8443",
		ClientID:     "gateway-1",
		SharedSecret: []byte("s3cret \x00\xff"),
		TrustAnchors: [][]byte{cert},
		Devices: []trust.ConnectedDevice{
			{HardwareID: "sensor-a", SharedSecret: []byte("secret-a")},
		},
	}
}

// writeProvisioning writes a in format f to dir/name with mode perm and
// returns its path.
func writeProvisioning(t testing.TB, dir, name string, a *trust.Assets, f trust.Format, perm os.FileMode) string {
	t.Helper()
	var data []byte
	var err error
	switch f {
	case trust.FormatV2:
		data, err = trust.EncodeV2(a, testPass, &countingReader{}, trust.WithIterations(testIter))
	case trust.FormatOracle:
		data, err = trust.EncodeOracle(a, testPass, &countingReader{})
	}
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // WriteFile's perm passes through the umask
		t.Fatal(err)
	}
	return path
}

// errText returns err's text, or "<nil>".
func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
