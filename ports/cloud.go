package ports

import (
	"context"
	"io"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
)

// Messenger moves messages between the device and the cloud (protocol.md §3,
// POST /iot/api/v2/messages or the iotcs/{id}/messages MQTT topic).
//
// Contract:
//   - Exchange makes exactly ONE attempt within ctx: retries, backoff and
//     buffering belong to the dispatcher and the outbox.
//   - It sends msgs (possibly none, to poll) and returns what the cloud had
//     for this device and its indirectly connected devices. A nil error means
//     the cloud accepted every message of msgs; any error means the caller
//     must assume none was accepted (the cloud deduplicates by clientId, so
//     sending again is safe).
//   - acceptBytes is the space the caller has for incoming requests; the
//     cloud never returns more. wait > 0 asks the cloud to hold the call
//     until a request is pending or wait passes (long polling); a transport
//     that cannot long-poll treats it as 0.
//   - Errors are *CloudError (or wrap ErrUnauthorized / context errors).
//   - Safe for concurrent use; calls may run in parallel (send and long-poll).
//   - msgs is not retained or modified; the returned slice belongs to the caller.
type Messenger interface {
	Exchange(ctx context.Context, msgs []message.Message, acceptBytes int, wait time.Duration) ([]message.Message, error)
}

// ActivationPolicy is what the cloud requires of a device key (protocol.md §2a).
type ActivationPolicy struct {
	KeyType       string // "RSA"
	HashAlgorithm string // "SHA256withRSA"
	KeySize       int    // bits
}

// Activation is the cloud's answer to a direct or indirect activation.
type Activation struct {
	EndpointID     string
	ActivationTime time.Time
	Certificate    []byte // DER; nil when the cloud sent none
}

// DirectActivation is what a directly connected device sends to activate:
// the public key it generated (SubjectPublicKeyInfo DER) and a signer for
// the proof of possession, so that the private key never crosses the port.
type DirectActivation struct {
	PublicKey  []byte
	Sign       func(data []byte) ([]byte, error)
	ModelURNs  []string // user models plus capability URNs
	Attributes map[string]string
}

// IndirectActivation is what a gateway sends to activate one of its devices.
type IndirectActivation struct {
	HardwareID string
	ModelURNs  []string
	// Metadata keys such as manufacturer, modelNumber, serialNumber.
	Metadata map[string]string
	// Signature is optional proof (protocol.md §2c); nil sends none.
	Signature []byte
}

// Activator performs the activation calls (protocol.md §2). One attempt
// per call; safe for concurrent use. A cloud that says the device is
// already activated answers with an error wrapping ErrUnauthorized.
type Activator interface {
	Policy(ctx context.Context) (ActivationPolicy, error)
	ActivateDirect(ctx context.Context, req DirectActivation) (Activation, error)
	ActivateIndirect(ctx context.Context, req IndirectActivation) (Activation, error)
}

// ModelSource fetches device models from the cloud (protocol.md §4).
// Model returns an error wrapping ErrNotFound for an unknown URN. One attempt;
// safe for concurrent use.
type ModelSource interface {
	Model(ctx context.Context, urn string) (*model.DeviceModel, error)
}

// PolicySource fetches device policies from the cloud (protocol.md §5) as
// the raw JSON of one policy object; domain/policy parses it. DevicePolicy
// finds the policy assigned to deviceID under the model modelURN,
// DevicePolicyByID fetches one by its id. Both return an error wrapping
// ErrNotFound when there is none. One attempt; safe for concurrent use.
type PolicySource interface {
	DevicePolicy(ctx context.Context, modelURN, deviceID string) ([]byte, error)
	DevicePolicyByID(ctx context.Context, modelURN, policyID string) ([]byte, error)
}

// ObjectMeta describes the content of a storage object (protocol.md §7).
type ObjectMeta struct {
	ContentType     string // MIME type; "" means application/octet-stream on upload
	ContentEncoding string // e.g. "gzip"; "" for none
	// Length is the content's size in bytes; -1 when it is unknown (an
	// upload then streams it chunked).
	Length int64
	// LastModified is when the object store last stored the object; zero
	// when it did not say.
	LastModified time.Time
	// Custom is the object's custom metadata, keys in lower case without
	// their header prefix; nil for none.
	Custom map[string]string
}

// Storage moves storage objects between the device and the cloud's object
// store (protocol.md §7, new style: pre-authorized URLs).
//
// Contract:
//   - StorageURL asks the cloud for a pre-authorized URL of the object
//     (its full name, prefix included) for one method, PUT, GET or HEAD,
//     and the headers to send with it. A cloud that offers only classic
//     storage gives a permanent error.
//   - Upload sends body to url with headers (from StorageURL) and meta:
//     meta.Length bytes when it is 0 or more (a body that ends early or
//     runs long is an error), streamed without a length when it is -1.
//     It returns what the store recorded (Length is the bytes sent).
//   - Download writes the object at url to w as it arrives and returns its
//     metadata; Length is the bytes written.
//   - Neither holds the whole content in memory; neither closes body or w.
//   - Each call makes exactly ONE attempt within ctx: the caller retries.
//     Errors are *CloudError (Permanent per the store's answer; a failure
//     to read body or write w is permanent) or wrap a context error.
//   - Safe for concurrent use.
type Storage interface {
	StorageURL(ctx context.Context, object, method string) (url string, headers map[string]string, err error)
	Upload(ctx context.Context, url string, headers map[string]string, body io.Reader, meta ObjectMeta) (ObjectMeta, error)
	Download(ctx context.Context, url string, headers map[string]string, w io.Writer) (ObjectMeta, error)
}
