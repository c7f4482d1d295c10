package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/iotnode/iotnode/domain/model"
)

// The function ids of protocol.md §5, sorted.
var functionIDs = []string{
	fnActionCondition, fnAlertCondition, fnBatchByCost, fnBatchBySize, fnBatchByTime,
	fnComputedMetric, fnDetectDuplicates, fnEliminateDuplicates, fnFilterCondition,
	fnMax, fnMean, fnMin, fnSampleQuality, fnStandardDeviation,
}

const (
	fnActionCondition     = "actionCondition"
	fnAlertCondition      = "alertCondition"
	fnBatchByCost         = "batchByCost"
	fnBatchBySize         = "batchBySize"
	fnBatchByTime         = "batchByTime"
	fnComputedMetric      = "computedMetric"
	fnDetectDuplicates    = "detectDuplicates"
	fnEliminateDuplicates = "eliminateDuplicates"
	fnFilterCondition     = "filterCondition"
	fnMax                 = "max"
	fnMean                = "mean"
	fnMin                 = "min"
	fnSampleQuality       = "sampleQuality"
	fnStandardDeviation   = "standardDeviation"
)

// AllAttributes is the attributeName of the message-level pipeline.
const AllAttributes = "*"

// parse is Parse. A null value counts as absent everywhere; keys the policy
// does not use are ignored. "enabled" defaults to true when absent: the
// cloud always sends it, and a policy served without it is meant to apply.
func parse(data []byte) (*Policy, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var root any
	if err := dec.Decode(&root); err != nil {
		return nil, model.JSONError(data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		line, col := model.JSONPosition(data, dec.InputOffset()+1)
		return nil, fmt.Errorf("invalid JSON at line %d, column %d: unexpected data after the policy object", line, col)
	}
	obj, ok := root.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("want a JSON object, got %s", jsonKind(root))
	}
	d := &decoder{}
	p := &Policy{Enabled: true}
	p.ID, _ = d.str(obj, "", "id", true)
	p.Description, _ = d.str(obj, "", "description", false)
	if v, ok := field(obj, "enabled"); ok {
		if b, isBool := v.(bool); isBool {
			p.Enabled = b
		} else {
			d.failf("enabled", "want a boolean, got %s", jsonKind(v))
		}
	}
	if v, ok := field(obj, "lastModified"); ok {
		f, isNum := v.(float64)
		switch {
		case !isNum:
			d.failf("lastModified", "want a number (epoch milliseconds), got %s", jsonKind(v))
		case f != math.Trunc(f) || math.Abs(f) > 1<<53:
			d.failf("lastModified", "%s is not a time; expected whole epoch milliseconds", show(v))
		default:
			p.LastModified = time.UnixMilli(int64(f)).UTC()
		}
	}
	if items, ok := d.array(obj, "", "pipelines", true); ok {
		p.Pipelines = make([]Pipeline, 0, len(items))
		for i, item := range items {
			p.Pipelines = append(p.Pipelines, d.pipeline(fmt.Sprintf("pipelines[%d]", i), item))
		}
	}
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	return p, nil
}

// decoder walks the decoded JSON and collects every problem.
type decoder struct{ errs []error }

func (d *decoder) failf(path, format string, args ...any) {
	d.errs = append(d.errs, errors.New(path+": "+fmt.Sprintf(format, args...)))
}

func (d *decoder) pipeline(path string, item any) Pipeline {
	var pl Pipeline
	obj, ok := item.(map[string]any)
	if !ok {
		d.failf(path, "want an object {attributeName, pipeline}, got %s", jsonKind(item))
		return pl
	}
	if name, ok := d.str(obj, path, "attributeName", true); ok {
		if name == "" {
			d.failf(path+".attributeName", "is empty; expected an attribute name or \"*\"")
		}
		pl.Attribute = name
	}
	fns, ok := d.array(obj, path, "pipeline", true)
	if !ok {
		return pl
	}
	pl.Functions = make([]Function, 0, len(fns))
	for j, fn := range fns {
		pl.Functions = append(pl.Functions, d.function(fmt.Sprintf("%s.pipeline[%d]", path, j), fn))
	}
	return pl
}

func (d *decoder) function(path string, item any) Function {
	fn := Function{Parameters: map[string]any{}}
	obj, ok := item.(map[string]any)
	if !ok {
		d.failf(path, "want an object {id, parameters}, got %s", jsonKind(item))
		return fn
	}
	if id, ok := d.str(obj, path, "id", true); ok {
		fn.ID = id
		if !knownFunction(id) {
			d.failf(path, "function %q is unknown; expected one of %s", id, strings.Join(functionIDs, ", "))
		}
	}
	if v, ok := field(obj, "parameters"); ok {
		params, isObj := v.(map[string]any)
		if !isObj {
			d.failf(path+".parameters", "want an object, got %s", jsonKind(v))
		} else {
			fn.Parameters = params
		}
	}
	return fn
}

// str returns obj[key] as a string.
func (d *decoder) str(obj map[string]any, path, key string, required bool) (string, bool) {
	v, ok := field(obj, key)
	if !ok {
		if required {
			d.failf(join(path, key), "missing; want a string")
		}
		return "", false
	}
	s, isStr := v.(string)
	if !isStr {
		d.failf(join(path, key), "want a string, got %s", jsonKind(v))
		return "", false
	}
	return s, true
}

// array returns obj[key] as an array.
func (d *decoder) array(obj map[string]any, path, key string, required bool) ([]any, bool) {
	v, ok := field(obj, key)
	if !ok {
		if required {
			d.failf(join(path, key), "missing; want an array")
		}
		return nil, false
	}
	a, isArr := v.([]any)
	if !isArr {
		d.failf(join(path, key), "want an array, got %s", jsonKind(v))
		return nil, false
	}
	return a, true
}

func knownFunction(id string) bool {
	for _, f := range functionIDs {
		if f == id {
			return true
		}
	}
	return false
}

// field returns obj[key], a null counting as absent.
func field(obj map[string]any, key string) (any, bool) {
	v, ok := obj[key]
	return v, ok && v != nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// jsonKind names the JSON type of a decoded value.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	}
	return "object"
}

// show writes a decoded JSON value as JSON, shortened, for error messages.
func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 40 {
		return string(b[:37]) + "..."
	}
	return string(b)
}
