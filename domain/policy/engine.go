package policy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/iotnode/iotnode/domain/model"
)

// Policy is a parsed device policy (protocol.md §5): the JSON object the
// cloud serves, {"id","description","enabled","lastModified","pipelines"}.
type Policy struct {
	ID           string
	Description  string
	Enabled      bool
	LastModified time.Time
	Pipelines    []Pipeline // in the order of the policy
}

// Pipeline is the chain of functions of one attribute, or of whole messages
// when Attribute is "*".
type Pipeline struct {
	Attribute string
	Functions []Function // run in this order
}

// Function is one step of a pipeline: its id (e.g. "mean") and its
// parameters as decoded from JSON (float64, string, bool, map[string]any,
// []any).
type Function struct {
	ID         string
	Parameters map[string]any
}

// Parse decodes a policy. Errors name the place and what was expected:
// `pipelines[0].pipeline[1]: function "meen" is unknown; expected one of ...`.
//
// A null counts as absent and keys the policy does not use are ignored;
// "enabled" defaults to true, "lastModified" (epoch ms) to the zero time,
// and absent parameters to an empty map. Parse checks the structure and the
// function ids; Compile checks the rest against the device model. Every
// problem is reported at once (errors.Join). Safe for concurrent use.
func Parse(data []byte) (*Policy, error) {
	return parse(data)
}

// Options tune an Engine; the zero value is the production setting.
type Options struct {
	// NetworkCost is the device's own network cost for batchByCost:
	// "ETHERNET" (the default when empty), "CELLULAR" or "SATELLITE".
	NetworkCost string
	// Random returns a number in [0, 1) for sampleQuality "random"; nil
	// means the fixed sequence 0, 1/30, 2/30 ... 29/30, 0 ... (tests: then
	// "random" passes exactly the 1st, 31st, 61st ... value). The device
	// passes math/rand/v2.
	Random func() float64
}

// Lookup returns the last-known value of an attribute of the virtual device
// (what a formula's $(name) reads when name is not among the values being
// offered); ok is false when it has none.
type Lookup func(name string) (v model.Value, ok bool)

// Engine runs one policy for one virtual device. It is not safe for
// concurrent use: the device calls it under its lock. It is pure: time
// comes in as arguments, and it never blocks.
//
// Each function documents its semantics and where they depart from
// Oracle's JS library (a bug there, or a choice where it is unclear): see
// filterCondition, sampleQuality, eliminateDuplicates, detectDuplicates,
// window (mean, min, max, standardDeviation), computedMetric,
// alertCondition, actionCondition and batchStage in this package's source.
//
// A nil *Engine passes every offered value through unchanged and
// unchecked, and holds nothing; Compile(nil, m, opts) gives the engine of a
// device without a policy, which converts and checks values like any other.
type Engine struct {
	model    *model.DeviceModel
	random   func() float64
	pipes    map[string]*pipeline // by attribute name
	order    []*pipeline          // pipes in model order
	computed []*pipeline          // those that start with a computedMetric, in model order
	batch    []*batchStage        // the "*" pipeline
	now      time.Time            // the latest time seen
}

// Compile checks p against the device model m and returns its engine. Every
// problem is reported at once, each naming its place: an attribute the
// model lacks, an unknown function, a missing or ill-typed parameter, a
// window <= 0, a formula that does not compile or refers to an unknown
// attribute, an alert format the model lacks. A disabled policy compiles to
// an engine that passes every value through unchanged.
//
// A nil policy compiles like a disabled one, and neither is checked: what
// is disabled has no effect, its mistakes included. The batching functions
// (batchByTime, batchBySize, batchByCost) are accepted only in the "*"
// pipeline, and only they are; aliases name attributes as well as names do.
// The engine keeps pointers into m, which must not change.
func Compile(p *Policy, m *model.DeviceModel, opts Options) (*Engine, error) {
	if m == nil {
		return nil, errors.New("policy: no device model")
	}
	if p == nil || !p.Enabled {
		return newEngine(m, opts), nil
	}
	return compile(p, m, opts)
}

