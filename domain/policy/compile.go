package policy

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/iotnode/iotnode/domain/model"
)

// maxDuration bounds windows and delays: ten years, far beyond any use and
// far below time.Duration's range.
const maxDuration = 10 * 365 * 24 * time.Hour

// Severity ranks, LOW to CRITICAL; "" ranks as NORMAL, the default severity
// of an alert (Oracle's AlertMessage.Severity.NORMAL).
var severities = []string{"LOW", "NORMAL", "SIGNIFICANT", "CRITICAL"}

func severityRank(s string) int {
	if s == "" {
		s = "NORMAL"
	}
	return slices.Index(severities, s)
}

// Network costs in increasing order (Oracle's NetworkCost ordinals).
var networkCosts = []string{"ETHERNET", "CELLULAR", "SATELLITE"}

// parseCost reads a network cost as Oracle's NetworkCost does: case does not
// matter and a parenthesized tail ("CELLULAR (LTE)") is ignored.
func parseCost(s string) (int, bool) {
	if i := strings.IndexByte(s, '('); i >= 0 {
		s = s[:i]
	}
	i := slices.Index(networkCosts, strings.ToUpper(strings.TrimSpace(s)))
	return i, i >= 0
}

// compile is Compile for an enabled policy.
func compile(p *Policy, m *model.DeviceModel, opts Options) (*Engine, error) {
	c := &compiler{m: m}
	deviceCost := 0 // ETHERNET
	if opts.NetworkCost != "" {
		cost, ok := parseCost(opts.NetworkCost)
		if !ok {
			c.failf("options.NetworkCost", "%q is not a network cost; expected ETHERNET, CELLULAR or SATELLITE", opts.NetworkCost)
		}
		deviceCost = cost
	}
	e := newEngine(m, opts)
	seen := map[string]string{} // attribute name -> path of its pipeline
	for i := range p.Pipelines {
		pl := &p.Pipelines[i]
		path := fmt.Sprintf("pipelines[%d]", i)
		if pl.Attribute == AllAttributes {
			if prev, dup := seen[AllAttributes]; dup {
				c.failf(path+".attributeName", "\"*\" already has a pipeline at %s", prev)
				continue
			}
			seen[AllAttributes] = path
			e.batch = c.batchStages(path, pl.Functions, deviceCost)
			continue
		}
		a, ok := m.Attribute(pl.Attribute)
		if !ok {
			c.failf(path+".attributeName", "%q is not an attribute of device model %q", pl.Attribute, m.URN)
			continue
		}
		if prev, dup := seen[a.Name]; dup {
			c.failf(path+".attributeName", "attribute %q already has a pipeline at %s", a.Name, prev)
			continue
		}
		seen[a.Name] = path
		if pipe := c.pipeline(path, a, pl.Functions); pipe != nil {
			e.pipes[a.Name] = pipe
		}
	}
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	// Model order, so that runs are deterministic.
	for i := range m.Attributes {
		pipe := e.pipes[m.Attributes[i].Name]
		if pipe == nil {
			continue
		}
		e.order = append(e.order, pipe)
		if pipe.triggers != nil {
			e.computed = append(e.computed, pipe)
		}
	}
	return e, nil
}

type compiler struct {
	m    *model.DeviceModel
	errs []error
}

func (c *compiler) failf(path, format string, args ...any) {
	c.errs = append(c.errs, errors.New(path+": "+fmt.Sprintf(format, args...)))
}

