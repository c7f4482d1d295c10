package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Token scopes (protocol.md §1).
const (
	// ScopeActivation may call only the activation policy and direct activation.
	ScopeActivation = "oracle/iot/activation"
	// ScopeDevice (the empty scope) may call every other device API.
	ScopeDevice = ""
)

// TokenLifetime is the lifetime of an issued access token.
const TokenLifetime = time.Hour

// MinKeyLen is the minimum length of the access-token signing key.
const MinKeyLen = 32

// The kinds of access-token errors.
var (
	// ErrInvalidToken: not a token this server issued (or issued with another key).
	ErrInvalidToken = errors.New("invalid access token")
	// ErrTokenExpired: a genuine token past its expiry.
	ErrTokenExpired = errors.New("access token expired")
)

const tokenPrefix = "t1."

// Token is what an access token stands for.
type Token struct {
	// Subject is the activation id (activation scope) or the endpoint id.
	Subject string
	Scope   string
	Expiry  time.Time
}

type tokenClaims struct {
	Sub   string `json:"sub"`
	Scope string `json:"scope"`
	Exp   int64  `json:"exp"` // epoch ms
}

// Tokens issues and checks access tokens signed with one server key.
// It is immutable and safe for concurrent use.
type Tokens struct {
	key []byte
}

// NewTokens returns a Tokens signing with key, which must be at least
// MinKeyLen bytes of secret randomness. The key is copied.
func NewTokens(key []byte) (*Tokens, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("new access tokens: key is %d bytes, expected at least %d", len(key), MinKeyLen)
	}
	return &Tokens{key: append([]byte(nil), key...)}, nil
}

// Issue returns the opaque string for t.
func (ts *Tokens) Issue(t Token) string {
	payload, _ := json.Marshal(tokenClaims{Sub: t.Subject, Scope: t.Scope, Exp: t.Expiry.UnixMilli()}) // cannot fail: strings and an int
	body := tokenPrefix + base64.RawURLEncoding.EncodeToString(payload)
	return body + "." + base64.RawURLEncoding.EncodeToString(ts.mac(body))
}

func (ts *Tokens) mac(body string) []byte {
	m := hmac.New(sha256.New, ts.key)
	m.Write([]byte(body))
	return m.Sum(nil)
}

// Check verifies s and returns what it stands for. It returns an error
// wrapping ErrInvalidToken for anything this server did not sign and
// ErrTokenExpired for a token past its expiry at now. The error text never
// contains the token.
func (ts *Tokens) Check(s string, now time.Time) (Token, error) {
	if len(s) > 4096 || !strings.HasPrefix(s, tokenPrefix) {
		return Token{}, fmt.Errorf("check access token: %w: not issued by this server", ErrInvalidToken)
	}
	dot := strings.LastIndexByte(s, '.')
	if dot < len(tokenPrefix) {
		return Token{}, fmt.Errorf("check access token: %w: no signature", ErrInvalidToken)
	}
	body, sig := s[:dot], s[dot+1:]
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, ts.mac(body)) {
		return Token{}, fmt.Errorf("check access token: %w: signature does not match", ErrInvalidToken)
	}
	payload, err := base64.RawURLEncoding.DecodeString(body[len(tokenPrefix):])
	var c tokenClaims
	if err == nil {
		err = json.Unmarshal(payload, &c)
	}
	if err != nil {
		return Token{}, fmt.Errorf("check access token: %w: payload: %v", ErrInvalidToken, err)
	}
	t := Token{Subject: c.Sub, Scope: c.Scope, Expiry: time.UnixMilli(c.Exp)}
	if !now.Before(t.Expiry) {
		return Token{}, fmt.Errorf("check access token: %w at %s", ErrTokenExpired, t.Expiry.UTC().Format(time.RFC3339))
	}
	return t, nil
}
