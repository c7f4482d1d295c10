package http_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	httpadapter "github.com/iotnode/iotnode/adapters/http"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
	"github.com/iotnode/iotnode/ports/porttest"
)

func policyHandler(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"keyType": "RSA", "hashAlgorithm": "SHA256withRSA", "keySize": 2048})
}

func emptyMessages(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte("[]"))
}

// TestTokenRequest proves the token form, the JWT and the bearer headers of
// protocol.md §1 for both scopes.
func TestTokenRequest(t *testing.T) {
	const assertionType = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
	tests := []struct {
		name      string
		activated bool
		call      func(ctx context.Context, c *httpadapter.Client) error
		callPath  string
		scopeWire string // as sent in the form
		header    string
		identity  string
		idHeader  string
	}{
		{
			name: "activation scope signs HS256 with the shared secret",
			call: func(ctx context.Context, c *httpadapter.Client) error {
				_, err := c.Policy(ctx)
				return err
			},
			callPath:  "/iot/api/v2/activation/policy",
			scopeWire: "oracle/iot/activation",
			header:    `{"typ":"JWT","alg":"HS256"}`,
			identity:  activationID,
			idHeader:  "X-Activationid",
		},
		{
			name:      "default scope signs RS256 with the device key",
			activated: true,
			call: func(ctx context.Context, c *httpadapter.Client) error {
				_, err := c.Exchange(ctx, nil, 100, 0)
				return err
			},
			callPath:  "/iot/api/v2/messages",
			scopeWire: "",
			header:    `{"typ":"JWT","alg":"RS256"}`,
			identity:  endpointID,
			idHeader:  "X-Endpointid",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t)
			fc.handle("GET /iot/api/v2/activation/policy", policyHandler)
			fc.handle("POST /iot/api/v2/messages", emptyMessages)
			c := fc.client(tt.activated, nil)
			if err := tt.call(t.Context(), c); err != nil {
				t.Fatalf("call: %v", err)
			}
			tcs := fc.tokenCalls()
			if len(tcs) != 1 {
				t.Fatalf("%d token calls, want 1", len(tcs))
			}
			tc := tcs[0]
			wantBody := "grant_type=client_credentials&client_assertion_type=" + assertionType +
				"&client_assertion=" + strings.Join(tc.Segments, ".") + "&scope=" + tt.scopeWire
			if tc.RawBody != wantBody {
				t.Errorf("token form\n got %s\nwant %s", tc.RawBody, wantBody)
			}
			if first(tc.Form["client_assertion_type"]) != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
				t.Errorf("client_assertion_type = %q", tc.Form["client_assertion_type"])
			}
			if tc.Header != tt.header {
				t.Errorf("JWT header = %s, want %s", tc.Header, tt.header)
			}
			wantExp := float64(t0.Add(15 * time.Minute).Unix())
			if tc.Claims["iss"] != tt.identity || tc.Claims["sub"] != tt.identity || tc.Claims["aud"] != "oracle/iot/oauth2/token" ||
				tc.Claims["exp"] != wantExp || len(tc.Claims) != 4 {
				t.Errorf("claims = %v, want iss=sub=%s, aud, exp=%v (seconds) and nothing else", tc.Claims, tt.identity, wantExp)
			}
			if !tc.Authentic {
				t.Error("the assertion's signature does not verify")
			}
			calls := fc.recordedCalls(tt.callPath)
			if len(calls) != 1 {
				t.Fatalf("%d calls of %s, want 1", len(calls), tt.callPath)
			}
			h := calls[0].Header
			if h.Get("Authorization") != "Bearer tok-1" || h.Get(tt.idHeader) != tt.identity {
				t.Errorf("headers = %v, want Authorization: Bearer tok-1 and %s: %s", h, tt.idHeader, tt.identity)
			}
			if h.Get("Accept") != "application/json" || h.Get("Content-Type") != "application/json" || h.Get("User-Agent") != "iotnode" {
				t.Errorf("headers = %v, want JSON Accept and Content-Type, User-Agent iotnode", h)
			}
		})
	}
}

