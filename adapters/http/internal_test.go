package http

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports/porttest"
)

// TestTransportTLS proves the client requires TLS 1.2 or later and trusts
// exactly the provisioned anchors (the system pool only without any).
func TestTransportTLS(t *testing.T) {
	tests := []struct {
		name      string
		anchors   [][]byte
		wantPool  bool
		wantCerts int
	}{
		{name: "no anchors: system pool", anchors: nil, wantPool: false},
		{name: "provisioned anchors only", anchors: [][]byte{testCert(t)}, wantPool: true, wantCerts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &trust.Assets{ServerURI: "https://iot.example.com", ClientID: "a", SharedSecret: []byte("s"), TrustAnchors: tt.anchors}
			c, err := New(Config{Trust: porttest.NewMemTrustStore(a)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			cfg := c.hc.Transport.(*http.Transport).TLSClientConfig
			if cfg.MinVersion != tls.VersionTLS12 || cfg.InsecureSkipVerify {
				t.Errorf("MinVersion %x, InsecureSkipVerify %v; want TLS 1.2 and verification", cfg.MinVersion, cfg.InsecureSkipVerify)
			}
			if (cfg.RootCAs != nil) != tt.wantPool {
				t.Fatalf("RootCAs set = %v, want %v", cfg.RootCAs != nil, tt.wantPool)
			}
			if cfg.RootCAs != nil && len(cfg.RootCAs.Subjects()) != tt.wantCerts {
				t.Errorf("pool has %d certificates, want %d", len(cfg.RootCAs.Subjects()), tt.wantCerts)
			}
			if c.rc.RetryCount != 0 || c.hc.CheckRedirect == nil {
				t.Errorf("RetryCount %d, CheckRedirect set %v; want no retries and no redirects", c.rc.RetryCount, c.hc.CheckRedirect != nil)
			}
			if c.timeout != DefaultTimeout || c.longPollOffset != DefaultLongPollOffset || c.userAgent != DefaultUserAgent || c.osName == "" {
				t.Errorf("defaults: timeout %s, offset %s, agent %q, os %q", c.timeout, c.longPollOffset, c.userAgent, c.osName)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	clock := porttest.NewFakeClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	c := &Client{clock: clock}
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"", 0}, {"0", 0}, {"120", 2 * time.Minute}, {"-5", 0}, {"999999999", 0},
		{"Sat, 01 Mar 2025 12:00:30 GMT", 30 * time.Second},
		{"Sat, 01 Mar 2025 11:00:00 GMT", 0},
		{"tomorrow", 0},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			if got := c.retryAfter(http.Header{"Retry-After": {tt.header}}); got != tt.want {
				t.Errorf("retryAfter(%q) = %s, want %s", tt.header, got, tt.want)
			}
		})
	}
}

func TestErrorBody(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		wantMsg   string
		wantIndex int
	}{
		{"api error", 400, `{"status":400,"message":"bad","index":2,"field":"payload"}`, `bad (field "payload")`, 2},
		{"field already named", 400, `{"message":"field payload is bad","field":"payload"}`, "field payload is bad", -1},
		{"field only", 400, `{"field":"x"}`, `problem (field "x")`, -1},
		{"negative index", 400, `{"message":"m","index":-3}`, "m", -1},
		{"text", 500, "  oops  ", "oops", -1},
		{"long text", 500, strings.Repeat("é", 150), strings.Repeat("é", 100) + "...", -1},
		{"binary", 502, "\x00\x01", "bad gateway", -1},
		{"empty", 503, "", "service unavailable", -1},
		{"unknown status", 599, "", "status 599", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, index := errorBody(tt.status, []byte(tt.body))
			if msg != tt.wantMsg || index != tt.wantIndex {
				t.Errorf("errorBody = %q, %d; want %q, %d", msg, index, tt.wantMsg, tt.wantIndex)
			}
		})
	}
}

// FuzzErrorBody: any body from the cloud gives a usable message and never
// panics.
func FuzzErrorBody(f *testing.F) {
	f.Add(400, []byte(`{"status":400,"message":"x","index":1}`))
	f.Add(500, []byte("text"))
	f.Add(0, []byte{0xff, 0xfe})
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		msg, index := errorBody(status, body)
		if msg == "" || index < -1 {
			t.Fatalf("errorBody(%d, %q) = %q, %d", status, body, msg, index)
		}
	})
}

func testCert(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
