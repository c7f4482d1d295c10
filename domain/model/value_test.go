package model_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/domain/model"
)

func TestConstructors(t *testing.T) {
	long := strings.Repeat("é", model.MaxStringBytes/2) // exactly the limit
	tests := []struct {
		name string
		make func() (model.Value, error)
		want string // the value's String form, or the error
		err  bool
	}{
		{"number", func() (model.Value, error) { return model.Number(-1.25) }, "-1.25", false},
		{"number NaN", func() (model.Value, error) { return model.Number(math.NaN()) }, "want NUMBER, got NaN", true},
		{"number +Inf", func() (model.Value, error) { return model.Number(math.Inf(1)) }, "want NUMBER, got +Inf", true},
		{"number -Inf", func() (model.Value, error) { return model.Number(math.Inf(-1)) }, "want NUMBER, got -Inf", true},
		{"string", func() (model.Value, error) { return model.String("héllo") }, `"héllo"`, false},
		{"string at the limit", func() (model.Value, error) { return model.String(long) }, "", false},
		{"string too long", func() (model.Value, error) { return model.String(long + "x") }, "want STRING of at most 65536 bytes, got 65537 bytes", true},
		{"string not UTF-8", func() (model.Value, error) { return model.String("a\xffb") }, `want STRING of valid UTF-8, got "a\xffb"`, true},
		{"uri absolute", func() (model.Value, error) { return model.URI("https://x.example/o?a=1#f") }, `"https://x.example/o?a=1#f"`, false},
		{"uri urn", func() (model.Value, error) { return model.URI("urn:a:b") }, `"urn:a:b"`, false},
		{"uri relative", func() (model.Value, error) { return model.URI("/objects/x") }, `want URI (an absolute URI), got "/objects/x"`, true},
		{"uri empty", func() (model.Value, error) { return model.URI("") }, `want URI (an absolute URI), got ""`, true},
		{"uri unparseable", func() (model.Value, error) { return model.URI("http://[::1") }, `want URI (an absolute URI), got "http://[::1"`, true},
		{"uri not UTF-8", func() (model.Value, error) { return model.URI("http://\xff") }, `want URI of valid UTF-8, got "http://\xff"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := tt.make()
			if tt.err {
				if tt.want != "" {
					wantErr(t, err, tt.want)
				} else if err == nil {
					t.Errorf("no error for %v", v)
				}
				if v.Valid() {
					t.Errorf("value %v with an error", v)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != "" && v.String() != tt.want {
				t.Errorf("String() = %s, want %s", v.String(), tt.want)
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	at := time.Date(2024, 1, 2, 3, 4, 5, 678901234, time.FixedZone("X", 3600))
	atMs := time.Date(2024, 1, 2, 2, 4, 5, 678e6, time.UTC)
	tests := []struct {
		name string
		v    model.Value
		typ  model.Type
		i    int64
		f    float64
		s    string
		b    bool
		tm   time.Time
		anyV any
		str  string
		wire string
	}{
		{"invalid", model.Value{}, "", 0, 0, "", false, time.Time{}, nil, "<no value>", "null"},
		{"integer", model.Integer(-7), model.TypeInteger, -7, -7, "", false, time.Time{}, int64(-7), "-7", "-7"},
		{"number", mustNumber(t, 1e21), model.TypeNumber, 0, 1e21, "", false, time.Time{}, 1e21, "1e+21", "1e+21"},
		{"string", mustString(t, `a"b`), model.TypeString, 0, 0, `a"b`, false, time.Time{}, `a"b`, `"a\"b"`, `"a\"b"`},
		{"boolean true", model.Boolean(true), model.TypeBoolean, 0, 0, "", true, time.Time{}, true, "true", "true"},
		{"boolean false", model.Boolean(false), model.TypeBoolean, 0, 0, "", false, time.Time{}, false, "false", "false"},
		{"datetime", model.DateTime(at), model.TypeDateTime, 0, 0, "", false, atMs, atMs, "2024-01-02T02:04:05.678Z", "1704161045678"},
		{"uri", mustURI(t, "s3://b/k"), model.TypeURI, 0, 0, "s3://b/k", false, time.Time{}, "s3://b/k", `"s3://b/k"`, `"s3://b/k"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.v
			if v.Type() != tt.typ || v.Valid() != (tt.typ != "") {
				t.Errorf("Type() = %q, Valid() = %v", v.Type(), v.Valid())
			}
			if v.Int() != tt.i || v.Float() != tt.f || v.Str() != tt.s || v.Bool() != tt.b || !v.Time().Equal(tt.tm) {
				t.Errorf("accessors: %d %g %q %v %v", v.Int(), v.Float(), v.Str(), v.Bool(), v.Time())
			}
			if got := v.Any(); got != tt.anyV {
				if gt, ok := got.(time.Time); !ok || !gt.Equal(tt.tm) {
					t.Errorf("Any() = %#v, want %#v", got, tt.anyV)
				}
			}
			if v.String() != tt.str {
				t.Errorf("String() = %s, want %s", v.String(), tt.str)
			}
			b, err := json.Marshal(v)
			if err != nil || string(b) != tt.wire {
				t.Errorf("MarshalJSON = %s, %v; want %s", b, err, tt.wire)
			}
			if !v.Equal(tt.v) {
				t.Error("not equal to itself")
			}
		})
	}
}

