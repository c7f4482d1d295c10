package message

import (
	"errors"
	"slices"
	"strconv"
	"strings"
)

// Limits of protocol.md §3b, checked by Oracle's clients before sending. They
// count bytes of UTF-8.
const (
	// MaxKeyLength bounds every key a message carries: field names, property
	// keys, header names and parameter names.
	MaxKeyLength = 2048
	// MaxStringLength bounds every string value a message carries (envelope
	// strings, payload strings, field values, property, header and parameter
	// values). Bodies are bytes, not strings, and are not bounded here.
	MaxStringLength = 65536
)

// Validate applies the semantic checks a server makes on a device's message:
//
//   - clientId and source are present; type, priority and reliability are known;
//   - the payload of the type is present, and no other payload is set;
//   - DATA has a format; ALERT has a format and a valid severity; REQUEST has a
//     method and a url; RESPONSE has a requestId and a statusCode in 100..599;
//     RESOURCES_REPORT has a known reportType and an endpointName;
//   - DATA and ALERT field names are non-empty and not repeated, and every value
//     can be encoded (a supported type, a finite number, a valid json.Number);
//   - keys are at most MaxKeyLength bytes and strings at most MaxStringLength.
//
// It reports every problem at once (joined with errors.Join, in field order),
// each as `field "<path>": <problem>`, or returns nil. A message that passes
// Validate can be encoded.
func (m *Message) Validate() error {
	if m == nil {
		return errors.New("nil message")
	}
	var v validator
	v.str("id", m.ID)
	v.required("clientId", m.ClientID, "every message needs a unique client ID")
	v.required("source", m.Source, "expected the endpoint ID of the originator")
	v.str("destination", m.Destination)
	v.str("sender", m.Sender)
	if !m.Priority.Valid() {
		v.add("priority", "invalid priority %d, expected %d..%d", m.Priority, PriorityLowest, PriorityHighest)
	}
	if !m.Reliability.Valid() {
		v.add("reliability", "invalid reliability %d, expected %d..%d", m.Reliability, BestEffort, NoGuarantee)
	}
	v.multiMap("properties", m.Properties)
	if !m.Type.Valid() {
		if m.Type == "" {
			v.add("type", "missing; expected DATA, ALERT, REQUEST, RESPONSE or RESOURCES_REPORT")
		} else {
			v.add("type", "unknown message type %q", string(m.Type))
		}
		return v.err()
	}
	if err := payloadMismatch(m); err != nil {
		v.problems = append(v.problems, err)
	}
	switch m.Type {
	case TypeData:
		if p := m.Data; v.present(p != nil, m.Type, "Data") {
			v.required("payload.format", p.Format, "expected the format URN")
			v.fields(p.Fields)
		}
	case TypeAlert:
		if p := m.Alert; v.present(p != nil, m.Type, "Alert") {
			v.required("payload.format", p.Format, "expected the alert format URN")
			switch {
			case p.Severity == "":
				v.add("payload.severity", "missing; expected LOW, NORMAL, SIGNIFICANT or CRITICAL")
			case !p.Severity.Valid():
				v.add("payload.severity", "unknown severity %q; expected LOW, NORMAL, SIGNIFICANT or CRITICAL", string(p.Severity))
			}
			v.str("payload.description", p.Description)
			v.fields(p.Fields)
		}
	case TypeRequest:
		if p := m.Request; v.present(p != nil, m.Type, "Request") {
			v.required("payload.method", p.Method, "expected an HTTP method")
			v.required("payload.url", p.URL, "expected the resource path")
			v.multiMap("payload.headers", p.Headers)
			v.stringMap("payload.params", p.Params)
		}
	case TypeResponse:
		if p := m.Response; v.present(p != nil, m.Type, "Response") {
			if p.StatusCode < 100 || p.StatusCode > 599 {
				v.add("payload.statusCode", "%d is not an HTTP status code; expected 100..599", p.StatusCode)
			}
			v.str("payload.url", p.URL)
			v.required("payload.requestId", p.RequestID, "expected the id of the REQUEST answered")
			v.multiMap("payload.headers", p.Headers)
		}
	case TypeResourcesReport:
		if p := m.Report; v.present(p != nil, m.Type, "Report") {
			switch {
			case p.ReportType == "":
				v.add("payload.value.reportType", "missing; expected UPDATE, DELETE or RECONCILIATION")
			case !p.ReportType.Valid():
				v.add("payload.value.reportType", "unknown report type %q; expected UPDATE, DELETE or RECONCILIATION", string(p.ReportType))
			}
			v.required("payload.value.endpointName", p.EndpointName, "expected the endpoint ID of the reporter")
			for i := range p.Resources {
				r := &p.Resources[i]
				for _, f := range [...]struct{ name, s string }{
					{"name", r.Name}, {"path", r.Path}, {"methods", r.Methods},
					{"status", r.Status}, {"endpointName", r.EndpointName},
				} {
					if len(f.s) > MaxStringLength {
						v.str("payload.value.resources["+strconv.Itoa(i)+"]."+f.name, f.s)
					}
				}
			}
			v.str("payload.value.reconciliationMark", p.ReconciliationMark)
		}
	}
	return v.err()
}

