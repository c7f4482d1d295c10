package periph

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"

	"periph.io/x/conn/v3/gpio"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

// GPIOConfig configures NewGPIO. Names are reading names (inputs) and output
// names (outputs, which are readings too): non-empty and distinct across
// both maps. A pin may appear once.
type GPIOConfig struct {
	// Inputs maps a reading name to a pin read as a digital input.
	Inputs map[string]gpio.PinIO
	// Outputs maps an output name to a pin driven as a digital output, for
	// example a relay or a LED.
	Outputs map[string]gpio.PinIO
	// Pull is the pull resistor of every input; the zero value,
	// gpio.PullNoChange, leaves it as it is.
	Pull gpio.Pull
	// ActiveLow inverts inputs and outputs alike: true is a low level. Use it
	// for a button wired to ground with a pull-up, or a relay board that
	// switches on a low input.
	ActiveLow bool
}

// Validate reports every problem of c at once (errors.Join of one error per
// problem), each naming the input or output and what was expected.
func (c *GPIOConfig) Validate() error {
	var errs []error
	if len(c.Inputs) == 0 && len(c.Outputs) == 0 {
		errs = append(errs, errors.New("no inputs and no outputs: expected at least one pin"))
	}
	used := map[any]string{} // pin identity -> `input "door"`
	check := func(kind string, m map[string]gpio.PinIO) {
		for _, name := range slices.Sorted(maps.Keys(m)) {
			p := m[name]
			what := fmt.Sprintf("%s %q", kind, name)
			switch {
			case name == "":
				errs = append(errs, fmt.Errorf("%s with pin %v: the name is empty", kind, p))
			case p == nil || p == gpio.INVALID:
				errs = append(errs, fmt.Errorf("%s: the pin is missing: expected a gpio.PinIO (is the pin name right?)", what))
			default:
				key, ok := pinKey(p)
				if !ok {
					break
				}
				if other, dup := used[key]; dup {
					errs = append(errs, fmt.Errorf("%s: pin %s is already used by %s; expected each pin once", what, p, other))
					break
				}
				used[key] = what
			}
		}
	}
	check("input", c.Inputs)
	check("output", c.Outputs)
	for _, name := range slices.Sorted(maps.Keys(c.Outputs)) {
		if _, dup := c.Inputs[name]; dup && name != "" {
			errs = append(errs, fmt.Errorf("output %q: an input has the same name; expected distinct reading names", name))
		}
	}
	switch c.Pull {
	case gpio.PullNoChange, gpio.Float, gpio.PullDown, gpio.PullUp:
	default:
		errs = append(errs, fmt.Errorf("pull %s: expected %s, %s, %s or %s", c.Pull, gpio.PullNoChange, gpio.Float, gpio.PullDown, gpio.PullUp))
	}
	return errors.Join(errs...)
}

// pinKey returns what identifies a pin's hardware: the real pin behind an
// alias (gpioreg aliases implement gpio.RealPin). It reports false for a pin
// whose type cannot be compared, which then escapes the duplicate check.
func pinKey(p gpio.PinIO) (any, bool) {
	if r, ok := p.(gpio.RealPin); ok {
		if rp := r.Real(); rp != nil {
			p = rp
		}
	}
	if !reflect.TypeOf(p).Comparable() {
		return nil, false
	}
	return p, true
}

// GPIO reads digital inputs and drives digital outputs. It implements
// ports.Sensor and ports.Actuator and is safe for concurrent use: the node
// reads it from its sampling loop while cloud requests actuate it.
//
// It does not own the pins beyond what Close does: Close drives the outputs
// inactive and halts nothing else.
type GPIO struct {
	activeLow bool
	lines     []*gpioLine          // inputs and outputs, sorted by name
	outputs   map[string]*gpioLine // the outputs of lines, by name

	mu     sync.Mutex // guards closed, the lines' active and the pins
	closed bool
}

// gpioLine is one configured pin.
type gpioLine struct {
	name   string
	pin    gpio.PinIO
	output bool
	active bool // outputs: the state last driven successfully
}

// level returns the pin level that stands for the logical state active.
func (g *GPIO) level(active bool) gpio.Level { return gpio.Level(active != g.activeLow) }

