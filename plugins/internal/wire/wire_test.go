package wire

import (
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

func TestReadings(t *testing.T) {
	at := time.Date(2025, 6, 7, 8, 9, 10, 123_456_789, time.FixedZone("CEST", 2*3600))
	tests := []struct {
		name string
		in   any
		wire Value
		out  any
	}{
		{"bool", true, Value{Kind: KindBool, Bool: true}, true},
		{"int64", int64(math.MinInt64), Value{Kind: KindInt, Int: math.MinInt64}, int64(math.MinInt64)},
		{"float64", -1.5e-300, Value{Kind: KindFloat, Float: -1.5e-300}, -1.5e-300},
		{"string", "ä\x00b", Value{Kind: KindString, Text: "ä\x00b"}, "ä\x00b"},
		{"time, in UTC to the millisecond", at, Value{Kind: KindTime, Text: "2025-06-07T06:09:10.123Z"},
			time.Date(2025, 6, 7, 6, 9, 10, 123_000_000, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := EncodeReading(ports.Reading{Name: "r", Value: tt.in})
			if err != nil || w != (Reading{Name: "r", Value: tt.wire}) {
				t.Fatalf("encode: %+v, %v", w, err)
			}
			r, err := DecodeReading(w)
			if err != nil || !reflect.DeepEqual(r, ports.Reading{Name: "r", Value: tt.out}) {
				t.Fatalf("decode: %#v, %v", r, err)
			}
		})
	}
}

func TestReadingErrors(t *testing.T) {
	if _, err := EncodeReading(ports.Reading{Name: "r", Value: float32(1)}); err == nil ||
		err.Error() != `reading "r": a value of type float32 (expected bool, int64, float64, string or time.Time)` {
		t.Errorf("encode: %v", err)
	}
	for _, tt := range []struct {
		in   Reading
		want string
	}{
		{Reading{Value: Value{Kind: KindBool}}, "a reading without a name"},
		{Reading{Name: "r", Value: Value{Kind: KindURI, Text: "x:y"}}, `reading "r": kind 6 is not a reading's (expected bool, int, float, string or time)`},
		{Reading{Name: "r"}, `reading "r": kind 0 is not a reading's (expected bool, int, float, string or time)`},
		{Reading{Name: "r", Value: Value{Kind: KindTime, Text: "yesterday"}},
			`reading "r": "yesterday" is not a time (expected RFC 3339, such as 2025-01-02T15:04:05.000Z)`},
	} {
		if _, err := DecodeReading(tt.in); err == nil || err.Error() != tt.want {
			t.Errorf("decode %+v: %v, want %s", tt.in, err, tt.want)
		}
	}
}

func TestValues(t *testing.T) {
	num, _ := model.Number(2.5)
	str, _ := model.String("s")
	uri, _ := model.URI("urn:x:y")
	at := model.DateTime(time.Date(2025, 1, 2, 3, 4, 5, 6_000_000, time.UTC))
	args := map[string]model.Value{"b": model.Boolean(false), "i": model.Integer(-1), "n": num, "s": str, "u": uri, "d": at}
	w, err := EncodeArgs(args)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Value{"b": {Kind: KindBool}, "i": {Kind: KindInt, Int: -1}, "n": {Kind: KindFloat, Float: 2.5},
		"s": {Kind: KindString, Text: "s"}, "u": {Kind: KindURI, Text: "urn:x:y"}, "d": {Kind: KindTime, Text: "2025-01-02T03:04:05.006Z"}}
	if !reflect.DeepEqual(w, want) {
		t.Errorf("encode: %+v", w)
	}
	back, err := DecodeArgs(w)
	if err != nil || len(back) != len(args) {
		t.Fatalf("decode: %v, %v", back, err)
	}
	for name, v := range args {
		if !back[name].Equal(v) || back[name].Type() != v.Type() {
			t.Errorf("%s: %v (%s), want %v (%s)", name, back[name], back[name].Type(), v, v.Type())
		}
	}
}

func TestValueErrors(t *testing.T) {
	if _, err := EncodeArgs(map[string]model.Value{"a": model.Integer(1), "z": {}}); err == nil ||
		err.Error() != `argument "z": no value (expected a BOOLEAN, INTEGER, NUMBER, STRING, URI or DATETIME)` {
		t.Errorf("encode: %v", err)
	}
	for _, tt := range []struct {
		in   Value
		want string
	}{
		{Value{Kind: KindFloat, Float: math.NaN()}, `argument "a": NaN is not a NUMBER (expected a finite number)`},
		{Value{Kind: KindFloat, Float: math.Inf(-1)}, `argument "a": -Inf is not a NUMBER (expected a finite number)`},
		{Value{Kind: KindString, Text: "\xff"}, `argument "a": want STRING of valid UTF-8, got "\xff"`},
		{Value{Kind: KindURI, Text: "relative/path"}, `argument "a": want URI (an absolute URI), got "relative/path"`},
		{Value{Kind: 9}, `argument "a": kind 9 is not a value's (expected bool, int, float, string, time or URI)`},
	} {
		if _, err := DecodeArgs(map[string]Value{"a": tt.in}); err == nil || err.Error() != tt.want {
			t.Errorf("decode %+v: %v\nwant %s", tt.in, err, tt.want)
		}
	}
}

// What a plugin or a host sends is outside input: decoding never panics,
// and what decodes encodes back to itself.
func FuzzDecode(f *testing.F) {
	f.Add(uint8(KindTime), false, int64(0), 0.0, "2025-01-02T03:04:05.678Z")
	f.Add(uint8(KindURI), true, int64(-1), math.Inf(1), "https://x")
	f.Add(uint8(KindFloat), false, int64(7), math.NaN(), "")
	f.Fuzz(func(t *testing.T, kind uint8, b bool, i int64, fl float64, text string) {
		v := Value{Kind: Kind(kind), Bool: b, Int: i, Float: fl, Text: text}
		if m, err := DecodeValue(v); err == nil {
			w, err := EncodeValue(m)
			if err != nil {
				t.Fatalf("encode %v: %v", m, err)
			}
			if m2, err := DecodeValue(w); err != nil || !m2.Equal(m) {
				t.Fatalf("%v encodes as %+v, which decodes as %v, %v", m, w, m2, err)
			}
		}
		if r, err := DecodeReading(Reading{Name: "r", Value: v}); err == nil {
			w, err := EncodeReading(r)
			if err != nil {
				t.Fatalf("encode %v: %v", r, err)
			}
			if r2, err := DecodeReading(w); err != nil || !(reflect.DeepEqual(r2, r) || fl != fl) {
				t.Fatalf("%v encodes as %+v, which decodes as %v, %v", r, w, r2, err)
			}
		}
	})
}
