package http_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	httpadapter "github.com/iotnode/iotnode/adapters/http"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports/porttest"
)

const (
	activationID = "act-1"
	endpointID   = "ep-1"
	sharedSecret = "s3cret-shared"
	activation   = "oracle/iot/activation"
)

// t0 is the fake clock's start; whole seconds so that exp is exact.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// deviceKey is one RSA key for the whole test binary (generating is slow).
var deviceKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func keyDER(t testing.TB) (pkcs8, spki []byte) {
	t.Helper()
	pkcs8, err := x509.MarshalPKCS8PrivateKey(deviceKey())
	if err != nil {
		t.Fatal(err)
	}
	spki, err = x509.MarshalPKIXPublicKey(&deviceKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pkcs8, spki
}

// recorded is one call the fake cloud received (token calls included).
type recorded struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
}

// tokenCall is what the fake cloud saw at its token endpoint.
type tokenCall struct {
	Form      map[string][]string
	RawBody   string
	Header    string // JWT header JSON
	Claims    map[string]any
	Segments  []string
	Alg       string
	Identity  string
	Authentic bool
}

// fakeCloud is a hand-written device API over TLS that checks what arrives
// against protocol.md §1 and lets each test answer the other calls.
type fakeCloud struct {
	t     *testing.T
	srv   *httptest.Server
	clock *porttest.FakeClock

	mu        sync.Mutex
	calls     []recorded
	tokens    []tokenCall
	issued    map[string]string // access token -> scope
	owner     map[string]string // access token -> identity
	expiresIn any               // expires_in of token answers
	// token, when set, answers token calls instead of the default (which
	// issues a token when the assertion verifies).
	token func(w http.ResponseWriter, tc tokenCall, n int) bool
	// handlers answer "METHOD /path" calls after the bearer check.
	handlers map[string]http.HandlerFunc
}

func newFakeCloud(t *testing.T) *fakeCloud {
	t.Helper()
	return startFakeCloud(t, false)
}

// startFakeCloud starts a fake cloud that speaks HTTP/2 when http2 is set
// (as iotcloud does), HTTP/1.1 only otherwise.
func startFakeCloud(t *testing.T, http2 bool) *fakeCloud {
	t.Helper()
	fc := &fakeCloud{
		t:         t,
		clock:     porttest.NewFakeClock(t0),
		issued:    map[string]string{},
		owner:     map[string]string{},
		expiresIn: 3600000,
		handlers:  map[string]http.HandlerFunc{},
	}
	fc.srv = httptest.NewUnstartedServer(http.HandlerFunc(fc.serve))
	fc.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	fc.srv.EnableHTTP2 = http2
	fc.srv.StartTLS()
	t.Cleanup(fc.srv.Close)
	return fc
}

func (fc *fakeCloud) handle(pattern string, h http.HandlerFunc) { fc.handlers[pattern] = h }

// assets returns the trusted assets of a device of this cloud.
func (fc *fakeCloud) assets(activated bool) *trust.Assets {
	a := &trust.Assets{
		ServerURI:    fc.srv.URL,
		ClientID:     activationID,
		SharedSecret: []byte(sharedSecret),
		TrustAnchors: [][]byte{fc.srv.Certificate().Raw},
	}
	if activated {
		a.EndpointID = endpointID
		a.PrivateKey, a.PublicKey = keyDER(fc.t)
	}
	return a
}

// client returns a client of this cloud with logs in logs (may be nil).
func (fc *fakeCloud) client(activated bool, logs *bytes.Buffer, edit ...func(*httpadapter.Config)) *httpadapter.Client {
	fc.t.Helper()
	cfg := httpadapter.Config{Trust: porttest.NewMemTrustStore(fc.assets(activated)), Clock: fc.clock}
	if logs != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, e := range edit {
		e(&cfg)
	}
	c, err := httpadapter.New(cfg)
	if err != nil {
		fc.t.Fatalf("New: %v", err)
	}
	fc.t.Cleanup(c.Close)
	return c
}

func (fc *fakeCloud) recordedCalls(path string) []recorded {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	var out []recorded
	for _, c := range fc.calls {
		if c.Path == path {
			out = append(out, c)
		}
	}
	return out
}

