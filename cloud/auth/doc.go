// Package auth is the reference cloud's authentication: it verifies the JWT
// client assertions that devices present at the OAuth2 token endpoint
// (protocol.md §1) and issues and checks the opaque bearer access tokens the
// device API accepts afterwards.
//
// Client assertions are verified by hand with the standard library (no JWT
// library): the only algorithms are HS256 keyed with the device's shared
// secret (before activation) and RS256 with the public key the device
// registered at activation (after it). "alg":"none" and HS256 for a device
// that has an RSA key (the "public key used as HMAC secret" attack) are
// refused. Segments are accepted with or without base64url "=" padding,
// because Oracle's Java library pads and its JavaScript library does not.
//
// Access tokens are stateless: an HMAC-SHA256-signed, base64url-encoded claim
// set (subject, scope, expiry) keyed with a server secret that the caller
// keeps (the cloud keeps it in its store, so tokens survive restarts). No token
// is ever written to disk, and a token cannot be revoked before it expires
// (one hour by default); clients treat the token as opaque.
//
// The package does no I/O, starts no goroutines, never logs and never reads
// the clock: the caller passes now. It imports only the standard library.
package auth
