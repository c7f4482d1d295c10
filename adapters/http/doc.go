// Package http is the device's cloud transport over HTTPS, built on
// go-resty/resty/v2: token requests with JWT client assertions, activation,
// the messages call with long polling, device models, device policies and
// storage provisioning (protocol.md §1–§5, §7). [Client] implements
// ports.Messenger, ports.Activator and ports.ModelSource.
//
// # One attempt per call
//
// Retries, backoff and buffering belong to the dispatcher and the outbox, so
// resty's retries are off and every method makes exactly one attempt within
// its context. The single exception is the token: a 401 on any bearer call
// drops the cached token, gets a new one and repeats that call once; a second
// 401 is an error wrapping ports.ErrUnauthorized. A 403 with the cloud's
// currentTime on the token call records the clock offset and repeats the
// token call once. Errors are *ports.CloudError carrying the status, whether
// a retry can help (Permanent), Retry-After and the index of a rejected
// message, so that the dispatcher decides from the error alone.
//
// # Security
//
// TLS 1.2 or later; the server certificate must chain to the trust anchors of
// the provisioning file (the cloud's own CA for a self-hosted cloud), and the
// system pool is used only when the file has none. Redirects are not followed,
// so a bearer token never goes to another host. An http server URI works for
// local experiments and is warned about; an mqtts URI is refused with a pointer
// to the MQTT transport. Tokens, assertions and secrets are never logged.
//
// # Dead connections
//
// The transport speaks HTTP/2 over TLS when the server offers it (iotcloud
// does) and checks the health of its connections: one that has received no
// frame for Config.PingAfter (default 10 s) is pinged, and closed when the
// ping goes unanswered for Config.PingTimeout (default 5 s). A connection
// into a black hole (a link that stays up but carries nothing) thus fails
// the calls on it within about PingAfter + PingTimeout, as transient errors
// the dispatcher retries, instead of holding a long poll for its whole 30 s
// (lower both on links where fast recovery matters more than a few pings;
// the defaults favour metered links). A live
// server answers pings while it holds a long poll, so long polls are not
// cut. A TLS handshake is bounded by the smaller of Timeout and 5 s. Over
// HTTP/1.1 (a plain http URI) there are no pings and only the call's
// timeout bounds a dead connection.
//
// # Identity
//
// The client reads the trust store whenever it needs a token: the
// activation-scope token ("oracle/iot/activation": policy and direct
// activation) is signed HS256 with the shared secret and names the
// activation ID (X-ActivationId); every other call uses the empty scope with
// an RS256 assertion signed by the device key and names the endpoint ID
// (X-EndpointId). JWT segments are RFC 7515 base64url without padding; exp
// is now + offset + 15 minutes, in seconds. Tokens are cached per scope until
// shortly before expires_in (milliseconds) runs out, and dropped after a
// direct activation.
//
// # Decisions where the protocol is unverified or the libraries disagree
//
//   - Long polling: iot.timeout is the wait rounded up to whole seconds, and
//     the socket timeout that value plus LongPollOffset. A timeout is
//     "no messages" only when nothing was sent; with messages it is a
//     transient error (they may not have arrived; resending is safe).
//   - Transport failures, certificate errors included, are transient: an
//     operator may fix them while the dispatcher retries, and a permanent error
//     would make it drop messages.
//   - A message answer that does not decode is transient for the same reason.
//   - A 401 from the token endpoint, a 400 or a 403 without currentTime all
//     mean the credentials were refused (ports.ErrUnauthorized).
//   - Only the new-style storage call (POST provisioner/storage) is
//     supported; a 405/412 (classic storage) is a permanent error saying so.
//   - The hash algorithm of the last Policy call names the activation
//     signature; SHA256withRSA when Policy was not called.
//
// Imports: the standard library, domain/, ports and resty. Never another
// adapter.
package http
