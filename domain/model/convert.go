package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"
	"unicode/utf8"
)

// typeList is the list of valid types, for error messages.
const typeList = "INTEGER, NUMBER, STRING, BOOLEAN, DATETIME, URI"

// Valid reports whether t is one of the six model types.
func (t Type) Valid() bool {
	switch t {
	case TypeInteger, TypeNumber, TypeString, TypeBoolean, TypeDateTime, TypeURI:
		return true
	}
	return false
}

// numeric reports whether t is INTEGER or NUMBER, the types that take a range.
func (t Type) numeric() bool { return t == TypeInteger || t == TypeNumber }

// convError is a conversion error: "want <want>, got <got>".
type convError struct{ want, got string }

func (e *convError) Error() string { return "want " + e.want + ", got " + e.got }

// wantGot returns the error for value v that is not a legal t.
func wantGot(t Type, v any) error {
	want := string(t)
	switch t {
	case TypeDateTime:
		want = "DATETIME (epoch milliseconds or an RFC 3339 string)"
	case TypeURI:
		want = "URI (an absolute URI)"
	}
	return &convError{want: want, got: show(v)}
}

// Convert converts v to a Value of type t. It accepts Go values, the values
// that encoding/json decodes into an any (float64 or json.Number, string,
// bool, nil) and message field values (int64, float64, time.Time):
//
//   - INTEGER: an integral number of any Go integer or float kind, or a
//     json.Number, that fits in int64 (1.5 and 1e19 are errors);
//   - NUMBER: any finite number;
//   - BOOLEAN: a bool only;
//   - STRING: a string only (not a json.Number), valid UTF-8, at most
//     MaxStringBytes long;
//   - URI: a string that is an absolute URI;
//   - DATETIME: a time.Time, an integral number of epoch milliseconds, or an
//     RFC 3339 string.
//
// Named types whose underlying kind is one of these are accepted too, and so
// is a Value (converted from its Any form unless it already has type t).
// Errors read "want INTEGER, got 1.5": got is the JSON form of v (strings are
// quoted and long ones shortened), or its Go type when JSON cannot show it.
// Convert is pure and safe for concurrent use.
func (t Type) Convert(v any) (Value, error) {
	if !t.Valid() {
		return Value{}, errUnknownType(t)
	}
	if val, ok := v.(Value); ok {
		switch {
		case val.typ == t:
			return val, nil
		case !val.Valid():
			return Value{}, wantGot(t, val)
		}
		v = val.Any()
	}
	switch t {
	case TypeInteger:
		if i, ok := asInt(v); ok {
			return Integer(i), nil
		}
	case TypeNumber:
		if f, ok := asFloat(v); ok && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return Value{typ: TypeNumber, f: f}, nil
		}
	case TypeBoolean:
		if b, ok := v.(bool); ok {
			return Boolean(b), nil
		}
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Bool {
			return Boolean(rv.Bool()), nil
		}
	case TypeString:
		if s, ok := asString(v); ok {
			return String(s)
		}
	case TypeURI:
		if s, ok := asString(v); ok {
			return URI(s)
		}
	case TypeDateTime:
		if tm, ok := v.(time.Time); ok {
			return DateTime(tm), nil
		}
		if s, ok := asString(v); ok {
			if tm, err := time.Parse(time.RFC3339, s); err == nil {
				return DateTime(tm), nil
			}
			return Value{}, wantGot(t, v)
		}
		if ms, ok := asInt(v); ok {
			return DateTime(time.UnixMilli(ms)), nil
		}
	}
	return Value{}, wantGot(t, v)
}

// errUnknownType is the error for a type that is not one of the six.
func errUnknownType(t Type) error {
	if t == "" {
		return fmt.Errorf("type is missing: want one of %s", typeList)
	}
	return fmt.Errorf("unknown type %q: want one of %s", string(t), typeList)
}

// number is a number extracted from a Go or JSON value, in the widest form
// that holds it exactly.
type number struct {
	kind byte // 'i' signed, 'u' unsigned, 'f' float
	i    int64
	u    uint64
	f    float64
}