// pipeline compiles the functions of one attribute; nil when one failed.
func (c *compiler) pipeline(path string, a *model.Attribute, fns []Function) *pipeline {
	pipe := &pipeline{attr: a}
	nerr := len(c.errs)
	for j := range fns {
		fn := &fns[j]
		fpath := fmt.Sprintf("%s.pipeline[%d]", path, j)
		params := func(key string) string { return fpath + ".parameters." + key }
		var st stage
		switch fn.ID {
		case fnFilterCondition:
			if f := c.formula(params("condition"), fn.Parameters, "condition"); f != nil {
				st = &filterCondition{cond: f}
			}
		case fnSampleQuality:
			st = c.sampleQuality(params("rate"), fn.Parameters)
		case fnEliminateDuplicates:
			if w, ok := c.duration(params("window"), fn.Parameters, "window", true); ok {
				st = &eliminateDuplicates{window: w}
			}
		case fnDetectDuplicates:
			w, okw := c.duration(params("window"), fn.Parameters, "window", true)
			format := c.detectFormat(params("alertFormatURN"), a, fn.Parameters)
			if okw && format != nil {
				st = &detectDuplicates{window: w, format: format}
			}
		case fnMean, fnMin, fnMax, fnStandardDeviation:
			if a.Type != model.TypeInteger && a.Type != model.TypeNumber {
				c.failf(fpath, "%s needs a NUMBER or INTEGER attribute; %q is %s", fn.ID, a.Name, a.Type)
			}
			size, oks := c.duration(params("window"), fn.Parameters, "window", true)
			slide, okl := c.duration(params("slide"), fn.Parameters, "slide", false)
			if oks && okl {
				if slide == 0 {
					slide = size
				}
				if size/slide > maxOverlap {
					c.failf(params("slide"), "%d is too small for a window of %d; expected at least window/%d", slide.Milliseconds(), size.Milliseconds(), maxOverlap)
				} else {
					st = &window{fn: fn.ID, size: size, slide: slide}
				}
			}
		case fnComputedMetric:
			if f := c.formula(params("formula"), fn.Parameters, "formula"); f != nil {
				st = &computedMetric{formula: f}
				if j == 0 {
					pipe.triggers = c.triggers(f, a)
				}
			}
		case fnAlertCondition:
			st = c.alertCondition(fpath, fn.Parameters)
		case fnActionCondition:
			st = c.actionCondition(fpath, fn.Parameters)
		case fnBatchByTime, fnBatchBySize, fnBatchByCost:
			c.failf(fpath, "%s batches whole messages: it belongs in the \"*\" pipeline", fn.ID)
		default:
			c.failf(fpath, "function %q is unknown; expected one of %s", fn.ID, strings.Join(functionIDs, ", "))
		}
		if st != nil {
			pipe.stages = append(pipe.stages, st)
			pipe.ids = append(pipe.ids, fn.ID)
		}
	}
	if len(c.errs) > nerr {
		return nil
	}
	return pipe
}

// triggers returns the attributes other than a that f refers to as $(name),
// or an empty non-nil slice (the pipeline is still a computed metric, run
// when a itself is offered). A $$(name) reference, the device's current
// value, triggers nothing, as in Oracle (VirtualDevice.js _policyAssigned2).
func (c *compiler) triggers(f *Formula, a *model.Attribute) []string {
	out := []string{}
	for _, ref := range plainRefs(f.String()) {
		if ra, ok := c.m.Attribute(ref); ok && ra.Name != a.Name && !slices.Contains(out, ra.Name) {
			out = append(out, ra.Name)
		}
	}
	return out
}

// plainRefs returns the names of the $(name) references of a formula that
// compiled, in order, leaving out $$(name). Formulas have no string literals,
// so every "$(" is a reference.
func plainRefs(src string) []string {
	var out []string
	for i := 0; i+1 < len(src); i++ {
		if src[i] != '$' || src[i+1] != '(' || (i > 0 && src[i-1] == '$') {
			continue
		}
		end := strings.IndexByte(src[i:], ')')
		if end < 0 {
			break
		}
		out = append(out, strings.Trim(src[i+2:i+end], " \t"))
		i += end
	}
	return out
}

