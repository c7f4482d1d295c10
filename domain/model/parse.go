package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Parse decodes a device model from its JSON wire form (protocol.md §4),
// keeps a copy of data in Raw, and validates it (see Validate).
//
// Keys the model does not use (created, lastModified, links, sourceId, ...)
// are ignored, and so is a null value, which counts as absent. A legacy
// action (argType, range) becomes one argument named "value" with Legacy
// set; an action with neither argType nor arguments has no arguments.
// Empty lists decode to nil slices. A defaultValue is converted to the
// element's type as Type.Convert does (DATETIME from epoch ms or RFC 3339).
//
// Errors: malformed JSON (`device model: invalid JSON at line 3, column 14:
// ...`); every element of the wrong JSON type or with an unusable value,
// reported at once and named by its path (`device model: attributes[2].writable:
// want boolean, got string`); and, when the JSON decodes, every problem
// Validate finds. Parse is pure and safe for concurrent use.
func Parse(data []byte) (*DeviceModel, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("device model: %w", JSONError(data, err))
	}
	rest := data[dec.InputOffset():]
	if trimmed := bytes.TrimLeft(rest, " \t\r\n"); len(trimmed) > 0 {
		at := int64(len(data) - len(trimmed)) // the first byte after the value
		line, col := JSONPosition(data, at+1)
		return nil, fmt.Errorf("device model: invalid JSON at line %d, column %d: unexpected data after the top-level object", line, col)
	}
	obj, ok := root.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("device model: want a JSON object, got %s", jsonKind(root))
	}
	d := &decoder{}
	m := d.model(obj)
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	m.Raw = bytes.Clone(data)
	return m, nil
}

// JSONError turns an encoding/json decoding error of data into one that
// says where, by line and column; the JSON documents of domain (device
// models, device policies) share it.
func JSONError(data []byte, err error) error {
	var se *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("empty input: want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("invalid JSON: unexpected end of input")
	case errors.As(err, &se):
		line, col := JSONPosition(data, se.Offset)
		return fmt.Errorf("invalid JSON at line %d, column %d: %s", line, col, se.Error())
	}
	return fmt.Errorf("invalid JSON: %w", err)
}

// JSONPosition returns the 1-based line and column of the byte before
// offset (where encoding/json reports a syntax error), or of offset 0.
func JSONPosition(data []byte, offset int64) (line, col int) {
	offset = min(max(offset, 0), int64(len(data)))
	if offset > 0 {
		offset-- // the offending byte was the last one read
	}
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// jsonKind names the JSON type of a value decoded with UseNumber.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	}
	return "object"
}

// decoder walks the decoded JSON tree and collects every problem.
type decoder struct{ errs []error }

