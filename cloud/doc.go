// Package cloud is iotcloud's server: the device API of protocol.md (§1-§5,
// §7, §8: OAuth2 token with JWT client assertions, activation, messages with
// long polling, device models, device policies, storage provisioning) and the
// enterprise REST API (cloud/api shapes, bearer admin token), served by one
// http.Handler over a store in Config.DataDir.
//
// Open builds a Server; the caller (cmd/iotcloud, or a test with httptest)
// owns the listener and TLS, serves Server.Handler, and calls Server.Close
// after the HTTP server stopped (Close also ends long polls still waiting).
//
// Server.NewMQTT gives the device API over MQTT (docs/mqtt.md), independent
// of any broker: MQTT.Authenticate checks a CONNECT's JWT password with the
// token endpoint's own checks, MQTT.Handle serves one publish on
// iotcs/{id}/PATH by running the matching HTTPS handler in process (with an
// access token minted for the device, so answers and errors are those of
// HTTPS) and returns the answer for devices/{id}/PATH or PATH/error, and one
// pusher per connected device takes its queued requests as a long poll would
// and publishes them on devices/{id}/messages. cloud/mqttbroker holds the
// brokers (embedded mochi-mqtt, or a bridge to Mosquitto) that feed it.
//
// Decisions where protocol.md leaves room (each also in docs/cloud-api.md):
//
//   - Access tokens are HMAC-signed and stateless (cloud/auth); the key is in
//     the store, so tokens survive restarts. They last one hour; expires_in is
//     in milliseconds.
//   - Once a device is activated, only RS256 assertions are accepted for it and
//     the activation scope is refused with 401 "already activated" (Java reads
//     401 at activation as "already activated"). A device is activated once.
//   - Activation returns an empty certificate; clients self-sign.
//   - acceptBytes defaults to 4192 (Java's buffer) when absent; 0 means "no
//     room" and delivers nothing. A request that does not fit is left pending
//     and its size reported in X-min-acceptBytes. A delivered request is not
//     delivered again: without a response within RequestTTL it becomes EXPIRED.
//   - iot.timeout is capped at 60 s (the default when iot.sync has none).
//   - Messages POST answers 202 when the body held messages, 200 for a poll.
//   - The enterprise messages listing pages by a cursor, the message's
//     sequence number (after=seq, answer's next), not by receive time: one
//     device call stores up to 100 messages in the same millisecond.
//   - Attribute sets are sent in the PATCH form as POST with
//     x-http-method-override: PATCH (the form Oracle's server uses; Java and
//     JS both honour the override); actions as POST.
//   - policyChanged is sent with method POST: Oracle's JS library answers 405
//     to anything else there, and Java does not look at the method.
//   - Device models are immutable: posting different content under an
//     existing URN is 409 (devices cache models by URN), except over a draft.
//   - Storage is new-style only: GET provisioner/storage answers 405, so
//     Oracle clients know there is no classic storage.
//   - Over MQTT, acceptBytes defaults to 10000 (Oracle JS's buffer) until the
//     device publishes one, and bounds each push, not the sum of pushes; a
//     request pushed to a device that went away expires, as one answered to
//     a long poll whose connection broke.
//
// It may import the standard library, cloud/api, cloud/auth, cloud/store and
// domain/ packages; never device/, adapters/ or cmd/ (nor an MQTT library).
package cloud
