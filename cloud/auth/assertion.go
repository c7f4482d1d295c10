package auth

import (
	"bytes"
	"crypto"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Audience is the only accepted "aud" claim of a client assertion.
const Audience = "oracle/iot/oauth2/token"

// AssertionLifetime is how far in the future a client assertion may expire:
// the Oracle libraries set exp to now + 15 minutes.
const AssertionLifetime = 15 * time.Minute

// Leeway is the clock difference tolerated on both sides of the expiry window.
const Leeway = time.Minute

// MaxAssertionLen bounds the length of a client assertion; a 4096-bit RS256
// assertion is well under 2 KiB.
const MaxAssertionLen = 16 << 10

// The kinds of assertion errors; every error returned by Parse and Verify
// wraps exactly one of them (test with errors.Is).
var (
	// ErrMalformed: not three base64url segments of JSON, or required fields missing.
	ErrMalformed = errors.New("malformed client assertion")
	// ErrAlgorithm: an algorithm other than the one the device must use.
	ErrAlgorithm = errors.New("client assertion algorithm not accepted")
	// ErrSignature: the signature does not verify with the device's key.
	ErrSignature = errors.New("client assertion signature does not verify")
	// ErrClaims: wrong audience, or iss and sub differ.
	ErrClaims = errors.New("client assertion claims not accepted")
	// ErrClockSkew: exp is in the past or too far in the future; the token
	// endpoint answers 403 with the server time so the client can correct.
	ErrClockSkew = errors.New("client assertion expiry outside the accepted window")
)

// Error is an assertion error: Error() is the full user-facing message and
// Unwrap gives its kind (one of the Err* values above).
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

func errorf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: "client assertion: " + fmt.Sprintf(format, args...)}
}

// Algorithms a client assertion may use.
const (
	HS256 = "HS256"
	RS256 = "RS256"
)

// Assertion is a parsed, not yet verified, client assertion.
type Assertion struct {
	Alg      string
	Issuer   string
	Subject  string
	Audience []string
	// Expiry is the exp claim; the zero time when the claim is absent.
	Expiry time.Time

	signingInput string
	signature    []byte
}

type header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
}

type claims struct {
	Iss string          `json:"iss"`
	Sub string          `json:"sub"`
	Aud json.RawMessage `json:"aud"`
	Exp json.RawMessage `json:"exp"`
}

// decodeSegment decodes one base64url segment with or without "=" padding.
func decodeSegment(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// Parse splits and decodes a compact JWS client assertion without verifying
// it, so that the caller can find the subject's key. It returns an *Error of
// kind ErrMalformed when the token is not three base64url segments of JSON or
// when sub is missing.
func Parse(token string) (*Assertion, error) {
	if len(token) > MaxAssertionLen {
		return nil, errorf(ErrMalformed, "%d bytes long, expected at most %d", len(token), MaxAssertionLen)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errorf(ErrMalformed, "%d dot-separated segments, expected 3 (header.claims.signature)", len(parts))
	}
	names := [3]string{"header", "claims", "signature"}
	var raw [3][]byte
	for i, p := range parts {
		b, err := decodeSegment(p)
		if err != nil {
			return nil, errorf(ErrMalformed, "%s segment is not base64url: %v", names[i], err)
		}
		raw[i] = b
	}
	var h header
	if err := strictJSON(raw[0], &h); err != nil {
		return nil, errorf(ErrMalformed, "header segment is not a JSON object: %v", err)
	}
	var c claims
	if err := strictJSON(raw[1], &c); err != nil {
		return nil, errorf(ErrMalformed, "claims segment is not a JSON object: %v", err)
	}
	a := &Assertion{
		Alg:          h.Alg,
		Issuer:       c.Iss,
		Subject:      c.Sub,
		signingInput: parts[0] + "." + parts[1],
		signature:    raw[2],
	}
	if a.Subject == "" {
		return nil, errorf(ErrMalformed, "claim \"sub\" is missing, expected the activation or endpoint id")
	}
	aud, err := parseAudience(c.Aud)
	if err != nil {
		return nil, err
	}
	a.Audience = aud
	if len(c.Exp) > 0 && !bytes.Equal(c.Exp, []byte("null")) {
		var exp float64
		if err := json.Unmarshal(c.Exp, &exp); err != nil || math.IsNaN(exp) || exp <= 0 || exp > 1e11 {
			return nil, errorf(ErrMalformed, "claim \"exp\" is %s, expected seconds since the epoch", c.Exp)
		}
		a.Expiry = time.Unix(int64(exp), 0)
	}
	return a, nil
}

func strictJSON(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return errors.New("expected '{'")
	}
	return json.Unmarshal(b, v)
}