func newEngine(m *model.DeviceModel, opts Options) *Engine {
	e := &Engine{model: m, random: opts.Random, pipes: map[string]*pipeline{}}
	if e.random == nil {
		i := 0 // see Options.Random
		e.random = func() float64 {
			x := float64(i%30) / 30
			i++
			return x
		}
	}
	return e
}

// Outcome is what offering values (or the passing of time) produced.
type Outcome struct {
	// Data are the DATA messages to send now, oldest first: the attribute
	// values that came through their pipelines, each payload with the time
	// it stands for (its eventTime). Message-level batching holds them
	// back until its condition is met.
	Data []Data
	// Alerts are the alerts alertCondition and detectDuplicates raised.
	Alerts []Alert
	// Actions are the device actions actionCondition calls.
	Actions []Action
	// Errors are the problems met on the way (a formula that refers to an
	// attribute without a value, a computed value the attribute's type
	// refuses...): the value concerned is dropped and the error reported
	// to the application (OnError); the engine carries on.
	Errors []error
}

// Data is one DATA payload: attribute values and the time they stand for.
type Data struct {
	Values map[string]model.Value
	Time   time.Time
}

// Alert is an alert to raise: an ALERT format of the model, its fields and
// severity ("LOW", "NORMAL", "SIGNIFICANT" or "CRITICAL"; "" for the
// format's default).
type Alert struct {
	FormatURN string
	Fields    map[string]model.Value
	Severity  string
	Time      time.Time
}

// Action is a device action to call, with its arguments in order.
type Action struct {
	Name string
	Args []model.Value
}

// Offer runs the pipelines of the attributes in values (offered together at
// now), and of the computed metrics that refer to them. Values the
// pipelines let through come out in Outcome.Data (at once, or later from
// Tick when a window or message-level batching holds them).
//
// Offer first does what Tick(now) would. Then each value (keyed by name or
// alias) is converted to its attribute's type (a refused value, or an
// unknown attribute, is an error and goes no further) and runs through its
// pipeline, in model order; a value without a pipeline passes as it is.
// Then each pipeline whose first function is a computedMetric runs, once,
// when its own attribute or an attribute its formula refers to is offered:
// Oracle runs it when all of them are updated at once (VirtualDevice.js
// _checkComputedMetrics), which a device that offers one value at a time
// never does. Computed metrics do not trigger one another.
//
// A formula's $(name) reads the value being processed for the pipeline's
// own attribute, else the value offered in this call (as converted), else
// known (which may be nil), else the attribute's defaultValue. Every value
// that comes out of its pipeline is checked against the model's range
// before it goes into Data (so that a filter sees out-of-range values),
// and the values that came out together form one Data with Time now.
//
// Times that run backwards are taken as the latest time seen, here and in
// Tick and Flush: windows and batches never move back.
func (e *Engine) Offer(now time.Time, values map[string]model.Value, known Lookup) Outcome {
	if e == nil {
		if len(values) == 0 {
			return Outcome{}
		}
		return Outcome{Data: []Data{{Values: maps.Clone(values), Time: now}}}
	}
	now = e.advance(now)
	var out Outcome
	r := &run{e: e, known: known, out: &out}
	e.tick(r, now)
	r.offered = e.convert(r, values)
	for i := range e.model.Attributes {
		a := &e.model.Attributes[i]
		v, ok := r.offered[a.Name]
		if !ok {
			continue
		}
		if p := e.pipes[a.Name]; p != nil {
			p.runFrom(r, 0, now, v)
		} else {
			r.deliver(a, now, v)
		}
	}
	for _, p := range e.computed {
		if _, own := r.offered[p.attr.Name]; own {
			continue
		}
		if slices.ContainsFunc(p.triggers, func(name string) bool { _, ok := r.offered[name]; return ok }) {
			p.runFrom(r, 0, now, model.Value{})
		}
	}
	e.release(r, now, r.takeData(), false)
	return out
}