// TestTokenCache proves expires_in is read as milliseconds and the token is
// reused until shortly before it expires.
func TestTokenCache(t *testing.T) {
	tests := []struct {
		name      string
		expiresIn any
		advance   []time.Duration // before the 2nd, 3rd... call
		want      int             // token calls in the end
	}{
		{name: "one hour token reused for 58 minutes", expiresIn: 3600000, advance: []time.Duration{time.Minute, 57 * time.Minute}, want: 1},
		{name: "renewed a minute before expiry", expiresIn: 3600000, advance: []time.Duration{59*time.Minute + time.Second}, want: 2},
		{name: "short token renewed at 90 percent", expiresIn: 100000, advance: []time.Duration{89 * time.Second, 2 * time.Second}, want: 2},
		{name: "no expires_in: used once", expiresIn: nil, advance: []time.Duration{0, 0}, want: 3},
		{name: "zero expires_in: used once", expiresIn: 0, advance: []time.Duration{0}, want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t)
			fc.expiresIn = tt.expiresIn
			fc.handle("POST /iot/api/v2/messages", emptyMessages)
			c := fc.client(true, nil)
			if _, err := c.Exchange(t.Context(), nil, 100, 0); err != nil {
				t.Fatal(err)
			}
			for _, d := range tt.advance {
				fc.clock.Advance(d)
				if _, err := c.Exchange(t.Context(), nil, 100, 0); err != nil {
					t.Fatal(err)
				}
			}
			if got := len(fc.tokenCalls()); got != tt.want {
				t.Errorf("%d token calls, want %d", got, tt.want)
			}
		})
	}
}

// TestTokenConcurrent proves parallel calls share one token call.
func TestTokenConcurrent(t *testing.T) {
	fc := newFakeCloud(t)
	fc.handle("POST /iot/api/v2/messages", emptyMessages)
	c := fc.client(true, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := c.Exchange(t.Context(), nil, 100, 0)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := len(fc.tokenCalls()); got != 1 {
		t.Errorf("%d token calls, want 1", got)
	}
}

// TestUnauthorizedRetry proves a 401 drops the token and repeats the call
// once, and that a second 401 is ports.ErrUnauthorized.
func TestUnauthorizedRetry(t *testing.T) {
	tests := []struct {
		name         string
		handler      http.HandlerFunc
		wantErr      string
		wantTokens   int
		wantMessages int
	}{
		{
			name:         "expired token: one refresh, then success",
			handler:      emptyMessages,
			wantErr:      "<nil>",
			wantTokens:   2,
			wantMessages: 3,
		},
		{
			name: "refused again: unauthorized, no more retries",
			handler: func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusUnauthorized, map[string]any{"status": 401, "message": "endpoint disabled"})
			},
			wantErr:      "exchange messages: cloud answered 401: endpoint disabled (unauthorized)",
			wantTokens:   2,
			wantMessages: 3, // the first exchange, the refused one and its single repeat
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t)
			var once sync.Once
			fc.handle("POST /iot/api/v2/messages", func(w http.ResponseWriter, r *http.Request) {
				first := false
				once.Do(func() { first = true })
				if first {
					emptyMessages(w, r)
					return
				}
				tt.handler(w, r)
			})
			c := fc.client(true, nil)
			if _, err := c.Exchange(t.Context(), nil, 100, 0); err != nil {
				t.Fatal(err)
			}
			fc.revoke() // the cloud forgot the token: the next call gets a 401
			_, err := c.Exchange(t.Context(), nil, 100, 0)
			if errText(err) != tt.wantErr {
				t.Errorf("error = %s\n want %s", errText(err), tt.wantErr)
			}
			if err != nil && (!errors.Is(err, ports.ErrUnauthorized) || !ports.IsPermanent(err)) {
				t.Errorf("error %v does not wrap ErrUnauthorized or is not permanent", err)
			}
			if got := len(fc.tokenCalls()); got != tt.wantTokens {
				t.Errorf("%d token calls, want %d", got, tt.wantTokens)
			}
			if got := len(fc.recordedCalls("/iot/api/v2/messages")); got != tt.wantMessages {
				t.Errorf("%d message calls, want %d", got, tt.wantMessages)
			}
		})
	}
}

