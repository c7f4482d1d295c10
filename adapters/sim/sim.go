package sim

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

// The waveforms of a Signal.
const (
	Sine       = "sine"
	RandomWalk = "random_walk"
	Steps      = "steps"
)

// Waveforms lists the waveform names, for error messages and documentation.
var Waveforms = []string{Sine, RandomWalk, Steps}

// Signal describes one simulated reading. Which fields apply depends on the
// waveform; the others must stay zero.
type Signal struct {
	Waveform string // Sine, RandomWalk or Steps

	// Min and Max bound the values of sine and random_walk (Min < Max).
	Min, Max float64

	// Period is one full cycle of a sine (required, > 0).
	Period time.Duration
	// Noise adds a uniform random value in [-Noise, Noise] to a sine, kept
	// within Min..Max (>= 0).
	Noise float64

	// Step is the largest change per read of a random_walk (> 0; default a
	// twentieth of the range).
	Step float64
	// Start is where a random_walk starts (default the middle of the range).
	Start *float64

	// Values are the levels of steps, in order (at least one).
	Values []float64
	// Every is how long steps holds each value (required, > 0).
	Every time.Duration
}

// Config configures New.
type Config struct {
	// Name identifies the simulated device in logs and errors.
	Name string
	// Seed seeds the random sources of random_walk and of sine noise.
	Seed int64
	// Signals are the readings the sensor produces, by name.
	Signals map[string]Signal
	// Outputs are the actuator's outputs, by name, with their initial
	// state: nil for none (the output then has no reading until it is first
	// actuated), or a bool, int64, float64, string or time.Time (int and
	// float32 are widened).
	Outputs map[string]any
	// FailEvery makes every FailEvery-th Read fail (0: never).
	FailEvery int
	// Clock tells the time; nil means the system clock.
	Clock ports.Clock
	// Logger receives one line per actuation; nil discards. New names it
	// "iotnode.driver.sim".
	Logger *slog.Logger
}

// Validate reports every problem of c at once (errors.Join of one error per
// problem), each naming the signal or output and what was expected.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Signals) == 0 && len(c.Outputs) == 0 {
		errs = append(errs, errors.New("no signals and no outputs: expected at least one of them"))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Signals)) {
		for _, err := range c.Signals[name].validate() {
			errs = append(errs, fmt.Errorf("signal %q: %w", name, err))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Outputs)) {
		if _, dup := c.Signals[name]; dup {
			errs = append(errs, fmt.Errorf("output %q: a signal has the same name; expected distinct reading names", name))
		}
		if _, err := stateValue(c.Outputs[name]); err != nil {
			errs = append(errs, fmt.Errorf("output %q: initial state: %w", name, err))
		}
	}
	if c.FailEvery < 0 {
		errs = append(errs, fmt.Errorf("fail every %d reads: expected 0 (never) or more", c.FailEvery))
	}
	return errors.Join(errs...)
}

