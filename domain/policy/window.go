package policy

import (
	"math"
	"time"

	"github.com/iotnode/iotnode/domain/model"
)

// maxOverlap bounds window/slide: the number of windows a value belongs to,
// hence the work each value costs.
const maxOverlap = 10000

// window is mean, min, max or standardDeviation over a time window.
//
// Windows are aligned to the first value the function receives (time t0):
// window k covers [t0 + k*slide, t0 + k*slide + size), half-open. Oracle
// keeps buckets aligned to the first value too, but fires its timer from the
// policy's assignment (DeviceFunction.js MEAN, ScheduledPolicyData.js), so
// its first result may cover less than a window; here every result covers
// exactly one window. With slide < size windows overlap and a value counts
// in each window it falls in; with slide > size the values between windows
// count nowhere and are dropped.
//
// A window's result is computed when it ends (Tick at or after its end) over
// the values that fell in it: their mean, min, max or population standard
// deviation. It stands for the window's end. An empty window gives nothing
// (Oracle's mean also gives nothing for a window whose sum is 0, and its
// standardDeviation ignores repeated values: neither is kept). Results for
// an INTEGER attribute are rounded to the nearest integer; min and max are
// the values themselves.
type window struct {
	fn          string
	size, slide time.Duration
	started     bool
	t0          time.Time
	k           int64 // the next window to close
	samples     []sample
}

type sample struct {
	at time.Time
	v  model.Value
}

func (w *window) start(k int64) time.Time { return w.t0.Add(time.Duration(k) * w.slide) }

// first returns the first window not yet closed that ends after at.
func (w *window) first(at time.Time) int64 {
	d := at.Sub(w.t0) - w.size
	k := int64(d / w.slide)
	if d%w.slide != 0 && d < 0 {
		k--
	}
	return max(k+1, w.k)
}

func (w *window) apply(r *run, p *pipeline, at time.Time, v model.Value) (model.Value, bool, error) {
	if !w.started {
		w.started, w.t0, w.k = true, at, 0
	}
	if at.Before(w.start(w.k)) {
		return v, false, nil // too late for any open window
	}
	if w.slide > w.size && at.Sub(w.t0)%w.slide >= w.size {
		return v, false, nil // between two windows
	}
	w.samples = append(w.samples, sample{at, v})
	return v, false, nil
}

// due closes the windows that end at or before now, running each result
// through the rest of the pipeline (p's stages after index i).
func (w *window) due(r *run, p *pipeline, i int, now time.Time) {
	for len(w.samples) > 0 {
		k := w.first(w.samples[0].at)
		start := w.start(k)
		end := start.Add(w.size)
		if end.After(now) {
			w.k = k
			return
		}
		n := 0
		for n < len(w.samples) && w.samples[n].at.Before(end) {
			n++
		}
		w.emit(r, p, i, end, w.samples[:n])
		w.k = k + 1
		next := w.start(w.k)
		drop := 0
		for drop < len(w.samples) && w.samples[drop].at.Before(next) {
			drop++
		}
		w.samples = w.samples[drop:]
	}
}

// next returns the end of the first window that holds a value.
func (w *window) next() (time.Time, bool) {
	if len(w.samples) == 0 {
		return time.Time{}, false
	}
	return w.start(w.first(w.samples[0].at)).Add(w.size), true
}

// cut closes the window in progress early, at now, over every value held,
// and starts afresh: the next value aligns new windows.
func (w *window) cut(r *run, p *pipeline, i int, now time.Time) {
	held := w.samples
	w.started, w.samples, w.k = false, nil, 0
	if len(held) > 0 {
		w.emit(r, p, i, now, held)
	}
}

func (w *window) emit(r *run, p *pipeline, i int, at time.Time, vals []sample) {
	if len(vals) == 0 {
		return
	}
	var out model.Value
	switch w.fn {
	case fnMin, fnMax:
		out = vals[0].v
		for _, s := range vals[1:] {
			if (w.fn == fnMin && s.v.Float() < out.Float()) || (w.fn == fnMax && s.v.Float() > out.Float()) {
				out = s.v
			}
		}
	default:
		mean := 0.0
		for _, s := range vals {
			mean += s.v.Float()
		}
		mean /= float64(len(vals))
		x := mean
		if w.fn == fnStandardDeviation {
			sq := 0.0
			for _, s := range vals {
				d := s.v.Float() - mean
				sq += d * d
			}
			x = math.Sqrt(sq / float64(len(vals)))
		}
		var err error
		if out, err = p.attr.Type.Convert(prepare(p.attr.Type, x)); err != nil {
			r.fail(wrapStage(p, i, err))
			return
		}
	}
	p.runFrom(r, i+1, at, out)
}
