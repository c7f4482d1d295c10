package cloud

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
)

func TestTokenEndpoint(t *testing.T) {
	e := newEnv(t)
	e.addModels()
	fresh := e.register(api.DeviceTypeDirect, 0) // not activated
	act := e.register(api.DeviceTypeDirect, 1)
	act.activate(humidityURN)
	now := e.clock.Now()
	exp := now.Add(15 * time.Minute).Unix()
	pubDER, _ := x509.MarshalPKIXPublicKey(&act.key.PublicKey)
	hsFresh := hs256([]byte(fresh.secret))
	none := func([]byte) []byte { return nil }
	claims := func(iss, sub, aud string, exp int64) string {
		return fmt.Sprintf(`{"iss":%q,"sub":%q,"aud":%q,"exp":%d}`, iss, sub, aud, exp)
	}
	const activation = "oracle/iot/activation"
	const prefix = "token request: client assertion: "
	tests := []struct {
		name      string
		path      string
		form      string // overrides the built form when set
		assertion string
		scope     string
		status    int
		msg       string
		skew      bool
	}{
		{name: "v1 path, padded HS256", path: "/iot/api/v1/oauth2/token", assertion: jwt("HS256", fresh.activationID, fresh.activationID, exp, hsFresh, true), scope: activation, status: 200},
		{name: "v2 path, unpadded HS256", assertion: jwt("HS256", fresh.activationID, fresh.activationID, exp, hsFresh, false), scope: activation, status: 200},
		{name: "JS padding: padded segments, stripped signature", assertion: strings.TrimRight(jwt("HS256", fresh.activationID, fresh.activationID, exp, hsFresh, true), "="), scope: activation, status: 200},
		{name: "RS256 after activation", assertion: jwt("RS256", act.endpointID, act.endpointID, exp, rs256(act.key), false), scope: "", status: 200},
		{name: "wrong grant type", form: "grant_type=password&client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer&client_assertion=x", status: 400,
			msg: `token request: grant_type is "password", expected "client_credentials"`},
		{name: "wrong assertion type", form: "grant_type=client_credentials&client_assertion_type=saml&client_assertion=x", status: 400,
			msg: `token request: client_assertion_type is "saml", expected "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"`},
		{name: "unknown scope", assertion: jwt("HS256", fresh.activationID, fresh.activationID, exp, hsFresh, false), scope: "admin", status: 400,
			msg: `token request: scope is "admin", expected "oracle/iot/activation" or empty`},
		{name: "missing assertion", form: "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&scope=", status: 400,
			msg: `token request: client_assertion is missing, expected a JWT`},
		{name: "not a JWT", assertion: "abc", status: 400,
			msg: prefix + `1 dot-separated segments, expected 3 (header.claims.signature)`},
		{name: "claims not base64", assertion: "e30.!!.x", status: 400,
			msg: prefix + `claims segment is not base64url: illegal base64 data at input byte 0`},
		{name: "unknown client", assertion: jwt("HS256", "nobody", "nobody", exp, hsFresh, false), scope: activation, status: 401,
			msg: `token request: unknown client "nobody", expected a registered activation id or endpoint id`},
		{name: "wrong shared secret", assertion: jwt("HS256", fresh.activationID, fresh.activationID, exp, hs256([]byte("wrong")), false), scope: activation, status: 401,
			msg: prefix + `HS256 signature does not verify with the device's shared secret`},
		{name: "alg none before activation", assertion: jwtRaw(`{"alg":"none"}`, claims(fresh.activationID, fresh.activationID, "oracle/iot/oauth2/token", exp), none, false), scope: activation, status: 401,
			msg: prefix + `alg "none" is not accepted before activation, expected "HS256"`},
		{name: "alg none after activation", assertion: jwtRaw(`{"alg":"none"}`, claims(act.endpointID, act.endpointID, "oracle/iot/oauth2/token", exp), none, false), status: 401,
			msg: prefix + `alg "none" is not accepted for an activated device, expected "RS256"`},
		{name: "HS256 keyed with the public key", assertion: jwt("HS256", act.endpointID, act.endpointID, exp, hs256(pubDER), false), status: 401,
			msg: prefix + `alg "HS256" is not accepted for an activated device, expected "RS256"`},
		{name: "HS256 with the shared secret after activation", assertion: jwt("HS256", act.activationID, act.activationID, exp, hs256([]byte(act.secret)), true), scope: activation, status: 401,
			msg: prefix + `alg "HS256" is not accepted for an activated device, expected "RS256"`},
		{name: "RS256 by another key", assertion: jwt("RS256", act.endpointID, act.endpointID, exp, rs256(testKey(t, 2)), false), status: 401,
			msg: prefix + `RS256 signature does not verify with the key registered at activation`},
		{name: "wrong audience", assertion: jwtRaw(`{"alg":"HS256"}`, claims(fresh.activationID, fresh.activationID, "someone-else", exp), hsFresh, false), scope: activation, status: 401,
			msg: prefix + `claim "aud" is "someone-else", expected "oracle/iot/oauth2/token"`},
		{name: "iss differs from sub", assertion: jwt("HS256", "other", fresh.activationID, exp, hsFresh, false), scope: activation, status: 401,
			msg: prefix + `claim "iss" "other" differs from "sub" "` + fresh.activationID + `", expected both to be the client id`},
		{name: "no exp", assertion: jwtRaw(`{"alg":"HS256"}`, fmt.Sprintf(`{"iss":%q,"sub":%q,"aud":"oracle/iot/oauth2/token"}`, fresh.activationID, fresh.activationID), hsFresh, false), scope: activation, status: 401,
			msg: prefix + `claim "exp" is missing, expected seconds since the epoch`},
		{name: "expired", assertion: jwt("HS256", fresh.activationID, fresh.activationID, now.Add(-time.Hour).Unix(), hsFresh, false), scope: activation, status: 403, skew: true,
			msg: prefix + `expired at 2025-11-27T11:00:00Z, server time is 2025-11-27T12:00:00Z`},
		{name: "exp too far ahead", assertion: jwt("HS256", fresh.activationID, fresh.activationID, now.Add(time.Hour).Unix(), hsFresh, false), scope: activation, status: 403, skew: true,
			msg: prefix + `expires at 2025-11-27T13:00:00Z, expected at most 15m0s after server time 2025-11-27T12:00:00Z`},
		{name: "activation scope once activated", assertion: jwt("RS256", act.endpointID, act.endpointID, exp, rs256(act.key), false), scope: activation, status: 401,
			msg: `token request: device "` + act.activationID + `" is already activated, expected scope "" and an RS256 assertion from endpoint "` + act.endpointID + `"`},
		{name: "device scope before activation", assertion: jwt("HS256", fresh.activationID, fresh.activationID, exp, hsFresh, false), scope: "", status: 401,
			msg: `token request: device "` + fresh.activationID + `" is not activated, expected scope "oracle/iot/activation" to activate it first`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if path == "" {
				path = "/iot/api/v2/oauth2/token"
			}
			var r response
			if tt.form != "" {
				r = e.do("POST", path, strings.NewReader(tt.form), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
			} else {
				r = e.tokenRequest(path, tt.assertion, tt.scope)
			}
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if tt.status == 200 {
				var tr tokenResponse
				if err := json.Unmarshal(r.body, &tr); err != nil || tr.ExpiresIn != 3600000 || tr.TokenType != "Bearer" || tr.AccessToken == "" {
					t.Fatalf("token answer %s", r.body)
				}
				return
			}
			ae := r.apiError(t)
			if ae.Message != tt.msg || ae.Status != tt.status {
				t.Fatalf("error %q (status %d)\nwant  %q", ae.Message, ae.Status, tt.msg)
			}
			if tt.skew != (ae.CurrentTime == now.UnixMilli()) {
				t.Fatalf("currentTime %d, want %d when skewed", ae.CurrentTime, now.UnixMilli())
			}
		})
	}
	t.Run("body over 1 MiB, chunked", func(t *testing.T) {
		body := io.MultiReader(strings.NewReader("grant_type=client_credentials&x="), strings.NewReader(strings.Repeat("a", MaxBodyBytes)))
		r := e.do("POST", "/iot/api/v2/oauth2/token", body, nil)
		if ae := r.apiError(t); r.status != http.StatusRequestEntityTooLarge || ae.Message != "request body is larger than 1048576 bytes (1 MiB)" {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("body over 1 MiB, with length", func(t *testing.T) {
		r := e.do("POST", "/iot/api/v2/oauth2/token", strings.NewReader(strings.Repeat("a", MaxBodyBytes+1)), nil)
		if ae := r.apiError(t); r.status != http.StatusRequestEntityTooLarge || ae.Message != "request body is 1048577 bytes, expected at most 1048576 (1 MiB)" {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
}

func TestBearerAuth(t *testing.T) {
	e := newEnv(t)
	e.addModels()
	d := e.register(api.DeviceTypeDirect, 0)
	d.activate(humidityURN)
	good := d.token
	e.clock.Advance(2 * time.Hour)
	d.token = good
	tests := []struct {
		name, path, token string
		hdr               map[string]string
		status            int
		msg               string
	}{
		{name: "no token", path: "/iot/api/v2/messages", status: 401, msg: `missing bearer access token, expected "Authorization: Bearer <token from oauth2/token>"`},
		{name: "forged token", path: "/iot/api/v2/messages", token: "t1.eyJ9.abc", status: 401, msg: "invalid access token, get one from oauth2/token"},
		{name: "expired token", path: "/iot/api/v2/messages", token: good, status: 401, msg: "access token expired, get a new one from oauth2/token"},
		{name: "admin token on device API", path: "/iot/api/v2/messages", token: adminToken, status: 401, msg: "invalid access token, get one from oauth2/token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{}
			if tt.token != "" {
				h["Authorization"] = "Bearer " + tt.token
			}
			r := e.do("POST", tt.path, strings.NewReader("[]"), h)
			if ae := r.apiError(t); r.status != tt.status || ae.Message != tt.msg {
				t.Fatalf("%d %q, want %d %q", r.status, ae.Message, tt.status, tt.msg)
			}
		})
	}
	d.getToken("")
	t.Run("X-EndpointId of another device", func(t *testing.T) {
		h := d.headers()
		h["X-EndpointId"] = "0-OTHER"
		r := e.do("POST", "/iot/api/v2/messages", strings.NewReader("[]"), h)
		if ae := r.apiError(t); r.status != 403 || ae.Message != `X-EndpointId "0-OTHER" does not match the authenticated endpoint "`+d.endpointID+`"` {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("activation token on messages", func(t *testing.T) {
		f := e.register(api.DeviceTypeDirect, 2)
		f.getToken("oracle/iot/activation")
		r := f.call("POST", "/iot/api/v2/messages", "[]")
		if ae := r.apiError(t); r.status != 403 || ae.Message != `access token has scope "oracle/iot/activation", expected "" for /iot/api/v2/messages` {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("enterprise API without admin token", func(t *testing.T) {
		r := e.do("GET", api.Root+"/devices", nil, map[string]string{"Authorization": "Bearer " + d.token})
		if ae := r.apiError(t); r.status != 401 || ae.Message != `enterprise API: missing or wrong bearer token, expected "Authorization: Bearer <admin token>"` {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
}
