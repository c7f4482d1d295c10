package model_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/iotnode/iotnode/domain/model"
)

func TestValidate(t *testing.T) {
	intRange := func(lo, hi float64) *model.Range { return &model.Range{Min: lo, Max: hi} }
	s := mustString(t, "C")
	tests := []struct {
		name string
		m    model.DeviceModel
		want string
	}{
		{"valid minimal", model.DeviceModel{URN: "u"}, ""},
		{"missing urn", model.DeviceModel{}, "device model: urn is missing"},
		{"blank urn", model.DeviceModel{URN: " \t"}, "device model: urn is missing"},
		{"missing attribute name and type", model.DeviceModel{URN: "u", Attributes: []model.Attribute{{Type: model.TypeInteger}, {Name: "b"}}},
			"device model \"u\": attributes[0]: name is missing\n" +
				"device model \"u\": attribute \"b\": type is missing: want one of INTEGER, NUMBER, STRING, BOOLEAN, DATETIME, URI"},
		{"duplicate attribute", model.DeviceModel{URN: "u", Attributes: []model.Attribute{
			{Name: "a", Type: model.TypeURI}, {Name: "b", Type: model.TypeURI}, {Name: "a", Type: model.TypeURI}}},
			`device model "u": attribute "a": duplicate name (also attributes[0])`},
		{"unknown type", model.DeviceModel{URN: "u", Attributes: []model.Attribute{{Name: "a", Type: "integer"}}},
			`device model "u": attribute "a": unknown type "integer": want one of INTEGER, NUMBER, STRING, BOOLEAN, DATETIME, URI`},
		{"inverted range", model.DeviceModel{URN: "u", Attributes: []model.Attribute{{Name: "x", Type: model.TypeInteger, Range: intRange(100, 0)}}},
			`device model "u": attribute "x": range "100,0": min 100 is greater than max 0`},
		{"inverted number range", model.DeviceModel{URN: "u", Attributes: []model.Attribute{{Name: "x", Type: model.TypeNumber, Range: intRange(0.5, 0.25)}}},
			`device model "u": attribute "x": range "0.5,0.25": min 0.5 is greater than max 0.25`},
		{"empty range is fine", model.DeviceModel{URN: "u", Attributes: []model.Attribute{{Name: "x", Type: model.TypeInteger, Range: intRange(3, 3), Default: model.Integer(3)}}}, ""},
		{"non-finite range", model.DeviceModel{URN: "u", Attributes: []model.Attribute{{Name: "x", Type: model.TypeNumber, Range: intRange(0, posInf())}}},
			`device model "u": attribute "x": range "0,+Inf": want finite numbers`},
		{"range on a string", model.DeviceModel{URN: "u", Attributes: []model.Attribute{{Name: "label", Type: model.TypeString, Range: intRange(0, 10)}}},
			`device model "u": attribute "label": range "0,10" is not allowed on type STRING: want INTEGER or NUMBER`},
		{"default of the wrong type", model.DeviceModel{URN: "u", Attributes: []model.Attribute{{Name: "n", Type: model.TypeInteger, Default: s}}},
			`device model "u": attribute "n": default "C": want INTEGER, got STRING`},
		{"integer default on a number", model.DeviceModel{URN: "u", Attributes: []model.Attribute{{Name: "n", Type: model.TypeNumber, Default: model.Integer(1)}}},
			`device model "u": attribute "n": default 1: want NUMBER, got INTEGER`},
		{"default out of range", model.DeviceModel{URN: "u", Attributes: []model.Attribute{{Name: "maxThreshold", Type: model.TypeInteger, Range: intRange(60, 100), Default: model.Integer(120)}}},
			`device model "u": attribute "maxThreshold": default 120 is out of range 60..100`},
		{"number default out of range", model.DeviceModel{URN: "u", Attributes: []model.Attribute{{Name: "t", Type: model.TypeNumber, Range: intRange(-40, 125), Default: mustNumber(t, 125.5)}}},
			`device model "u": attribute "t": default 125.5 is out of range -40..125`},
		{"default not checked against an inverted range", model.DeviceModel{URN: "u", Attributes: []model.Attribute{{Name: "x", Type: model.TypeInteger, Range: intRange(1, 0), Default: model.Integer(5)}}},
			`device model "u": attribute "x": range "1,0": min 1 is greater than max 0`},
		{"default not checked on an unknown type", model.DeviceModel{URN: "u", Attributes: []model.Attribute{{Name: "x", Type: "X", Default: model.Integer(5)}}},
			`device model "u": attribute "x": unknown type "X": want one of INTEGER, NUMBER, STRING, BOOLEAN, DATETIME, URI`},
		{"alias equal to another name", model.DeviceModel{URN: "u", Attributes: []model.Attribute{
			{Name: "temp", Type: model.TypeNumber}, {Name: "t2", Alias: "temp", Type: model.TypeNumber}}},
			`device model "u": attribute "t2": alias "temp" is already the name of attribute "temp"`},
		{"alias equal to another alias", model.DeviceModel{URN: "u", Attributes: []model.Attribute{
			{Name: "a", Alias: "x", Type: model.TypeNumber}, {Name: "b", Alias: "x", Type: model.TypeNumber}}},
			`device model "u": attribute "b": alias "x" is already the alias of attribute "a"`},
		{"alias equal to a later name", model.DeviceModel{URN: "u", Attributes: []model.Attribute{
			{Name: "a", Alias: "b", Type: model.TypeNumber}, {Name: "b", Type: model.TypeNumber}}},
			`device model "u": attribute "a": alias "b" is already the name of attribute "b"`},
		{"alias equal to own name is fine", model.DeviceModel{URN: "u", Attributes: []model.Attribute{{Name: "a", Alias: "a", Type: model.TypeBoolean}}}, ""},
		{"action problems", model.DeviceModel{URN: "u", Actions: []model.Action{
			{Name: "go"}, {Name: "go"}, {Alias: "go"}, {Name: "b", Alias: "a2"}, {Name: "c", Alias: "a2"}}},
			"device model \"u\": action \"go\": duplicate name (also actions[0])\n" +
				"device model \"u\": actions[2]: name is missing\n" +
				"device model \"u\": actions[2]: alias \"go\" is already the name of action \"go\"\n" +
				"device model \"u\": action \"c\": alias \"a2\" is already the alias of action \"b\""},
		{"argument problems", model.DeviceModel{URN: "u", Actions: []model.Action{{Name: "schedule", Arguments: []model.Argument{
			{Name: "seconds", Type: model.TypeInteger, Range: intRange(1, 86400), Default: model.Integer(0)},
			{Name: "seconds", Type: model.TypeInteger},
			{Type: model.TypeBoolean, Range: intRange(0, 1)},
			{Name: "at", Type: model.TypeDateTime, Default: model.Boolean(true)},
		}}}},
			"device model \"u\": action \"schedule\": argument \"seconds\": default 0 is out of range 1..86400\n" +
				"device model \"u\": action \"schedule\": argument \"seconds\": duplicate name (also arguments[0])\n" +
				"device model \"u\": action \"schedule\": arguments[2]: name is missing\n" +
				"device model \"u\": action \"schedule\": arguments[2]: range \"0,1\" is not allowed on type BOOLEAN: want INTEGER or NUMBER\n" +
				"device model \"u\": action \"schedule\": argument \"at\": default true: want DATETIME, got BOOLEAN"},
		{"legacy action shape", model.DeviceModel{URN: "u", Actions: []model.Action{
			{Name: "a", Legacy: true},
			{Name: "b", Legacy: true, Arguments: []model.Argument{{Name: "v", Type: model.TypeInteger}}},
			{Name: "c", Legacy: true, Arguments: []model.Argument{{Name: "value", Type: model.TypeInteger, Default: model.Integer(1)}}},
			{Name: "d", Legacy: true, Arguments: []model.Argument{{Name: "value", Type: model.TypeInteger}}},
		}},
			"device model \"u\": action \"a\": a legacy action (argType) must have exactly one argument, named \"value\", with no description or default\n" +
				"device model \"u\": action \"b\": a legacy action (argType) must have exactly one argument, named \"value\", with no description or default\n" +
				"device model \"u\": action \"c\": a legacy action (argType) must have exactly one argument, named \"value\", with no description or default"},
		{"format problems", model.DeviceModel{URN: "u", Formats: []model.Format{
			{URN: "f", Name: "n", Type: model.FormatData},
			{URN: "f", Name: "n", Type: "DATA "},
			{Name: "m"},
			{URN: "g", Type: model.FormatAlert, Fields: []model.FormatField{{Name: "a", Type: model.TypeURI}, {Name: "a"}, {Type: "int"}}},
		}},
			"device model \"u\": format \"f\": duplicate urn (also formats[0])\n" +
				"device model \"u\": format \"f\": duplicate name (also formats[0])\n" +
				"device model \"u\": format \"f\": unknown type \"DATA \": want DATA or ALERT\n" +
				"device model \"u\": formats[2]: urn is missing\n" +
				"device model \"u\": formats[2]: type is missing: want DATA or ALERT\n" +
				"device model \"u\": format \"g\": field \"a\": duplicate name (also fields[0])\n" +
				"device model \"u\": format \"g\": field \"a\": type is missing: want one of INTEGER, NUMBER, STRING, BOOLEAN, DATETIME, URI\n" +
				"device model \"u\": format \"g\": fields[2]: name is missing\n" +
				"device model \"u\": format \"g\": fields[2]: unknown type \"int\": want one of INTEGER, NUMBER, STRING, BOOLEAN, DATETIME, URI"},
		{"every problem at once", model.DeviceModel{
			Attributes: []model.Attribute{{Name: "x", Type: model.TypeInteger, Range: intRange(100, 0)}},
			Actions:    []model.Action{{}},
			Formats:    []model.Format{{URN: "f", Type: "X"}},
		},
			"device model: urn is missing\n" +
				"device model: attribute \"x\": range \"100,0\": min 100 is greater than max 0\n" +
				"device model: actions[0]: name is missing\n" +
				"device model: format \"f\": unknown type \"X\": want DATA or ALERT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.m.Validate()
			wantErr(t, err, tt.want)
			if tt.want != "" {
				if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n == 0 {
					t.Error("error does not unwrap into problems")
				}
			}
		})
	}
}