// convert converts offered values to their attributes' types, keyed by
// attribute name.
func (e *Engine) convert(r *run, values map[string]model.Value) map[string]model.Value {
	out := make(map[string]model.Value, len(values))
	keys := slices.Sorted(maps.Keys(values))
	for _, k := range keys {
		a, ok := e.model.Attribute(k)
		if !ok {
			r.fail(fmt.Errorf("attribute %q: not in device model %q", k, e.model.URN))
			continue
		}
		if _, dup := out[a.Name]; dup {
			r.fail(fmt.Errorf("attribute %q: offered twice (by name and by alias %q); the second is ignored", a.Name, k))
			continue
		}
		v, err := a.Type.Convert(values[k])
		if err != nil {
			r.fail(fmt.Errorf("attribute %q: %w", a.Name, err))
			continue
		}
		out[a.Name] = v
	}
	return out
}

func (e *Engine) advance(now time.Time) time.Time {
	if now.Before(e.now) {
		return e.now
	}
	e.now = now
	return now
}

// tick closes the windows due at now and releases the batches due.
func (e *Engine) tick(r *run, now time.Time) {
	for _, p := range e.order {
		for i, st := range p.stages {
			if w, ok := st.(*window); ok {
				w.due(r, p, i, now)
			}
		}
	}
	e.release(r, now, r.takeData(), false)
}

// release runs data through the "*" pipeline into Outcome.Data. force
// releases every batch; so does, stage by stage, an alert raised in this
// call whose severity reaches the stage's alertSeverity.
func (e *Engine) release(r *run, now time.Time, data []Data, force bool) {
	top := -1
	for _, a := range r.out.Alerts {
		top = max(top, severityRank(a.Severity))
	}
	for _, b := range e.batch {
		data = b.take(now, data, force || top >= b.severity)
	}
	r.out.Data = append(r.out.Data, data...)
}

// Tick runs what falls due at or before now: windows that end, batches whose
// delay ran out. known is as for Offer.
func (e *Engine) Tick(now time.Time, known Lookup) Outcome {
	if e == nil {
		return Outcome{}
	}
	now = e.advance(now)
	var out Outcome
	e.tick(&run{e: e, known: known, out: &out}, now)
	return out
}

// Next returns when Tick must run next; ok is false when nothing waits.
// Only what is held counts: the end of the first window that holds a
// value, the deadline of a batchByTime batch (empty windows and batches
// wake nobody). A batchByCost or batchBySize batch has no deadline.
func (e *Engine) Next() (at time.Time, ok bool) {
	if e == nil {
		return time.Time{}, false
	}
	consider := func(t time.Time, has bool) {
		if has && (!ok || t.Before(at)) {
			at, ok = t, true
		}
	}
	for _, p := range e.order {
		for _, st := range p.stages {
			if w, isWindow := st.(*window); isWindow {
				consider(w.next())
			}
		}
	}
	for _, b := range e.batch {
		consider(b.deadline())
	}
	return at, ok
}

// Flush returns everything held (windows cut short, batches released), for
// a device that closes or a policy that is replaced.
//
// Flush first does what Tick(now) would; then each window holding values
// gives one result over all of them, standing for now, which runs through
// the rest of its pipeline; then every batch is released. The engine is
// left holding nothing and may go on being used: the next value aligns new
// windows. The state of eliminateDuplicates, detectDuplicates and
// sampleQuality is kept.
func (e *Engine) Flush(now time.Time, known Lookup) Outcome {
	if e == nil {
		return Outcome{}
	}
	now = e.advance(now)
	var out Outcome
	r := &run{e: e, known: known, out: &out}
	e.tick(r, now)
	for _, p := range e.order {
		for i, st := range p.stages {
			if w, ok := st.(*window); ok {
				w.cut(r, p, i, now)
			}
		}
	}
	e.release(r, now, r.takeData(), true)
	return out
}