// asNumber extracts a number from any Go integer or float kind or a
// json.Number. It reports false for anything else.
func asNumber(v any) (number, bool) {
	switch x := v.(type) {
	case int64:
		return number{kind: 'i', i: x}, true
	case float64:
		return number{kind: 'f', f: x}, true
	case int:
		return number{kind: 'i', i: int64(x)}, true
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return number{kind: 'i', i: i}, true
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil && !isRangeErr(err) {
			return number{}, false
		}
		return number{kind: 'f', f: f}, true
	case string, bool, nil, time.Time:
		return number{}, false
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return number{kind: 'i', i: rv.Int()}, true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return number{kind: 'u', u: rv.Uint()}, true
	case reflect.Float32, reflect.Float64:
		return number{kind: 'f', f: rv.Float()}, true
	}
	return number{}, false
}

// isRangeErr reports whether err is strconv's out-of-range error, for which
// ParseFloat still returns ±Inf or 0, which callers then judge.
func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// asInt returns v as an int64 when it is an integral number that fits.
func asInt(v any) (int64, bool) {
	n, ok := asNumber(v)
	if !ok {
		return 0, false
	}
	switch n.kind {
	case 'i':
		return n.i, true
	case 'u':
		if n.u > math.MaxInt64 {
			return 0, false
		}
		return int64(n.u), true
	}
	// -2^63 is exactly representable; 2^63 is the first float too large.
	if n.f != math.Trunc(n.f) || n.f < math.MinInt64 || n.f >= -math.MinInt64 {
		return 0, false
	}
	return int64(n.f), true
}

// asFloat returns v as a float64 when it is a number (possibly ±Inf or NaN;
// callers check).
func asFloat(v any) (float64, bool) {
	n, ok := asNumber(v)
	if !ok {
		return 0, false
	}
	switch n.kind {
	case 'i':
		return float64(n.i), true
	case 'u':
		return float64(n.u), true
	}
	return n.f, true
}

// asString returns v as a string when it is a string (or a named string
// type), but not a json.Number, which stands for a number.
func asString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return "", false
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.String {
		return rv.String(), true
	}
	return "", false
}

// maxShow is how many bytes of a value an error message shows.
const maxShow = 64

// show returns v the way error messages show what they got: its JSON form
// (Go-quoted for strings, so that invalid UTF-8 stays visible), shortened
// when long, or its Go type when JSON cannot show it.
func show(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return showString(x)
	case json.Number:
		return shorten(string(x))
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return showFloat(x, 64)
	case float32:
		return showFloat(float64(x), 32)
	case time.Time:
		return "time.Time"
	case Value:
		if !x.Valid() {
			return "no value"
		}
		return show(x.Any())
	case []any, map[string]any:
		return showJSON(x)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.FormatUint(rv.Uint(), 10)
	case reflect.Float32:
		return showFloat(rv.Float(), 32)
	case reflect.Float64:
		return showFloat(rv.Float(), 64)
	case reflect.String:
		return showString(rv.String())
	case reflect.Bool:
		return strconv.FormatBool(rv.Bool())
	}
	return fmt.Sprintf("%T", v)
}

// showFloat writes a float as JSON does, and non-finite ones as NaN, +Inf
// or -Inf (which JSON cannot carry).
func showFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	var b []byte
	if bits == 32 {
		b, _ = json.Marshal(float32(f))
	} else {
		b, _ = json.Marshal(f)
	}
	return string(b)
}

// showString quotes s, shortened to about maxShow bytes with its length.
func showString(s string) string {
	if len(s) <= maxShow {
		return strconv.Quote(s)
	}
	cut := maxShow
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}

// shorten cuts an unquoted form to about maxShow bytes.
func shorten(s string) string {
	if len(s) <= maxShow {
		return s
	}
	return s[:maxShow] + "... (" + strconv.Itoa(len(s)) + " bytes)"
}

// showJSON writes a decoded JSON array or object, shortened; values inside
// it that JSON cannot encode make it fall back to the Go type.
func showJSON(v any) (s string) {
	defer func() {
		if recover() != nil { // a user type's MarshalJSON panicked
			s = fmt.Sprintf("%T", v)
		}
	}()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprintf("%T", v)
	}
	return shorten(string(bytes.TrimSpace(buf.Bytes())))
}