func (d *decoder) fail(path string, format string, args ...any) {
	d.errs = append(d.errs, errors.New("device model: "+path+": "+fmt.Sprintf(format, args...)))
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// value returns obj[key], with null counting as absent.
func value(obj map[string]any, key string) (any, bool) {
	v, ok := obj[key]
	return v, ok && v != nil
}

func (d *decoder) str(obj map[string]any, path, key string) string {
	v, ok := value(obj, key)
	if !ok {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		d.fail(join(path, key), "want string, got %s", jsonKind(v))
	}
	return s
}

func (d *decoder) boolean(obj map[string]any, path, key string) bool {
	v, ok := value(obj, key)
	if !ok {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		d.fail(join(path, key), "want boolean, got %s", jsonKind(v))
	}
	return b
}

// each calls fn, in order, for each element of the array obj[key] with its
// path; elements that are not objects are reported instead.
func (d *decoder) each(obj map[string]any, path, key string, fn func(o map[string]any, path string)) {
	v, ok := value(obj, key)
	if !ok {
		return
	}
	p := join(path, key)
	arr, ok := v.([]any)
	if !ok {
		d.fail(p, "want array, got %s", jsonKind(v))
		return
	}
	for i, e := range arr {
		ep := p + "[" + strconv.Itoa(i) + "]"
		if o, ok := e.(map[string]any); ok {
			fn(o, ep)
		} else {
			d.fail(ep, "want object, got %s", jsonKind(e))
		}
	}
}

// rng decodes a "min,max" range; an empty string means no range.
func (d *decoder) rng(obj map[string]any, path, key string) *Range {
	s := d.str(obj, path, key)
	if strings.TrimSpace(s) == "" {
		return nil
	}
	r, err := parseRange(s)
	if err != nil {
		d.fail(join(path, key), "%v", err)
	}
	return r
}

// defaultValue decodes obj["defaultValue"] as a value of type t. When t is
// not a known type the default is skipped: Validate reports the type.
func (d *decoder) defaultValue(obj map[string]any, path string, t Type) Value {
	v, ok := value(obj, "defaultValue")
	if !ok || !t.Valid() {
		return Value{}
	}
	val, err := t.Convert(v)
	if err != nil {
		d.fail(join(path, "defaultValue"), "%v", err)
	}
	return val
}

func (d *decoder) model(obj map[string]any) *DeviceModel {
	m := &DeviceModel{
		URN:         d.str(obj, "", "urn"),
		Name:        d.str(obj, "", "name"),
		Description: d.str(obj, "", "description"),
		System:      d.boolean(obj, "", "system"),
		Draft:       d.boolean(obj, "", "draft"),
	}
	d.each(obj, "", "attributes", func(o map[string]any, p string) {
		a := Attribute{
			Name:        d.str(o, p, "name"),
			Description: d.str(o, p, "description"),
			Alias:       d.str(o, p, "alias"),
			Type:        Type(d.str(o, p, "type")),
			Range:       d.rng(o, p, "range"),
			Writable:    d.boolean(o, p, "writable"),
		}
		a.Default = d.defaultValue(o, p, a.Type)
		m.Attributes = append(m.Attributes, a)
	})
	d.each(obj, "", "actions", func(o map[string]any, p string) {
		m.Actions = append(m.Actions, d.action(o, p))
	})
	d.each(obj, "", "formats", func(o map[string]any, p string) {
		m.Formats = append(m.Formats, d.format(o, p))
	})
	return m
}

func (d *decoder) action(o map[string]any, p string) Action {
	a := Action{
		Name:        d.str(o, p, "name"),
		Description: d.str(o, p, "description"),
		Alias:       d.str(o, p, "alias"),
	}
	_, legacy := value(o, "argType")
	_, multi := value(o, "arguments")
	switch {
	case legacy && multi:
		d.fail(p, "want either argType or arguments, got both")
	case legacy:
		a.Legacy = true
		a.Arguments = []Argument{{
			Name:  "value",
			Type:  Type(d.str(o, p, "argType")),
			Range: d.rng(o, p, "range"),
		}}
	default:
		if r := d.rng(o, p, "range"); r != nil {
			d.fail(join(p, "range"), "want argType with a range, got a range alone")
		}
		d.each(o, p, "arguments", func(ao map[string]any, ap string) {
			arg := Argument{
				Name:        d.str(ao, ap, "name"),
				Description: d.str(ao, ap, "description"),
				Type:        Type(d.str(ao, ap, "type")),
				Range:       d.rng(ao, ap, "range"),
			}
			arg.Default = d.defaultValue(ao, ap, arg.Type)
			a.Arguments = append(a.Arguments, arg)
		})
	}
	return a
}

func (d *decoder) format(o map[string]any, p string) Format {
	f := Format{
		URN:         d.str(o, p, "urn"),
		Name:        d.str(o, p, "name"),
		Description: d.str(o, p, "description"),
		Type:        FormatType(d.str(o, p, "type")),
		DeviceModel: d.str(o, p, "deviceModel"),
	}
	v, ok := value(o, "value")
	if !ok {
		return f
	}
	vp := join(p, "value")
	vo, ok := v.(map[string]any)
	if !ok {
		d.fail(vp, "want object, got %s", jsonKind(v))
		return f
	}
	d.each(vo, vp, "fields", func(fo map[string]any, fp string) {
		f.Fields = append(f.Fields, FormatField{
			Name:     d.str(fo, fp, "name"),
			Type:     Type(d.str(fo, fp, "type")),
			Optional: d.boolean(fo, fp, "optional"),
		})
	})
	return f
}