func TestDateTimeNormalizes(t *testing.T) {
	now := time.Now() // has a monotonic reading
	v := model.DateTime(now)
	if v.Time().Location() != time.UTC || v.Time().Nanosecond()%1e6 != 0 {
		t.Errorf("Time() = %v, want UTC whole milliseconds", v.Time())
	}
	if v != model.DateTime(now.In(time.FixedZone("Y", -7200))) {
		t.Error("the same instant in another zone gives a different Value")
	}
	before := model.DateTime(time.UnixMilli(-1500).Add(-300 * time.Microsecond))
	if before.Time().UnixMilli() != -1501 {
		t.Errorf("pre-1970 time truncated to %d ms, want -1501", before.Time().UnixMilli())
	}
}

func TestEqual(t *testing.T) {
	one := mustNumber(t, 1)
	tests := []struct {
		name string
		a, b model.Value
		want bool
	}{
		{"invalid values", model.Value{}, model.Value{}, true},
		{"invalid and zero integer", model.Value{}, model.Integer(0), false},
		{"integer and number", model.Integer(1), one, false},
		{"integers", model.Integer(2), model.Integer(2), true},
		{"different integers", model.Integer(2), model.Integer(3), false},
		{"numbers", one, mustNumber(t, 1), true},
		{"zero and minus zero", mustNumber(t, 0), mustNumber(t, math.Copysign(0, -1)), true},
		{"string and uri", mustString(t, "urn:a"), mustURI(t, "urn:a"), false},
		{"strings", mustString(t, "a"), mustString(t, "a"), true},
		{"booleans", model.Boolean(true), model.Boolean(false), false},
		{"datetimes", model.DateTime(time.UnixMilli(5)), model.DateTime(time.UnixMilli(5).In(time.Local)), true},
		{"different datetimes", model.DateTime(time.UnixMilli(5)), model.DateTime(time.UnixMilli(6)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Equal(tt.b); got != tt.want {
				t.Errorf("%v.Equal(%v) = %v", tt.a, tt.b, got)
			}
			if got := tt.b.Equal(tt.a); got != tt.want {
				t.Errorf("%v.Equal(%v) = %v (not symmetric)", tt.b, tt.a, got)
			}
		})
	}
}

type celsius float64
type label string
type flag bool
type small uint8