func TestValidateNil(t *testing.T) {
	var m *model.DeviceModel
	wantErr(t, m.Validate(), "device model: want a model, got nil")
}

func posInf() float64 {
	var zero float64
	return 1 / zero
}

func handBuilt() *model.DeviceModel {
	return &model.DeviceModel{
		URN: "urn:x",
		Attributes: []model.Attribute{
			{Name: "temp", Alias: "t", Type: model.TypeNumber},
			{Name: "unit", Type: model.TypeString},
		},
		Actions: []model.Action{{Name: "reset", Alias: "r"}, {Name: "power"}},
		Formats: []model.Format{{URN: "urn:x:hot", Type: model.FormatAlert}},
	}
}

func TestLookups(t *testing.T) {
	validated := handBuilt()
	if err := validated.Validate(); err != nil {
		t.Fatal(err)
	}
	broken := handBuilt()
	broken.Attributes = append(broken.Attributes, model.Attribute{Name: "t", Type: model.TypeInteger}) // name "t" clashes with alias "t"
	if broken.Validate() == nil {
		t.Fatal("broken model validated")
	}
	var nilModel *model.DeviceModel
	for name, m := range map[string]*model.DeviceModel{"validated": validated, "hand built": handBuilt(), "failed Validate": broken} {
		t.Run(name, func(t *testing.T) {
			for _, key := range []string{"temp", "t"} {
				a, ok := m.Attribute(key)
				wantName := "temp"
				if name == "failed Validate" && key == "t" {
					wantName = "t" // a name match wins over an alias match
				}
				if !ok || a.Name != wantName {
					t.Errorf("Attribute(%q) = %v, %v; want %q", key, a, ok, wantName)
				}
			}
			if a, ok := m.Attribute("unit"); !ok || a != &m.Attributes[1] {
				t.Errorf("Attribute(unit) does not point into the model")
			}
			for _, key := range []string{"", "nope", "TEMP"} {
				if a, ok := m.Attribute(key); ok || a != nil {
					t.Errorf("Attribute(%q) = %v, %v", key, a, ok)
				}
			}
			for _, key := range []string{"reset", "r"} {
				if a, ok := m.Action(key); !ok || a.Name != "reset" {
					t.Errorf("Action(%q) = %v, %v", key, a, ok)
				}
			}
			if a, ok := m.Action("power"); !ok || a != &m.Actions[1] {
				t.Errorf("Action(power) = %v, %v", a, ok)
			}
			if a, ok := m.Action("x"); ok || a != nil {
				t.Errorf("Action(x) = %v, %v", a, ok)
			}
			if f, ok := m.Format("urn:x:hot"); !ok || f != &m.Formats[0] {
				t.Errorf("Format = %v, %v", f, ok)
			}
			if f, ok := m.Format("urn:x"); ok || f != nil {
				t.Errorf("Format(urn:x) = %v, %v", f, ok)
			}
		})
	}
	if a, ok := nilModel.Attribute("x"); ok || a != nil {
		t.Error("nil model has attributes")
	}
	if a, ok := nilModel.Action("x"); ok || a != nil {
		t.Error("nil model has actions")
	}
	if f, ok := nilModel.Format("x"); ok || f != nil {
		t.Error("nil model has formats")
	}
	if _, ok := (&model.DeviceModel{}).Action(""); ok {
		t.Error("empty action name found")
	}
	if _, ok := (&model.DeviceModel{}).Format(""); ok {
		t.Error("empty format urn found")
	}
}