func parseAudience(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, errorf(ErrMalformed, "claim \"aud\" is %s, expected a string", raw)
	}
	return many, nil
}

// Key is what the server knows about the client that signed an assertion.
type Key struct {
	// SharedSecret verifies HS256 assertions; it is used only when PublicKey is nil.
	SharedSecret []byte
	// PublicKey is the key registered at activation. When it is set only
	// RS256 is accepted: an HS256 assertion is refused, whatever its MAC.
	PublicKey *rsa.PublicKey
}

// Verify checks the assertion's algorithm and signature against k, then its
// claims: aud must be Audience, iss must equal sub, exp must be present and
// within [now-Leeway, now+AssertionLifetime+Leeway]. It returns an *Error
// whose kind says what failed (ErrClockSkew for an exp outside the window).
// Verify is safe for concurrent use.
func (a *Assertion) Verify(k Key, now time.Time) error {
	switch {
	case k.PublicKey != nil:
		if a.Alg != RS256 {
			return errorf(ErrAlgorithm, "alg %q is not accepted for an activated device, expected %q", a.Alg, RS256)
		}
		digest := sha256.Sum256([]byte(a.signingInput))
		if err := rsa.VerifyPKCS1v15(k.PublicKey, crypto.SHA256, digest[:], a.signature); err != nil {
			return errorf(ErrSignature, "RS256 signature does not verify with the key registered at activation")
		}
	case len(k.SharedSecret) > 0:
		if a.Alg != HS256 {
			return errorf(ErrAlgorithm, "alg %q is not accepted before activation, expected %q", a.Alg, HS256)
		}
		mac := hmac.New(sha256.New, k.SharedSecret)
		mac.Write([]byte(a.signingInput))
		if !hmac.Equal(mac.Sum(nil), a.signature) {
			return errorf(ErrSignature, "HS256 signature does not verify with the device's shared secret")
		}
	default:
		return errorf(ErrAlgorithm, "the client has no key to verify alg %q with", a.Alg)
	}
	audOK := false
	for _, aud := range a.Audience {
		if aud == Audience {
			audOK = true
		}
	}
	if !audOK {
		return errorf(ErrClaims, "claim \"aud\" is %q, expected %q", strings.Join(a.Audience, ","), Audience)
	}
	if a.Issuer != a.Subject {
		return errorf(ErrClaims, "claim \"iss\" %q differs from \"sub\" %q, expected both to be the client id", a.Issuer, a.Subject)
	}
	if a.Expiry.IsZero() {
		return errorf(ErrClaims, "claim \"exp\" is missing, expected seconds since the epoch")
	}
	if a.Expiry.Before(now.Add(-Leeway)) {
		return errorf(ErrClockSkew, "expired at %s, server time is %s",
			a.Expiry.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if latest := now.Add(AssertionLifetime + Leeway); a.Expiry.After(latest) {
		return errorf(ErrClockSkew, "expires at %s, expected at most %s after server time %s",
			a.Expiry.UTC().Format(time.RFC3339), AssertionLifetime, now.UTC().Format(time.RFC3339))
	}
	return nil
}