// validator collects the problems found by Validate.
type validator struct {
	problems []error
}

func (v *validator) add(field, format string, args ...any) {
	v.problems = append(v.problems, fieldErrorf(field, format, args...))
}

func (v *validator) err() error { return errors.Join(v.problems...) }

// present reports whether the payload is set, recording a problem if not.
func (v *validator) present(ok bool, t Type, want string) bool {
	if !ok {
		v.add("payload", "missing; a %s message needs its %s payload", t, want)
	}
	return ok
}

// required checks that s is present and not too long.
func (v *validator) required(field, s, hint string) {
	if s == "" {
		v.add(field, "missing; %s", hint)
		return
	}
	v.str(field, s)
}

// str checks the length of a string value.
func (v *validator) str(field, s string) {
	if len(s) > MaxStringLength {
		v.add(field, "value is %d bytes long; at most %d are allowed", len(s), MaxStringLength)
	}
}

// key checks the length of the key k of the object at parent.
func (v *validator) key(parent, k string) {
	if len(k) > MaxKeyLength {
		v.add(keyPath(parent, k), "key is %d bytes long; at most %d are allowed", len(k), MaxKeyLength)
	}
}

// keyPath names the key k of the object at parent, shortening k so that an
// overlong key does not flood the message. Only called once a problem is found.
func keyPath(parent, k string) string {
	const max = 64
	if len(k) > max {
		cut := max
		for cut > 0 && k[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
			cut--
		}
		k = k[:cut] + "..."
	}
	return parent + "." + k
}

func (v *validator) fields(fields []Field) {
	var seen map[string]bool // for long lists only; short ones are searched
	if len(fields) > 16 {
		seen = make(map[string]bool, len(fields))
	}
	for i := range fields {
		f := &fields[i]
		if f.Name == "" {
			v.add("payload.data", "field %d has an empty name", i)
			continue
		}
		v.key("payload.data", f.Name)
		repeated := false
		if seen != nil {
			repeated = seen[f.Name]
			seen[f.Name] = true
		} else {
			repeated = slices.ContainsFunc(fields[:i], func(g Field) bool { return g.Name == f.Name })
		}
		if repeated {
			v.add(keyPath("payload.data", f.Name), "repeated; each field may appear once")
		}
		if s, ok := f.Value.(string); ok {
			if len(s) > MaxStringLength {
				v.str(keyPath("payload.data", f.Name), s)
			}
		} else if !valueOK(f.Value) {
			_, err := appendValue(nil, f.Value)
			v.problems = append(v.problems, &fieldError{field: keyPath("payload.data", f.Name), err: err})
		}
	}
}

// sortFrom orders the problems added since index from by field, so that map
// iteration order does not show.
func (v *validator) sortFrom(from int) {
	if len(v.problems)-from < 2 {
		return
	}
	slices.SortStableFunc(v.problems[from:], func(a, b error) int {
		return strings.Compare(a.(*fieldError).field, b.(*fieldError).field)
	})
}

func (v *validator) multiMap(parent string, m map[string][]string) {
	from := len(v.problems)
	for k, vals := range m {
		v.key(parent, k)
		for i, s := range vals {
			if len(s) > MaxStringLength {
				v.str(keyPath(parent, k)+"["+strconv.Itoa(i)+"]", s)
			}
		}
	}
	v.sortFrom(from)
}

func (v *validator) stringMap(parent string, m map[string]string) {
	from := len(v.problems)
	for k, s := range m {
		v.key(parent, k)
		if len(s) > MaxStringLength {
			v.str(keyPath(parent, k), s)
		}
	}
	v.sortFrom(from)
}
