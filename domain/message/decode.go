package message

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strconv"
	"time"
)

// DecodeError is the error returned by Decode and UnmarshalJSON. It names the
// message (its index in the array) and the field (a dotted path such as
// "payload.body" or "payload.value.resources[2].path") where decoding failed.
type DecodeError struct {
	// Index is the position of the message in the array, or -1 when the error is
	// not inside one message (the body is not an array, or UnmarshalJSON).
	Index int
	// Field is the path of the field, or "" when the message itself is wrong.
	Field string
	// Err is what was wrong.
	Err error
}

// Error returns `message <Index>: field "<Field>": <Err>`, leaving out the
// parts that do not apply.
func (e *DecodeError) Error() string {
	var b []byte
	if e.Index >= 0 {
		b = append(b, "message "...)
		b = strconv.AppendInt(b, int64(e.Index), 10)
		b = append(b, ": "...)
	}
	if e.Field != "" {
		b = append(b, "field "...)
		b = strconv.AppendQuote(b, e.Field)
		b = append(b, ": "...)
	}
	return string(append(b, e.Err.Error()...))
}

// Unwrap returns Err.
func (e *DecodeError) Unwrap() error { return e.Err }

// inField prefixes the field path of err with name ("x" or "[3]"), making err a
// *fieldError if it is not one yet; nil stays nil. Decoders use it on the way up,
// so paths are built on the error path only.
func inField(name string, err error) error {
	if err == nil {
		return nil
	}
	if pe, ok := err.(*fieldError); ok {
		if pe.field != "" && pe.field[0] == '[' {
			pe.field = name + pe.field
		} else {
			pe.field = name + "." + pe.field
		}
		return pe
	}
	return &fieldError{field: name, err: err}
}

func atIndex(i int, err error) error {
	if err == nil {
		return nil
	}
	return inField("["+strconv.Itoa(i)+"]", err)
}

func decodeError(index int, err error) *DecodeError {
	if pe, ok := err.(*fieldError); ok {
		return &DecodeError{Index: index, Field: pe.field, Err: pe.err}
	}
	return &DecodeError{Index: index, Err: err}
}

// Decode decodes a JSON array of messages received from outside. An empty or
// whitespace-only body, null and [] all give nil, nil: clients poll with those.
// Any error is a *DecodeError naming the message and the field, and no messages
// are returned with it (one bad message rejects the batch, as the cloud does).
// Decode sets no limit on the size of data or the number of messages: callers
// bound the body they read (acceptBytes, an HTTP body limit) before decoding.
func Decode(data []byte) ([]Message, error) {
	s := scanner{data: data}
	s.skipSpace()
	if s.pos == len(data) {
		return nil, nil
	}
	if null, err := s.isNull(); null || err != nil {
		if err == nil {
			err = s.end()
		}
		if err != nil {
			return nil, decodeError(-1, err)
		}
		return nil, nil
	}
	if data[s.pos] != '[' {
		return nil, decodeError(-1, s.typeError("a JSON array of messages"))
	}
	var msgs []Message
	err := s.array(func(i int) error {
		msgs = append(msgs, Message{})
		if err := s.message(&msgs[i]); err != nil {
			return decodeError(i, err)
		}
		return nil
	})
	if err == nil {
		err = s.end()
	}
	if err != nil {
		if de, ok := err.(*DecodeError); ok {
			return nil, de
		}
		return nil, decodeError(-1, err)
	}
	return msgs, nil
}

// end checks that only whitespace follows.
func (s *scanner) end() error {
	s.skipSpace()
	if s.pos < len(s.data) {
		return s.errAt("unexpected %s after the top-level value", s.describe())
	}
	return nil
}

// UnmarshalJSON implements json.Unmarshaler for one message object, with the
// rules of Decode; null leaves m unchanged. Errors are *DecodeError with Index -1.
func (m *Message) UnmarshalJSON(data []byte) error {
	s := scanner{data: data}
	s.skipSpace()
	if null, err := s.isNull(); null || err != nil {
		if err == nil {
			err = s.end()
		}
		if err != nil {
			return decodeError(-1, err)
		}
		return nil
	}
	var tmp Message
	err := s.message(&tmp)
	if err == nil {
		err = s.end()
	}
	if err != nil {
		return decodeError(-1, err)
	}
	*m = tmp
	return nil
}

// jsDateLimit is the largest magnitude of a JavaScript Date in epoch
// milliseconds (ECMA-262 §21.4.1.1); it also keeps time arithmetic far from overflow.
const jsDateLimit int64 = 8_640_000_000_000_000

