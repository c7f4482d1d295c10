package http

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

// JWT client assertions (protocol.md §1), written with the standard library.
const (
	// assertionAudience is the aud claim of every client assertion.
	assertionAudience = "oracle/iot/oauth2/token"
	// assertionLifetime is how far exp lies ahead of now (Oracle's 900000 ms).
	assertionLifetime = 15 * time.Minute

	headerHS256 = `{"typ":"JWT","alg":"HS256"}`
	headerRS256 = `{"typ":"JWT","alg":"RS256"}`
)

// b64url is RFC 7515 base64url without padding.
var b64url = base64.RawURLEncoding

// identity is who the device is for one token scope: the activation ID with
// the shared secret (HS256) before activation and for the activation scope,
// the endpoint ID with the device key (RS256) after activation.
type identity struct {
	id     string
	secret []byte          // HS256 when set
	key    *rsa.PrivateKey // RS256 when set
}

// claims are the JWT claims the Oracle libraries send: no iat, no jti.
type claims struct {
	Iss string `json:"iss"`
	Sub string `json:"sub"`
	Aud string `json:"aud"`
	Exp int64  `json:"exp"` // seconds
}

// assertion returns the signed client assertion for id, expiring
// assertionLifetime after now (now already shifted by the clock offset).
func (id identity) assertion(now time.Time) (string, error) {
	header := headerHS256
	if id.key != nil {
		header = headerRS256
	}
	body, err := json.Marshal(claims{Iss: id.id, Sub: id.id, Aud: assertionAudience, Exp: now.Add(assertionLifetime).Unix()})
	if err != nil {
		return "", fmt.Errorf("encode the client assertion claims: %w", err)
	}
	input := b64url.EncodeToString([]byte(header)) + "." + b64url.EncodeToString(body)
	var sig []byte
	if id.key != nil {
		sum := sha256.Sum256([]byte(input))
		sig, err = rsa.SignPKCS1v15(nil, id.key, crypto.SHA256, sum[:])
		if err != nil {
			return "", fmt.Errorf("sign the client assertion with the device key: %w", err)
		}
	} else {
		mac := hmac.New(sha256.New, id.secret)
		mac.Write([]byte(input))
		sig = mac.Sum(nil)
	}
	return input + "." + b64url.EncodeToString(sig), nil
}

// parseDeviceKey parses the PKCS#8 device key of the provisioning file,
// which must be RSA for RS256.
func parseDeviceKey(der []byte) (*rsa.PrivateKey, error) {
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

// errNotActivated: a call that needs the endpoint identity was made before
// activation.
var errNotActivated = errors.New("the device is not activated (the provisioning file has no endpoint ID); activate it first")