// batchStages compiles the "*" pipeline.
func (c *compiler) batchStages(path string, fns []Function, deviceCost int) []*batchStage {
	var out []*batchStage
	for j := range fns {
		fn := &fns[j]
		fpath := fmt.Sprintf("%s.pipeline[%d]", path, j)
		params := func(key string) string { return fpath + ".parameters." + key }
		b := &batchStage{fn: fn.ID, severity: severityRank("CRITICAL")}
		ok := true
		switch fn.ID {
		case fnBatchByTime:
			b.delay, ok = c.duration(params("delayLimit"), fn.Parameters, "delayLimit", true)
		case fnBatchBySize:
			b.size, ok = c.count(params("batchSize"), fn.Parameters, "batchSize")
		case fnBatchByCost:
			v, present := field(fn.Parameters, "networkCost")
			s, isStr := v.(string)
			cost, known := parseCost(s)
			switch {
			case !present:
				c.failf(params("networkCost"), "missing; expected ETHERNET, CELLULAR or SATELLITE")
				ok = false
			case !isStr || !known:
				c.failf(params("networkCost"), "%s is not a network cost; expected ETHERNET, CELLULAR or SATELLITE", show(v))
				ok = false
			default:
				b.hold = deviceCost > cost
			}
		default:
			c.failf(fpath, "function %q cannot run on \"*\"; expected batchByTime, batchBySize or batchByCost", fn.ID)
			continue
		}
		if v, present := field(fn.Parameters, "alertSeverity"); present {
			s, _ := v.(string)
			if r := severityRank(strings.ToUpper(s)); s != "" && r >= 0 {
				b.severity = r
			} else {
				c.failf(params("alertSeverity"), "%s is not a severity; expected LOW, NORMAL, SIGNIFICANT or CRITICAL", show(v))
				ok = false
			}
		}
		if ok {
			out = append(out, b)
		}
	}
	return out
}

// duration reads a parameter in milliseconds. An optional one that is absent
// or 0 reads as 0 (the caller's default).
func (c *compiler) duration(path string, params map[string]any, key string, required bool) (time.Duration, bool) {
	v, present := field(params, key)
	if !present {
		if required {
			c.failf(path, "missing; expected milliseconds > 0")
			return 0, false
		}
		return 0, true
	}
	f, isNum := v.(float64)
	switch {
	case !isNum || f < 0 || (f == 0 && required):
		c.failf(path, "%s is not a duration; expected milliseconds > 0", show(v))
	case f != math.Trunc(f):
		c.failf(path, "%s is not a duration; expected whole milliseconds > 0", show(v))
	case f > float64(maxDuration/time.Millisecond):
		c.failf(path, "%s is too long; expected at most %d milliseconds (10 years)", show(v), maxDuration/time.Millisecond)
	default:
		return time.Duration(f) * time.Millisecond, true
	}
	return 0, false
}

// count reads a whole number >= 1.
func (c *compiler) count(path string, params map[string]any, key string) (int, bool) {
	v, present := field(params, key)
	if !present {
		c.failf(path, "missing; expected a whole number >= 1")
		return 0, false
	}
	f, isNum := v.(float64)
	if !isNum || f < 1 || f != math.Trunc(f) || f > math.MaxInt32 {
		c.failf(path, "%s is not a count; expected a whole number >= 1", show(v))
		return 0, false
	}
	return int(f), true
}

// formula compiles a formula parameter and checks its references.
func (c *compiler) formula(path string, params map[string]any, key string) *Formula {
	v, present := field(params, key)
	if !present {
		c.failf(path, "missing; expected a formula")
		return nil
	}
	src, isStr := v.(string)
	if !isStr {
		c.failf(path, "want a formula (string), got %s", jsonKind(v))
		return nil
	}
	return c.compileFormula(path, src)
}

func (c *compiler) compileFormula(path, src string) *Formula {
	f, err := CompileFormula(src)
	if err != nil {
		c.failf(path, "%v", err)
		return nil
	}
	ok := true
	for _, ref := range f.Refs() {
		if _, known := c.m.Attribute(ref); !known {
			c.failf(path, "formula %q: $(%s) is not an attribute of device model %q", src, ref, c.m.URN)
			ok = false
		}
	}
	if !ok {
		return nil
	}
	return f
}