// message reads one message object into m, which it first resets.
func (s *scanner) message(m *Message) error {
	*m = Message{Priority: PriorityLow}
	payloadAt := -1     // offset of the last payload value, if any
	var payloadFor Type // the type it was read as; "" if only skipped
	err := s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "id":
			m.ID, err = s.str()
			return inField("id", err)
		case "clientId":
			m.ClientID, err = s.str()
			return inField("clientId", err)
		case "source":
			m.Source, err = s.str()
			return inField("source", err)
		case "destination":
			m.Destination, err = s.str()
			return inField("destination", err)
		case "sender":
			m.Sender, err = s.str()
			return inField("sender", err)
		case "priority":
			return inField("priority", s.enum(func(v string) (err error) {
				m.Priority, err = ParsePriority(v)
				return err
			}))
		case "reliability":
			return inField("reliability", s.enum(func(v string) (err error) {
				m.Reliability, err = ParseReliability(v)
				return err
			}))
		case "eventTime":
			ms, err := s.integer()
			if err == nil && (ms > jsDateLimit || ms < -jsDateLimit) {
				err = fmt.Errorf("%d is out of range; expected epoch milliseconds within ±%d", ms, jsDateLimit)
			}
			m.EventTime = fromMilli(ms)
			return inField("eventTime", err)
		case "type":
			return inField("type", s.enum(func(v string) error {
				if t := Type(v); !t.Valid() {
					return fmt.Errorf("unknown message type %q", v)
				}
				m.Type = Type(v)
				return nil
			}))
		case "properties":
			m.Properties, err = s.multiMap()
			return inField("properties", err)
		case "payload":
			payloadAt, payloadFor = s.pos, m.Type
			if m.Type == "" { // type comes later: read the payload once it is known
				return inField("payload", s.skipValue())
			}
			return inField("payload", s.payload(m))
		}
		if err := s.skipValue(); err != nil {
			return inField(string(key), err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if m.Type == "" {
		return inField("type", fmt.Errorf("missing; expected DATA, ALERT, REQUEST, RESPONSE or RESOURCES_REPORT"))
	}
	if payloadAt < 0 || payloadFor == m.Type {
		return nil
	}
	end := s.pos
	s.pos = payloadAt
	if err := s.payload(m); err != nil {
		return inField("payload", err)
	}
	s.pos = end
	return nil
}

// enum reads a string and passes it to set; null leaves the default.
func (s *scanner) enum(set func(string) error) error {
	if null, err := s.isNull(); null || err != nil {
		return err
	}
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return s.typeError("a string")
	}
	b, err := s.stringBytes()
	if err != nil {
		return err
	}
	return set(string(b))
}

// fromMilli is the inverse of unixMilli.
func fromMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// payload reads the payload object of m.Type into the matching pointer, after
// clearing all of them (a repeated payload key overrides); null sets none.
func (s *scanner) payload(m *Message) error {
	m.Data, m.Alert, m.Request, m.Response, m.Report = nil, nil, nil, nil, nil
	if null, err := s.isNull(); null || err != nil {
		return err
	}
	switch m.Type {
	case TypeData:
		p := &Data{}
		m.Data = p
		return s.object(func(key []byte) (err error) {
			switch string(key) {
			case "format":
				p.Format, err = s.str()
				return inField("format", err)
			case "data":
				p.Fields, err = s.fields()
				return inField("data", err)
			}
			return s.skipKnown(key)
		})
	case TypeAlert:
		p := &Alert{}
		m.Alert = p
		return s.object(func(key []byte) (err error) {
			switch string(key) {
			case "format":
				p.Format, err = s.str()
				return inField("format", err)
			case "severity":
				var v string
				v, err = s.str()
				p.Severity = Severity(v)
				return inField("severity", err)
			case "description":
				p.Description, err = s.str()
				return inField("description", err)
			case "data":
				p.Fields, err = s.fields()
				return inField("data", err)
			}
			return s.skipKnown(key)
		})
	case TypeRequest:
		p := &Request{}
		m.Request = p
		return s.object(func(key []byte) (err error) {
			switch string(key) {
			case "method":
				p.Method, err = s.str()
				return inField("method", err)
			case "url":
				p.URL, err = s.str()
				return inField("url", err)
			case "headers":
				p.Headers, err = s.multiMap()
				return inField("headers", err)
			case "params":
				p.Params, err = s.stringMap()
				return inField("params", err)
			case "body":
				p.Body, err = s.base64()
				return inField("body", err)
			}
			return s.skipKnown(key)
		})
	case TypeResponse:
		p := &Response{}
		m.Response = p
		return s.object(func(key []byte) (err error) {
			switch string(key) {
			case "statusCode":
				var v int64
				v, err = s.integer()
				if err == nil && int64(int(v)) != v {
					err = fmt.Errorf("%d is out of range of an int", v)
				}
				p.StatusCode = int(v)
				return inField("statusCode", err)
			case "url":
				p.URL, err = s.str()
				return inField("url", err)
			case "requestId":
				p.RequestID, err = s.str()
				return inField("requestId", err)
			case "headers":
				p.Headers, err = s.multiMap()
				return inField("headers", err)
			case "body":
				p.Body, err = s.base64()
				return inField("body", err)
			}
			return s.skipKnown(key)
		})
	case TypeResourcesReport:
		p := &ResourcesReport{}
		m.Report = p
		return s.object(func(key []byte) (err error) {
			switch string(key) {
			case "type":
				var v string
				if v, err = s.str(); err == nil && v != "" && v != "JSON" {
					err = fmt.Errorf("unsupported report encoding %q, expected \"JSON\"", v)
				}
				return inField("type", err)
			case "value":
				return inField("value", s.report(p))
			}
			return s.skipKnown(key)
		})
	}
	return nil // unreachable: message checked the type
}

