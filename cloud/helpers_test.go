package cloud

import (
	"bytes"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
)

const (
	adminToken  = "test-admin-token-0123456789"
	humidityURN = "urn:com:oracle:iot:device:humidity_sensor"
	lightURN    = "urn:com:example:iot:device:light_switch"
	tempURN     = "urn:com:oracle:iot:device:temperature_sensor"
	capDirect   = "urn:oracle:iot:dcd:capability:direct_activation"
	capPolicy   = "urn:oracle:iot:dcd:capability:device_policy"
	capIndirect = "urn:oracle:iot:dcd:capability:indirect_activation"
)

var (
	keyOnce sync.Once
	keys    [3]*rsa.PrivateKey
)

// testKey returns one of three 2048-bit keys generated once per test binary.
func testKey(t testing.TB, i int) *rsa.PrivateKey {
	keyOnce.Do(func() {
		for j := range keys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			keys[j] = k
		}
	})
	return keys[i]
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a Server behind an httptest TLS server.
type env struct {
	t     testing.TB
	dir   string
	cfg   Config
	srv   *Server
	ts    *httptest.Server
	clock *clock
	h     atomic.Pointer[http.Handler] // the current Server's handler (swapped by restart)
}

func newEnv(t testing.TB, mod ...func(*Config)) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clock: &clock{t: time.Date(2025, 11, 27, 12, 0, 0, 0, time.UTC)}}
	e.ts = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*e.h.Load()).ServeHTTP(w, r)
	}))
	e.ts.StartTLS()
	e.cfg = Config{
		DataDir:       e.dir,
		PublicURL:     e.ts.URL,
		TrustAnchors:  [][]byte{e.ts.Certificate().Raw},
		AdminToken:    adminToken,
		Now:           e.clock.Now,
		KDFIterations: 1000,
	}
	for _, m := range mod {
		m(&e.cfg)
	}
	e.open()
	t.Cleanup(e.close)
	return e
}

// open (re)opens the Server on the env's data directory and serves it.
func (e *env) open() {
	e.t.Helper()
	srv, err := Open(e.cfg)
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	e.srv = srv
	h := srv.Handler()
	e.h.Store(&h)
}

func (e *env) close() {
	if e.srv != nil {
		// Server.Close first: it ends long polls, which ts.Close would wait for.
		if err := e.srv.Close(); err != nil {
			e.t.Errorf("Close: %v", err)
		}
		e.srv = nil
	}
	e.ts.Close()
}

// restart closes the Server (not the listener) and opens a new one on the same DataDir.
func (e *env) restart() {
	e.t.Helper()
	if err := e.srv.Close(); err != nil {
		e.t.Fatalf("Close: %v", err)
	}
	e.open()
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) apiError(t testing.TB) api.Error {
	t.Helper()
	var e api.Error
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	return e
}

func (e *env) do(method, path string, body io.Reader, header map[string]string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: data}
}

// admin calls the enterprise API with a JSON body (v marshalled unless it is a string).
func (e *env) admin(method, path string, v any) response {
	e.t.Helper()
	var body io.Reader
	switch x := v.(type) {
	case nil:
	case string:
		body = strings.NewReader(x)
	case []byte:
		body = bytes.NewReader(x)
	default:
		data, err := json.Marshal(v)
		if err != nil {
			e.t.Fatal(err)
		}
		body = bytes.NewReader(data)
	}
	return e.do(method, path, body, map[string]string{"Authorization": "Bearer " + adminToken, "Content-Type": "application/json"})
}

func (e *env) mustAdmin(want int, method, path string, v any, out any) {
	e.t.Helper()
	r := e.admin(method, path, v)
	if r.status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			e.t.Fatalf("%s %s: %v in %s", method, path, err, r.body)
		}
	}
}

// addModels registers the repository's example device models.
func (e *env) addModels() {
	e.t.Helper()
	files, _ := filepath.Glob("../testdata/devicemodels/*.json")
	if len(files) == 0 {
		e.t.Fatal("no device models in ../testdata/devicemodels")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			e.t.Fatal(err)
		}
		e.mustAdmin(http.StatusCreated, "POST", api.Root+"/deviceModels", data, nil)
	}
}

// register registers a device and returns a test client for it.
func (e *env) register(typ string, key int) *device {
	e.t.Helper()
	var d api.Device
	e.mustAdmin(http.StatusCreated, "POST", api.Root+"/devices", api.RegisterDevice{HardwareID: "hw-" + newUUID(), Type: typ}, &d)
	return &device{e: e, activationID: d.ID, secret: d.SharedSecret, key: testKey(e.t, key)}
}

// device is an in-process device client speaking protocol.md the way
// Oracle's libraries do.
type device struct {
	e            *env
	activationID string
	secret       string
	endpointID   string
	key          *rsa.PrivateKey
	token        string
}

// jwt builds a client assertion; pad keeps Java's "=" padding.
func jwt(alg, iss, sub string, exp int64, sign func([]byte) []byte, pad bool) string {
	return jwtRaw(`{"typ":"JWT","alg":"`+alg+`"}`,
		fmt.Sprintf(`{"iss":%q,"sub":%q,"aud":"oracle/iot/oauth2/token","exp":%d}`, iss, sub, exp), sign, pad)
}

// jwtRaw builds a JWS from raw header and claims JSON.
func jwtRaw(header, claims string, sign func([]byte) []byte, pad bool) string {
	enc := base64.RawURLEncoding
	if pad {
		enc = base64.URLEncoding
	}
	in := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	return in + "." + enc.EncodeToString(sign([]byte(in)))
}

func hs256(secret []byte) func([]byte) []byte {
	return func(in []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(in)
		return m.Sum(nil)
	}
}

