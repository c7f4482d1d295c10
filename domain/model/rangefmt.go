package model

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// parseRange parses the wire form "min,max" (spaces around the numbers are
// allowed). Both numbers must be finite; the order is checked by Validate.
func parseRange(s string) (*Range, error) {
	if loText, hiText, ok := strings.Cut(s, ","); ok {
		lo, err1 := strconv.ParseFloat(strings.TrimSpace(loText), 64)
		hi, err2 := strconv.ParseFloat(strings.TrimSpace(hiText), 64)
		if err1 == nil && err2 == nil && finite(lo) && finite(hi) {
			return &Range{Min: lo, Max: hi}, nil
		}
	}
	return nil, fmt.Errorf("want \"min,max\" with two finite numbers, got %s", showString(s))
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// bound formats one end of a range of type t: without decimals for an
// integral bound of an INTEGER range, otherwise in strconv's shortest 'g' form.
func bound(f float64, t Type) string {
	if t == TypeInteger && f == math.Trunc(f) && f >= math.MinInt64 && f < -math.MinInt64 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// wire returns the range in its wire form "min,max" for a value of type t.
// It reads back exactly with parseRange.
func (r *Range) wire(t Type) string { return bound(r.Min, t) + "," + bound(r.Max, t) }

// human returns the range as error messages show it: "min..max".
func (r *Range) human(t Type) string { return bound(r.Min, t) + ".." + bound(r.Max, t) }

// contains reports whether the numeric value v lies within r; values of
// other types are always within. INTEGER values are compared exactly, even
// beyond 2^53.
func (r *Range) contains(v Value) bool {
	switch v.typ {
	case TypeInteger:
		return cmpIntFloat(v.i, r.Min) >= 0 && cmpIntFloat(v.i, r.Max) <= 0
	case TypeNumber:
		return v.f >= r.Min && v.f <= r.Max
	}
	return true
}

// cmpIntFloat compares i with f exactly: -1 if i < f, 0 if equal, +1 if i > f.
// f must not be NaN.
func cmpIntFloat(i int64, f float64) int {
	switch {
	case f >= -math.MinInt64: // 2^63 and beyond
		return -1
	case f < math.MinInt64:
		return 1
	}
	fl := math.Floor(f)
	n := int64(fl)
	switch {
	case i < n:
		return -1
	case i > n:
		return 1
	case fl == f:
		return 0
	}
	return -1 // i == floor(f) < f
}

// errOutOfRange is the error for a value outside a range.
func errOutOfRange(v Value, r *Range, t Type) error {
	return errors.New(v.String() + " is out of range " + r.human(t))
}

// checkValue converts v to type t and checks it against r (nil: no range).
func checkValue(t Type, r *Range, v any) (Value, error) {
	val, err := t.Convert(v)
	if err != nil {
		return Value{}, err
	}
	if r != nil && !r.contains(val) {
		return Value{}, errOutOfRange(val, r, t)
	}
	return val, nil
}
