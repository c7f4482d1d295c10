package pki

import (
	"bytes"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestEnsureCreatesCAAndServer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	b, err := Ensure(dir, []string{"iot.example.com", "192.0.2.7", "IoT.Example.com."}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !b.CreatedCA || !b.Issued {
		t.Errorf("CreatedCA, Issued = %v, %v; want true, true", b.CreatedCA, b.Issued)
	}
	ca, err := x509.ParseCertificate(b.CACertDER)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA || !ca.NotAfter.Equal(t0.Add(CAValidity).Truncate(time.Second)) {
		t.Errorf("CA: IsCA=%v NotAfter=%v", ca.IsCA, ca.NotAfter)
	}
	// Oracle's JS library (node-forge) reads only RSA trust anchors.
	if pub, ok := ca.PublicKey.(*rsa.PublicKey); !ok || pub.N.BitLen() != CAKeyBits {
		t.Errorf("CA key is %T, want a %d-bit RSA key", ca.PublicKey, CAKeyBits)
	}
	leaf := b.Leaf
	if got, want := leaf.DNSNames, []string{"localhost", "iot.example.com"}; !slices.Equal(got, want) {
		t.Errorf("DNSNames = %q, want %q", got, want)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"127.0.0.1", "::1", "192.0.2.7"}; !slices.Equal(ips, want) {
		t.Errorf("IPAddresses = %q, want %q", ips, want)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) || leaf.IsCA {
		t.Errorf("leaf ExtKeyUsage = %v, IsCA = %v", leaf.ExtKeyUsage, leaf.IsCA)
	}
	if d := leaf.NotAfter.Sub(t0); d < 365*24*time.Hour || d > 2*365*24*time.Hour {
		t.Errorf("server validity %v, want between 1 and 2 years", d)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: b.CAPool, CurrentTime: t0, DNSName: "iot.example.com"}); err != nil {
		t.Errorf("verify with CA pool: %v", err)
	}
	for name, mode := range map[string]os.FileMode{CACertFile: 0o644, CAKeyFile: 0o600, ServerCertFile: 0o644, ServerKeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode = %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v, want 0700", fi.Mode().Perm())
	}
	pemFile, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	if !bytes.Equal(pemFile, b.CACertPEM) {
		t.Error("ca.pem differs from Bundle.CACertPEM")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 4 {
		t.Errorf("dir holds %d entries, want 4 (no temporary files left)", len(entries))
	}
}

func TestEnsureReuseAndReissue(t *testing.T) {
	tests := []struct {
		name        string
		hostnames   []string
		now         time.Time
		wantReissue bool
	}{
		{"same names, a day later", []string{"iot.example.com"}, t0.Add(24 * time.Hour), false},
		{"subset of names", nil, t0.Add(24 * time.Hour), false},
		{"name already covered, other spelling", []string{"IOT.example.com"}, t0, false},
		{"new host name", []string{"iot.example.com", "other.example.com"}, t0, true},
		{"new IP address", []string{"10.1.2.3"}, t0, true},
		{"31 days before expiry", []string{"iot.example.com"}, t0.Add(ServerValidity - 31*24*time.Hour), false},
		{"29 days before expiry", []string{"iot.example.com"}, t0.Add(ServerValidity - 29*24*time.Hour), true},
		{"expired", []string{"iot.example.com"}, t0.Add(ServerValidity + time.Hour), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			first, err := Ensure(dir, []string{"iot.example.com"}, t0)
			if err != nil {
				t.Fatal(err)
			}
			second, err := Ensure(dir, tt.hostnames, tt.now)
			if err != nil {
				t.Fatal(err)
			}
			if second.CreatedCA || !bytes.Equal(first.CACertDER, second.CACertDER) {
				t.Fatal("the CA changed")
			}
			reissued := !bytes.Equal(first.Leaf.Raw, second.Leaf.Raw)
			if reissued != tt.wantReissue || second.Issued != tt.wantReissue {
				t.Fatalf("re-issued = %v (Issued %v), want %v", reissued, second.Issued, tt.wantReissue)
			}
			for _, h := range append([]string{"localhost", "127.0.0.1", "::1"}, tt.hostnames...) {
				if err := second.Leaf.VerifyHostname(h); err != nil {
					t.Errorf("server certificate does not cover %q: %v", h, err)
				}
			}
			if _, err := second.Leaf.Verify(x509.VerifyOptions{Roots: second.CAPool, CurrentTime: tt.now}); err != nil {
				t.Errorf("verify: %v", err)
			}
		})
	}
}

