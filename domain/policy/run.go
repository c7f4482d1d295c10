package policy

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/iotnode/iotnode/domain/model"
)

// pipeline is the compiled pipeline of one attribute.
type pipeline struct {
	attr   *model.Attribute
	stages []stage
	ids    []string // function ids, for error messages
	// triggers is non-nil when the first function is a computedMetric: the
	// other attributes its formula refers to, whose offer runs the pipeline.
	triggers []string
}

// stage is one compiled function of an attribute pipeline. apply runs it on
// v, which stands for the time at; it returns the value to pass on, or
// ok == false to stop the pipeline (the value was filtered out, or a window
// keeps it). An error drops the value and goes to Outcome.Errors.
type stage interface {
	apply(r *run, p *pipeline, at time.Time, v model.Value) (out model.Value, ok bool, err error)
}

// run is one Offer, Tick or Flush call in progress.
type run struct {
	e       *Engine
	known   Lookup
	offered map[string]model.Value // the converted values of an Offer; nil otherwise
	out     *Outcome
	data    []Data // values that came through their pipelines, not yet batched
}

// runFrom runs v through the stages of p from stage i on and delivers what
// comes out.
func (p *pipeline) runFrom(r *run, i int, at time.Time, v model.Value) {
	for ; i < len(p.stages); i++ {
		var ok bool
		var err error
		v, ok, err = p.stages[i].apply(r, p, at, v)
		if err != nil {
			r.fail(wrapStage(p, i, err))
			return
		}
		if !ok {
			return
		}
	}
	r.deliver(p.attr, at, v)
}

// wrapStage names the attribute and the function of an error.
func wrapStage(p *pipeline, i int, err error) error {
	return fmt.Errorf("attribute %q: %s: %w", p.attr.Name, p.ids[i], err)
}

func (r *run) fail(err error) { r.out.Errors = append(r.out.Errors, err) }

// deliver checks v against the attribute's type and range (the one check
// that values get on their way out; a filter sees out-of-range values) and
// adds it to the Data standing for the time at.
func (r *run) deliver(a *model.Attribute, at time.Time, v model.Value) {
	cv, err := a.Check(v)
	if err != nil {
		r.fail(err)
		return
	}
	for i := len(r.data) - 1; i >= 0; i-- {
		if r.data[i].Time.Equal(at) {
			r.data[i].Values[a.Name] = cv
			return
		}
	}
	r.data = append(r.data, Data{Values: map[string]model.Value{a.Name: cv}, Time: at})
}

// takeData returns the delivered Data, oldest first, and forgets them.
func (r *run) takeData() []Data {
	d := r.data
	r.data = nil
	slices.SortStableFunc(d, func(a, b Data) int { return a.Time.Compare(b.Time) })
	return d
}

// value is what a formula's $(name) reads while p processes cur: cur for
// p's own attribute (so that after a mean, $(attr) is the mean: Oracle's
// "in-process" value), else the value offered in the same Offer call, else
// current(name).
func (r *run) value(p *pipeline, cur model.Value, name string) (model.Value, bool) {
	a, ok := r.e.model.Attribute(name)
	if !ok {
		return model.Value{}, false
	}
	if a.Name == p.attr.Name && cur.Valid() {
		return cur, true
	}
	if v, ok := r.offered[a.Name]; ok {
		return v, true
	}
	return r.current(a.Name)
}

// current is what a formula's $$(name) reads: the last-known value
// (Lookup), else the attribute's defaultValue.
func (r *run) current(name string) (model.Value, bool) {
	a, ok := r.e.model.Attribute(name)
	if !ok {
		return model.Value{}, false
	}
	if r.known != nil {
		if v, ok := r.known(a.Name); ok && v.Valid() {
			return v, true
		}
	}
	if a.Default.Valid() {
		return a.Default, true
	}
	return model.Value{}, false
}

func (r *run) eval(f *Formula, p *pipeline, cur model.Value) (any, error) {
	plain := func(v model.Value, ok bool) (any, bool) {
		if !ok {
			return nil, false
		}
		return v.Any(), true
	}
	return f.EvalCurrent(
		func(name string) (any, bool) { return plain(r.value(p, cur, name)) },
		func(name string) (any, bool) { return plain(r.current(name)) },
	)
}

// condition evaluates a condition: true, or a number other than 0 (Oracle's
// formulas yield 1 for true), is true.
func (r *run) condition(f *Formula, p *pipeline, cur model.Value) (bool, error) {
	x, err := r.eval(f, p, cur)
	if err != nil {
		return false, err
	}
	switch x := x.(type) {
	case bool:
		return x, nil
	case float64:
		return x != 0 && !math.IsNaN(x), nil
	}
	return false, fmt.Errorf("condition %q gave the string %q; expected true or false", f.String(), x)
}

// prepare adapts a formula or aggregate result to a type before
// Type.Convert: numbers are rounded to the nearest integer (half away from
// zero) for INTEGER and DATETIME (epoch ms), and numbers and booleans are
// written out for STRING.
func prepare(t model.Type, x any) any {
	switch x := x.(type) {
	case float64:
		switch t {
		case model.TypeInteger, model.TypeDateTime:
			return math.Round(x)
		case model.TypeString:
			return strconv.FormatFloat(x, 'f', -1, 64)
		}
	case bool:
		if t == model.TypeString {
			return strconv.FormatBool(x)
		}
	}
	return x
}

// operand is a compiled alert field or action argument: a literal, a
// formula, or neither (an action argument left to its default).
type operand struct {
	literal model.Value
	formula *Formula
}

func (o operand) set() bool { return o.literal.Valid() || o.formula != nil }

// resolve returns the operand's value, converted by check.
func (o operand) resolve(r *run, p *pipeline, cur model.Value, t model.Type, check func(any) (model.Value, error)) (model.Value, error) {
	if o.formula == nil {
		return o.literal, nil
	}
	x, err := r.eval(o.formula, p, cur)
	if err != nil {
		return model.Value{}, err
	}
	return check(prepare(t, x))
}
