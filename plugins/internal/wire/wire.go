// Package wire is the encoding of plugin protocol version 1: the argument
// and reply types of its net/rpc calls, and the typed values in them.
//
// net/rpc carries these structs with encoding/gob, but no interface value
// ever crosses: a Value says by its Kind which field holds it, and times
// travel as RFC 3339 text with milliseconds. Changing a type here changes
// the protocol: plugins.ProtocolVersion must change with it.
package wire

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

// Kind says which field of a Value holds it.
type Kind uint8

// The kinds of values. Readings use bool, int, float, string and time;
// actuator arguments, which are model values, also URI.
const (
	KindBool   Kind = 1 // Bool
	KindInt    Kind = 2 // Int
	KindFloat  Kind = 3 // Float
	KindString Kind = 4 // Text
	KindTime   Kind = 5 // Text, in TimeLayout
	KindURI    Kind = 6 // Text
)

// TimeLayout is how times travel: RFC 3339 in UTC with milliseconds, the
// precision of the device protocol.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// Value is one typed value.
type Value struct {
	Kind  Kind
	Bool  bool
	Int   int64
	Float float64
	Text  string
}

// Reading is one ports.Reading.
type Reading struct {
	Name  string
	Value Value
}

// Empty is the argument or reply of a call that has none.
type Empty struct{}

// Description is the reply of Describe.
type Description struct {
	Name     string
	Version  string
	Readings []string
	Outputs  []string
}

// ReadArgs are the arguments of Read. Timeout is what was left of the
// host's context deadline when it called (0: no deadline); the plugin's
// context ends after it.
type ReadArgs struct {
	Timeout time.Duration
}

// ReadReply is the reply of Read.
type ReadReply struct {
	Readings []Reading
}

// ActuateArgs are the arguments of Actuate; Timeout as in ReadArgs.
type ActuateArgs struct {
	Timeout time.Duration
	Output  string
	Args    map[string]Value
}

// EncodeReading encodes r. Its value must be one of the types ports.Reading
// allows: bool, int64, float64, string or time.Time.
func EncodeReading(r ports.Reading) (Reading, error) {
	var v Value
	switch x := r.Value.(type) {
	case bool:
		v = Value{Kind: KindBool, Bool: x}
	case int64:
		v = Value{Kind: KindInt, Int: x}
	case float64:
		v = Value{Kind: KindFloat, Float: x}
	case string:
		v = Value{Kind: KindString, Text: x}
	case time.Time:
		v = Value{Kind: KindTime, Text: x.UTC().Format(TimeLayout)}
	default:
		return Reading{}, fmt.Errorf("reading %q: a value of type %T (expected bool, int64, float64, string or time.Time)", r.Name, r.Value)
	}
	return Reading{Name: r.Name, Value: v}, nil
}

// DecodeReading decodes r; it refuses an empty name and a kind that is not
// a reading's.
func DecodeReading(r Reading) (ports.Reading, error) {
	if r.Name == "" {
		return ports.Reading{}, fmt.Errorf("a reading without a name")
	}
	out := ports.Reading{Name: r.Name}
	switch v := r.Value; v.Kind {
	case KindBool:
		out.Value = v.Bool
	case KindInt:
		out.Value = v.Int
	case KindFloat:
		out.Value = v.Float
	case KindString:
		out.Value = v.Text
	case KindTime:
		t, err := parseTime(v.Text)
		if err != nil {
			return ports.Reading{}, fmt.Errorf("reading %q: %w", r.Name, err)
		}
		out.Value = t
	default:
		return ports.Reading{}, fmt.Errorf("reading %q: kind %d is not a reading's (expected bool, int, float, string or time)", r.Name, v.Kind)
	}
	return out, nil
}

// EncodeValue encodes a model value; the zero (invalid) Value is refused.
func EncodeValue(v model.Value) (Value, error) {
	switch v.Type() {
	case model.TypeBoolean:
		return Value{Kind: KindBool, Bool: v.Bool()}, nil
	case model.TypeInteger:
		return Value{Kind: KindInt, Int: v.Int()}, nil
	case model.TypeNumber:
		return Value{Kind: KindFloat, Float: v.Float()}, nil
	case model.TypeString:
		return Value{Kind: KindString, Text: v.Str()}, nil
	case model.TypeURI:
		return Value{Kind: KindURI, Text: v.Str()}, nil
	case model.TypeDateTime:
		return Value{Kind: KindTime, Text: v.Time().Format(TimeLayout)}, nil
	}
	return Value{}, fmt.Errorf("no value (expected a BOOLEAN, INTEGER, NUMBER, STRING, URI or DATETIME)")
}

// DecodeValue decodes a model value, checking it as the model's
// constructors do (a finite NUMBER, a STRING of valid UTF-8 within
// model.MaxStringBytes, an absolute URI).
func DecodeValue(v Value) (model.Value, error) {
	switch v.Kind {
	case KindBool:
		return model.Boolean(v.Bool), nil
	case KindInt:
		return model.Integer(v.Int), nil
	case KindFloat:
		if math.IsNaN(v.Float) || math.IsInf(v.Float, 0) {
			return model.Value{}, fmt.Errorf("%v is not a NUMBER (expected a finite number)", v.Float)
		}
		return model.Number(v.Float)
	case KindString:
		return model.String(v.Text)
	case KindURI:
		return model.URI(v.Text)
	case KindTime:
		t, err := parseTime(v.Text)
		if err != nil {
			return model.Value{}, err
		}
		return model.DateTime(t), nil
	}
	return model.Value{}, fmt.Errorf("kind %d is not a value's (expected bool, int, float, string, time or URI)", v.Kind)
}

// EncodeArgs encodes an actuator's arguments; an error names the first
// argument (by name) that cannot be encoded.
func EncodeArgs(args map[string]model.Value) (map[string]Value, error) {
	out := make(map[string]Value, len(args))
	for _, name := range slices.Sorted(maps.Keys(args)) {
		w, err := EncodeValue(args[name])
		if err != nil {
			return nil, fmt.Errorf("argument %q: %w", name, err)
		}
		out[name] = w
	}
	return out, nil
}

// DecodeArgs decodes an actuator's arguments; an error names the first
// argument (by name) that cannot be decoded.
func DecodeArgs(args map[string]Value) (map[string]model.Value, error) {
	out := make(map[string]model.Value, len(args))
	for _, name := range slices.Sorted(maps.Keys(args)) {
		m, err := DecodeValue(args[name])
		if err != nil {
			return nil, fmt.Errorf("argument %q: %w", name, err)
		}
		out[name] = m
	}
	return out, nil
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a time (expected RFC 3339, such as 2025-01-02T15:04:05.000Z)", s)
	}
	return t.UTC().Truncate(time.Millisecond), nil
}
