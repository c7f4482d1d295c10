package model

import (
	"errors"
	"fmt"
	"strings"
)

// problems collects validation problems, each prefixed with the model.
type problems struct {
	prefix string
	errs   []error
}

func (p *problems) add(format string, args ...any) {
	p.errs = append(p.errs, errors.New(p.prefix+fmt.Sprintf(format, args...)))
}

// label names an element in messages: `attribute "x"`, or `attributes[2]`
// when it has no name.
func label(kind, list string, i int, name string) string {
	if name == "" {
		return fmt.Sprintf("%s[%d]", list, i)
	}
	return fmt.Sprintf("%s %q", kind, name)
}

// Validate checks the model and reports every problem at once
// (errors.Join), one per line, each naming the model and the element:
//
//	device model "urn:x": attribute "x": range "100,0": min 100 is greater than max 0
//
// (`device model: ` alone when the URN is missing). It checks that the URN
// is present; that attribute, action, argument, format and field names are
// present and unique within their list (format URNs too); that types are
// known; that ranges are finite, not inverted and only on INTEGER or NUMBER;
// that defaults have the element's type and lie within its range; that no
// alias equals another attribute's (action's) name or alias; that format
// types are DATA or ALERT; and that a legacy action has exactly one argument,
// named "value", with no description or default (all its wire form can say).
//
// On success Validate builds the lookup indexes used by Attribute, Action
// and Format; on failure it drops them (lookups then scan). It writes to m,
// so call it once, before the model is shared; the model must not be
// modified afterwards.
func (m *DeviceModel) Validate() error {
	if m == nil {
		return errors.New("device model: want a model, got nil")
	}
	p := &problems{prefix: "device model: "}
	if strings.TrimSpace(m.URN) == "" {
		p.add("urn is missing")
	} else {
		p.prefix = fmt.Sprintf("device model %q: ", m.URN)
	}

	attrs := make([]named, len(m.Attributes))
	for i, a := range m.Attributes {
		attrs[i] = named{name: a.Name, alias: a.Alias, label: label("attribute", "attributes", i, a.Name)}
	}
	attrNames := newNameSet(p, "name", "attributes", attrs)
	for i := range m.Attributes {
		a := &m.Attributes[i]
		attrNames.check(i)
		validateTyped(p, attrs[i].label, a.Type, a.Range, a.Default)
	}

	acts := make([]named, len(m.Actions))
	for i, a := range m.Actions {
		acts[i] = named{name: a.Name, alias: a.Alias, label: label("action", "actions", i, a.Name)}
	}
	actNames := newNameSet(p, "name", "actions", acts)
	for i := range m.Actions {
		a := &m.Actions[i]
		el := acts[i].label
		actNames.check(i)
		if a.Legacy && (len(a.Arguments) != 1 || a.Arguments[0].Name != "value" ||
			a.Arguments[0].Description != "" || a.Arguments[0].Default.Valid()) {
			p.add(`%s: a legacy action (argType) must have exactly one argument, named "value", with no description or default`, el)
		}
		args := make([]named, len(a.Arguments))
		for j, arg := range a.Arguments {
			args[j] = named{name: arg.Name, label: el + ": " + label("argument", "arguments", j, arg.Name)}
		}
		argNames := newNameSet(p, "name", "arguments", args)
		for j := range a.Arguments {
			arg := &a.Arguments[j]
			argNames.check(j)
			validateTyped(p, args[j].label, arg.Type, arg.Range, arg.Default)
		}
	}

	urns := make([]named, len(m.Formats))
	fnames := make([]named, len(m.Formats))
	for i, f := range m.Formats {
		el := label("format", "formats", i, f.URN)
		urns[i] = named{name: f.URN, label: el}
		fnames[i] = named{name: f.Name, label: el, optional: true}
	}
	urnSet := newNameSet(p, "urn", "formats", urns)
	nameSet := newNameSet(p, "name", "formats", fnames)
	for i := range m.Formats {
		f := &m.Formats[i]
		el := urns[i].label
		urnSet.check(i)
		nameSet.check(i)
		switch f.Type {
		case FormatData, FormatAlert:
		case "":
			p.add("%s: type is missing: want DATA or ALERT", el)
		default:
			p.add("%s: unknown type %q: want DATA or ALERT", el, string(f.Type))
		}
		fields := make([]named, len(f.Fields))
		for j, fd := range f.Fields {
			fields[j] = named{name: fd.Name, label: el + ": " + label("field", "fields", j, fd.Name)}
		}
		fieldNames := newNameSet(p, "name", "fields", fields)
		for j := range f.Fields {
			fieldNames.check(j)
			if t := f.Fields[j].Type; !t.Valid() {
				p.add("%s: %v", fields[j].label, errUnknownType(t))
			}
		}
	}

	if len(p.errs) > 0 {
		m.attrIndex, m.actionIndex, m.formatIndex = nil, nil, nil
		return errors.Join(p.errs...)
	}
	m.attrIndex = make(map[string]int, 2*len(m.Attributes))
	for i, a := range m.Attributes {
		if a.Alias != "" {
			m.attrIndex[a.Alias] = i
		}
		m.attrIndex[a.Name] = i
	}
	m.actionIndex = make(map[string]int, 2*len(m.Actions))
	for i, a := range m.Actions {
		if a.Alias != "" {
			m.actionIndex[a.Alias] = i
		}
		m.actionIndex[a.Name] = i
	}
	m.formatIndex = make(map[string]int, len(m.Formats))
	for i, f := range m.Formats {
		m.formatIndex[f.URN] = i
	}
	return nil
}

