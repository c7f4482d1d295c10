package virtual

import (
	"errors"
	"fmt"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
)

// QoS is the priority and reliability given to a kind of message.
type QoS struct {
	Priority    message.Priority
	Reliability message.Reliability
}

// The defaults. DATA and ALERT follow Oracle's libraries (protocol.md §3b).
// RESPONSE departs from them (Oracle sends LOW): the cloud, or the enterprise
// application behind it, is waiting for the answer, so it goes ahead of
// telemetry but behind alerts; it stays best effort because a response
// replayed long after the request would be useless, and the DATA echo of an
// accepted set carries the new state anyway.
var (
	defaultDataQoS     = QoS{message.PriorityLow, message.BestEffort}
	defaultAlertQoS    = QoS{message.PriorityHighest, message.GuaranteedDelivery}
	defaultResponseQoS = QoS{message.PriorityHigh, message.BestEffort}
)

// Option changes a setting of New.
type Option func(*Device)

// WithDataQoS sets the priority and reliability of DATA messages: attribute
// updates (Set, Update, the echo of a cloud set) and custom data (NewData).
// The default is LOW, BEST_EFFORT (Oracle's).
func WithDataQoS(q QoS) Option { return func(d *Device) { d.dataQoS = q } }

// WithAlertQoS sets the priority and reliability of ALERT messages
// (NewAlert). The default is HIGHEST, GUARANTEED_DELIVERY (Oracle's).
func WithAlertQoS(q QoS) Option { return func(d *Device) { d.alertQoS = q } }

// WithResponseQoS sets the priority and reliability of RESPONSE messages.
// The default is HIGH, BEST_EFFORT. Oracle sends LOW, but the cloud is
// waiting for the answer, so it goes ahead of telemetry (behind alerts); it
// is best effort because a late replay would be useless and the DATA echo of
// an accepted set carries the new state anyway.
func WithResponseQoS(q QoS) Option { return func(d *Device) { d.responseQoS = q } }

// Device is the state of one virtual device. It is not safe for concurrent
// use: the application layer serialises every call (see the package doc).
type Device struct {
	endpointID  string
	model       *model.DeviceModel
	newID       func() string
	values      map[string]model.Value // by real attribute name; only valid values
	dataQoS     QoS
	alertQoS    QoS
	responseQoS QoS
}

// New returns the virtual device of endpointID seen through model m, with the
// last-known values seeded from the attributes' default values.
//
// m must be a model returned by model.Parse (or validated); it is only read.
// newID makes the clientId of every message (a UUID in production); it must
// return a different value on every call, across restarts too. If newID is
// nil, every call that makes a message fails with an error, except the
// RESPONSEs of HandleRequest and Complete, which then carry an empty clientId.
// A nil m acts as a model with nothing in it.
func New(endpointID string, m *model.DeviceModel, newID func() string, opts ...Option) *Device {
	if m == nil {
		m = &model.DeviceModel{}
	}
	d := &Device{
		endpointID:  endpointID,
		model:       m,
		newID:       newID,
		values:      make(map[string]model.Value, len(m.Attributes)),
		dataQoS:     defaultDataQoS,
		alertQoS:    defaultAlertQoS,
		responseQoS: defaultResponseQoS,
	}
	for _, a := range m.Attributes {
		if a.Default.Valid() {
			d.values[a.Name] = a.Default
		}
	}
	for _, o := range opts {
		if o != nil {
			o(d)
		}
	}
	return d
}

// EndpointID returns the endpoint ID the device was made with.
func (d *Device) EndpointID() string { return d.endpointID }

// Model returns the device model the device was made with. The caller must
// not modify it.
func (d *Device) Model() *model.DeviceModel { return d.model }

// Get returns the last-known value of the attribute named nameOrAlias.
// ok is false when the model has no such attribute or when the attribute
// has no value yet (no default value and never set).
func (d *Device) Get(nameOrAlias string) (v model.Value, ok bool) {
	a, found := d.model.Attribute(nameOrAlias)
	if !found {
		return model.Value{}, false
	}
	v, ok = d.values[a.Name]
	return v, ok
}

// Values returns a copy of every last-known value, keyed by real attribute
// name. Attributes without a value are absent.
func (d *Device) Values() map[string]model.Value {
	out := make(map[string]model.Value, len(d.values))
	for k, v := range d.values {
		out[k] = v
	}
	return out
}

// attribute looks up nameOrAlias, with the error users see when it is unknown.
func (d *Device) attribute(nameOrAlias string) (*model.Attribute, error) {
	a, ok := d.model.Attribute(nameOrAlias)
	if !ok {
		return nil, fmt.Errorf("attribute %q: not in device model %q", nameOrAlias, d.model.URN)
	}
	return a, nil
}

