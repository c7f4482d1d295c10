package policy

import (
	"fmt"
	"time"

	"github.com/iotnode/iotnode/domain/model"
)

// filterCondition drops the value when its condition is true ("filter"
// means out). A condition that cannot be evaluated drops the value too, as
// Oracle's NaN does (DeviceFunction.js FILTER_CONDITION), and says why.
type filterCondition struct{ cond *Formula }

func (s *filterCondition) apply(r *run, p *pipeline, at time.Time, v model.Value) (model.Value, bool, error) {
	drop, err := r.condition(s.cond, p, v)
	if err != nil {
		return model.Value{}, false, err
	}
	return v, !drop, nil
}

// The sampleQuality rates that are not "every Nth value".
const (
	rateNone   = -2 // "none": no value passes
	rateRandom = -1 // -1 or "random": about one value in 30 passes
	rateAll    = 0  // 0 or "all": every value passes
)

// sampleQuality passes every value (rate 0, "all"), about one in 30 at
// random (-1, "random": Options.Random() < 1/30, as Oracle's
// Math.floor(Math.random() * 30) === 0), every Nth value (N > 0: the Nth,
// the 2Nth...), or none ("none"). Oracle's JS compares the rate with the
// numbers only, so that its "all" and "random" pass nothing: they mean what
// their names say here; "none" passes nothing, as it does there.
type sampleQuality struct {
	rate  int
	count int
}

func (s *sampleQuality) apply(r *run, p *pipeline, at time.Time, v model.Value) (model.Value, bool, error) {
	switch s.rate {
	case rateAll:
		return v, true, nil
	case rateNone:
		return v, false, nil
	case rateRandom:
		return v, r.e.random() < 1.0/30, nil
	}
	s.count++
	if s.count < s.rate {
		return v, false, nil
	}
	s.count = 0
	return v, true, nil
}

// eliminateDuplicates drops a value equal (same type and value) to the one
// offered before it while the window that the last value let through opened
// is running: a value that differs from its predecessor passes and opens a
// window; a repeat passes only once the window is over, and opens a new
// one. Oracle (ELIMINATE_DUPLICATES) counts now == windowEnd both as inside
// the window and as its end; here the window is half-open [start, start+w).
type eliminateDuplicates struct {
	window time.Duration
	seen   bool
	last   model.Value
	end    time.Time
}

func (s *eliminateDuplicates) apply(r *run, p *pipeline, at time.Time, v model.Value) (model.Value, bool, error) {
	dup := s.seen && v.Equal(s.last) && at.Before(s.end)
	if !dup {
		s.end = at.Add(s.window)
	}
	s.seen, s.last = true, v
	return v, !dup, nil
}

// detectDuplicates lets every value through and raises an alert (the
// format alertFormatURN) on the first repeat of a value; repeats within the
// window after that raise nothing more, and the first repeat after it
// raises again. The alert carries the value in the format's field named like
// the attribute, if there is one. Oracle's JS reads the alert format from a
// key that detectDuplicates does not have and schedules the function like a
// window, re-sending the last value each window (DeviceFunction.js
// DETECT_DUPLICATES, VirtualDevice.js _policyAssigned2): neither is kept.
type detectDuplicates struct {
	window  time.Duration
	format  *model.Format
	seen    bool
	last    model.Value
	end     time.Time
	alerted bool
}

func (s *detectDuplicates) apply(r *run, p *pipeline, at time.Time, v model.Value) (model.Value, bool, error) {
	repeat := s.seen && v.Equal(s.last)
	s.seen, s.last = true, v
	if !repeat {
		s.end, s.alerted = at.Add(s.window), false
		return v, true, nil
	}
	if !at.Before(s.end) {
		s.end, s.alerted = at.Add(s.window), false
	}
	if s.alerted {
		return v, true, nil
	}
	s.alerted = true
	alert := Alert{FormatURN: s.format.URN, Fields: map[string]model.Value{}, Time: at}
	for i := range s.format.Fields {
		ff := &s.format.Fields[i]
		if ff.Name != p.attr.Name {
			continue
		}
		fv, err := ff.Check(v)
		if err != nil {
			return v, true, fmt.Errorf("alert %q: %w", s.format.URN, err)
		}
		alert.Fields[ff.Name] = fv
	}
	r.out.Alerts = append(r.out.Alerts, alert)
	return v, true, nil
}