func (fc *fakeCloud) tokenCalls() []tokenCall {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return append([]tokenCall(nil), fc.tokens...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (fc *fakeCloud) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := recorded{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: body}
	fc.mu.Lock()
	fc.calls = append(fc.calls, rec)
	fc.mu.Unlock()
	if r.URL.Path == "/iot/api/v2/oauth2/token" {
		fc.serveToken(w, r, body)
		return
	}
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	fc.mu.Lock()
	scope, issued := fc.issued[tok]
	owner := fc.owner[tok]
	fc.mu.Unlock()
	if !ok || !issued {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"status": 401, "message": "invalid access token"})
		return
	}
	activationCall := strings.HasPrefix(r.URL.Path, "/iot/api/v2/activation/policy") || strings.HasPrefix(r.URL.Path, "/iot/api/v2/activation/direct")
	switch {
	case activationCall && (scope != activation || r.Header.Get("X-ActivationId") != owner || r.Header.Get("X-EndpointId") != ""):
		writeJSON(w, http.StatusUnauthorized, map[string]any{"status": 401, "message": "activation calls need an activation token and X-ActivationId"})
		return
	case !activationCall && (scope != "" || r.Header.Get("X-EndpointId") != owner || r.Header.Get("X-ActivationId") != ""):
		writeJSON(w, http.StatusUnauthorized, map[string]any{"status": 401, "message": "calls need a default-scope token and X-EndpointId"})
		return
	}
	if r.Header.Get("Accept") != "application/json" || r.Header.Get("Content-Type") != "application/json" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"status": 400, "message": "Accept and Content-Type must be application/json"})
		return
	}
	h := fc.handlers[r.Method+" "+r.URL.Path]
	if h == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"status": 404, "message": "no handler for " + r.Method + " " + r.URL.Path})
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	h(w, r)
}

func (fc *fakeCloud) serveToken(w http.ResponseWriter, r *http.Request, body []byte) {
	tc := tokenCall{RawBody: string(body)}
	form, err := parseForm(string(body))
	if err != nil || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" || r.Header.Get("Accept") != "application/json" || r.Method != http.MethodPost {
		writeJSON(w, http.StatusBadRequest, map[string]any{"status": 400, "message": "bad token request"})
		return
	}
	tc.Form = form
	fc.verify(&tc)
	fc.mu.Lock()
	fc.tokens = append(fc.tokens, tc)
	n := len(fc.tokens)
	fc.mu.Unlock()
	if fc.token != nil && fc.token(w, tc, n) {
		return
	}
	if !tc.Authentic {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"status": 401, "message": "client assertion rejected"})
		return
	}
	tok := fmt.Sprintf("tok-%d", n)
	fc.mu.Lock()
	fc.issued[tok] = first(form["scope"])
	fc.owner[tok] = tc.Identity
	expires := fc.expiresIn
	fc.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": expires})
}

// revoke forgets every issued token, as a cloud restart would.
func (fc *fakeCloud) revoke() {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	clear(fc.issued)
}

func first(v []string) string {
	if len(v) == 0 {
		return "<missing>"
	}
	return v[0]
}

// parseForm decodes a form strictly: every field once.
func parseForm(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, kv := range strings.Split(s, "&") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("field %q has no value", kv)
		}
		v, err := urlUnescape(v)
		if err != nil {
			return nil, err
		}
		out[k] = append(out[k], v)
	}
	return out, nil
}

func urlUnescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			b.WriteByte(' ')
		case '%':
			if i+2 >= len(s) {
				return "", fmt.Errorf("bad escape in %q", s)
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", err
			}
			b.WriteByte(byte(n))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// verify checks the client assertion as a strict server would: unpadded
// base64url, the exact header, the claims and the signature.
func (fc *fakeCloud) verify(tc *tokenCall) {
	jwt := first(tc.Form["client_assertion"])
	tc.Segments = strings.Split(jwt, ".")
	if len(tc.Segments) != 3 || strings.Contains(jwt, "=") {
		return
	}
	dec := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			return nil
		}
		return b
	}
	tc.Header = string(dec(tc.Segments[0]))
	if json.Unmarshal(dec(tc.Segments[1]), &tc.Claims) != nil {
		return
	}
	var h struct{ Typ, Alg string }
	if json.Unmarshal([]byte(tc.Header), &h) != nil || h.Typ != "JWT" {
		return
	}
	tc.Alg = h.Alg
	iss, _ := tc.Claims["iss"].(string)
	sub, _ := tc.Claims["sub"].(string)
	exp, _ := tc.Claims["exp"].(float64)
	tc.Identity = iss
	if iss != sub || tc.Claims["aud"] != "oracle/iot/oauth2/token" || len(tc.Claims) != 4 {
		return
	}
	now := fc.clock.Now()
	if e := time.Unix(int64(exp), 0); e.Before(now) || e.After(now.Add(15*time.Minute+time.Second)) {
		return
	}
	input := []byte(tc.Segments[0] + "." + tc.Segments[1])
	sig := dec(tc.Segments[2])
	switch h.Alg {
	case "HS256":
		mac := hmac.New(sha256.New, []byte(sharedSecret))
		mac.Write(input)
		tc.Authentic = iss == activationID && hmac.Equal(sig, mac.Sum(nil))
	case "RS256":
		sum := sha256.Sum256(input)
		tc.Authentic = iss == endpointID && rsa.VerifyPKCS1v15(&deviceKey().PublicKey, crypto.SHA256, sum[:], sig) == nil
	}
}

// errText returns err's text, "<nil>" for nil.
func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// selfSigned returns a self-signed CA certificate (DER) for 127.0.0.1 and
// its key.
func selfSigned(t testing.TB, cn string, validity time.Duration) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}