// TestLookupsConcurrent runs lookups and checks from many goroutines, on a
// validated and on a hand-built model; run with -race.
func TestLookupsConcurrent(t *testing.T) {
	validated := handBuilt()
	if err := validated.Validate(); err != nil {
		t.Fatal(err)
	}
	models := []*model.DeviceModel{validated, handBuilt()}
	var wg sync.WaitGroup
	for g := range 8 {
		m := models[g%2]
		wg.Go(func() {
			for range 200 {
				a, ok := m.Attribute("t")
				if !ok {
					t.Error("lookup failed")
					return
				}
				if _, err := a.Check(21.5); err != nil {
					t.Error(err)
					return
				}
				m.Action("r")
				m.Format("urn:x:hot")
			}
		})
	}
	wg.Wait()
}

func TestValidateIsRepeatable(t *testing.T) {
	m := handBuilt()
	m.Attributes[0].Default = model.DateTime(time.Unix(0, 0)) // wrong type
	if err := m.Validate(); err == nil {
		t.Fatal("no error")
	}
	m.Attributes[0].Default = model.Value{}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if a, ok := m.Attribute("t"); !ok || a.Name != "temp" {
		t.Errorf("after a second Validate: %v, %v", a, ok)
	}
	var problems interface{ Unwrap() []error }
	m.URN = ""
	if err := m.Validate(); !errors.As(err, &problems) || len(problems.Unwrap()) != 1 {
		t.Errorf("problems = %v", err)
	}
}