func (s Signal) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	finite := func(name string, v float64) bool {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			add("%s is %v: expected a finite number", name, v)
			return false
		}
		return true
	}
	rangeOK := func() {
		if finite("min", s.Min) && finite("max", s.Max) && s.Min >= s.Max {
			add("min %g is not below max %g: expected min < max", s.Min, s.Max)
		}
	}
	unused := func(waveform string, fields map[string]bool) {
		for _, name := range slices.Sorted(maps.Keys(fields)) {
			if fields[name] {
				add("%s does not apply to waveform %s", name, waveform)
			}
		}
	}
	switch s.Waveform {
	case Sine:
		rangeOK()
		if s.Period <= 0 {
			add("period is %s: expected a duration above 0, such as 10m", s.Period)
		}
		if finite("noise", s.Noise) && s.Noise < 0 {
			add("noise is %g: expected 0 or more", s.Noise)
		}
		unused(Sine, map[string]bool{"step": s.Step != 0, "start": s.Start != nil, "values": len(s.Values) > 0, "every": s.Every != 0})
	case RandomWalk:
		rangeOK()
		if finite("step", s.Step) && s.Step < 0 {
			add("step is %g: expected more than 0 (or 0 for a twentieth of the range)", s.Step)
		}
		if s.Start != nil && finite("start", *s.Start) && (*s.Start < s.Min || *s.Start > s.Max) {
			add("start %g is outside %g..%g", *s.Start, s.Min, s.Max)
		}
		unused(RandomWalk, map[string]bool{"period": s.Period != 0, "noise": s.Noise != 0, "values": len(s.Values) > 0, "every": s.Every != 0})
	case Steps:
		if len(s.Values) == 0 {
			add("values is empty: expected at least one value")
		}
		for i, v := range s.Values {
			finite(fmt.Sprintf("values[%d]", i), v)
		}
		if s.Every <= 0 {
			add("every is %s: expected a duration above 0, such as 30s", s.Every)
		}
		unused(Steps, map[string]bool{"min": s.Min != 0, "max": s.Max != 0, "period": s.Period != 0, "noise": s.Noise != 0,
			"step": s.Step != 0, "start": s.Start != nil})
	case "":
		add("waveform is missing: expected one of %s", strings.Join(Waveforms, ", "))
	default:
		add("unknown waveform %q: expected one of %s", s.Waveform, strings.Join(Waveforms, ", "))
	}
	return errs
}

// Device is a simulated sensor and actuator. It is safe for concurrent use:
// the node reads it from its sampling loop while cloud requests actuate it.
type Device struct {
	name      string
	clock     ports.Clock
	log       *slog.Logger
	start     time.Time
	failEvery int

	mu      sync.Mutex
	signals []*signal // sorted by name
	outputs map[string]*output
	reads   int
}

type signal struct {
	name string
	Signal
	rng *rand.Rand
	pos float64 // random_walk position
}

type output struct {
	state any // nil until set
	calls int64
}