// named is an element with a name (and maybe an alias), for the
// uniqueness checks. An optional name may be empty.
type named struct {
	name, alias, label string
	optional           bool
}

// nameSet checks the names (or URNs) and aliases of one list of elements.
type nameSet struct {
	p      *problems
	key    string // what the name is called: "name" or "urn"
	list   string // the list, for "(also attributes[0])"
	els    []named
	first  map[string]int // name -> index of its first use
	aliasd map[string]int // alias -> index of its first use
}

func newNameSet(p *problems, key, list string, els []named) *nameSet {
	ns := &nameSet{p: p, key: key, list: list, els: els,
		first: make(map[string]int, len(els)), aliasd: make(map[string]int)}
	for i, e := range els {
		if _, dup := ns.first[e.name]; !dup && e.name != "" {
			ns.first[e.name] = i
		}
		if _, dup := ns.aliasd[e.alias]; !dup && e.alias != "" {
			ns.aliasd[e.alias] = i
		}
	}
	return ns
}

// check reports the problems of element i: a missing or duplicate name, and
// an alias that is another element's name or an earlier element's alias.
func (ns *nameSet) check(i int) {
	e := ns.els[i]
	switch j := ns.first[e.name]; {
	case e.name == "":
		if !e.optional {
			ns.p.add("%s: %s is missing", e.label, ns.key)
		}
	case j != i:
		ns.p.add("%s: duplicate %s (also %s[%d])", e.label, ns.key, ns.list, j)
	}
	if e.alias == "" {
		return
	}
	if j, ok := ns.first[e.alias]; ok && j != i && e.alias != e.name {
		ns.p.add("%s: alias %q is already the name of %s", e.label, e.alias, ns.els[j].label)
	} else if j := ns.aliasd[e.alias]; j != i {
		ns.p.add("%s: alias %q is already the alias of %s", e.label, e.alias, ns.els[j].label)
	}
}

// validateTyped checks the type, range and default of an attribute or
// argument.
func validateTyped(p *problems, el string, t Type, r *Range, def Value) {
	if !t.Valid() {
		p.add("%s: %v", el, errUnknownType(t))
	}
	rangeOK := r == nil
	if r != nil {
		w := r.wire(t)
		switch {
		case t.Valid() && !t.numeric():
			p.add("%s: range %q is not allowed on type %s: want INTEGER or NUMBER", el, w, t)
		case !finite(r.Min) || !finite(r.Max):
			p.add("%s: range %q: want finite numbers", el, w)
		case r.Min > r.Max:
			p.add("%s: range %q: min %s is greater than max %s", el, w, bound(r.Min, t), bound(r.Max, t))
		default:
			rangeOK = true
		}
	}
	if !def.Valid() || !t.Valid() {
		return
	}
	switch {
	case def.typ != t:
		p.add("%s: default %s: want %s, got %s", el, def, t, def.typ)
	case rangeOK && r != nil && !r.contains(def):
		p.add("%s: default %s is out of range %s", el, def, r.human(t))
	}
}