// computedMetric replaces the value with its formula's result, converted
// to the attribute's type (see prepare). As the first function of a
// pipeline it also runs when an attribute it refers to is offered (see
// Engine.Offer).
type computedMetric struct{ formula *Formula }

func (s *computedMetric) apply(r *run, p *pipeline, at time.Time, v model.Value) (model.Value, bool, error) {
	x, err := r.eval(s.formula, p, v)
	if err != nil {
		return model.Value{}, false, err
	}
	cv, err := p.attr.Type.Convert(prepare(p.attr.Type, x))
	if err != nil {
		return model.Value{}, false, fmt.Errorf("formula %q: %w", s.formula.String(), err)
	}
	return cv, true, nil
}

// alertCondition raises its alert when its condition is true, with the
// fields evaluated against the value being processed; with filter (the
// default) the value is then dropped, without it the value goes on. Oracle's
// JS drops it whatever filter says (DeviceFunction.js ALERT_CONDITION,
// `!filter || filter`): filter is honoured here.
type alertCondition struct {
	cond     *Formula
	filter   bool
	format   *model.Format
	severity string
	fields   []alertField
}

type alertField struct {
	name  string
	check func(any) (model.Value, error)
	op    operand
}

func (s *alertCondition) apply(r *run, p *pipeline, at time.Time, v model.Value) (model.Value, bool, error) {
	hit, err := r.condition(s.cond, p, v)
	if err != nil || !hit {
		return v, err == nil, err
	}
	alert := Alert{FormatURN: s.format.URN, Fields: make(map[string]model.Value, len(s.fields)), Severity: s.severity, Time: at}
	for i := range s.fields {
		f := &s.fields[i]
		t := fieldType(s.format, f.name)
		fv, err := f.op.resolve(r, p, v, t, f.check)
		if err != nil {
			return model.Value{}, false, fmt.Errorf("alert %q: field %q: %w", s.format.URN, f.name, err)
		}
		alert.Fields[f.name] = fv
	}
	r.out.Alerts = append(r.out.Alerts, alert)
	return v, !s.filter, nil
}

func fieldType(f *model.Format, name string) model.Type {
	for i := range f.Fields {
		if f.Fields[i].Name == name {
			return f.Fields[i].Type
		}
	}
	return ""
}

// actionCondition calls its action when its condition is true, with every
// argument in the action's order (Oracle's JS passes only the first, as
// "value"); missing trailing arguments take their defaults, and the
// arguments are checked against their types and ranges. filter defaults to
// true as protocol.md §5 says (Oracle's JS reads an absent filter as false).
type actionCondition struct {
	cond   *Formula
	filter bool
	action *model.Action
	args   []operand // one per argument of the action
}

func (s *actionCondition) apply(r *run, p *pipeline, at time.Time, v model.Value) (model.Value, bool, error) {
	hit, err := r.condition(s.cond, p, v)
	if err != nil || !hit {
		return v, err == nil, err
	}
	raw := make(map[string]any, len(s.args))
	for i, op := range s.args {
		if !op.set() {
			continue
		}
		arg := &s.action.Arguments[i]
		av, err := op.resolve(r, p, v, arg.Type, arg.Type.Convert)
		if err != nil {
			return model.Value{}, false, fmt.Errorf("action %q: argument %q: %w", s.action.Name, arg.Name, err)
		}
		raw[arg.Name] = av
	}
	vals, err := s.action.ConvertArgs(raw)
	if err != nil {
		return model.Value{}, false, err
	}
	act := Action{Name: s.action.Name}
	for i := range s.action.Arguments {
		act.Args = append(act.Args, vals[s.action.Arguments[i].Name])
	}
	r.out.Actions = append(r.out.Actions, act)
	return v, !s.filter, nil
}
