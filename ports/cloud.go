package ports

import (
	"context"
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
