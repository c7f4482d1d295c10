package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names inside the directory given to Ensure.
const (
	CACertFile     = "ca.pem"
	CAKeyFile      = "ca-key.pem"
	ServerCertFile = "server.pem"
	ServerKeyFile  = "server-key.pem"
)

// Validity periods and the renewal margin.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	ServerValidity = 398 * 24 * time.Hour // the longest that browsers accept
	RenewBefore    = 30 * 24 * time.Hour  // a server certificate closer to expiry is re-issued
	backdate       = time.Hour            // NotBefore is set this far back to tolerate clock skew
)

// CAKeyBits is the size of the CA's RSA key.
const CAKeyBits = 2048

// defaultHostnames are in every server certificate, whatever Ensure is asked for.
var defaultHostnames = []string{"localhost", "127.0.0.1", "::1"}

// Bundle is the PKI of one data directory. It is read-only after Ensure
// returns and safe for concurrent use.
type Bundle struct {
	// CACertDER is the CA certificate (DER): the trust anchor for devices.
	CACertDER []byte
	// CACertPEM is the same certificate, PEM-encoded (the content of ca.pem).
	CACertPEM []byte
	// CAPool holds only the CA certificate: a client that trusts it (and
	// nothing else) can verify the server.
	CAPool *x509.CertPool
	// ServerCert is the server certificate and its key, for a TLS server.
	ServerCert tls.Certificate
	// Leaf is the parsed server certificate.
	Leaf *x509.Certificate
	// Issued is true when this call created or re-issued the server certificate.
	Issued bool
	// CreatedCA is true when this call created the CA.
	CreatedCA bool
}

// TLSConfig returns a fresh server-side TLS configuration serving the server
// certificate with TLS 1.2 or later. The caller may modify the returned value.
func (b *Bundle) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{b.ServerCert},
	}
}

// Ensure returns the PKI kept in dir, creating what is missing:
//
//   - no CA yet (neither ca.pem nor ca-key.pem): a new CA valid 10 years;
//   - no server certificate, one that does not cover every name in hostnames
//     (plus localhost, 127.0.0.1 and ::1), one not signed by the CA, or one that
//     expires within 30 days of now: a new server certificate from the same CA.
//
// hostnames may hold DNS names and IP addresses. dir is created (0700) when it
// does not exist. A half-present CA (certificate without key or the reverse),
// an unreadable file or an expired CA is an error: Ensure never replaces a CA,
// because devices in the field trust it. Files are written atomically (a
// temporary file renamed over the target). Ensure is not safe to call
// concurrently on the same dir from several processes.
func Ensure(dir string, hostnames []string, now time.Time) (*Bundle, error) {
	names, err := normalizeHostnames(hostnames)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if dir == "" {
		return nil, errors.New("pki: no directory given: expected the data directory that holds ca.pem")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: create directory: %w", err)
	}
	b := &Bundle{}
	caCert, caKey, err := loadOrCreateCA(dir, now, b)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if !now.Before(caCert.NotAfter) {
		return nil, fmt.Errorf("pki: the CA in %s expired on %s: move ca.pem and ca-key.pem away to create a new CA (devices must then be provisioned again)",
			filepath.Join(dir, CACertFile), caCert.NotAfter.UTC().Format(time.RFC3339))
	}
	b.CACertDER = caCert.Raw
	b.CACertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw})
	b.CAPool = x509.NewCertPool()
	b.CAPool.AddCert(caCert)

	leaf, key, err := loadServer(dir)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if leaf == nil || !serverCertFits(leaf, key, caCert, b.CAPool, names, now) {
		leaf, key, err = issueServer(dir, caCert, caKey, names, now)
		if err != nil {
			return nil, fmt.Errorf("pki: %w", err)
		}
		b.Issued = true
	}
	b.Leaf = leaf
	b.ServerCert = tls.Certificate{
		Certificate: [][]byte{leaf.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}
	return b, nil
}

// normalizeHostnames checks the extra host names, adds the defaults and
// removes duplicates (IP addresses are compared in canonical form).
func normalizeHostnames(hostnames []string) ([]string, error) {
	var names []string
	seen := map[string]bool{}
	for _, h := range slices.Concat(defaultHostnames, hostnames) {
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil {
			h = ip.String()
		} else {
			h = strings.ToLower(strings.TrimSuffix(h, "."))
			if err := checkDNSName(h); err != nil {
				return nil, err
			}
		}
		if !seen[h] {
			seen[h] = true
			names = append(names, h)
		}
	}
	return names, nil
}