func TestEnsureErrors(t *testing.T) {
	tests := []struct {
		name      string
		prepare   func(dir string) // runs after a first successful Ensure
		hostnames []string
		now       time.Time
		want      string // error text with DIR for the directory
	}{
		{
			name:      "bad host name",
			hostnames: []string{"bad host"},
			want:      `pki: host name "bad host": character ' ' is not allowed (expected a DNS name such as iot.example.com or an IP address)`,
		},
		{
			name:      "empty host name",
			hostnames: []string{""},
			want:      `pki: host name "": empty (expected a DNS name such as iot.example.com or an IP address)`,
		},
		{
			name:    "CA key missing",
			prepare: func(dir string) { os.Remove(filepath.Join(dir, CAKeyFile)) },
			want:    "pki: DIR/ca.pem exists but DIR/ca-key.pem is missing: restore the CA key, or move both away to create a new CA",
		},
		{
			name:    "CA certificate missing",
			prepare: func(dir string) { os.Remove(filepath.Join(dir, CACertFile)) },
			want:    "pki: DIR/ca-key.pem exists but DIR/ca.pem is missing: restore the CA certificate, or move both away to create a new CA",
		},
		{
			name:    "CA certificate garbage",
			prepare: func(dir string) { os.WriteFile(filepath.Join(dir, CACertFile), []byte("junk"), 0o644) },
			want:    "pki: DIR/ca.pem: no PEM block of type CERTIFICATE",
		},
		{
			name: "CA key of another CA",
			prepare: func(dir string) {
				other := filepath.Join(filepath.Dir(dir), "other")
				if _, err := Ensure(other, nil, t0); err != nil {
					panic(err)
				}
				k, _ := os.ReadFile(filepath.Join(other, CAKeyFile))
				os.WriteFile(filepath.Join(dir, CAKeyFile), k, 0o600)
			},
			want: "pki: DIR/ca.pem does not match the key in DIR/ca-key.pem",
		},
		{
			name: "CA expired",
			now:  t0.Add(CAValidity + time.Hour),
			want: "pki: the CA in DIR/ca.pem expired on 2036-02-27T12:00:00Z: move ca.pem and ca-key.pem away to create a new CA (devices must then be provisioned again)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if _, err := Ensure(dir, nil, t0); err != nil {
				t.Fatal(err)
			}
			if tt.prepare != nil {
				tt.prepare(dir)
			}
			now := tt.now
			if now.IsZero() {
				now = t0
			}
			_, err := Ensure(dir, tt.hostnames, now)
			want := strings.ReplaceAll(tt.want, "DIR", dir)
			if err == nil || err.Error() != want {
				t.Fatalf("err = %v\nwant %s", err, want)
			}
		})
	}
}

func TestEnsureDamagedServerCertIsReissued(t *testing.T) {
	dir := t.TempDir()
	first, err := Ensure(dir, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, ServerKeyFile), []byte("junk"), 0o600)
	second, err := Ensure(dir, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Issued || bytes.Equal(first.Leaf.Raw, second.Leaf.Raw) {
		t.Fatal("a damaged server key did not lead to a new server certificate")
	}
}

// TestTLSHandshake serves over TLS with the bundle and connects with a client
// that trusts only the CA pool, for each name in the certificate.
func TestTLSHandshake(t *testing.T) {
	b, err := Ensure(t.TempDir(), []string{"iot.example.com"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", b.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() { // owned by this test: ends when the listener is closed
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello"))
			c.Close()
		}
	}()
	for _, name := range []string{"localhost", "127.0.0.1", "iot.example.com"} {
		t.Run(name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: b.CAPool, ServerName: name})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			got, _ := io.ReadAll(conn)
			if string(got) != "hello" || conn.ConnectionState().Version < tls.VersionTLS12 {
				t.Errorf("read %q over %x", got, conn.ConnectionState().Version)
			}
		})
	}
	t.Run("unknown name is refused", func(t *testing.T) {
		_, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: b.CAPool, ServerName: "evil.example.com"})
		if err == nil || !strings.Contains(err.Error(), "certificate is valid for") {
			t.Fatalf("err = %v, want a host name mismatch", err)
		}
	})
	t.Run("TLS 1.1 is refused", func(t *testing.T) {
		_, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: b.CAPool, MaxVersion: tls.VersionTLS11})
		if err == nil {
			t.Fatal("TLS 1.1 handshake succeeded")
		}
	})
	ln.Close()
	<-done
}
