// Package mqtt is the device's cloud transport over MQTT 5, built on
// eclipse/paho.golang, with Oracle's topic mapping (protocol.md §9) and
// iotnode's MQTT 5 correlation (docs/mqtt.md). [Client] implements
// ports.Messenger, ports.Activator and ports.ModelSource, like the HTTPS
// transport (adapters/http), whose API it mirrors.
//
// # Calls over topics
//
// Every call publishes (QoS 1) its HTTPS body to iotcs/{id}/PATH with fresh
// random MQTT 5 Correlation Data and waits for the publish on
// devices/{id}/PATH, or devices/{id}/PATH/error, that carries the same
// bytes. An error answer carries the reference cloud's HTTPS error
// document {"status","message","index","field"} and becomes a
// *ports.CloudError as an HTTP status would (401 wraps
// ports.ErrUnauthorized, 404 ports.ErrNotFound; other 4xx but 408 and 429
// are permanent). No answer within Config.Timeout is a transient error: the
// dispatcher sends again, and the cloud drops replays by clientId. Requests
// the cloud pushes on devices/{id}/messages without correlation data are
// buffered (bounded by Config.PushBuffer, oldest dropped) and returned by
// the next Exchange; an Exchange with no messages and a wait waits for one,
// so the device's receiver loop works as with long polling.
//
// # One attempt per call, and paho rather than autopaho
//
// Retries, backoff and buffering belong to the dispatcher and the outbox.
// autopaho reconnects in the background with its own backoff and queue,
// and reports a refused CONNECT only to a callback; so the client drives
// paho itself: it connects on first use, and again on the next call after
// the connection was lost (paho's keep-alive pings notice a dead link), each
// time one attempt within the call's context and Config.ConnectTimeout. A
// refused connection is thus the calling method's error: bad credentials
// wrap ports.ErrUnauthorized, as a refused token does over HTTPS. Each
// connection subscribes to devices/{id}/# before it is used, and
// requests the cloud queued while the device was away are pushed once it
// is subscribed again.
//
// # Identity
//
// User name = client ID = the activation ID for the activation policy and
// direct activation, the endpoint ID for every other call; the password is
// the client assertion of the token call (trust.ClientAssertion), signed
// afresh at every connection: HS256 with the shared secret, RS256 with the
// device key. The identity is read from the trust store at each
// connection. After a direct activation the client disconnects; the next
// call connects as the endpoint ID the caller saved.
//
// # Security
//
// mqtts (TLS 1.2 or later); the broker's certificate must chain to the
// trust anchors of the provisioning file (the system pool is used only when
// the file has none). Plain mqtt is accepted for a loopback host only, with
// a warning. An https URI is refused with a pointer to the HTTPS transport.
// Passwords, secrets and payloads are never logged.
//
// # Decisions where docs/mqtt.md leaves room
//
//   - acceptBytes is published without correlation data, and only the
//     PUBACK is awaited: the cloud answers it only when a request is larger
//     (min-accept-bytes). It is published per connection, when it differs
//     from the last value published on that connection; 0 publishes
//     nothing (the transmitter passes 0: no opinion). The receiver's poll
//     also republishes an unchanged value every
//     Config.PresenceRefresh (4 minutes), so that a bridged cloud, which
//     sees no connections, keeps counting an idle device as present.
//   - A min-accept-bytes notice makes the next poll (Exchange without
//     messages) fail with a transient error naming the size needed, as the
//     HTTPS transport does with X-min-acceptBytes.
//   - An Exchange without messages publishes nothing on messages: the
//     cloud pushes what it holds, so a poll only collects pushes.
//   - A messages answer that arrives after its call ended (timed out) is
//     kept as pushes: its requests are not lost.
//   - An error document without a 4xx or 5xx status is transient.
//   - Activation over MQTT has no createDraft parameter; AllowDraftModels
//     only governs Model.
//   - Calls cut by Close fail with a transient error wrapping
//     ports.ErrClosed (the cloud may have taken them); calls after Close
//     with a permanent one, as over HTTPS.
//
// Imports: the standard library, domain/, ports and paho. Never another
// adapter.
package mqtt