// checkDNSName accepts what a certificate SAN may hold: labels of letters,
// digits and hyphens (and a leading "*." wildcard), at most 253 bytes.
func checkDNSName(h string) error {
	bad := func(why string) error {
		return fmt.Errorf("host name %q: %s (expected a DNS name such as iot.example.com or an IP address)", h, why)
	}
	if h == "" {
		return bad("empty")
	}
	if len(h) > 253 {
		return bad("longer than 253 bytes")
	}
	for i, label := range strings.Split(h, ".") {
		if i == 0 && label == "*" {
			continue
		}
		if label == "" || len(label) > 63 {
			return bad("each dot-separated label must have 1 to 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return bad("a label may not start or end with '-'")
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return bad(fmt.Sprintf("character %q is not allowed", c))
			}
		}
	}
	return nil
}

func loadOrCreateCA(dir string, now time.Time, b *Bundle) (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		cert, key, err := createCA(dir, now)
		if err != nil {
			return nil, nil, err
		}
		b.CreatedCA = true
		return cert, key, nil
	case certErr != nil && !errors.Is(certErr, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("read CA certificate: %w", certErr)
	case keyErr != nil && !errors.Is(keyErr, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("read CA key: %w", keyErr)
	case certErr != nil:
		return nil, nil, fmt.Errorf("%s exists but %s is missing: restore the CA certificate, or move both away to create a new CA", keyPath, certPath)
	case keyErr != nil:
		return nil, nil, fmt.Errorf("%s exists but %s is missing: restore the CA key, or move both away to create a new CA", certPath, keyPath)
	}
	cert, err := parseCertPEM(certPEM, certPath)
	if err != nil {
		return nil, nil, err
	}
	key, err := parseKeyPEM(keyPEM, keyPath)
	if err != nil {
		return nil, nil, err
	}
	if !cert.IsCA {
		return nil, nil, fmt.Errorf("%s: the certificate is not a CA (basic constraints CA:FALSE)", certPath)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, nil, fmt.Errorf("%s does not match the key in %s", certPath, keyPath)
	}
	return cert, key, nil
}

func createCA(dir string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	// RSA, not ECDSA: Oracle's JS device library parses the trust anchors of
	// its provisioning file with node-forge, which reads RSA certificates only
	// ("Cannot read public key. OID is not RSA"). 2048 bits keeps key
	// generation fast enough for tests and meets NIST's floor through 2030.
	key, err := rsa.GenerateKey(rand.Reader, CAKeyBits)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "iotcloud CA " + serial.Text(16)[:8], Organization: []string{"iotcloud"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	// Key first: a certificate without its key would block the next start.
	if err := writeKey(filepath.Join(dir, CAKeyFile), key); err != nil {
		return nil, nil, err
	}
	if err := writeCert(filepath.Join(dir, CACertFile), der); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// loadServer returns the stored server certificate and key, or (nil, nil, nil)
// when either file is missing or unusable (it is then re-issued).
func loadServer(dir string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, ServerCertFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	} else if err != nil {
		return nil, nil, fmt.Errorf("read server certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, ServerKeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	} else if err != nil {
		return nil, nil, fmt.Errorf("read server key: %w", err)
	}
	cert, err := parseCertPEM(certPEM, ServerCertFile)
	if err != nil {
		return nil, nil, nil // damaged: re-issue
	}
	key, err := parseKeyPEM(keyPEM, ServerKeyFile)
	if err != nil {
		return nil, nil, nil
	}
	return cert, key, nil
}

// serverCertFits reports whether leaf can be served as is.
func serverCertFits(leaf *x509.Certificate, key crypto.Signer, ca *x509.Certificate, pool *x509.CertPool, names []string, now time.Time) bool {
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		return false
	}
	if now.Before(leaf.NotBefore) || leaf.NotAfter.Sub(now) < RenewBefore {
		return false
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		return false
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return false
	}
	for _, n := range names {
		if leaf.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

func issueServer(dir string, ca *x509.Certificate, caKey crypto.Signer, names []string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate server key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(ServerValidity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "iotcloud server", Organization: []string{"iotcloud"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create server certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse new server certificate: %w", err)
	}
	if err := writeKey(filepath.Join(dir, ServerKeyFile), key); err != nil {
		return nil, nil, err
	}
	if err := writeCert(filepath.Join(dir, ServerCertFile), der); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil // never zero
}

func parseCertPEM(data []byte, where string) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM block of type CERTIFICATE", where)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return cert, nil
}

func parseKeyPEM(data []byte, where string) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PEM block of type PRIVATE KEY (PKCS#8)", where)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: key of type %T cannot sign", where, k)
	}
	return signer, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key for %s: %w", path, err)
	}
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func writeCert(path string, der []byte) error {
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeFileAtomic writes data to a temporary file in the same directory with
// the final mode, syncs it and renames it over path.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