func (c *compiler) sampleQuality(path string, params map[string]any) stage {
	v, present := field(params, "rate")
	if !present {
		c.failf(path, "missing; expected a whole number >= -1, \"all\", \"random\" or \"none\"")
		return nil
	}
	switch x := v.(type) {
	case string:
		switch strings.ToLower(x) {
		case "all":
			return &sampleQuality{rate: rateAll}
		case "random":
			return &sampleQuality{rate: rateRandom}
		case "none":
			return &sampleQuality{rate: rateNone}
		}
	case float64:
		if x >= -1 && x == math.Trunc(x) && x <= math.MaxInt32 {
			return &sampleQuality{rate: int(x)}
		}
	}
	c.failf(path, "%s is not a rate; expected a whole number >= -1, \"all\", \"random\" or \"none\"", show(v))
	return nil
}

// alertFormat finds an ALERT format of the model.
func (c *compiler) alertFormat(path string, v any, present bool) *model.Format {
	urn, isStr := v.(string)
	switch {
	case !present:
		c.failf(path, "missing; expected the URN of an alert format of device model %q", c.m.URN)
		return nil
	case !isStr:
		c.failf(path, "want a string, got %s", jsonKind(v))
		return nil
	}
	f, ok := c.m.Format(urn)
	if !ok {
		c.failf(path, "%q is not a format of device model %q", urn, c.m.URN)
		return nil
	}
	if f.Type != model.FormatAlert {
		c.failf(path, "format %q is %s; expected an ALERT format", urn, f.Type)
		return nil
	}
	return f
}

// detectFormat checks the alert of detectDuplicates. Its alert carries one
// field, the duplicate value, in the field named like the attribute (when
// the format has one): a required field it cannot fill is an error.
func (c *compiler) detectFormat(path string, a *model.Attribute, params map[string]any) *model.Format {
	v, present := field(params, "alertFormatURN")
	f := c.alertFormat(path, v, present)
	if f == nil {
		return nil
	}
	ok := true
	for _, ff := range f.Fields {
		if ff.Name != a.Name && !ff.Optional {
			c.failf(path, "alert format %q has the required field %q, which detectDuplicates cannot fill (it fills only a field named %q)", f.URN, ff.Name, a.Name)
			ok = false
		}
	}
	if !ok {
		return nil
	}
	return f
}

func (c *compiler) filterFlag(path string, params map[string]any) bool {
	v, present := field(params, "filter")
	if !present {
		return true
	}
	b, isBool := v.(bool)
	if !isBool {
		c.failf(path, "want a boolean, got %s", jsonKind(v))
	}
	return b
}

func (c *compiler) alertCondition(fpath string, params map[string]any) stage {
	nerr := len(c.errs)
	st := &alertCondition{
		cond:   c.formula(fpath+".parameters.condition", params, "condition"),
		filter: c.filterFlag(fpath+".parameters.filter", params),
	}
	path := fpath + ".parameters.alert"
	v, present := field(params, "alert")
	spec, isObj := v.(map[string]any)
	switch {
	case !present:
		c.failf(path, "missing; expected {urn, fields, severity}")
		return nil
	case !isObj:
		c.failf(path, "want an object {urn, fields, severity}, got %s", jsonKind(v))
		return nil
	}
	urn, hasURN := field(spec, "urn")
	st.format = c.alertFormat(path+".urn", urn, hasURN)
	if sv, ok := field(spec, "severity"); ok {
		s, _ := sv.(string)
		if s == "" || severityRank(strings.ToUpper(s)) < 0 {
			c.failf(path+".severity", "%s is not a severity; expected LOW, NORMAL, SIGNIFICANT or CRITICAL", show(sv))
		}
		st.severity = strings.ToUpper(s)
	}
	var fields map[string]any
	if fv, ok := field(spec, "fields"); ok {
		if fields, ok = fv.(map[string]any); !ok {
			c.failf(path+".fields", "want an object {field: value or formula}, got %s", jsonKind(fv))
		}
	}
	if st.format != nil {
		for _, name := range sortedKeys(fields) {
			if !slices.ContainsFunc(st.format.Fields, func(ff model.FormatField) bool { return ff.Name == name }) {
				c.failf(path+".fields."+name, "alert format %q has no field %q", st.format.URN, name)
			}
		}
		for i := range st.format.Fields {
			ff := &st.format.Fields[i]
			raw, ok := field(fields, ff.Name)
			if !ok {
				if !ff.Optional {
					c.failf(path+".fields", "the required field %q of alert format %q is missing", ff.Name, st.format.URN)
				}
				continue
			}
			if op, ok := c.operand(path+".fields."+ff.Name, ff.Type, raw, ff.Check); ok {
				st.fields = append(st.fields, alertField{name: ff.Name, check: ff.Check, op: op})
			}
		}
	}
	if len(c.errs) > nerr {
		return nil
	}
	return st
}