// TestClockSkew proves a 403 with currentTime shifts the assertion expiry
// and repeats the token call once.
func TestClockSkew(t *testing.T) {
	skew := func(w http.ResponseWriter, tc tokenCall, n int) bool {
		if tc.Authentic {
			return false
		}
		writeJSON(w, http.StatusForbidden, map[string]any{"status": 403, "message": "assertion expired", "currentTime": t0.UnixMilli()})
		return true
	}
	tests := []struct {
		name       string
		behind     time.Duration // how far the device clock is behind the cloud's
		token      func(w http.ResponseWriter, tc tokenCall, n int) bool
		wantErr    string
		wantTokens int
		wantOffset time.Duration
	}{
		{name: "device an hour behind: offset learnt", behind: time.Hour, token: skew,
			wantErr: "<nil>", wantTokens: 2, wantOffset: time.Hour},
		{name: "device an hour ahead: offset learnt", behind: -time.Hour, token: skew,
			wantErr: "<nil>", wantTokens: 2, wantOffset: -time.Hour},
		{
			name: "refused again: no second retry", behind: time.Hour,
			token: func(w http.ResponseWriter, tc tokenCall, n int) bool {
				writeJSON(w, http.StatusForbidden, map[string]any{"status": 403, "message": "assertion expired", "currentTime": t0.UnixMilli() + 1})
				return true
			},
			wantErr:    `exchange messages: get access token: cloud answered 403: the cloud refused the credentials of "ep-1": assertion expired; check the endpoint ID and device key of the provisioning file (unauthorized)`,
			wantTokens: 2, wantOffset: time.Hour + time.Millisecond,
		},
		{
			name: "403 without currentTime: no retry", behind: time.Hour,
			token: func(w http.ResponseWriter, tc tokenCall, n int) bool {
				writeJSON(w, http.StatusForbidden, map[string]any{"status": 403, "message": "endpoint blocked"})
				return true
			},
			wantErr:    `exchange messages: get access token: cloud answered 403: the cloud refused the credentials of "ep-1": endpoint blocked; check the endpoint ID and device key of the provisioning file (unauthorized)`,
			wantTokens: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t)
			fc.token = tt.token
			fc.handle("POST /iot/api/v2/messages", emptyMessages)
			c := fc.client(true, nil, func(cfg *httpadapter.Config) {
				cfg.Clock = porttest.NewFakeClock(t0.Add(-tt.behind))
			})
			_, err := c.Exchange(t.Context(), nil, 100, 0)
			if errText(err) != tt.wantErr {
				t.Errorf("error = %s\n want %s", errText(err), tt.wantErr)
			}
			if err != nil && !errors.Is(err, ports.ErrUnauthorized) {
				t.Errorf("error %v does not wrap ErrUnauthorized", err)
			}
			if got := len(fc.tokenCalls()); got != tt.wantTokens {
				t.Errorf("%d token calls, want %d", got, tt.wantTokens)
			}
			if got := c.ClockOffset(); got != tt.wantOffset {
				t.Errorf("ClockOffset = %s, want %s", got, tt.wantOffset)
			}
		})
	}
}

// TestTokenErrors proves how failed token calls are reported.
func TestTokenErrors(t *testing.T) {
	tests := []struct {
		name      string
		activated bool
		call      string // "policy" or "exchange"
		status    int
		body      string
		wantErr   string
		permanent bool
		unauth    bool
	}{
		{name: "activation credentials refused", call: "policy", status: 400, body: `{"error":"invalid_client"}`,
			wantErr:   `get activation policy: get access token: cloud answered 400: the cloud refused the credentials of "act-1": bad request; check the client ID and shared secret of the provisioning file; a device that is already activated cannot use them any more (unauthorized)`,
			permanent: true, unauth: true},
		{name: "token endpoint down", activated: true, call: "exchange", status: 503, body: "maintenance",
			wantErr: "exchange messages: get access token: cloud answered 503: maintenance"},
		{name: "answer is not JSON", activated: true, call: "exchange", status: 200, body: "<html>",
			wantErr:   `exchange messages: get access token: cloud answered 200: the answer is not a token {"access_token","token_type","expires_in"}: invalid character '<' looking for beginning of value`,
			permanent: true},
		{name: "no access token", activated: true, call: "exchange", status: 200, body: `{"token_type":"Bearer","expires_in":1000}`,
			wantErr:   "exchange messages: get access token: cloud answered 200: the answer has no usable access_token; expected a non-empty token without spaces",
			permanent: true},
		{name: "expires_in not a number", activated: true, call: "exchange", status: 200, body: `{"access_token":"x","expires_in":"soon"}`,
			wantErr:   `exchange messages: get access token: cloud answered 200: the answer is not a token {"access_token","token_type","expires_in"}: json: invalid number literal, trying to unmarshal "\"soon\"" into Number`,
			permanent: true},
		{name: "not activated: no call at all", call: "exchange",
			wantErr:   "exchange messages: get access token: the device is not activated (the provisioning file has no endpoint ID); activate it first",
			permanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t)
			fc.token = func(w http.ResponseWriter, tc tokenCall, n int) bool {
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
				return true
			}
			c := fc.client(tt.activated, nil)
			var err error
			if tt.call == "policy" {
				_, err = c.Policy(t.Context())
			} else {
				_, err = c.Exchange(t.Context(), nil, 100, 0)
			}
			if errText(err) != tt.wantErr {
				t.Errorf("error = %s\n want %s", errText(err), tt.wantErr)
			}
			if ports.IsPermanent(err) != tt.permanent || errors.Is(err, ports.ErrUnauthorized) != tt.unauth {
				t.Errorf("permanent = %v, unauthorized = %v; want %v, %v", ports.IsPermanent(err), errors.Is(err, ports.ErrUnauthorized), tt.permanent, tt.unauth)
			}
			var ce *ports.CloudError
			if !errors.As(err, &ce) || ce.Status != tt.status {
				t.Errorf("error %#v: want a CloudError with status %d", err, tt.status)
			}
		})
	}
}