func TestConvert(t *testing.T) {
	epoch := time.UnixMilli(1700000000123)
	long := strings.Repeat("ab", 40)
	tests := []struct {
		name string
		t    model.Type
		in   any
		want string // String() of the result, or the error
	}{
		{"integer from int", model.TypeInteger, 42, "42"},
		{"integer from int8", model.TypeInteger, int8(-8), "-8"},
		{"integer from uint64", model.TypeInteger, uint64(math.MaxInt64), "9223372036854775807"},
		{"integer from too big uint64", model.TypeInteger, uint64(math.MaxUint64), "want INTEGER, got 18446744073709551615"},
		{"integer from float64", model.TypeInteger, 3.0, "3"},
		{"integer from float32", model.TypeInteger, float32(-2), "-2"},
		{"integer from fraction", model.TypeInteger, 1.5, "want INTEGER, got 1.5"},
		{"integer from float32 fraction", model.TypeInteger, float32(0.1), "want INTEGER, got 0.1"},
		{"integer from 2^63", model.TypeInteger, 9223372036854775808.0, "want INTEGER, got 9223372036854776000"},
		{"integer from -2^63", model.TypeInteger, -9223372036854775808.0, "-9223372036854775808"},
		{"integer from json.Number", model.TypeInteger, json.Number("12"), "12"},
		{"integer from json.Number exponent", model.TypeInteger, json.Number("1e3"), "1000"},
		{"integer from json.Number fraction", model.TypeInteger, json.Number("1.25"), "want INTEGER, got 1.25"},
		{"integer from huge json.Number", model.TypeInteger, json.Number("1e400"), "want INTEGER, got 1e400"},
		{"integer from bad json.Number", model.TypeInteger, json.Number("x1"), "want INTEGER, got x1"},
		{"integer from string", model.TypeInteger, "1", `want INTEGER, got "1"`},
		{"integer from bool", model.TypeInteger, true, "want INTEGER, got true"},
		{"integer from null", model.TypeInteger, nil, "want INTEGER, got null"},
		{"integer from NaN", model.TypeInteger, math.NaN(), "want INTEGER, got NaN"},
		{"integer from named uint8", model.TypeInteger, small(7), "7"},
		{"integer from time", model.TypeInteger, epoch, "want INTEGER, got time.Time"},
		{"integer from slice", model.TypeInteger, []any{1.0, "a"}, `want INTEGER, got [1,"a"]`},
		{"integer from map", model.TypeInteger, map[string]any{"a<": 1}, `want INTEGER, got {"a<":1}`},
		{"integer from struct", model.TypeInteger, struct{}{}, "want INTEGER, got struct {}"},
		{"integer from unencodable slice", model.TypeInteger, []any{func() {}}, "want INTEGER, got []interface {}"},
		{"number from int64", model.TypeNumber, int64(1) << 60, "1.152921504606847e+18"},
		{"number from uint", model.TypeNumber, uint(3), "3"},
		{"number from float64", model.TypeNumber, 0.1, "0.1"},
		{"number from named float", model.TypeNumber, celsius(21.5), "21.5"},
		{"number from json.Number", model.TypeNumber, json.Number("-2.5e-3"), "-0.0025"},
		{"number from +Inf", model.TypeNumber, math.Inf(1), "want NUMBER, got +Inf"},
		{"number from float32 Inf", model.TypeNumber, float32(math.Inf(-1)), "want NUMBER, got -Inf"},
		{"number from huge json.Number", model.TypeNumber, json.Number("-1e999"), "want NUMBER, got -1e999"},
		{"number from string", model.TypeNumber, "1.5", `want NUMBER, got "1.5"`},
		{"number from named float NaN", model.TypeNumber, celsius(math.NaN()), "want NUMBER, got NaN"},
		{"boolean from bool", model.TypeBoolean, true, "true"},
		{"boolean from named bool", model.TypeBoolean, flag(true), "true"},
		{"boolean from string", model.TypeBoolean, "yes", `want BOOLEAN, got "yes"`},
		{"boolean from number", model.TypeBoolean, 1.0, "want BOOLEAN, got 1"},
		{"boolean from named string", model.TypeBoolean, label("on"), `want BOOLEAN, got "on"`},
		{"string from string", model.TypeString, "hi", `"hi"`},
		{"string from named string", model.TypeString, label("hall"), `"hall"`},
		{"string from json.Number", model.TypeString, json.Number("5"), "want STRING, got 5"},
		{"string from number", model.TypeString, 5.0, "want STRING, got 5"},
		{"string from float32", model.TypeString, float32(1.1), "want STRING, got 1.1"},
		{"string from big float", model.TypeString, 1e21, "want STRING, got 1e+21"},
		{"string long got is shortened", model.TypeInteger, long, `want INTEGER, got "` + long[:64] + `"... (80 bytes)`},
		{"string long multibyte got is cut at a rune", model.TypeInteger, "a" + strings.Repeat("é", 40), `want INTEGER, got "a` + strings.Repeat("é", 31) + `"... (81 bytes)`},
		{"string long json.Number is shortened", model.TypeString, json.Number(strings.Repeat("9", 70)), "want STRING, got " + strings.Repeat("9", 64) + "... (70 bytes)"},
		{"uri from string", model.TypeURI, "https://a/b", `"https://a/b"`},
		{"uri from relative", model.TypeURI, "a/b", `want URI (an absolute URI), got "a/b"`},
		{"uri from number", model.TypeURI, 1.0, "want URI (an absolute URI), got 1"},
		{"datetime from time", model.TypeDateTime, epoch, "2023-11-14T22:13:20.123Z"},
		{"datetime from int64 ms", model.TypeDateTime, int64(1700000000123), "2023-11-14T22:13:20.123Z"},
		{"datetime from float64 ms", model.TypeDateTime, 1700000000123.0, "2023-11-14T22:13:20.123Z"},
		{"datetime from json.Number", model.TypeDateTime, json.Number("1700000000123"), "2023-11-14T22:13:20.123Z"},
		{"datetime from RFC 3339", model.TypeDateTime, "2023-11-14T23:13:20.123456+01:00", "2023-11-14T22:13:20.123Z"},
		{"datetime from RFC 3339 without fraction", model.TypeDateTime, "2023-11-14T22:13:20Z", "2023-11-14T22:13:20.000Z"},
		{"datetime from named string", model.TypeDateTime, label("2023-11-14T22:13:20Z"), "2023-11-14T22:13:20.000Z"},
		{"datetime from json.Number is a number", model.TypeDateTime, json.Number("1e3"), "1970-01-01T00:00:01.000Z"},
		{"datetime from fraction ms", model.TypeDateTime, 1.5, "want DATETIME (epoch milliseconds or an RFC 3339 string), got 1.5"},
		{"datetime from date only", model.TypeDateTime, "2023-11-14", `want DATETIME (epoch milliseconds or an RFC 3339 string), got "2023-11-14"`},
		{"datetime from bool", model.TypeDateTime, false, "want DATETIME (epoch milliseconds or an RFC 3339 string), got false"},
		{"value of the same type", model.TypeInteger, model.Integer(3), "3"},
		{"integer value to number", model.TypeNumber, model.Integer(3), "3"},
		{"number value to integer", model.TypeInteger, mustNumber(t, 3), "3"},
		{"string value to boolean", model.TypeBoolean, mustString(t, "x"), `want BOOLEAN, got "x"`},
		{"datetime value to integer", model.TypeInteger, model.DateTime(epoch), "want INTEGER, got time.Time"},
		{"invalid value", model.TypeInteger, model.Value{}, "want INTEGER, got no value"},
		{"unknown type", model.Type("FLOAT"), 1.0, `unknown type "FLOAT": want one of INTEGER, NUMBER, STRING, BOOLEAN, DATETIME, URI`},
		{"empty type", model.Type(""), 1.0, "type is missing: want one of INTEGER, NUMBER, STRING, BOOLEAN, DATETIME, URI"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := tt.t.Convert(tt.in)
			got := ""
			if err != nil {
				got = err.Error()
				if v.Valid() {
					t.Errorf("valid value %v with error", v)
				}
			} else {
				got = v.String()
				if v.Type() != tt.t {
					t.Errorf("type %q, want %q", v.Type(), tt.t)
				}
			}
			if got != tt.want {
				t.Errorf("Convert(%#v):\n got %s\nwant %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestTypeValid(t *testing.T) {
	for _, typ := range []model.Type{model.TypeInteger, model.TypeNumber, model.TypeString, model.TypeBoolean, model.TypeDateTime, model.TypeURI} {
		if !typ.Valid() {
			t.Errorf("%s not valid", typ)
		}
	}
	for _, typ := range []model.Type{"", "integer", "FLOAT", "INTEGER "} {
		if typ.Valid() {
			t.Errorf("%q valid", typ)
		}
	}
}

func TestAttributeCheck(t *testing.T) {
	humidity := &model.Attribute{Name: "humidity", Type: model.TypeInteger, Range: &model.Range{Min: 0, Max: 100}}
	power := &model.Attribute{Name: "power", Type: model.TypeBoolean}
	temp := &model.Attribute{Name: "temp", Type: model.TypeNumber, Range: &model.Range{Min: -40.5, Max: 125}}
	huge := &model.Attribute{Name: "huge", Type: model.TypeInteger, Range: &model.Range{Min: 0, Max: 9007199254740992}}
	frac := &model.Attribute{Name: "frac", Type: model.TypeInteger, Range: &model.Range{Min: -0.5, Max: 2.5}}
	wide := &model.Attribute{Name: "wide", Type: model.TypeInteger, Range: &model.Range{Min: -1e19, Max: 1e19}}
	broken := &model.Attribute{Name: "label", Type: model.TypeString, Range: &model.Range{Min: 0, Max: 1}}
	tests := []struct {
		name string
		a    *model.Attribute
		in   any
		want string
	}{
		{"in range", humidity, 55.0, "55"},
		{"at min", humidity, 0, "0"},
		{"at max", humidity, json.Number("100"), "100"},
		{"above max", humidity, 140, `attribute "humidity": 140 is out of range 0..100`},
		{"below min", humidity, -1, `attribute "humidity": -1 is out of range 0..100`},
		{"wrong type", power, "yes", `attribute "power": want BOOLEAN, got "yes"`},
		{"boolean", power, false, "false"},
		{"number range", temp, 125.5, `attribute "temp": 125.5 is out of range -40.5..125`},
		{"number at fractional min", temp, -40.5, "-40.5"},
		{"integer beyond 2^53 compared exactly", huge, int64(9007199254740993), `attribute "huge": 9007199254740993 is out of range 0..9007199254740992`},
		{"integer at 2^53", huge, int64(9007199254740992), "9007199254740992"},
		{"fractional bounds", frac, 3, `attribute "frac": 3 is out of range -0.5..2.5`},
		{"fractional bounds low", frac, -1, `attribute "frac": -1 is out of range -0.5..2.5`},
		{"inside fractional bounds", frac, 0, "0"},
		{"bounds beyond int64", wide, int64(math.MaxInt64), "9223372036854775807"},
		{"bounds beyond int64 low", wide, int64(math.MinInt64), "-9223372036854775808"},
		{"range on a string is ignored", broken, "x", `"x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := tt.a.Check(tt.in)
			got := v.String()
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Check(%v):\n got %s\nwant %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestFieldCheck(t *testing.T) {
	f := &model.FormatField{Name: "temp", Type: model.TypeNumber}
	if v, err := f.Check(21); err != nil || !v.Equal(mustNumber(t, 21)) {
		t.Errorf("Check(21) = %v, %v", v, err)
	}
	_, err := f.Check("hot")
	wantErr(t, err, `field "temp": want NUMBER, got "hot"`)
}

func TestConvertArgs(t *testing.T) {
	schedule := &model.Action{Name: "schedule", Arguments: []model.Argument{
		{Name: "at", Type: model.TypeDateTime},
		{Name: "seconds", Type: model.TypeInteger, Range: &model.Range{Min: 1, Max: 86400}},
		{Name: "mode", Type: model.TypeString, Default: mustString(t, "on")},
	}}
	blink := &model.Action{Name: "blink", Legacy: true, Arguments: []model.Argument{
		{Name: "value", Type: model.TypeInteger, Range: &model.Range{Min: 1, Max: 20}}}}
	toggle := &model.Action{Name: "toggle"}
	tests := []struct {
		name string
		a    *model.Action
		raw  map[string]any
		want string // the arguments as name=value in declaration order, or the error
	}{
		{"all given", schedule, map[string]any{"at": 1000.0, "seconds": 60.0, "mode": "off"},
			`at=1970-01-01T00:00:01.000Z seconds=60 mode="off"`},
		{"default used", schedule, map[string]any{"at": "1970-01-01T00:00:02Z", "seconds": json.Number("5")},
			`at=1970-01-01T00:00:02.000Z seconds=5 mode="on"`},
		{"out of range", schedule, map[string]any{"at": 0, "seconds": 0},
			`action "schedule": argument "seconds": 0 is out of range 1..86400`},
		{"every problem", schedule, map[string]any{"when": 1, "seconds": "x", "mode": nil, "a": 1},
			"action \"schedule\": unknown argument \"a\": want one of \"at\", \"seconds\", \"mode\"\n" +
				"action \"schedule\": unknown argument \"when\": want one of \"at\", \"seconds\", \"mode\"\n" +
				"action \"schedule\": argument \"at\" is missing\n" +
				"action \"schedule\": argument \"seconds\": want INTEGER, got \"x\"\n" +
				"action \"schedule\": argument \"mode\": want STRING, got null"},
		{"legacy", blink, map[string]any{"value": 3.0}, "value=3"},
		{"legacy out of range", blink, map[string]any{"value": 25}, `action "blink": argument "value": 25 is out of range 1..20`},
		{"legacy missing", blink, nil, `action "blink": argument "value" is missing`},
		{"legacy unknown", blink, map[string]any{"value": 1, "v": 2}, `action "blink": unknown argument "v": want "value"`},
		{"no arguments, nil body", toggle, nil, ""},
		{"no arguments, empty body", toggle, map[string]any{}, ""},
		{"no arguments, one given", toggle, map[string]any{"value": true}, `action "toggle": unknown argument "value": the action takes no arguments`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args, err := tt.a.ConvertArgs(tt.raw)
			var got string
			if err != nil {
				got = err.Error()
				if args != nil {
					t.Errorf("arguments %v with an error", args)
				}
			} else {
				if args == nil {
					t.Error("nil map without error")
				}
				var parts []string
				for _, arg := range tt.a.Arguments {
					parts = append(parts, arg.Name+"="+args[arg.Name].String())
				}
				got = strings.Join(parts, " ")
				if len(args) != len(tt.a.Arguments) {
					t.Errorf("%d arguments, want %d", len(args), len(tt.a.Arguments))
				}
			}
			if got != tt.want {
				t.Errorf("ConvertArgs(%v):\n got %s\nwant %s", tt.raw, got, tt.want)
			}
		})
	}
}

func TestCapabilities(t *testing.T) {
	tests := []struct{ got, want string }{
		{model.CapDirectActivation, "urn:oracle:iot:dcd:capability:direct_activation"},
		{model.CapIndirectActivation, "urn:oracle:iot:dcd:capability:indirect_activation"},
		{model.CapDevicePolicy, "urn:oracle:iot:dcd:capability:device_policy"},
		{model.CapMessageDispatcher, "urn:oracle:iot:dcd:capability:message_dispatcher"},
		{model.CapDiagnostics, "urn:oracle:iot:dcd:capability:diagnostics"},
		{model.CapLogging, "urn:oracle:iot:dcd:capability:logging"},
		{model.CapPowerManagement, "urn:oracle:iot:dcd:capability:power_management"},
		{model.CapSoftwareManagement, "urn:oracle:iot:dcd:capability:software_management"},
		{model.FormatTestMessage, "urn:oracle:iot:dcd:capability:diagnostics:test_message"},
		{model.FormatOverflowAlert, "urn:oracle:iot:dcd:capability:message_dispatcher:overflow"},
		{model.AttributesFormat("urn:com:x"), "urn:com:x:attributes"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %s, want %s", tt.got, tt.want)
		}
	}
	systems := map[string]bool{
		model.CapDirectActivation: true, model.FormatOverflowAlert: true,
		model.SystemURNPrefix: false, "urn:oracle:iot:dcd:capability": false,
		"urn:com:oracle:iot:device:humidity_sensor": false, "": false,
		"URN:ORACLE:IOT:DCD:CAPABILITY:logging": false,
	}
	for urn, want := range systems {
		if got := model.IsSystemURN(urn); got != want {
			t.Errorf("IsSystemURN(%q) = %v, want %v", urn, got, want)
		}
	}
}

func BenchmarkAttributeLookup(b *testing.B) {
	m := parseFile(b, sharedModels+"/temperature_sensor.json")
	plain := &model.DeviceModel{URN: m.URN, Attributes: m.Attributes} // never validated: scans
	b.Run("validated", func(b *testing.B) {
		for b.Loop() {
			if _, ok := m.Attribute("startTime"); !ok {
				b.Fatal("not found")
			}
		}
	})
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			if _, ok := plain.Attribute("startTime"); !ok {
				b.Fatal("not found")
			}
		}
	})
}

func BenchmarkAttributeCheck(b *testing.B) {
	a := &model.Attribute{Name: "humidity", Type: model.TypeInteger, Range: &model.Range{Min: 0, Max: 100}}
	for b.Loop() {
		if _, err := a.Check(55.0); err != nil {
			b.Fatal(err)
		}
	}
}
