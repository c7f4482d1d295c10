package message

import (
	"time"
)

// Type is the kind of a message, as it appears in the envelope's "type" field.
type Type string

// The message types of protocol.md §3.
const (
	TypeData            Type = "DATA"
	TypeAlert           Type = "ALERT"
	TypeRequest         Type = "REQUEST"
	TypeResponse        Type = "RESPONSE"
	TypeResourcesReport Type = "RESOURCES_REPORT"
)

// Priority orders messages for sending: a higher priority goes first.
// The zero value is PriorityLowest; Oracle's library default is PriorityLow.
type Priority int8

// The five priorities, lowest first, so that they compare with < and >.
const (
	PriorityLowest Priority = iota
	PriorityLow
	PriorityMedium
	PriorityHigh
	PriorityHighest
)

// Reliability says what the device promises about delivering a message.
type Reliability int8

// The three reliabilities. The zero value is BEST_EFFORT, the library default.
const (
	BestEffort Reliability = iota
	GuaranteedDelivery
	NoGuarantee
)

// Severity is an alert's severity. The zero value is the empty string,
// which builders replace with SeveritySignificant (Oracle's default).
type Severity string

// The alert severities of protocol.md §3c.
const (
	SeverityLow         Severity = "LOW"
	SeverityNormal      Severity = "NORMAL"
	SeveritySignificant Severity = "SIGNIFICANT"
	SeverityCritical    Severity = "CRITICAL"
)

// Message is one wire message: the common envelope plus exactly one payload,
// the one that matches Type (Data for DATA, Alert for ALERT, and so on).
// The other payload pointers are nil.
type Message struct {
	// ID is set on RESOURCES_REPORT and on server-originated messages only.
	ID string
	// ClientID is unique per message and stable across retries and restarts,
	// so that the cloud can drop replays.
	ClientID    string
	Source      string
	Destination string
	Sender      string
	Priority    Priority
	Reliability Reliability
	// EventTime is encoded as epoch milliseconds; sub-millisecond precision is
	// lost. The zero time.Time is encoded as 0, and decoding gives times in UTC.
	EventTime time.Time
	Type      Type
	// Properties are optional message properties, each a list of values
	// (Java's MessageProperties). An empty map is not encoded (Oracle's JS
	// library drops it too) and decodes as nil.
	Properties map[string][]string

	Data     *Data
	Alert    *Alert
	Request  *Request
	Response *Response
	Report   *ResourcesReport
}

// Field is one named value of a DATA or ALERT payload. Fields keep their order
// on the wire. Value holds one of: nil, bool, string, int, int64, float64,
// time.Time (encoded as epoch ms), or json.Number. Decoding yields int64 for
// integral JSON numbers that fit, float64 for every other number.
type Field struct {
	Name  string
	Value any
}

// Data is the payload of a DATA message: {"format":..., "data":{...}}.
// Attribute updates use the format "<deviceModelURN>:attributes".
type Data struct {
	Format string
	Fields []Field
}

// Alert is the payload of an ALERT message.
type Alert struct {
	Format      string
	Severity    Severity
	Description string
	Fields      []Field
}

// Request is the payload of a REQUEST message (cloud to device).
type Request struct {
	Method string
	URL    string
	// Headers are multi-valued; names are kept as received.
	Headers map[string][]string
	Params  map[string]string
	// Body is carried base64-encoded on the wire. The "body" key is always
	// present; an empty body decodes as nil.
	Body []byte
}

// Response is the payload of a RESPONSE message (device to cloud).
type Response struct {
	StatusCode int
	URL        string
	// RequestID is the ID of the REQUEST message this answers.
	RequestID string
	Headers   map[string][]string
	// Body is carried base64-encoded on the wire; an empty body decodes as nil.
	Body []byte
}

// ReportType is the kind of a RESOURCES_REPORT.
type ReportType string

// The report types of protocol.md §3c.
const (
	ReportUpdate         ReportType = "UPDATE"
	ReportDelete         ReportType = "DELETE"
	ReportReconciliation ReportType = "RECONCILIATION"
)

// Resource is one entry of a RESOURCES_REPORT.
type Resource struct {
	Name         string
	Path         string
	Methods      string // comma-separated, e.g. "GET,PUT"
	Status       string // "ADDED" or "REMOVED"
	EndpointName string // optional; omitted from the JSON when empty
}

// ResourcesReport is the payload of a RESOURCES_REPORT message. On the wire it is
// {"type":"JSON","value":{"reportType":..., "endpointName":..., "resources":[...],
// "reconciliationMark":...}}.
type ResourcesReport struct {
	ReportType   ReportType
	EndpointName string
	Resources    []Resource
	// ReconciliationMark is omitted from the JSON when empty; see ReconciliationMark.
	ReconciliationMark string
}
