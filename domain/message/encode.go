package message

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// The encoding rules are listed in doc.go; AppendJSON and EncodedSize must
// agree byte for byte (FuzzDecode and the golden tests check it).

// AppendJSON appends the compact JSON encoding of m to dst and returns the
// extended slice. It fails if m cannot be encoded: a missing or unknown Type, a
// Priority or Reliability outside the defined values, a payload pointer set that
// does not belong to Type, a field value of an unsupported type, a NaN or
// infinite float64, or an invalid json.Number. The error names the field. On
// error dst is returned truncated to its original length.
//
// A payload pointer left nil for Type is not an encoding error: the payload key
// is then omitted (Validate reports it).
func AppendJSON(dst []byte, m *Message) ([]byte, error) {
	start := len(dst)
	out, err := appendMessage(dst, m)
	if err != nil {
		return dst[:start], fmt.Errorf("encode message: %w", err)
	}
	return out, nil
}

// MarshalJSON implements json.Marshaler with [AppendJSON], in one allocation.
// It has a value receiver so that json.Marshal uses it for a Message value as
// well as for a *Message (with a pointer receiver, encoding/json would silently
// fall back to reflection for non-addressable values and write the wrong shape).
func (m Message) MarshalJSON() ([]byte, error) {
	n := EncodedSize(&m)
	if n < 0 {
		n = 0
	}
	return AppendJSON(make([]byte, 0, n), &m)
}

// Encode returns msgs as one compact JSON array, "[]" for no messages. Its
// length is ArraySize(len(msgs), sum of EncodedSize of each). The error names
// the index of the first message that cannot be encoded.
func Encode(msgs []Message) ([]byte, error) {
	sum := 0
	for i := range msgs {
		if n := EncodedSize(&msgs[i]); n > 0 {
			sum += n
		}
	}
	buf := make([]byte, 0, ArraySize(len(msgs), sum))
	buf = append(buf, '[')
	for i := range msgs {
		if i > 0 {
			buf = append(buf, ',')
		}
		var err error
		buf, err = appendMessage(buf, &msgs[i])
		if err != nil {
			return nil, fmt.Errorf("encode message %d: %w", i, err)
		}
	}
	return append(buf, ']'), nil
}

// ArraySize returns the length of a JSON array of n encoded messages whose
// EncodedSize values add up to sumOfSizes: the brackets, the messages and one
// comma between each two, that is 2 + sumOfSizes + (n-1) for n > 0, and 2
// ("[]") for n == 0.
func ArraySize(n, sumOfSizes int) int {
	if n <= 0 {
		return 2
	}
	return 2 + sumOfSizes + n - 1
}

// EncodedSize returns the exact length of AppendJSON's output for m without
// encoding it: it allocates nothing and costs one pass over the strings. It
// returns -1 when AppendJSON would fail.
func EncodedSize(m *Message) int {
	n, ok := messageSize(m)
	if !ok {
		return -1
	}
	return n
}

// fieldError is a problem with one field, found while encoding or validating.
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return fmt.Sprintf("field %q: %v", e.field, e.err) }

func (e *fieldError) Unwrap() error { return e.err }

func fieldErrorf(field, format string, args ...any) error {
	return &fieldError{field: field, err: fmt.Errorf(format, args...)}
}

// payloadMismatch reports a payload pointer set that does not belong to m.Type,
// or nil if there is none.
func payloadMismatch(m *Message) error {
	var extra string
	switch {
	case m.Data != nil && m.Type != TypeData:
		extra = "Data"
	case m.Alert != nil && m.Type != TypeAlert:
		extra = "Alert"
	case m.Request != nil && m.Type != TypeRequest:
		extra = "Request"
	case m.Response != nil && m.Type != TypeResponse:
		extra = "Response"
	case m.Report != nil && m.Type != TypeResourcesReport:
		extra = "Report"
	default:
		return nil
	}
	return fieldErrorf("payload", "the %s payload is set on a %s message; only the payload of its type may be set", extra, m.Type)
}

// checkEnvelope returns the error AppendJSON reports for m's envelope, if any.
func checkEnvelope(m *Message) error {
	if !m.Type.Valid() {
		if m.Type == "" {
			return fieldErrorf("type", "missing; expected DATA, ALERT, REQUEST, RESPONSE or RESOURCES_REPORT")
		}
		return fieldErrorf("type", "unknown message type %q", string(m.Type))
	}
	if !m.Priority.Valid() {
		return fieldErrorf("priority", "invalid priority %d, expected %d..%d", m.Priority, PriorityLowest, PriorityHighest)
	}
	if !m.Reliability.Valid() {
		return fieldErrorf("reliability", "invalid reliability %d, expected %d..%d", m.Reliability, BestEffort, NoGuarantee)
	}
	return payloadMismatch(m)
}