// TestNoSecretsLogged proves debug logs carry neither tokens nor
// assertions nor the shared secret.
func TestNoSecretsLogged(t *testing.T) {
	fc := newFakeCloud(t)
	fc.handle("GET /iot/api/v2/activation/policy", policyHandler)
	fc.handle("POST /iot/api/v2/messages", emptyMessages)
	var logs bytes.Buffer
	for _, activated := range []bool{false, true} {
		c := fc.client(activated, &logs)
		if _, err := c.Policy(t.Context()); err != nil {
			t.Fatal(err)
		}
		if activated {
			if _, err := c.Exchange(t.Context(), nil, 100, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	out := logs.String()
	if !strings.Contains(out, "logger=iotnode.http") || !strings.Contains(out, "op=\"exchange messages\"") {
		t.Fatalf("logs lack the named logger or the calls:\n%s", out)
	}
	secrets := []string{"tok-", sharedSecret, "Bearer"}
	for _, tc := range fc.tokenCalls() {
		secrets = append(secrets, tc.Segments...)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("logs contain %q:\n%s", s, out)
		}
	}
}

// failingStore loads once (for New) and then fails.
type failingStore struct {
	ports.TrustStore
	loads int
}

func (s *failingStore) Load() (*trust.Assets, error) {
	s.loads++
	if s.loads > 1 {
		return nil, errors.New("read /data/device.conf: input/output error")
	}
	return s.TrustStore.Load()
}

// TestIdentityErrors proves what a token call reports when the trusted
// assets cannot sign an assertion; no token call is made.
func TestIdentityErrors(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	tests := []struct {
		name      string
		edit      func(a *trust.Assets)
		store     func(a *trust.Assets) ports.TrustStore
		call      string
		wantErr   string
		permanent bool
	}{
		{name: "endpoint without device key", edit: func(a *trust.Assets) { a.PrivateKey, a.PublicKey = nil, nil }, call: "exchange",
			wantErr:   `exchange messages: get access token: the provisioning file has endpoint ID "ep-1" but no device key; expected both after activation`,
			permanent: true},
		{name: "device key is not RSA", edit: func(a *trust.Assets) { a.PrivateKey = ecDER }, call: "exchange",
			wantErr:   "exchange messages: get access token: the device key of the provisioning file is an ECDSA key; RS256 client assertions need an RSA key",
			permanent: true},
		{name: "device key is not PKCS#8", edit: func(a *trust.Assets) { a.PrivateKey = []byte{0x30, 0x01, 0x00} }, call: "exchange",
			wantErr:   "exchange messages: get access token: the device key of the provisioning file is not PKCS#8 DER: asn1: syntax error: truncated tag or length",
			permanent: true},
		{name: "no shared secret to activate", edit: func(a *trust.Assets) { a.SharedSecret = nil }, call: "policy",
			wantErr:   "get activation policy: get access token: the provisioning file lacks the client ID or the shared secret needed to activate",
			permanent: true},
		{name: "trust store fails", store: func(a *trust.Assets) ports.TrustStore {
			return &failingStore{TrustStore: porttest.NewMemTrustStore(a)}
		}, call: "exchange",
			wantErr: "exchange messages: get access token: load trusted assets: read /data/device.conf: input/output error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud(t)
			a := fc.assets(true)
			if tt.edit != nil {
				tt.edit(a)
			}
			var store ports.TrustStore = porttest.NewMemTrustStore(a)
			if tt.store != nil {
				store = tt.store(a)
			}
			c := fc.client(true, nil, func(cfg *httpadapter.Config) { cfg.Trust = store })
			if tt.call == "policy" {
				_, err = c.Policy(t.Context())
			} else {
				_, err = c.Exchange(t.Context(), nil, 100, 0)
			}
			if errText(err) != tt.wantErr || ports.IsPermanent(err) != tt.permanent {
				t.Errorf("error = %s (permanent %v)\n want %s (permanent %v)", errText(err), ports.IsPermanent(err), tt.wantErr, tt.permanent)
			}
			if n := len(fc.tokenCalls()); n != 0 {
				t.Errorf("%d token calls, want none", n)
			}
		})
	}
}