// New returns a simulated device; the waveforms start at the clock's now.
// It starts no goroutine and needs no Close.
func New(cfg Config) (*Device, error) {
	name := cfg.Name
	if name == "" {
		name = "sim"
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sim device %q: %w", name, err)
	}
	d := &Device{name: name, clock: cfg.Clock, log: cfg.Logger, failEvery: cfg.FailEvery, outputs: map[string]*output{}}
	if d.clock == nil {
		d.clock = systemClock{}
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.log = d.log.With(slog.String("logger", "iotnode.driver.sim"), slog.String("device", name))
	d.start = d.clock.Now()
	for _, n := range slices.Sorted(maps.Keys(cfg.Signals)) {
		s := &signal{name: n, Signal: cfg.Signals[n]}
		s.Values = slices.Clone(s.Values)
		h := fnv.New64a()
		h.Write([]byte(n))
		s.rng = rand.New(rand.NewPCG(uint64(cfg.Seed), h.Sum64()))
		if s.Waveform == RandomWalk {
			if s.Step == 0 {
				s.Step = (s.Max - s.Min) / 20
			}
			s.pos = (s.Min + s.Max) / 2
			if s.Start != nil {
				s.pos = *s.Start
			}
		}
		d.signals = append(d.signals, s)
	}
	for n, v := range cfg.Outputs {
		st, _ := stateValue(v) // checked by Validate
		d.outputs[n] = &output{state: st}
	}
	return d, nil
}

// Readings returns the names of the readings Read can return, sorted: the
// signals and the outputs.
func (d *Device) Readings() []string {
	names := make([]string, 0, len(d.signals)+len(d.outputs))
	for _, s := range d.signals {
		names = append(names, s.name)
	}
	names = append(names, slices.Collect(maps.Keys(d.outputs))...)
	slices.Sort(names)
	return names
}

// Outputs returns the names of the outputs Actuate accepts, sorted.
func (d *Device) Outputs() []string { return slices.Sorted(maps.Keys(d.outputs)) }

// Read implements ports.Sensor: one value per signal, computed for the
// clock's now, and the state of every output that has one, sorted by name.
// Every FailEvery-th call fails instead (and moves no random walk). It
// returns ctx's error when ctx is already done.
func (d *Device) Read(ctx context.Context) ([]ports.Reading, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sim device %q: read: %w", d.name, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reads++
	if d.failEvery > 0 && d.reads%d.failEvery == 0 {
		return nil, fmt.Errorf("sim device %q: simulated sensor failure (read %d; fail_every is %d)", d.name, d.reads, d.failEvery)
	}
	t := d.clock.Now().Sub(d.start)
	out := make([]ports.Reading, 0, len(d.signals)+len(d.outputs))
	for _, s := range d.signals {
		out = append(out, ports.Reading{Name: s.name, Value: s.next(t)})
	}
	for n, o := range d.outputs {
		if o.state != nil {
			out = append(out, ports.Reading{Name: n, Value: o.state})
		}
	}
	slices.SortFunc(out, func(a, b ports.Reading) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// next returns the signal's value at t after the start.
func (s *signal) next(t time.Duration) float64 {
	switch s.Waveform {
	case Sine:
		mid, amp := (s.Min+s.Max)/2, (s.Max-s.Min)/2
		v := mid + amp*math.Sin(2*math.Pi*float64(t)/float64(s.Period))
		if s.Noise > 0 {
			v += (s.rng.Float64()*2 - 1) * s.Noise
		}
		return clamp(v, s.Min, s.Max)
	case RandomWalk:
		s.pos = clamp(s.pos+(s.rng.Float64()*2-1)*s.Step, s.Min, s.Max)
		return s.pos
	default: // Steps
		i := int64(t/s.Every) % int64(len(s.Values))
		if i < 0 {
			i += int64(len(s.Values)) // a clock set back before the start
		}
		return s.Values[i]
	}
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

// Actuate implements ports.Actuator: it sets the output's state (see the
// package doc) and logs the change. An unknown output is an error naming
// the known ones; a single argument without a value is an error too.
func (d *Device) Actuate(ctx context.Context, name string, args map[string]model.Value) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sim device %q: actuate %q: %w", d.name, name, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.outputs[name]
	if !ok {
		known := "none"
		if len(d.outputs) > 0 {
			known = strings.Join(slices.Sorted(maps.Keys(d.outputs)), ", ")
		}
		return fmt.Errorf("sim device %q: unknown output %q; known: %s", d.name, name, known)
	}
	o.calls++
	var state any = o.calls
	if len(args) == 1 {
		for argName, v := range args {
			if !v.Valid() {
				return fmt.Errorf("sim device %q: output %q: argument %q has no value", d.name, name, argName)
			}
			state = v.Any()
		}
	}
	prev := o.state
	o.state = state
	d.log.Info("output changed", slog.String("output", name), slog.Any("from", prev), slog.Any("to", state))
	return nil
}

// State returns an output's state, and false when the output is unknown or
// has none yet.
func (d *Device) State(name string) (any, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	o, ok := d.outputs[name]
	if !ok || o.state == nil {
		return nil, false
	}
	return o.state, true
}

// stateValue checks an initial output state and widens it to a reading's
// value types.
func stateValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool, int64, float64, string, time.Time:
		return x, nil
	case int:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case float32:
		return float64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return nil, fmt.Errorf("%d is too large: expected at most %d", x, int64(math.MaxInt64))
		}
		return int64(x), nil
	}
	return nil, fmt.Errorf("a %T is not a state: expected a boolean, number, string or time", v)
}

// systemClock is the real clock, used when Config.Clock is nil.
type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

var (
	_ ports.Sensor   = (*Device)(nil)
	_ ports.Actuator = (*Device)(nil)
)
