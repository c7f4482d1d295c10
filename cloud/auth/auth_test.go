package auth

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	keyOnce sync.Once
	rsaKey  *rsa.PrivateKey
	rsaKey2 *rsa.PrivateKey
)

func keys(t testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	keyOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return rsaKey, rsaKey2
}

func token(header, claims string, sign func([]byte) []byte, pad bool) string {
	enc := base64.RawURLEncoding
	if pad {
		enc = base64.URLEncoding
	}
	in := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	return in + "." + enc.EncodeToString(sign([]byte(in)))
}

func hs(secret []byte) func([]byte) []byte {
	return func(in []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(in)
		return m.Sum(nil)
	}
}

func rs(k *rsa.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte {
		d := sha256.Sum256(in)
		s, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, d[:])
		if err != nil {
			panic(err)
		}
		return s
	}
}

func claimsJSON(iss, sub, aud string, exp int64) string {
	return fmt.Sprintf(`{"iss":%q,"sub":%q,"aud":%q,"exp":%d}`, iss, sub, aud, exp)
}

func TestVerify(t *testing.T) {
	k1, k2 := keys(t)
	now := time.Date(2025, 11, 27, 12, 0, 0, 0, time.UTC)
	exp := now.Add(15 * time.Minute).Unix()
	secret := []byte("s3cret")
	pubDER, _ := x509.MarshalPKIXPublicKey(&k1.PublicKey)
	before := Key{SharedSecret: secret}
	after := Key{PublicKey: &k1.PublicKey}
	none := func([]byte) []byte { return nil }
	good := claimsJSON("dev", "dev", Audience, exp)
	tests := []struct {
		name string
		tok  string
		key  Key
		kind error
		msg  string
	}{
		{name: "HS256 padded (Java)", tok: token(`{"typ":"JWT","alg":"HS256"}`, good, hs(secret), true), key: before},
		{name: "HS256 unpadded (RFC 7515)", tok: token(`{"typ":"JWT","alg":"HS256"}`, good, hs(secret), false), key: before},
		{name: "HS256 with only the end stripped (JS)", tok: strings.TrimRight(token(`{"alg":"HS256"}`, good, hs(secret), true), "="), key: before},
		{name: "RS256", tok: token(`{"alg":"RS256"}`, good, rs(k1), false), key: after},
		{name: "aud as an array", tok: token(`{"alg":"HS256"}`, `{"iss":"d","sub":"d","aud":["x","`+Audience+`"],"exp":`+fmt.Sprint(exp)+`}`, hs(secret), false), key: before},
		{name: "exp as a float", tok: token(`{"alg":"HS256"}`, `{"iss":"d","sub":"d","aud":"`+Audience+`","exp":`+fmt.Sprint(exp)+`.5}`, hs(secret), false), key: before},
		{name: "exp just inside the leeway", tok: token(`{"alg":"HS256"}`, claimsJSON("d", "d", Audience, now.Add(-59*time.Second).Unix()), hs(secret), false), key: before},
		{name: "alg none", tok: token(`{"alg":"none"}`, good, none, false), key: before, kind: ErrAlgorithm,
			msg: `client assertion: alg "none" is not accepted before activation, expected "HS256"`},
		{name: "alg none after activation", tok: token(`{"alg":"none"}`, good, none, false), key: after, kind: ErrAlgorithm,
			msg: `client assertion: alg "none" is not accepted for an activated device, expected "RS256"`},
		{name: "HS256 keyed with the public key", tok: token(`{"alg":"HS256"}`, good, hs(pubDER), false), key: after, kind: ErrAlgorithm,
			msg: `client assertion: alg "HS256" is not accepted for an activated device, expected "RS256"`},
		{name: "RS256 before activation", tok: token(`{"alg":"RS256"}`, good, rs(k1), false), key: before, kind: ErrAlgorithm,
			msg: `client assertion: alg "RS256" is not accepted before activation, expected "HS256"`},
		{name: "no key at all", tok: token(`{"alg":"HS256"}`, good, hs(secret), false), key: Key{}, kind: ErrAlgorithm,
			msg: `client assertion: the client has no key to verify alg "HS256" with`},
		{name: "wrong secret", tok: token(`{"alg":"HS256"}`, good, hs([]byte("other")), false), key: before, kind: ErrSignature,
			msg: `client assertion: HS256 signature does not verify with the device's shared secret`},
		{name: "other RSA key", tok: token(`{"alg":"RS256"}`, good, rs(k2), false), key: after, kind: ErrSignature,
			msg: `client assertion: RS256 signature does not verify with the key registered at activation`},
		{name: "wrong audience", tok: token(`{"alg":"HS256"}`, claimsJSON("dev", "dev", "x", exp), hs(secret), false), key: before, kind: ErrClaims,
			msg: `client assertion: claim "aud" is "x", expected "oracle/iot/oauth2/token"`},
		{name: "no audience", tok: token(`{"alg":"HS256"}`, `{"iss":"dev","sub":"dev","exp":1}`, hs(secret), false), key: before, kind: ErrClaims,
			msg: `client assertion: claim "aud" is "", expected "oracle/iot/oauth2/token"`},
		{name: "iss is not sub", tok: token(`{"alg":"HS256"}`, claimsJSON("a", "b", Audience, exp), hs(secret), false), key: before, kind: ErrClaims,
			msg: `client assertion: claim "iss" "a" differs from "sub" "b", expected both to be the client id`},
		{name: "no exp", tok: token(`{"alg":"HS256"}`, `{"iss":"d","sub":"d","aud":"`+Audience+`"}`, hs(secret), false), key: before, kind: ErrClaims,
			msg: `client assertion: claim "exp" is missing, expected seconds since the epoch`},
		{name: "expired", tok: token(`{"alg":"HS256"}`, claimsJSON("d", "d", Audience, now.Add(-2*time.Minute).Unix()), hs(secret), false), key: before, kind: ErrClockSkew,
			msg: `client assertion: expired at 2025-11-27T11:58:00Z, server time is 2025-11-27T12:00:00Z`},
		{name: "too far ahead", tok: token(`{"alg":"HS256"}`, claimsJSON("d", "d", Audience, now.Add(17*time.Minute).Unix()), hs(secret), false), key: before, kind: ErrClockSkew,
			msg: `client assertion: expires at 2025-11-27T12:17:00Z, expected at most 15m0s after server time 2025-11-27T12:00:00Z`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Parse(tt.tok)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			err = a.Verify(tt.key, now)
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.kind) || err.Error() != tt.msg {
				t.Fatalf("got   %v\nwant  %s (%v)", err, tt.msg, tt.kind)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	b := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tests := []struct{ name, tok, msg string }{
		{"one segment", "abc", `client assertion: 1 dot-separated segments, expected 3 (header.claims.signature)`},
		{"four segments", "a.b.c.d", `client assertion: 4 dot-separated segments, expected 3 (header.claims.signature)`},
		{"header not base64", "!!." + b("{}") + ".", `client assertion: header segment is not base64url: illegal base64 data at input byte 0`},
		{"signature not base64", b(`{}`) + "." + b(`{}`) + ".***", `client assertion: signature segment is not base64url: illegal base64 data at input byte 0`},
		{"header not JSON", b("[]") + "." + b("{}") + ".", `client assertion: header segment is not a JSON object: expected '{'`},
		{"claims not an object", b(`{"alg":"HS256"}`) + "." + b(`"x"`) + ".", `client assertion: claims segment is not a JSON object: expected '{'`},
		{"claims of the wrong type", b(`{"alg":"HS256"}`) + "." + b(`{"sub":1}`) + ".", `client assertion: claims segment is not a JSON object: json: cannot unmarshal number into Go struct field claims.sub of type string`},
		{"no sub", b(`{"alg":"HS256"}`) + "." + b(`{"iss":"x"}`) + ".", `client assertion: claim "sub" is missing, expected the activation or endpoint id`},
		{"aud a number", b(`{"alg":"HS256"}`) + "." + b(`{"sub":"x","aud":5}`) + ".", `client assertion: claim "aud" is 5, expected a string`},
		{"exp a string", b(`{"alg":"HS256"}`) + "." + b(`{"sub":"x","exp":"soon"}`) + ".", `client assertion: claim "exp" is "soon", expected seconds since the epoch`},
		{"exp in ms", b(`{"alg":"HS256"}`) + "." + b(`{"sub":"x","exp":1764245700000}`) + ".", `client assertion: claim "exp" is 1764245700000, expected seconds since the epoch`},
		{"too long", strings.Repeat("a", MaxAssertionLen+1), `client assertion: 16385 bytes long, expected at most 16384`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.tok)
			if !errors.Is(err, ErrMalformed) || err.Error() != tt.msg {
				t.Fatalf("got   %v\nwant  %s", err, tt.msg)
			}
		})
	}
}