func rs256(k *rsa.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte {
		d := sha256.Sum256(in)
		sig, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, d[:])
		if err != nil {
			panic(err)
		}
		return sig
	}
}

func (d *device) exp() int64 { return d.e.clock.Now().Add(15 * time.Minute).Unix() }

// assertion is the assertion the device would send now.
func (d *device) assertion() string {
	if d.endpointID == "" {
		return jwt("HS256", d.activationID, d.activationID, d.exp(), hs256([]byte(d.secret)), true)
	}
	return jwt("RS256", d.endpointID, d.endpointID, d.exp(), rs256(d.key), false)
}

// tokenRequest posts the token form as Oracle's JS library does: chunked,
// with the client_assertion_type's ':' as %3A and the scope's '/' unencoded.
func (e *env) tokenRequest(path, assertion, scope string) response {
	form := "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer" +
		"&client_assertion=" + url.QueryEscape(assertion) + "&scope=" + scope
	body := io.MultiReader(strings.NewReader(form)) // not a *strings.Reader: sent chunked
	return e.do("POST", path, body, map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
}

func (d *device) getToken(scope string) {
	d.e.t.Helper()
	r := d.e.tokenRequest("/iot/api/v2/oauth2/token", d.assertion(), scope)
	if r.status != http.StatusOK {
		d.e.t.Fatalf("token: status %d: %s", r.status, r.body)
	}
	var tr tokenResponse
	if err := json.Unmarshal(r.body, &tr); err != nil {
		d.e.t.Fatal(err)
	}
	if tr.TokenType != "Bearer" || tr.ExpiresIn != 3600000 {
		d.e.t.Fatalf("token response %s: want Bearer and expires_in 3600000 ms", r.body)
	}
	d.token = tr.AccessToken
}

func (d *device) headers() map[string]string {
	h := map[string]string{"Authorization": "Bearer " + d.token, "Accept": "application/json", "Content-Type": "application/json"}
	if d.endpointID != "" {
		h["X-EndpointId"] = d.endpointID
	} else {
		h["X-ActivationId"] = d.activationID
	}
	return h
}

func (d *device) call(method, path string, body string) response {
	d.e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	return d.e.do(method, path, r, d.headers())
}

// activationBody builds a direct activation request signed like Oracle's clients.
func (d *device) activationBody(models ...string) string {
	der, err := x509.MarshalPKIXPublicKey(&d.key.PublicKey)
	if err != nil {
		panic(err)
	}
	mac := hmac.New(sha256.New, []byte(d.secret))
	mac.Write([]byte(d.activationID))
	in := []byte(d.activationID + "\nRSA\nX.509\nHmacSHA256\n")
	in = append(in, mac.Sum(nil)...)
	in = append(in, der...)
	body := map[string]any{
		"certificationRequestInfo": map[string]any{
			"subject": d.activationID,
			"subjectPublicKeyInfo": map[string]any{"algorithm": "RSA", "publicKey": base64.StdEncoding.EncodeToString(der),
				"format": "X.509", "secretHashAlgorithm": "HmacSHA256"},
			"attributes": map[string]any{},
		},
		"signatureAlgorithm": "SHA256withRSA",
		"signature":          base64.StdEncoding.EncodeToString(rs256(d.key)(in)),
		"deviceModels":       models,
	}
	data, _ := json.Marshal(body)
	return string(data)
}

// activate runs the first requests of §11: token (activation scope), policy,
// direct activation, token (empty scope, RS256).
func (d *device) activate(models ...string) {
	d.e.t.Helper()
	d.getToken("oracle/iot/activation")
	r := d.call("GET", "/iot/api/v2/activation/policy?OSName=Linux&OSVersion=6", "")
	if r.status != 200 || string(r.body) != `{"keyType":"RSA","hashAlgorithm":"SHA256withRSA","keySize":2048}` {
		d.e.t.Fatalf("activation policy: %d %s", r.status, r.body)
	}
	r = d.call("POST", "/iot/api/v2/activation/direct?createDraft=false", d.activationBody(append(models, capDirect, capPolicy, capPolicy)...))
	if r.status != 200 {
		d.e.t.Fatalf("direct activation: %d %s", r.status, r.body)
	}
	var ar activationResponse
	if err := json.Unmarshal(r.body, &ar); err != nil || ar.EndpointState != "ACTIVATED" || ar.EndpointID == "" {
		d.e.t.Fatalf("direct activation answer %s: %v", r.body, err)
	}
	d.endpointID = ar.EndpointID
	d.getToken("")
}

// send posts messages (a JSON array) with the query string q.
func (d *device) send(q string, msgs string) response {
	d.e.t.Helper()
	return d.call("POST", "/iot/api/v2/messages"+q, msgs)
}

// dataMsg is a DATA message JSON object.
func dataMsg(clientID, source, format string, data string) string {
	return fmt.Sprintf(`{"clientId":%q,"source":%q,"destination":"","priority":"LOW","reliability":"GUARANTEED_DELIVERY","eventTime":1764244800000,"type":"DATA","payload":{"format":%q,"data":%s}}`,
		clientID, source, format, data)
}

func responseMsg(clientID, source, requestID string, status int, body string) string {
	return fmt.Sprintf(`{"clientId":%q,"source":%q,"destination":"iotcloud","priority":"HIGH","reliability":"BEST_EFFORT","eventTime":1764244800000,"type":"RESPONSE","payload":{"statusCode":%d,"url":"","requestId":%q,"headers":{},"body":%q}}`,
		clientID, source, status, requestID, base64.StdEncoding.EncodeToString([]byte(body)))
}

func stdB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
