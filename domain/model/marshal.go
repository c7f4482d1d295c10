package model

import (
	"encoding/json"
)

// The wire form written by MarshalJSON (protocol.md §4).
type (
	wireModel struct {
		URN         string          `json:"urn"`
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		System      bool            `json:"system"`
		Draft       bool            `json:"draft"`
		Attributes  []wireAttribute `json:"attributes"`
		Actions     []wireAction    `json:"actions"`
		Formats     []wireFormat    `json:"formats"`
	}
	wireAttribute struct {
		Name         string          `json:"name"`
		Description  string          `json:"description,omitempty"`
		Type         Type            `json:"type"`
		Alias        string          `json:"alias,omitempty"`
		Range        string          `json:"range,omitempty"`
		Writable     bool            `json:"writable"`
		DefaultValue json.RawMessage `json:"defaultValue,omitempty"`
	}
	wireAction struct {
		Name        string         `json:"name"`
		Description string         `json:"description,omitempty"`
		Alias       string         `json:"alias,omitempty"`
		ArgType     Type           `json:"argType,omitempty"`
		Range       string         `json:"range,omitempty"`
		Arguments   []wireArgument `json:"arguments,omitempty"`
	}
	wireArgument struct {
		Name         string          `json:"name"`
		Description  string          `json:"description,omitempty"`
		Type         Type            `json:"type"`
		Range        string          `json:"range,omitempty"`
		DefaultValue json.RawMessage `json:"defaultValue,omitempty"`
	}
	wireFormat struct {
		URN         string     `json:"urn"`
		Name        string     `json:"name"`
		Description string     `json:"description,omitempty"`
		Type        FormatType `json:"type"`
		DeviceModel string     `json:"deviceModel,omitempty"`
		Value       wireFields `json:"value"`
	}
	wireFields struct {
		Fields []wireField `json:"fields"`
	}
	wireField struct {
		Name     string `json:"name"`
		Type     Type   `json:"type"`
		Optional bool   `json:"optional"`
	}
)

// MarshalJSON writes the model in its wire form (protocol.md §4), from the
// fields, not from Raw: Parse(MarshalJSON(m)) equals m apart from Raw for a
// valid m. Lists are always written (as [] when empty); empty descriptions
// and aliases, absent ranges and absent defaults are left out; a legacy
// action is written with argType/range. A nil model is written as null.
func (m *DeviceModel) MarshalJSON() ([]byte, error) {
	if m == nil {
		return []byte("null"), nil
	}
	w := wireModel{
		URN:         m.URN,
		Name:        m.Name,
		Description: m.Description,
		System:      m.System,
		Draft:       m.Draft,
		Attributes:  make([]wireAttribute, 0, len(m.Attributes)),
		Actions:     make([]wireAction, 0, len(m.Actions)),
		Formats:     make([]wireFormat, 0, len(m.Formats)),
	}
	for _, a := range m.Attributes {
		w.Attributes = append(w.Attributes, wireAttribute{
			Name:         a.Name,
			Description:  a.Description,
			Type:         a.Type,
			Alias:        a.Alias,
			Range:        wireRange(a.Range, a.Type),
			Writable:     a.Writable,
			DefaultValue: wireDefault(a.Default),
		})
	}
	for _, a := range m.Actions {
		wa := wireAction{Name: a.Name, Description: a.Description, Alias: a.Alias}
		if a.Legacy && len(a.Arguments) == 1 {
			wa.ArgType = a.Arguments[0].Type
			wa.Range = wireRange(a.Arguments[0].Range, wa.ArgType)
		} else {
			for _, arg := range a.Arguments {
				wa.Arguments = append(wa.Arguments, wireArgument{
					Name:         arg.Name,
					Description:  arg.Description,
					Type:         arg.Type,
					Range:        wireRange(arg.Range, arg.Type),
					DefaultValue: wireDefault(arg.Default),
				})
			}
		}
		w.Actions = append(w.Actions, wa)
	}
	for _, f := range m.Formats {
		wf := wireFormat{
			URN:         f.URN,
			Name:        f.Name,
			Description: f.Description,
			Type:        f.Type,
			DeviceModel: f.DeviceModel,
			Value:       wireFields{Fields: make([]wireField, 0, len(f.Fields))},
		}
		for _, fd := range f.Fields {
			wf.Value.Fields = append(wf.Value.Fields, wireField(fd))
		}
		w.Formats = append(w.Formats, wf)
	}
	return json.Marshal(w)
}

func wireRange(r *Range, t Type) string {
	if r == nil {
		return ""
	}
	return r.wire(t)
}

func wireDefault(v Value) json.RawMessage {
	if !v.Valid() {
		return nil
	}
	b, _ := v.MarshalJSON() // never fails
	return b
}
