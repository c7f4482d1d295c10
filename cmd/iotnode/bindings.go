package main

import (
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

// binding maps one reading of a driver to one attribute of a model.
type binding struct {
	attr    *model.Attribute
	reading string
	scale   float64
	offset  float64
}

// attrValue is a checked value for an attribute.
type attrValue struct {
	name  string
	value model.Value
}

// compileBindings builds the bindings of d against m, sorted by attribute.
// validateModels has checked them.
func compileBindings(d *DeviceConfig, m *model.DeviceModel) []binding {
	var out []binding
	for _, name := range slices.Sorted(maps.Keys(d.Bindings)) {
		a, ok := m.Attribute(name)
		if !ok {
			continue
		}
		b := d.Bindings[name]
		scale := 1.0
		if b.Scale != nil {
			scale = *b.Scale
		}
		out = append(out, binding{attr: a, reading: cmpOr(b.Reading, name), scale: scale, offset: b.Offset})
	}
	return out
}

// value converts a raw reading into the attribute's value: numbers are
// scaled and offset (and rounded for an INTEGER attribute); every value is
// then checked against the attribute's type and range.
func (b *binding) value(raw any) (model.Value, error) {
	if b.attr.Type == model.TypeInteger || b.attr.Type == model.TypeNumber {
		if f, ok := toFloat(raw); ok {
			f = f*b.scale + b.offset
			if b.attr.Type == model.TypeInteger {
				if math.Abs(f) > math.MaxInt64/2 || math.IsNaN(f) {
					return model.Value{}, fmt.Errorf("attribute %q: reading %q gives %g, which is no INTEGER", b.attr.Name, b.reading, f)
				}
				return b.attr.Check(int64(math.Round(f)))
			}
			return b.attr.Check(f)
		}
	}
	v, err := b.attr.Check(raw)
	if err != nil {
		return model.Value{}, fmt.Errorf("reading %q: %w", b.reading, err)
	}
	return v, nil
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int64:
		return float64(x), true
	case int:
		return float64(x), true
	case int32:
		return float64(x), true
	case uint64:
		return float64(x), true
	}
	return 0, false
}

// applyBindings turns readings into attribute values. Every binding whose
// reading is missing or whose value the attribute refuses adds an error;
// the other values are returned.
func applyBindings(bs []binding, readings []ports.Reading) ([]attrValue, []error) {
	byName := make(map[string]any, len(readings))
	for _, r := range readings {
		byName[r.Name] = r.Value
	}
	var out []attrValue
	var errs []error
	for i := range bs {
		b := &bs[i]
		raw, ok := byName[b.reading]
		if !ok {
			errs = append(errs, fmt.Errorf("attribute %q: the driver returned no reading %q", b.attr.Name, b.reading))
			continue
		}
		v, err := b.value(raw)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, attrValue{name: b.attr.Name, value: v})
	}
	return out, errs
}