func appendMessage(b []byte, m *Message) ([]byte, error) {
	if m == nil {
		return b, errors.New("nil message")
	}
	if err := checkEnvelope(m); err != nil {
		return b, err
	}
	b = append(b, '{')
	if m.ID != "" {
		b = append(b, `"id":`...)
		b = appendString(b, m.ID)
		b = append(b, ',')
	}
	b = append(b, `"clientId":`...)
	b = appendString(b, m.ClientID)
	b = append(b, `,"source":`...)
	b = appendString(b, m.Source)
	b = append(b, `,"destination":`...)
	b = appendString(b, m.Destination)
	b = append(b, `,"sender":`...)
	b = appendString(b, m.Sender)
	b = append(b, `,"priority":"`...)
	b = append(b, m.Priority.name()...)
	b = append(b, `","reliability":"`...)
	b = append(b, m.Reliability.name()...)
	b = append(b, `","eventTime":`...)
	b = appendTime(b, m.EventTime)
	b = append(b, `,"type":"`...)
	b = append(b, m.Type...)
	b = append(b, '"')
	if len(m.Properties) > 0 {
		b = append(b, `,"properties":`...)
		b = appendMultiMap(b, m.Properties)
	}
	var err error
	switch m.Type {
	case TypeData:
		if p := m.Data; p != nil {
			b = append(b, `,"payload":{"format":`...)
			b = appendString(b, p.Format)
			b = append(b, `,"data":`...)
			if b, err = appendFields(b, p.Fields); err != nil {
				return b, err
			}
			b = append(b, '}')
		}
	case TypeAlert:
		if p := m.Alert; p != nil {
			b = append(b, `,"payload":{"format":`...)
			b = appendString(b, p.Format)
			b = append(b, `,"severity":`...)
			b = appendString(b, string(p.Severity))
			b = append(b, `,"description":`...)
			b = appendString(b, p.Description)
			b = append(b, `,"data":`...)
			if b, err = appendFields(b, p.Fields); err != nil {
				return b, err
			}
			b = append(b, '}')
		}
	case TypeRequest:
		if p := m.Request; p != nil {
			b = append(b, `,"payload":{"method":`...)
			b = appendString(b, p.Method)
			b = append(b, `,"url":`...)
			b = appendString(b, p.URL)
			b = append(b, `,"headers":`...)
			b = appendMultiMap(b, p.Headers)
			b = append(b, `,"params":`...)
			b = appendStringMap(b, p.Params)
			b = append(b, `,"body":`...)
			b = appendBase64(b, p.Body)
			b = append(b, '}')
		}
	case TypeResponse:
		if p := m.Response; p != nil {
			b = append(b, `,"payload":{"statusCode":`...)
			b = strconv.AppendInt(b, int64(p.StatusCode), 10)
			b = append(b, `,"url":`...)
			b = appendString(b, p.URL)
			b = append(b, `,"requestId":`...)
			b = appendString(b, p.RequestID)
			b = append(b, `,"headers":`...)
			b = appendMultiMap(b, p.Headers)
			b = append(b, `,"body":`...)
			b = appendBase64(b, p.Body)
			b = append(b, '}')
		}
	case TypeResourcesReport:
		if p := m.Report; p != nil {
			b = appendReport(b, p)
		}
	}
	return append(b, '}'), nil
}

func appendReport(b []byte, p *ResourcesReport) []byte {
	b = append(b, `,"payload":{"type":"JSON","value":{"reportType":`...)
	b = appendString(b, string(p.ReportType))
	b = append(b, `,"endpointName":`...)
	b = appendString(b, p.EndpointName)
	b = append(b, `,"resources":[`...)
	for i := range p.Resources {
		r := &p.Resources[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendString(b, r.Name)
		b = append(b, `,"path":`...)
		b = appendString(b, r.Path)
		b = append(b, `,"methods":`...)
		b = appendString(b, r.Methods)
		b = append(b, `,"status":`...)
		b = appendString(b, r.Status)
		if r.EndpointName != "" {
			b = append(b, `,"endpointName":`...)
			b = appendString(b, r.EndpointName)
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	if p.ReconciliationMark != "" {
		b = append(b, `,"reconciliationMark":`...)
		b = appendString(b, p.ReconciliationMark)
	}
	return append(b, "}}"...)
}

// appendFields appends fields as a JSON object, in order.
func appendFields(b []byte, fields []Field) ([]byte, error) {
	b = append(b, '{')
	for i := range fields {
		f := &fields[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, f.Name)
		b = append(b, ':')
		var err error
		if b, err = appendValue(b, f.Value); err != nil {
			return b, &fieldError{field: "payload.data." + f.Name, err: err}
		}
	}
	return append(b, '}'), nil
}

// appendValue appends one field value. Its errors do not name the field.
func appendValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case string:
		return appendString(b, v), nil
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return b, fmt.Errorf("%v is not a valid JSON number", v)
		}
		return appendFloat(b, v), nil
	case time.Time:
		return appendTime(b, v), nil
	case json.Number:
		if !validNumber(string(v)) {
			return b, fmt.Errorf("json.Number %q is not a valid JSON number", string(v))
		}
		return append(b, v...), nil
	}
	return b, fmt.Errorf("unsupported value type %T; expected nil, bool, string, int, int64, float64, time.Time or json.Number", v)
}

