package model

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Check converts v to the attribute's type (see Type.Convert) and checks it
// against the attribute's range. Errors name the attribute:
// `attribute "humidity": 140 is out of range 0..100`,
// `attribute "power": want BOOLEAN, got "yes"`. Check does not look at
// Writable: who may write is the caller's business. Safe for concurrent use.
func (a *Attribute) Check(v any) (Value, error) {
	val, err := checkValue(a.Type, a.Range, v)
	if err != nil {
		return Value{}, fmt.Errorf("attribute %q: %w", a.Name, err)
	}
	return val, nil
}

// Check converts v to the field's type (see Type.Convert). Errors name the
// field: `field "temp": want NUMBER, got "hot"`. Check does not look at
// Optional. Safe for concurrent use.
func (f *FormatField) Check(v any) (Value, error) {
	val, err := f.Type.Convert(v)
	if err != nil {
		return Value{}, fmt.Errorf("field %q: %w", f.Name, err)
	}
	return val, nil
}

// ConvertArgs converts the raw arguments of a call of the action, as decoded
// from the request body, into typed values keyed by argument name. For a
// legacy action raw is {"value": v}; for an action without arguments raw is
// empty or nil. An argument missing from raw gets its default, if it has one.
//
// Every problem is reported at once (errors.Join), each naming the action and
// the argument: unknown argument names, missing arguments without a default,
// wrong types and out-of-range values, e.g.
// `action "schedule": argument "seconds": 0 is out of range 1..86400`.
// On error the map is nil. Safe for concurrent use.
func (a *Action) ConvertArgs(raw map[string]any) (map[string]Value, error) {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		if !slices.ContainsFunc(a.Arguments, func(arg Argument) bool { return arg.Name == k }) {
			errs = append(errs, fmt.Errorf("action %q: unknown argument %q: %s", a.Name, k, a.wantArgs()))
		}
	}
	out := make(map[string]Value, len(a.Arguments))
	for i := range a.Arguments {
		arg := &a.Arguments[i]
		v, ok := raw[arg.Name]
		if !ok {
			if arg.Default.Valid() {
				out[arg.Name] = arg.Default
			} else {
				errs = append(errs, fmt.Errorf("action %q: argument %q is missing", a.Name, arg.Name))
			}
			continue
		}
		val, err := checkValue(arg.Type, arg.Range, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("action %q: argument %q: %w", a.Name, arg.Name, err))
			continue
		}
		out[arg.Name] = val
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// wantArgs says which argument names the action takes, for error messages.
func (a *Action) wantArgs() string {
	if len(a.Arguments) == 0 {
		return "the action takes no arguments"
	}
	names := make([]string, len(a.Arguments))
	for i, arg := range a.Arguments {
		names[i] = fmt.Sprintf("%q", arg.Name)
	}
	if len(names) == 1 {
		return "want " + names[0]
	}
	return "want one of " + strings.Join(names, ", ")
}
