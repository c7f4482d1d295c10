package virtual

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
)

// formatFields collects checked field values for one format of the model.
type formatFields struct {
	kind   string // "alert" or "data", the start of every error
	format *model.Format
	vals   map[string]model.Value // by field name
	failed map[string]bool        // fields whose set failed: already reported, never "required"
	errs   []error
}

// lookupFormat finds formatURN in the model and checks that it has type want.
func (d *Device) lookupFormat(formatURN string, want model.FormatType, kind string) (*formatFields, error) {
	f, ok := d.model.Format(formatURN)
	if !ok {
		return nil, fmt.Errorf("%s format %q: not in device model %q", kind, formatURN, d.model.URN)
	}
	if f.Type != want {
		return nil, fmt.Errorf("%s format %q: has type %s, expected %s", kind, formatURN, f.Type, want)
	}
	return &formatFields{kind: kind, format: f, vals: map[string]model.Value{}, failed: map[string]bool{}}, nil
}

// set checks v against the field called name and keeps it, or keeps the error.
func (ff *formatFields) set(name string, v any) {
	for i := range ff.format.Fields {
		f := &ff.format.Fields[i]
		if f.Name != name {
			continue
		}
		val, err := f.Check(v)
		if err != nil {
			ff.failed[f.Name] = true
			ff.errs = append(ff.errs, fmt.Errorf("%s %q: %w", ff.kind, ff.format.URN, err))
			return
		}
		ff.vals[f.Name] = val
		return
	}
	names := make([]string, len(ff.format.Fields))
	for i, f := range ff.format.Fields {
		names[i] = f.Name
	}
	ff.errs = append(ff.errs, fmt.Errorf("%s %q: field %q: not in the format, expected one of %s",
		ff.kind, ff.format.URN, name, strings.Join(names, ", ")))
}

// fields returns the values in the format's field order, or every error:
// those kept by set and one per required field that was not set. A field
// whose set failed is reported once, by its set error, not also as missing.
func (ff *formatFields) fields() ([]message.Field, error) {
	errs := append([]error(nil), ff.errs...)
	out := make([]message.Field, 0, len(ff.vals))
	for _, f := range ff.format.Fields {
		v, ok := ff.vals[f.Name]
		switch {
		case ok:
			out = append(out, message.Field{Name: f.Name, Value: v.Any()})
		case !f.Optional && !ff.failed[f.Name]:
			errs = append(errs, fmt.Errorf("%s %q: field %q is required", ff.kind, ff.format.URN, f.Name))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// AlertBuilder builds ALERT messages of one alert format of the model. Build
// one with Device.NewAlert. Errors of Set and Severity are kept and reported
// by Build; they stick, so a builder that had one never builds again (make a
// new one). It is not safe for concurrent use.
type AlertBuilder struct {
	d           *Device
	ff          *formatFields
	severity    message.Severity
	description string
}

// NewAlert returns a builder for the ALERT format formatURN, which must be a
// format of the model with type ALERT.
func (d *Device) NewAlert(formatURN string) (*AlertBuilder, error) {
	ff, err := d.lookupFormat(formatURN, model.FormatAlert, "alert")
	if err != nil {
		return nil, err
	}
	return &AlertBuilder{d: d, ff: ff}, nil
}

// Set sets the field called name to v, checked against the format; a later
// Set of the same field replaces the value. It returns b for chaining.
func (b *AlertBuilder) Set(name string, v any) *AlertBuilder {
	b.ff.set(name, v)
	return b
}

// Severity sets the severity; the default (and the empty string) is
// SIGNIFICANT, Oracle's default. It returns b for chaining.
func (b *AlertBuilder) Severity(s message.Severity) *AlertBuilder {
	switch s {
	case "", message.SeverityLow, message.SeverityNormal, message.SeveritySignificant, message.SeverityCritical:
		b.severity = s
	default:
		b.ff.errs = append(b.ff.errs, fmt.Errorf("alert %q: severity %q is not one of LOW, NORMAL, SIGNIFICANT, CRITICAL", b.ff.format.URN, s))
	}
	return b
}

// Description sets the alert's description. By default, and when d is
// empty, it is the format's description, else its name, else its URN: an
// alert always carries one, because Oracle's JS library fails on alerts
// without a description. It returns b for chaining.
func (b *AlertBuilder) Description(d string) *AlertBuilder {
	b.description = d
	return b
}

// Build returns the ALERT message: source the endpoint ID, the fields set in
// the format's field order. It fails, naming every problem, when a Set or
// Severity call failed or a required (non-optional) field was not set, e.g.
// `alert "urn:...:too_hot": field "temp" is required`. The builder may be
// used again: every Build makes a new message with a new clientId.
func (b *AlertBuilder) Build(now time.Time) (message.Message, error) {
	fields, err := b.ff.fields()
	if err != nil {
		return message.Message{}, err
	}
	m, err := b.d.envelope(message.TypeAlert, b.d.alertQoS, now)
	if err != nil {
		return message.Message{}, err
	}
	f := b.ff.format
	desc := cmp.Or(b.description, f.Description, f.Name, f.URN)
	m.Alert = &message.Alert{
		Format:      f.URN,
		Severity:    cmp.Or(b.severity, message.SeveritySignificant),
		Description: desc,
		Fields:      fields,
	}
	return m, nil
}

// DataBuilder builds custom DATA messages of one data format of the model.
// Build one with Device.NewData. Errors of Set are kept and reported by
// Build; they stick, as with AlertBuilder. It is not safe for concurrent use.
type DataBuilder struct {
	d  *Device
	ff *formatFields
}

// NewData returns a builder for the DATA format formatURN, which must be a
// format of the model with type DATA.
func (d *Device) NewData(formatURN string) (*DataBuilder, error) {
	ff, err := d.lookupFormat(formatURN, model.FormatData, "data")
	if err != nil {
		return nil, err
	}
	return &DataBuilder{d: d, ff: ff}, nil
}

// Set sets the field called name to v, checked against the format; a later
// Set of the same field replaces the value. It returns b for chaining.
func (b *DataBuilder) Set(name string, v any) *DataBuilder {
	b.ff.set(name, v)
	return b
}

// Build returns the DATA message in the custom format: source the endpoint
// ID, the fields set in the format's field order. It fails, naming every
// problem, when a Set failed or a required field was not set, e.g.
// `data "urn:...:energy": field "since" is required`. Every Build makes a
// new message with a new clientId.
func (b *DataBuilder) Build(now time.Time) (message.Message, error) {
	fields, err := b.ff.fields()
	if err != nil {
		return message.Message{}, err
	}
	m, err := b.d.envelope(message.TypeData, b.d.dataQoS, now)
	if err != nil {
		return message.Message{}, err
	}
	m.Data = &message.Data{Format: b.ff.format.URN, Fields: fields}
	return m, nil
}
