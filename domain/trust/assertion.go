package trust

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// JWT client assertions (protocol.md §1): how a device proves who it is, to
// the token endpoint over HTTPS and as its password over MQTT. Both
// transports build them here so that the bytes are defined once.
const (
	// AssertionAudience is the aud claim of every client assertion.
	AssertionAudience = "oracle/iot/oauth2/token"
	// AssertionLifetime is how far exp lies ahead of now (Oracle's
	// EXP_CLAIM_DELTA, 900000 ms).
	AssertionLifetime = 15 * time.Minute

	headerHS256 = `{"typ":"JWT","alg":"HS256"}`
	headerRS256 = `{"typ":"JWT","alg":"RS256"}`
)

// b64url is RFC 7515 base64url without padding.
var b64url = base64.RawURLEncoding

// assertionClaims are the claims Oracle's libraries send: no iat, no jti.
type assertionClaims struct {
	Iss string `json:"iss"`
	Sub string `json:"sub"`
	Aud string `json:"aud"`
	Exp int64  `json:"exp"` // seconds
}

// ClientAssertion returns the JWT client assertion of id (protocol.md §1):
//
//   - with key set (the endpoint ID after activation), header
//     {"typ":"JWT","alg":"RS256"} and an RSA PKCS#1 v1.5 SHA-256 signature
//     made with key; secret is ignored;
//   - otherwise (the activation ID before activation), header
//     {"typ":"JWT","alg":"HS256"} and HMAC-SHA256 keyed with secret.
//
// The claims are iss = sub = id, aud = AssertionAudience and exp = now +
// AssertionLifetime in Unix seconds; no iat, no jti. The three segments are
// base64url without padding (RFC 7515), which every Oracle-compatible server
// accepts. now is the device's time, already shifted by any known offset to
// the cloud's clock.
//
// The result depends only on the arguments (both signatures are
// deterministic). It fails when id is empty, when there is neither a key nor
// a secret, or when the key cannot sign (too small for SHA-256).
func ClientAssertion(id string, secret []byte, key *rsa.PrivateKey, now time.Time) (string, error) {
	if id == "" {
		return "", errors.New("the client assertion needs an ID; expected the activation ID or the endpoint ID")
	}
	if key == nil && len(secret) == 0 {
		return "", fmt.Errorf("no device key and no shared secret to sign the client assertion of %q with", id)
	}
	header := headerHS256
	if key != nil {
		header = headerRS256
	}
	body, err := json.Marshal(assertionClaims{Iss: id, Sub: id, Aud: AssertionAudience, Exp: now.Add(AssertionLifetime).Unix()})
	if err != nil {
		return "", fmt.Errorf("encode the client assertion claims: %w", err)
	}
	input := b64url.EncodeToString([]byte(header)) + "." + b64url.EncodeToString(body)
	var sig []byte
	if key != nil {
		sum := sha256.Sum256([]byte(input))
		// PKCS#1 v1.5 is deterministic: no randomness is needed (nor read).
		sig, err = rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
		if err != nil {
			return "", fmt.Errorf("sign the client assertion with the device key: %w", err)
		}
	} else {
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(input))
		sig = mac.Sum(nil)
	}
	return input + "." + b64url.EncodeToString(sig), nil
}

// ParseDeviceKey parses the device key of a provisioning file (PKCS#8 DER),
// which must be RSA to sign RS256 client assertions. Errors say what the key
// is instead.
func ParseDeviceKey(der []byte) (*rsa.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("the device key of the provisioning file is not PKCS#8 DER: %s", shortError(err))
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the device key of the provisioning file is %s; RS256 client assertions need an RSA key", keyKind(k))
	}
	return rk, nil
}

func keyKind(k any) string {
	switch k.(type) {
	case *ecdsa.PrivateKey:
		return "an ECDSA key"
	case ed25519.PrivateKey:
		return "an Ed25519 key"
	default:
		return fmt.Sprintf("a %T", k)
	}
}