// NewGPIO configures the pins: every input with In(cfg.Pull, gpio.NoEdge)
// and every output with Out(inactive) (Low, or High when ActiveLow), so that
// nothing switches on at start.
//
// Errors: every configuration problem at once (see Validate), before any
// pin is touched; then every pin that refused its setup, named with the pin
// (`gpio: output "relay": pin GPIO17: Out(Low): ...`). On a pin error the
// other pins are still set up (outputs inactive, which is the safe state)
// and no GPIO is returned.
func NewGPIO(cfg GPIOConfig) (*GPIO, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gpio: %w", err)
	}
	g := &GPIO{activeLow: cfg.ActiveLow, outputs: map[string]*gpioLine{}}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(cfg.Inputs)) {
		p := cfg.Inputs[name]
		if err := p.In(cfg.Pull, gpio.NoEdge); err != nil {
			errs = append(errs, fmt.Errorf("input %q: pin %s: In(%s, %s): %w", name, p, cfg.Pull, gpio.NoEdge, err))
		}
		g.lines = append(g.lines, &gpioLine{name: name, pin: p})
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Outputs)) {
		p := cfg.Outputs[name]
		if err := p.Out(g.level(false)); err != nil {
			errs = append(errs, fmt.Errorf("output %q: pin %s: Out(%s): %w", name, p, g.level(false), err))
		}
		l := &gpioLine{name: name, pin: p, output: true}
		g.lines = append(g.lines, l)
		g.outputs[name] = l
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("gpio: %w", errors.Join(errs...))
	}
	slices.SortFunc(g.lines, func(a, b *gpioLine) int { return strings.Compare(a.name, b.name) })
	return g, nil
}

// Readings returns the names of the readings Read returns, sorted: the
// inputs and the outputs.
func (g *GPIO) Readings() []string {
	names := make([]string, len(g.lines))
	for i, l := range g.lines {
		names[i] = l.name
	}
	return names
}

// Outputs returns the names of the outputs Actuate accepts, sorted.
func (g *GPIO) Outputs() []string { return slices.Sorted(maps.Keys(g.outputs)) }

// Read implements ports.Sensor: one bool per input (its level, inverted when
// ActiveLow) and one per output (the state last set through this driver,
// not read back from the pin, because not every GPIO chip reads back an
// output), sorted by name. It fails when ctx is done or after Close.
func (g *GPIO) Read(ctx context.Context) ([]ports.Reading, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gpio: read: %w", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, errors.New("gpio: read: the driver is closed")
	}
	out := make([]ports.Reading, len(g.lines))
	for i, l := range g.lines {
		v := l.active
		if !l.output {
			v = bool(l.pin.Read()) != g.activeLow
		}
		out[i] = ports.Reading{Name: l.name, Value: v}
	}
	return out, nil
}

// Actuate implements ports.Actuator. With args {"value": BOOLEAN} it drives
// the output to that state (true is active: High, or Low when ActiveLow);
// with no arguments it toggles the output. Any other argument is an error,
// so that an action with its own arguments (say a timed pulse) never toggles
// a relay by accident.
//
// Errors name the output: an unknown output (listing the known ones), a
// value that is not a BOOLEAN (`argument "value": want BOOLEAN, got 1`), an
// unknown argument, a pin that refused the level (the state Read reports
// then stays as it was), a done ctx, or a call after Close.
func (g *GPIO) Actuate(ctx context.Context, output string, args map[string]model.Value) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("gpio: actuate %q: %w", output, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	l, ok := g.outputs[output]
	if !ok {
		known := "none"
		if len(g.outputs) > 0 {
			known = strings.Join(slices.Sorted(maps.Keys(g.outputs)), ", ")
		}
		return fmt.Errorf("gpio: unknown output %q; known: %s", output, known)
	}
	if g.closed {
		return fmt.Errorf("gpio: actuate %q: the driver is closed", output)
	}
	want, err := targetState(l.active, args)
	if err != nil {
		return fmt.Errorf("gpio: output %q: %w", output, err)
	}
	if err := l.pin.Out(g.level(want)); err != nil {
		return fmt.Errorf("gpio: output %q: pin %s: Out(%s): %w", output, l.pin, g.level(want), err)
	}
	l.active = want
	return nil
}

// targetState returns the state args ask for, given the current one.
func targetState(current bool, args map[string]model.Value) (bool, error) {
	for _, k := range slices.Sorted(maps.Keys(args)) {
		if k != "value" {
			return false, fmt.Errorf(`unknown argument %q: expected "value" (a BOOLEAN), or no argument to toggle`, k)
		}
	}
	v, ok := args["value"]
	if !ok {
		return !current, nil
	}
	if v.Type() != model.TypeBoolean {
		return false, fmt.Errorf(`argument "value": want BOOLEAN, got %s`, v)
	}
	return v.Bool(), nil
}

// Close drives every output inactive (Low, or High when ActiveLow); after
// it, Read and Actuate fail. Every pin that refused is reported
// (errors.Join); calling Close again tries all outputs again. It neither
// halts nor releases the pins.
func (g *GPIO) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	var errs []error
	for _, l := range g.lines {
		if !l.output {
			continue
		}
		if err := l.pin.Out(g.level(false)); err != nil {
			errs = append(errs, fmt.Errorf("output %q: pin %s: Out(%s): %w", l.name, l.pin, g.level(false), err))
			continue
		}
		l.active = false
	}
	if len(errs) > 0 {
		return fmt.Errorf("gpio: close: %w", errors.Join(errs...))
	}
	return nil
}

var (
	_ ports.Sensor   = (*GPIO)(nil)
	_ ports.Actuator = (*GPIO)(nil)
)