// skipKnown skips the value of an unknown key, naming the key on error.
func (s *scanner) skipKnown(key []byte) error {
	if err := s.skipValue(); err != nil {
		return inField(string(key), err)
	}
	return nil
}

// report reads the "value" object of a RESOURCES_REPORT payload into p.
func (s *scanner) report(p *ResourcesReport) error {
	if null, err := s.isNull(); null || err != nil {
		return err
	}
	return s.object(func(key []byte) (err error) {
		switch string(key) {
		case "reportType":
			var v string
			v, err = s.str()
			p.ReportType = ReportType(v)
			return inField("reportType", err)
		case "endpointName":
			p.EndpointName, err = s.str()
			return inField("endpointName", err)
		case "reconciliationMark":
			p.ReconciliationMark, err = s.str()
			return inField("reconciliationMark", err)
		case "resources":
			if null, err := s.isNull(); null || err != nil {
				return inField("resources", err)
			}
			err = s.array(func(i int) error {
				p.Resources = append(p.Resources, Resource{})
				return atIndex(i, s.resource(&p.Resources[i]))
			})
			return inField("resources", err)
		}
		return s.skipKnown(key)
	})
}

func (s *scanner) resource(r *Resource) error {
	return s.object(func(key []byte) (err error) {
		switch string(key) {
		case "name":
			r.Name, err = s.str()
			return inField("name", err)
		case "path":
			r.Path, err = s.str()
			return inField("path", err)
		case "methods":
			r.Methods, err = s.str()
			return inField("methods", err)
		case "status":
			r.Status, err = s.str()
			return inField("status", err)
		case "endpointName":
			r.EndpointName, err = s.str()
			return inField("endpointName", err)
		}
		return s.skipKnown(key)
	})
}

// fields reads a "data" object in order; null or {} give nil.
func (s *scanner) fields() ([]Field, error) {
	if null, err := s.isNull(); null || err != nil {
		return nil, err
	}
	var fields []Field
	err := s.object(func(key []byte) error {
		name := string(key)
		v, err := s.fieldValue()
		if err != nil {
			return inField(name, err)
		}
		fields = append(fields, Field{Name: name, Value: v})
		return nil
	})
	return fields, err
}

// fieldValue reads a scalar: string, number, boolean or null.
func (s *scanner) fieldValue() (any, error) {
	if s.pos >= len(s.data) {
		return nil, s.errAt("")
	}
	switch c := s.data[s.pos]; {
	case c == '"':
		return s.str()
	case c == 't':
		return true, s.literal("true")
	case c == 'f':
		return false, s.literal("false")
	case c == 'n':
		return nil, s.literal("null")
	case c == '-' || isDigit(c):
		lit, err := s.number()
		if err != nil {
			return nil, err
		}
		return numberValue(lit)
	}
	return nil, s.typeError("a string, number, boolean or null")
}

// multiMap reads an object of string arrays; null or {} give nil, and null or
// [] values give a nil list. null elements read as "".
func (s *scanner) multiMap() (map[string][]string, error) {
	if null, err := s.isNull(); null || err != nil {
		return nil, err
	}
	var m map[string][]string
	err := s.object(func(key []byte) error {
		k := string(key)
		var vals []string
		if null, err := s.isNull(); err != nil {
			return inField(k, err)
		} else if !null {
			err := s.array(func(i int) error {
				v, err := s.str()
				vals = append(vals, v)
				return atIndex(i, err)
			})
			if err != nil {
				return inField(k, err)
			}
		}
		if m == nil {
			m = make(map[string][]string)
		}
		m[k] = vals
		return nil
	})
	return m, err
}

// stringMap reads an object of strings; null or {} give nil.
func (s *scanner) stringMap() (map[string]string, error) {
	if null, err := s.isNull(); null || err != nil {
		return nil, err
	}
	var m map[string]string
	err := s.object(func(key []byte) error {
		k := string(key)
		v, err := s.str()
		if err != nil {
			return inField(k, err)
		}
		if m == nil {
			m = make(map[string]string)
		}
		m[k] = v
		return nil
	})
	return m, err
}

// base64 reads a base64 string; null or "" give nil.
func (s *scanner) base64() ([]byte, error) {
	if null, err := s.isNull(); null || err != nil {
		return nil, err
	}
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return nil, s.typeError("a base64 string")
	}
	b, err := s.stringBytes()
	if err != nil || len(b) == 0 {
		return nil, err
	}
	enc := base64.StdEncoding
	if len(b)%4 != 0 && bytes.IndexByte(b, '=') < 0 {
		enc = base64.RawStdEncoding
	}
	out := make([]byte, enc.DecodedLen(len(b)))
	n, err := enc.Decode(out, b)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	return out[:n], nil
}
