package http

import (
	"crypto/rsa"
	"errors"
	"time"

	"github.com/iotnode/iotnode/domain/trust"
)

// identity is who the device is for one token scope: the activation ID with
// the shared secret (HS256) before activation and for the activation scope,
// the endpoint ID with the device key (RS256) after activation.
type identity struct {
	id     string
	secret []byte          // HS256 when set
	key    *rsa.PrivateKey // RS256 when set
}

// assertion returns the signed client assertion for id (protocol.md §1,
// built by trust.ClientAssertion), expiring trust.AssertionLifetime after
// now (now already shifted by the clock offset).
func (id identity) assertion(now time.Time) (string, error) {
	return trust.ClientAssertion(id.id, id.secret, id.key, now)
}

// parseDeviceKey parses the PKCS#8 device key of the provisioning file,
// which must be RSA for RS256.
func parseDeviceKey(der []byte) (*rsa.PrivateKey, error) { return trust.ParseDeviceKey(der) }

// errNotActivated: a call that needs the endpoint identity was made before
// activation.
var errNotActivated = errors.New("the device is not activated (the provisioning file has no endpoint ID); activate it first")
