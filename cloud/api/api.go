// Package api holds the JSON shapes of iotcloud's enterprise REST API
// (the admin side, authenticated with the bearer token in DIR/admin.token).
// The server (package cloud) and the client (package cloud/client, used by
// the iotcloud CLI, iotnode demo and the integration tests) share them, so
// the two cannot drift apart.
//
// It imports only the standard library and domain/.
package api

import "encoding/json"

// Root is the REST root shared with the device API.
const Root = "/iot/api/v2"

// Device types.
const (
	DeviceTypeDirect   = "DIRECTLY_CONNECTED_DEVICE"
	DeviceTypeGateway  = "GATEWAY"
	DeviceTypeIndirect = "INDIRECTLY_CONNECTED_DEVICE"
)

// Device states.
const (
	StateRegistered = "REGISTERED"
	StateActivated  = "ACTIVATED"
)

// Request statuses, for GET /iot/api/v2/requests/{id}.
const (
	RequestPending   = "PENDING"   // queued for the device, not yet fetched
	RequestDelivered = "DELIVERED" // handed to the device, no response yet
	RequestCompleted = "COMPLETED" // the device answered 2xx
	RequestFailed    = "FAILED"    // the device answered non-2xx
	RequestExpired   = "EXPIRED"   // no answer within the request's time to live
)

// RegisterDevice is the body of POST /iot/api/v2/devices.
type RegisterDevice struct {
	HardwareID   string            `json:"hardwareId"`
	Type         string            `json:"type"`                   // DeviceTypeDirect (default) or DeviceTypeGateway
	SharedSecret string            `json:"sharedSecret,omitempty"` // generated when empty
	Metadata     map[string]string `json:"metadata,omitempty"`
}

// Device is a registered device, as returned by POST and GET /iot/api/v2/devices[/{id}].
// ID is the activation id; EndpointID is set once the device is activated
// (for indirectly connected devices both are the endpoint id).
type Device struct {
	ID           string            `json:"id"`
	HardwareID   string            `json:"hardwareId"`
	Type         string            `json:"type"`
	State        string            `json:"state"`
	EndpointID   string            `json:"endpointId,omitempty"`
	SharedSecret string            `json:"sharedSecret,omitempty"` // only in the POST answer
	Gateway      string            `json:"gateway,omitempty"`      // the gateway's endpoint id, for indirect devices
	Models       []string          `json:"deviceModels,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	Created      int64             `json:"created"`                  // epoch ms
	ActivatedAt  int64             `json:"activationTime,omitempty"` // epoch ms
	LastSeen     int64             `json:"lastSeen,omitempty"`       // epoch ms
}

// List is the envelope of every collection answer.
type List[T any] struct {
	Items   []T  `json:"items"`
	HasMore bool `json:"hasMore"`
}

// ProvisioningFileRequest is the body of POST /iot/api/v2/devices/{id}/provisioningFile.
// The answer is the file itself (application/octet-stream).
type ProvisioningFileRequest struct {
	Passphrase string `json:"passphrase"`
	Format     string `json:"format,omitempty"` // "v2" (default) or "oracle"
	// Transport picks the server URI written into the file: "https" (the
	// default: the cloud's URL) or "mqtt" (its MQTT broker, mqtts://host:port;
	// the cloud must run one).
	Transport string `json:"transport,omitempty"`
}

// Message is one stored message as GET /iot/api/v2/messages returns it: the
// wire message (compact JSON, as the device sent it) plus what the cloud added.
type Message struct {
	// Seq numbers the messages in the order the cloud stored them: it
	// increases with every stored message and is never reused, even when
	// messages share a receive millisecond. It is the cursor of the listing
	// (after=Seq continues after this message).
	Seq      uint64          `json:"seq"`
	Received int64           `json:"receivedTime"` // epoch ms
	Message  json.RawMessage `json:"message"`
}

// MessageList is the answer of GET /iot/api/v2/messages: the List envelope
// plus the cursor of the next page.
type MessageList struct {
	Items []Message `json:"items"`
	// HasMore: more messages match beyond this page (before it for a listing
	// of the newest messages, which has neither since nor after).
	HasMore bool `json:"hasMore"`
	// Next is the cursor to send as after= for the messages that follow
	// this page: the last item's Seq while HasMore (oldest first), else the
	// newest Seq the cloud had assigned, so that the next poll skips the
	// messages that did not match.
	Next uint64 `json:"next"`
}

// SetAttribute is the body of PUT .../deviceModels/{urn}/attributes/{name}.
type SetAttribute struct {
	Value any `json:"value"`
}

// Accepted is the 202 answer to an attribute set or an action call.
type Accepted struct {
	RequestID string `json:"requestId"`
}

// Request is the state of a request sent to a device (GET /iot/api/v2/requests/{id}).
type Request struct {
	ID          string `json:"id"`
	Destination string `json:"destination"`
	Method      string `json:"method"`
	URL         string `json:"url"`
	Status      string `json:"status"`
	Created     int64  `json:"created"`
	Updated     int64  `json:"updated"`
	// Response is filled once the device answered.
	Response *Response `json:"response,omitempty"`
}

// Response is a device's answer to a request.
type Response struct {
	StatusCode int                 `json:"statusCode"`
	Headers    map[string][]string `json:"headers,omitempty"`
	Body       string              `json:"body"` // decoded from the wire's base64, as text
}

// Error is the body of every non-2xx answer of both APIs.
type Error struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
	// Index and Field locate the problem in a message batch, when there is one.
	Index *int   `json:"index,omitempty"`
	Field string `json:"field,omitempty"`
	// CurrentTime (epoch ms) is set on a 403 for clock skew at the token endpoint.
	CurrentTime int64 `json:"currentTime,omitempty"`
}

// PolicyAssignment is the body of POST /iot/api/v2/devicePolicies/{id}/assignments:
// assign a policy to a device model (all its devices) or to some devices.
type PolicyAssignment struct {
	DeviceModel string   `json:"deviceModel"`
	Devices     []string `json:"devices,omitempty"` // endpoint ids; empty = every device of the model
}