func (c *compiler) actionCondition(fpath string, params map[string]any) stage {
	nerr := len(c.errs)
	st := &actionCondition{
		cond:   c.formula(fpath+".parameters.condition", params, "condition"),
		filter: c.filterFlag(fpath+".parameters.filter", params),
	}
	path := fpath + ".parameters.action"
	v, present := field(params, "action")
	spec, isObj := v.(map[string]any)
	switch {
	case !present:
		c.failf(path, "missing; expected {name, arguments}")
		return nil
	case !isObj:
		c.failf(path, "want an object {name, arguments}, got %s", jsonKind(v))
		return nil
	}
	nv, _ := field(spec, "name")
	name, isStr := nv.(string)
	if !isStr {
		c.failf(path+".name", "missing; expected the name of an action of device model %q", c.m.URN)
		return nil
	}
	act, ok := c.m.Action(name)
	if !ok {
		c.failf(path+".name", "%q is not an action of device model %q", name, c.m.URN)
		return nil
	}
	st.action = act
	var args []any
	if av, ok := field(spec, "arguments"); ok {
		if args, ok = av.([]any); !ok {
			c.failf(path+".arguments", "want an array, got %s", jsonKind(av))
		}
	}
	if len(args) > len(act.Arguments) {
		c.failf(path+".arguments", "%d arguments; action %q takes %d", len(args), act.Name, len(act.Arguments))
	}
	for i := range act.Arguments {
		arg := &act.Arguments[i]
		apath := fmt.Sprintf("%s.arguments[%d]", path, i)
		if i >= len(args) || args[i] == nil {
			if !arg.Default.Valid() {
				c.failf(apath, "missing; argument %q of action %q has no default", arg.Name, act.Name)
			}
			st.args = append(st.args, operand{})
			continue
		}
		check := func(v any) (model.Value, error) {
			val, err := arg.Type.Convert(v)
			if err != nil {
				return model.Value{}, fmt.Errorf("argument %q: %w", arg.Name, err)
			}
			return val, nil
		}
		op, _ := c.operand(apath, arg.Type, args[i], check)
		st.args = append(st.args, op)
	}
	if len(c.errs) > nerr {
		return nil
	}
	return st
}

// operand compiles an alert field or action argument: a literal of type t
// or a formula. A JSON string is a formula when it compiles as one and, for
// STRING and URI, refers to at least one attribute ("$(name)"): otherwise it
// is literal text. For the other types a string that converts as a literal
// (a DATETIME in RFC 3339) is one; else it must be a formula.
func (c *compiler) operand(path string, t model.Type, raw any, check func(any) (model.Value, error)) (operand, bool) {
	src, isStr := raw.(string)
	if isStr {
		if t == model.TypeString || t == model.TypeURI {
			if f, err := CompileFormula(src); err == nil && len(f.Refs()) > 0 {
				if f = c.compileFormula(path, src); f == nil {
					return operand{}, false
				}
				return operand{formula: f}, true
			}
		} else if _, err := check(src); err != nil {
			if f := c.compileFormula(path, src); f != nil {
				return operand{formula: f}, true
			}
			return operand{}, false
		}
	}
	v, err := check(raw)
	if err != nil {
		c.failf(path, "%v", err)
		return operand{}, false
	}
	return operand{literal: v}, true
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