func TestTokens(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	ts, err := NewTokens(key)
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1764244800000)
	tok := Token{Subject: "0-ABC", Scope: ScopeActivation, Expiry: now.Add(TokenLifetime)}
	s := ts.Issue(tok)
	got, err := ts.Check(s, now)
	if err != nil || got != (Token{Subject: "0-ABC", Scope: ScopeActivation, Expiry: time.UnixMilli(tok.Expiry.UnixMilli())}) {
		t.Fatalf("Check = %+v, %v", got, err)
	}
	other, _ := NewTokens([]byte(strings.Repeat("o", 32)))
	dot := strings.LastIndexByte(s, '.')
	tests := []struct {
		name string
		tok  string
		at   time.Time
		kind error
		msg  string
	}{
		{"expired", s, tok.Expiry, ErrTokenExpired, "check access token: access token expired at 2025-11-27T13:00:00Z"},
		{"other key", other.Issue(tok), now, ErrInvalidToken, "check access token: invalid access token: signature does not match"},
		{"tampered payload", s[:5] + "x" + s[6:], now, ErrInvalidToken, "check access token: invalid access token: signature does not match"},
		{"no signature", "t1.", now, ErrInvalidToken, "check access token: invalid access token: no signature"},
		{"not ours", "abc", now, ErrInvalidToken, "check access token: invalid access token: not issued by this server"},
		{"bad signature encoding", s[:dot] + ".***", now, ErrInvalidToken, "check access token: invalid access token: signature does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ts.Check(tt.tok, tt.at)
			if !errors.Is(err, tt.kind) || err.Error() != tt.msg {
				t.Fatalf("got   %v\nwant  %s", err, tt.msg)
			}
		})
	}
	t.Run("short key", func(t *testing.T) {
		if _, err := NewTokens([]byte("short")); err == nil || err.Error() != "new access tokens: key is 5 bytes, expected at least 32" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("signed garbage payload", func(t *testing.T) {
		body := tokenPrefix + base64.RawURLEncoding.EncodeToString([]byte("not json"))
		forged := body + "." + base64.RawURLEncoding.EncodeToString(ts.mac(body))
		if _, err := ts.Check(forged, now); !errors.Is(err, ErrInvalidToken) || !strings.HasPrefix(err.Error(), "check access token: invalid access token: payload: ") {
			t.Fatalf("got %v", err)
		}
	})
}

// FuzzParse: Parse never panics, and what it accepts has a subject.
func FuzzParse(f *testing.F) {
	k1, _ := keys(f)
	f.Add(token(`{"alg":"HS256"}`, claimsJSON("a", "a", Audience, 1764245700), hs([]byte("s")), true))
	f.Add(token(`{"alg":"RS256"}`, claimsJSON("a", "a", Audience, 1764245700), rs(k1), false))
	f.Add("a.b.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		a, err := Parse(tok)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if a.Subject == "" {
			t.Fatal("accepted without a subject")
		}
		a.Verify(Key{SharedSecret: []byte("s")}, time.Unix(1764245000, 0))
		a.Verify(Key{PublicKey: &k1.PublicKey}, time.Unix(1764245000, 0))
	})
}