// clientID returns a new clientId, or an error when no generator was given.
func (d *Device) clientID() (string, error) {
	if d.newID == nil {
		return "", fmt.Errorf("device %q: no clientId generator (newID is nil)", d.endpointID)
	}
	return d.newID(), nil
}

// envelope returns a message of type t from this device with a new clientId.
func (d *Device) envelope(t message.Type, q QoS, now time.Time) (message.Message, error) {
	id, err := d.clientID()
	if err != nil {
		return message.Message{}, err
	}
	return message.Message{
		ClientID:    id,
		Source:      d.endpointID,
		Priority:    q.Priority,
		Reliability: q.Reliability,
		EventTime:   now,
		Type:        t,
	}, nil
}

// attributesMessage returns the DATA message carrying fields (real attribute
// names) in format "<urn>:attributes".
func (d *Device) attributesMessage(fields []message.Field, now time.Time) (message.Message, error) {
	m, err := d.envelope(message.TypeData, d.dataQoS, now)
	if err != nil {
		return message.Message{}, err
	}
	m.Data = &message.Data{Format: model.AttributesFormat(d.model.URN), Fields: fields}
	return m, nil
}

// Set checks v against the attribute named nameOrAlias and returns the one
// DATA message that reports it (format "<urn>:attributes", source the
// endpoint ID, field name the attribute's real name). The last-known value
// changes only when the message is returned without error.
//
// Read-only attributes may be set: the device reports its sensor values this
// way. The writable flag governs what the cloud may set (HandleRequest).
//
// Errors name the attribute: `attribute "foo": not in device model "urn:..."`,
// or the model's check, e.g. `attribute "humidity": 140 is out of range 0..100`.
func (d *Device) Set(nameOrAlias string, v any, now time.Time) (message.Message, error) {
	a, err := d.attribute(nameOrAlias)
	if err != nil {
		return message.Message{}, err
	}
	val, err := a.Check(v)
	if err != nil {
		return message.Message{}, err
	}
	m, err := d.attributesMessage([]message.Field{{Name: a.Name, Value: val.Any()}}, now)
	if err != nil {
		return message.Message{}, err
	}
	d.values[a.Name] = val
	return m, nil
}

// Update starts a batch of attribute sets that Finish turns into one DATA
// message. Nothing changes on the Device until Finish succeeds.
func (d *Device) Update() *Update {
	return &Update{d: d, index: map[string]int{}}
}

// Update collects attribute sets for one DATA message. Build one with
// Device.Update; it is not safe for concurrent use.
type Update struct {
	d      *Device
	names  []string       // real names, in the order first set
	index  map[string]int // real name -> position in names / vals
	vals   []model.Value
	errs   []error
	closed bool
}

// Set adds the attribute named nameOrAlias with value v to the update; a
// later Set of the same attribute (by name or alias) replaces the value but
// keeps its place. An error (unknown attribute, bad value) is kept and
// reported by Finish. Set returns u for chaining.
func (u *Update) Set(nameOrAlias string, v any) *Update {
	a, err := u.d.attribute(nameOrAlias)
	if err != nil {
		u.errs = append(u.errs, err)
		return u
	}
	val, err := a.Check(v)
	if err != nil {
		u.errs = append(u.errs, err)
		return u
	}
	if i, ok := u.index[a.Name]; ok {
		u.vals[i] = val
		return u
	}
	u.index[a.Name] = len(u.names)
	u.names = append(u.names, a.Name)
	u.vals = append(u.vals, val)
	return u
}

// Finish returns one DATA message with every attribute set (in the order
// first set) and commits the values. If any Set failed, Finish returns all
// their errors joined and applies nothing. An update with nothing set is an
// error, and so is a second Finish.
func (u *Update) Finish(now time.Time) (message.Message, error) {
	if u.closed {
		return message.Message{}, fmt.Errorf("update of device %q: already finished", u.d.endpointID)
	}
	if len(u.errs) > 0 {
		return message.Message{}, errors.Join(u.errs...)
	}
	if len(u.names) == 0 {
		return message.Message{}, fmt.Errorf("update of device %q: no attribute set, expected at least one", u.d.endpointID)
	}
	fields := make([]message.Field, len(u.names))
	for i, name := range u.names {
		fields[i] = message.Field{Name: name, Value: u.vals[i].Any()}
	}
	m, err := u.d.attributesMessage(fields, now)
	if err != nil {
		return message.Message{}, err
	}
	for i, name := range u.names {
		u.d.values[name] = u.vals[i]
	}
	u.closed = true
	return m, nil
}
