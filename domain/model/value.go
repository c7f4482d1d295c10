package model

import (
	"encoding/json"
	"math"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxStringBytes is the largest STRING or URI value, in bytes: the cap that
// Oracle's client libraries put on string values in messages (protocol.md §3b).
const MaxStringBytes = 65536

// Value is a typed value of one of the six model types. The zero Value is
// invalid (Valid reports false): it stands for "no value" (for example an
// attribute without a default that was never set).
//
// A Value is immutable and safe to copy and to share between goroutines.
// Values are built only by the constructors below and by Type.Convert, so a
// valid Value always holds a legal value of its type: a finite NUMBER, a
// STRING of valid UTF-8 within MaxStringBytes, an absolute URI, and a DATETIME
// in UTC truncated to the millisecond (the precision of the wire form).
type Value struct {
	typ Type
	i   int64     // INTEGER, and BOOLEAN as 0/1
	f   float64   // NUMBER
	s   string    // STRING, URI
	t   time.Time // DATETIME
}

// Integer returns an INTEGER value.
func Integer(i int64) Value { return Value{typ: TypeInteger, i: i} }

// Number returns a NUMBER value. NaN and ±Inf are rejected: JSON cannot
// carry them.
func Number(f float64) (Value, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return Value{}, wantGot(TypeNumber, f)
	}
	return Value{typ: TypeNumber, f: f}, nil
}

// String returns a STRING value. The string must be valid UTF-8 and at most
// MaxStringBytes long.
func String(s string) (Value, error) {
	if err := checkText(TypeString, s); err != nil {
		return Value{}, err
	}
	return Value{typ: TypeString, s: s}, nil
}

// Boolean returns a BOOLEAN value.
func Boolean(b bool) Value {
	v := Value{typ: TypeBoolean}
	if b {
		v.i = 1
	}
	return v
}

// DateTime returns a DATETIME value. The time is converted to UTC, its
// monotonic clock reading is dropped and it is truncated to the millisecond,
// because the wire form is epoch milliseconds (protocol.md §3c).
func DateTime(t time.Time) Value {
	return Value{typ: TypeDateTime, t: t.Round(0).Truncate(time.Millisecond).UTC()}
}

// URI returns a URI value. The string must be an absolute URI (it has a
// scheme, as net/url sees it), valid UTF-8 and at most MaxStringBytes long.
func URI(s string) (Value, error) {
	if err := checkText(TypeURI, s); err != nil {
		return Value{}, err
	}
	if u, err := url.Parse(s); err != nil || !u.IsAbs() {
		return Value{}, wantGot(TypeURI, s)
	}
	return Value{typ: TypeURI, s: s}, nil
}

// checkText checks the UTF-8 validity and length shared by STRING and URI.
func checkText(t Type, s string) error {
	if len(s) > MaxStringBytes {
		return &convError{want: string(t) + " of at most " + strconv.Itoa(MaxStringBytes) + " bytes", got: strconv.Itoa(len(s)) + " bytes"}
	}
	if !utf8.ValidString(s) {
		return &convError{want: string(t) + " of valid UTF-8", got: show(s)}
	}
	return nil
}

// Type returns the type of v, or "" when v is invalid.
func (v Value) Type() Type { return v.typ }

// Valid reports whether v holds a value (it is not the zero Value).
func (v Value) Valid() bool { return v.typ != "" }

// Int returns the value of an INTEGER, and 0 for any other type.
func (v Value) Int() int64 {
	if v.typ == TypeInteger {
		return v.i
	}
	return 0
}

// Float returns the value of a NUMBER or, widened, of an INTEGER, and 0 for
// any other type.
func (v Value) Float() float64 {
	switch v.typ {
	case TypeNumber:
		return v.f
	case TypeInteger:
		return float64(v.i)
	}
	return 0
}

// Str returns the value of a STRING or URI, and "" for any other type.
func (v Value) Str() string { return v.s }

// Bool returns the value of a BOOLEAN, and false for any other type.
func (v Value) Bool() bool { return v.typ == TypeBoolean && v.i != 0 }

// Time returns the value of a DATETIME (in UTC), and the zero time for any
// other type.
func (v Value) Time() time.Time { return v.t }

// Any returns the value as a plain Go value, as it goes into message fields:
// int64 (INTEGER), float64 (NUMBER), string (STRING, URI), bool (BOOLEAN),
// time.Time (DATETIME), or nil when v is invalid.
func (v Value) Any() any {
	switch v.typ {
	case TypeInteger:
		return v.i
	case TypeNumber:
		return v.f
	case TypeString, TypeURI:
		return v.s
	case TypeBoolean:
		return v.i != 0
	case TypeDateTime:
		return v.t
	}
	return nil
}

// String returns v in a human form, as used in error messages: integers in
// decimal, numbers in the shortest form that reads back exactly (strconv 'g'),
// STRING and URI values quoted with Go syntax, booleans as true/false,
// DATETIME in RFC 3339 with milliseconds, and "<no value>" when v is invalid.
func (v Value) String() string {
	switch v.typ {
	case TypeInteger:
		return strconv.FormatInt(v.i, 10)
	case TypeNumber:
		return strconv.FormatFloat(v.f, 'g', -1, 64)
	case TypeString, TypeURI:
		return strconv.Quote(v.s)
	case TypeBoolean:
		return strconv.FormatBool(v.i != 0)
	case TypeDateTime:
		return v.t.Format("2006-01-02T15:04:05.000Z07:00")
	}
	return "<no value>"
}

// Equal reports whether v and w have the same type and the same value.
// Two invalid Values are equal. An INTEGER never equals a NUMBER.
func (v Value) Equal(w Value) bool {
	if v.typ != w.typ {
		return false
	}
	switch v.typ {
	case TypeInteger, TypeBoolean:
		return v.i == w.i
	case TypeNumber:
		return v.f == w.f
	case TypeString, TypeURI:
		return v.s == w.s
	case TypeDateTime:
		return v.t.Equal(w.t)
	}
	return true
}

// MarshalJSON writes v in its wire form (protocol.md §3c): a JSON number for
// INTEGER and NUMBER, a string for STRING and URI, true/false for BOOLEAN,
// epoch milliseconds for DATETIME, and null when v is invalid. It never fails.
func (v Value) MarshalJSON() ([]byte, error) {
	switch v.typ {
	case TypeInteger:
		return strconv.AppendInt(nil, v.i, 10), nil
	case TypeNumber:
		return json.Marshal(v.f)
	case TypeString, TypeURI:
		return json.Marshal(v.s)
	case TypeBoolean:
		return strconv.AppendBool(nil, v.i != 0), nil
	case TypeDateTime:
		return strconv.AppendInt(nil, v.t.UnixMilli(), 10), nil
	}
	return []byte("null"), nil
}