// appendFloat formats f as encoding/json does: plain decimal notation unless the
// magnitude is below 1e-6 or at least 1e21, then exponent notation with a
// two-digit exponent at least ("1e-07" becomes "1e-7").
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// strconv writes at least two exponent digits; JSON needs none of the padding.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// unixMilli is the wire form of t: epoch milliseconds, 0 for the zero time.
func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func appendTime(b []byte, t time.Time) []byte {
	return strconv.AppendInt(b, unixMilli(t), 10)
}

func appendBase64(b []byte, data []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, data)
	return append(b, '"')
}

// sortedKeys returns the keys of m in order. buf is scratch space for small maps.
func sortedKeys[V any](m map[string]V, buf []string) []string {
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendMultiMap appends m as an object of string arrays, keys sorted.
func appendMultiMap(b []byte, m map[string][]string) []byte {
	var buf [8]string
	b = append(b, '{')
	for i, k := range sortedKeys(m, buf[:]) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ":["...)
		for j, v := range m[k] {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendString(b, v)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendStringMap appends m as an object of strings, keys sorted.
func appendStringMap(b []byte, m map[string]string) []byte {
	var buf [8]string
	b = append(b, '{')
	for i, k := range sortedKeys(m, buf[:]) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, m[k])
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// safeASCII reports whether the ASCII byte c is written as itself inside a JSON string.
func safeASCII(c byte) bool { return c >= 0x20 && c != '"' && c != '\\' }

// appendString appends s as a JSON string literal (see the encoding rules above).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0 // s[start:i] is pending, to be copied as is
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safeASCII(c) {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// stringSize is len(appendString(nil, s)): the quotes and the bytes of s, plus
// what escaping adds.
func stringSize(s string) int {
	n := 2 + len(s)
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if !safeASCII(c) {
				switch c {
				case '"', '\\', '\b', '\f', '\n', '\r', '\t':
					n++ // \x
				default:
					n += 5 // \u00XX
				}
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			n += 5 // one byte becomes \ufffd
		case r == '\u2028', r == '\u2029':
			n += 3 // three bytes become \u202X
		}
		i += size
	}
	return n
}

// intSize is the number of bytes of strconv.FormatInt(v, 10).
func intSize(v int64) int {
	n := 1
	u := uint64(v)
	if v < 0 {
		n++
		u = -u
	}
	for u >= 10 {
		u /= 10
		n++
	}
	return n
}

// valueSize is len(appendValue(nil, v)), or false if appendValue fails.
func valueSize(v any) (int, bool) {
	switch v := v.(type) {
	case nil:
		return 4, true
	case bool:
		if v {
			return 4, true
		}
		return 5, true
	case string:
		return stringSize(v), true
	case int:
		return intSize(int64(v)), true
	case int64:
		return intSize(v), true
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, false
		}
		var buf [32]byte
		return len(appendFloat(buf[:0], v)), true
	case time.Time:
		return intSize(unixMilli(v)), true
	case json.Number:
		return len(v), validNumber(string(v))
	}
	return 0, false
}

// valueOK reports whether appendValue accepts v, without formatting it.
func valueOK(v any) bool {
	switch v := v.(type) {
	case nil, bool, string, int, int64, time.Time:
		return true
	case float64:
		return !math.IsNaN(v) && !math.IsInf(v, 0)
	case json.Number:
		return validNumber(string(v))
	}
	return false
}

// fieldsSize is len(appendFields(nil, fields)), or false if it fails.
func fieldsSize(fields []Field) (int, bool) {
	n := 2 // {}
	if len(fields) > 1 {
		n += len(fields) - 1 // commas
	}
	for i := range fields {
		vs, ok := valueSize(fields[i].Value)
		if !ok {
			return 0, false
		}
		n += stringSize(fields[i].Name) + 1 + vs
	}
	return n, true
}

// multiMapSize is len(appendMultiMap(nil, m)).
func multiMapSize(m map[string][]string) int {
	n := 2
	if len(m) > 1 {
		n += len(m) - 1
	}
	for k, vs := range m {
		n += stringSize(k) + 3 // :[]
		if len(vs) > 1 {
			n += len(vs) - 1
		}
		for _, v := range vs {
			n += stringSize(v)
		}
	}
	return n
}

// stringMapSize is len(appendStringMap(nil, m)).
func stringMapSize(m map[string]string) int {
	n := 2
	if len(m) > 1 {
		n += len(m) - 1
	}
	for k, v := range m {
		n += stringSize(k) + 1 + stringSize(v)
	}
	return n
}

func base64Size(data []byte) int { return 2 + base64.StdEncoding.EncodedLen(len(data)) }

// Lengths of the fixed parts of the encoding; len of a constant string is a constant.
const (
	sizeEnvelope = len(`{"clientId":,"source":,"destination":,"sender":,"priority":"","reliability":"","eventTime":,"type":""}`)
	sizeID       = len(`"id":,`)
	sizeProps    = len(`,"properties":`)
	sizeData     = len(`,"payload":{"format":,"data":}`)
	sizeAlert    = len(`,"payload":{"format":,"severity":,"description":,"data":}`)
	sizeRequest  = len(`,"payload":{"method":,"url":,"headers":,"params":,"body":}`)
	sizeResponse = len(`,"payload":{"statusCode":,"url":,"requestId":,"headers":,"body":}`)
	sizeReport   = len(`,"payload":{"type":"JSON","value":{"reportType":,"endpointName":,"resources":[]}}`)
	sizeResource = len(`{"name":,"path":,"methods":,"status":}`)
	sizeResEP    = len(`,"endpointName":`)
	sizeMark     = len(`,"reconciliationMark":`)
)

func messageSize(m *Message) (int, bool) {
	if m == nil || checkEnvelope(m) != nil {
		return 0, false
	}
	n := sizeEnvelope + stringSize(m.ClientID) + stringSize(m.Source) + stringSize(m.Destination) +
		stringSize(m.Sender) + len(m.Priority.name()) + len(m.Reliability.name()) +
		intSize(unixMilli(m.EventTime)) + len(m.Type)
	if m.ID != "" {
		n += sizeID + stringSize(m.ID)
	}
	if len(m.Properties) > 0 {
		n += sizeProps + multiMapSize(m.Properties)
	}
	switch m.Type {
	case TypeData:
		if p := m.Data; p != nil {
			fs, ok := fieldsSize(p.Fields)
			if !ok {
				return 0, false
			}
			n += sizeData + stringSize(p.Format) + fs
		}
	case TypeAlert:
		if p := m.Alert; p != nil {
			fs, ok := fieldsSize(p.Fields)
			if !ok {
				return 0, false
			}
			n += sizeAlert + stringSize(p.Format) + stringSize(string(p.Severity)) + stringSize(p.Description) + fs
		}
	case TypeRequest:
		if p := m.Request; p != nil {
			n += sizeRequest + stringSize(p.Method) + stringSize(p.URL) + multiMapSize(p.Headers) +
				stringMapSize(p.Params) + base64Size(p.Body)
		}
	case TypeResponse:
		if p := m.Response; p != nil {
			n += sizeResponse + intSize(int64(p.StatusCode)) + stringSize(p.URL) + stringSize(p.RequestID) +
				multiMapSize(p.Headers) + base64Size(p.Body)
		}
	case TypeResourcesReport:
		if p := m.Report; p != nil {
			n += sizeReport + stringSize(string(p.ReportType)) + stringSize(p.EndpointName)
			if len(p.Resources) > 1 {
				n += len(p.Resources) - 1
			}
			for i := range p.Resources {
				r := &p.Resources[i]
				n += sizeResource + stringSize(r.Name) + stringSize(r.Path) + stringSize(r.Methods) + stringSize(r.Status)
				if r.EndpointName != "" {
					n += sizeResEP + stringSize(r.EndpointName)
				}
			}
			if p.ReconciliationMark != "" {
				n += sizeMark + stringSize(p.ReconciliationMark)
			}
		}
	}
	return n, true
}

// validNumber reports whether s is a JSON number literal:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || !isDigit(s[i]) {
			return false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || !isDigit(s[i]) {
			return false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	return i == len(s)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
