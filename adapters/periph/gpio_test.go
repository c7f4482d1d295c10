package periph_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/iotnode/iotnode/adapters/periph"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

// The pins are periph's gpiotest.Pin: L is the level, for input and output
// alike, P the pull, and In with PullUp or PullDown sets L. Tests that only
// look at levels and pulls use it as it is. gpiotest.Pin never fails and
// keeps no history, so the tests of failing pins, of which calls a pin got
// and in which order, and of pins left untouched wrap it in a gpioSpy.

// newGPIOTestPin returns a gpiotest.Pin named name.
func newGPIOTestPin(name string, num int) *gpiotest.Pin {
	return &gpiotest.Pin{N: name, Num: num}
}

// setLevel sets the level of p, as the outside world does to an input.
func setLevel(p *gpiotest.Pin, l gpio.Level) {
	p.Lock()
	defer p.Unlock()
	p.L = l
}

// gpioSpy is a gpiotest.Pin that records every In and Out call and can fail
// them; everything else, levels and pulls included, is the gpiotest.Pin's.
// It exists for what gpiotest.Pin cannot do: return an error from In or Out,
// and tell which calls it got (a second Out of the same level, or an Out of
// the level a pin already has, leaves no trace on a gpiotest.Pin). Set InErr
// and OutErr while nothing else uses the pin.
type gpioSpy struct {
	*gpiotest.Pin
	InErr, OutErr error // returned by In and Out, which then leave the pin as it is

	mu  sync.Mutex // guards log
	log []string   // "In(PullUp, NoEdge)", "Out(High)"
}

// newGPIOSpy returns a gpioSpy over a gpiotest.Pin named name.
func newGPIOSpy(name string, num int) *gpioSpy {
	return &gpioSpy{Pin: newGPIOTestPin(name, num)}
}

func (p *gpioSpy) In(pull gpio.Pull, edge gpio.Edge) error {
	p.record(fmt.Sprintf("In(%s, %s)", pull, edge))
	if p.InErr != nil {
		return p.InErr
	}
	return p.Pin.In(pull, edge)
}

func (p *gpioSpy) Out(l gpio.Level) error {
	p.record(fmt.Sprintf("Out(%s)", l))
	if p.OutErr != nil {
		return p.OutErr
	}
	return p.Pin.Out(l)
}

func (p *gpioSpy) record(call string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, call)
}

// calls returns the calls In and Out got, oldest first, space-separated.
func (p *gpioSpy) calls() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, " ")
}

var _ gpio.PinIO = (*gpioSpy)(nil)

// gpioAlias is a pin with a name of its own that stands for another, like
// the aliases of gpioreg (a global registry, which tests leave alone).
// gpiotest.LogPinIO is a gpio.RealPin too, but it takes the real pin's name.
type gpioAlias struct {
	*gpiotest.Pin
	real gpio.PinIO
}

func (a gpioAlias) Real() gpio.PinIO { return a.real }

func TestGPIOConfigErrors(t *testing.T) {
	// Spies: a bad configuration must not call the pins at all, which the
	// state of a gpiotest.Pin cannot prove.
	p4, p17 := newGPIOSpy("GPIO4", 4), newGPIOSpy("GPIO17", 17)
	tests := []struct {
		name string
		cfg  periph.GPIOConfig
		want string
	}{
		{"no pins", periph.GPIOConfig{}, "gpio: no inputs and no outputs: expected at least one pin"},
		{"missing pins, every problem", periph.GPIOConfig{
			Inputs:  map[string]gpio.PinIO{"door": nil, "": p4},
			Outputs: map[string]gpio.PinIO{"relay": gpio.INVALID},
			Pull:    gpio.Pull(9)},
			"gpio: input with pin GPIO4(4): the name is empty\n" +
				"input \"door\": the pin is missing: expected a gpio.PinIO (is the pin name right?)\n" +
				"output \"relay\": the pin is missing: expected a gpio.PinIO (is the pin name right?)\n" +
				"pull Pull(9): expected PullNoChange, Float, PullDown or PullUp"},
		{"same name", periph.GPIOConfig{Inputs: map[string]gpio.PinIO{"lamp": p4}, Outputs: map[string]gpio.PinIO{"lamp": p17}},
			`gpio: output "lamp": an input has the same name; expected distinct reading names`},
		{"same pin twice", periph.GPIOConfig{Inputs: map[string]gpio.PinIO{"door": p4}, Outputs: map[string]gpio.PinIO{"relay": p4, "fan": p17, "lamp": p17}},
			"gpio: output \"lamp\": pin GPIO17(17) is already used by output \"fan\"; expected each pin once\n" +
				"output \"relay\": pin GPIO4(4) is already used by input \"door\"; expected each pin once"},
		{"an alias of a used pin", periph.GPIOConfig{Inputs: map[string]gpio.PinIO{"door": p17, "window": gpioAlias{newGPIOTestPin("P1_11", 11), p17}}},
			`gpio: input "window": pin P1_11(11) is already used by input "door"; expected each pin once`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := periph.NewGPIO(tt.cfg)
			if err == nil || err.Error() != tt.want {
				t.Errorf("NewGPIO error:\n%v\nwant:\n%s", err, tt.want)
			}
			if got := p4.calls() + p17.calls(); got != "" {
				t.Errorf("pins touched despite a bad config: %s", got)
			}
		})
	}
}

// gpioTaggedPin is a pin of a type that cannot be compared (it holds a
// slice), so its identity is unknown.
type gpioTaggedPin struct {
	*gpiotest.Pin
	tags []string
}

func TestGPIOUncomparablePinsEscapeTheDuplicateCheck(t *testing.T) {
	p := newGPIOTestPin("GPIO4", 4)
	_, err := periph.NewGPIO(periph.GPIOConfig{Inputs: map[string]gpio.PinIO{
		"a": gpioTaggedPin{p, []string{"a"}}, "b": gpioTaggedPin{p, []string{"b"}}}})
	if err != nil {
		t.Errorf("NewGPIO: %v", err)
	}
}

func TestNewGPIOSetsUpPins(t *testing.T) {
	tests := []struct {
		name            string
		pull            gpio.Pull
		activeLow       bool
		wantIn, wantOut string
		wantLevel       gpio.Level // of the input after setup
	}{
		{"defaults", gpio.PullNoChange, false, "In(PullNoChange, NoEdge)", "Out(Low)", gpio.Low},
		{"pull-up, active low", gpio.PullUp, true, "In(PullUp, NoEdge)", "Out(High)", gpio.High},
		{"pull-down", gpio.PullDown, false, "In(PullDown, NoEdge)", "Out(Low)", gpio.Low},
		{"float", gpio.Float, false, "In(Float, NoEdge)", "Out(Low)", gpio.Low},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Spies, for the exact calls; the levels and pulls they check
			// are the gpiotest.Pin's.
			inactive := gpio.Level(tt.activeLow)
			in, out := newGPIOSpy("IN", 0), newGPIOSpy("OUT", 1)
			setLevel(out.Pin, !inactive)
			_, err := periph.NewGPIO(periph.GPIOConfig{Inputs: map[string]gpio.PinIO{"button": in}, Outputs: map[string]gpio.PinIO{"relay": out},
				Pull: tt.pull, ActiveLow: tt.activeLow})
			if err != nil {
				t.Fatal(err)
			}
			if got := in.calls(); got != tt.wantIn {
				t.Errorf("input calls %q, want %q", got, tt.wantIn)
			}
			if got := out.calls(); got != tt.wantOut {
				t.Errorf("output calls %q, want %q", got, tt.wantOut)
			}
			if in.Pull() != tt.pull || in.Read() != tt.wantLevel {
				t.Errorf("input pull %s level %s, want %s %s", in.Pull(), in.Read(), tt.pull, tt.wantLevel)
			}
			if got := out.Read(); got != inactive {
				t.Errorf("output level %s, want the inactive %s", got, inactive)
			}
		})
	}
}

func TestNewGPIOPinErrors(t *testing.T) {
	door, relay, lamp := newGPIOSpy("GPIO4", 4), newGPIOSpy("GPIO17", 17), newGPIOSpy("GPIO27", 27)
	door.InErr = errors.New("permission denied")
	relay.OutErr = errors.New("device busy")
	_, err := periph.NewGPIO(periph.GPIOConfig{
		Inputs:  map[string]gpio.PinIO{"door": door},
		Outputs: map[string]gpio.PinIO{"relay": relay, "lamp": lamp},
		Pull:    gpio.PullUp, ActiveLow: true,
	})
	want := "gpio: input \"door\": pin GPIO4(4): In(PullUp, NoEdge): permission denied\n" +
		"output \"relay\": pin GPIO17(17): Out(High): device busy"
	if err == nil || err.Error() != want {
		t.Errorf("NewGPIO error:\n%v\nwant:\n%s", err, want)
	}
	if got := lamp.calls(); got != "Out(High)" {
		t.Errorf("the good output was not set up inactive: calls %q", got)
	}
}

// gpioRig is a GPIO with inputs "button" and "door" and outputs "lamp" and
// "relay", over pins of type P: *gpiotest.Pin, or *gpioSpy where a test
// needs failing pins or the calls they got.
type gpioRig[P gpio.PinIO] struct {
	g                         *periph.GPIO
	button, door, lamp, relay P
}

func newGPIORig[P gpio.PinIO](t *testing.T, activeLow bool, newPin func(name string, num int) P) *gpioRig[P] {
	t.Helper()
	r := &gpioRig[P]{button: newPin("GPIO5", 5), door: newPin("GPIO6", 6),
		lamp: newPin("GPIO22", 22), relay: newPin("GPIO17", 17)}
	g, err := periph.NewGPIO(periph.GPIOConfig{
		Inputs:    map[string]gpio.PinIO{"button": r.button, "door": r.door},
		Outputs:   map[string]gpio.PinIO{"relay": r.relay, "lamp": r.lamp},
		ActiveLow: activeLow,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.g = g
	return r
}

func TestGPIORead(t *testing.T) {
	tests := []struct {
		name         string
		activeLow    bool
		button, door gpio.Level
		want         string
	}{
		{"active high", false, gpio.High, gpio.Low, "[{button true} {door false} {lamp false} {relay false}]"},
		{"active low inverts inputs", true, gpio.High, gpio.Low, "[{button false} {door true} {lamp false} {relay false}]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newGPIORig(t, tt.activeLow, newGPIOTestPin)
			setLevel(r.button, tt.button)
			setLevel(r.door, tt.door)
			rs, err := r.g.Read(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(rs); got != tt.want {
				t.Errorf("Read = %s, want %s", got, tt.want)
			}
			for _, rd := range rs {
				if _, ok := rd.Value.(bool); !ok {
					t.Errorf("reading %q is a %T, want bool", rd.Name, rd.Value)
				}
			}
		})
	}
}

func TestGPIOReadings(t *testing.T) {
	r := newGPIORig(t, false, newGPIOTestPin)
	if got := strings.Join(r.g.Readings(), ","); got != "button,door,lamp,relay" {
		t.Errorf("Readings = %s", got)
	}
	if got := strings.Join(r.g.Outputs(), ","); got != "lamp,relay" {
		t.Errorf("Outputs = %s", got)
	}
}

// gpioValue returns {"value": v}.
func gpioValue(v model.Value) map[string]model.Value { return map[string]model.Value{"value": v} }

func TestGPIOActuate(t *testing.T) {
	on, off := gpioValue(model.Boolean(true)), gpioValue(model.Boolean(false))
	tests := []struct {
		name      string
		activeLow bool
		calls     []map[string]model.Value // on "relay"
		wantOut   string                   // the relay pin's calls, after its setup
		wantRead  bool                     // the relay reading afterwards
	}{
		{"on", false, []map[string]model.Value{on}, "Out(High)", true},
		{"on then off", false, []map[string]model.Value{on, off}, "Out(High) Out(Low)", false},
		{"active low on", true, []map[string]model.Value{on}, "Out(Low)", true},
		{"active low off", true, []map[string]model.Value{on, off}, "Out(Low) Out(High)", false},
		{"toggle", false, []map[string]model.Value{nil, {}, nil}, "Out(High) Out(Low) Out(High)", true},
		{"toggle after a set", true, []map[string]model.Value{on, nil}, "Out(Low) Out(High)", false},
		{"set twice drives twice", false, []map[string]model.Value{on, on}, "Out(High) Out(High)", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newGPIORig(t, tt.activeLow, newGPIOSpy) // for the calls
			setup := r.relay.calls()
			for _, args := range tt.calls {
				if err := r.g.Actuate(t.Context(), "relay", args); err != nil {
					t.Fatalf("Actuate(%v): %v", args, err)
				}
			}
			if got := strings.TrimPrefix(r.relay.calls(), setup+" "); got != tt.wantOut {
				t.Errorf("relay calls %q, want %q", got, tt.wantOut)
			}
			if got := r.lamp.calls(); strings.Contains(got, " ") {
				t.Errorf("lamp driven by actuating the relay: %q", got)
			}
			if got, want := r.relay.Read(), gpio.Level(tt.wantRead != tt.activeLow); got != want {
				t.Errorf("relay pin level %s, want %s", got, want)
			}
			rs, err := r.g.Read(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if got := gpioReadingOf(rs, "relay"); got != tt.wantRead {
				t.Errorf("relay reading %v, want %v", got, tt.wantRead)
			}
		})
	}
}

func gpioReadingOf(rs []ports.Reading, name string) any {
	for _, r := range rs {
		if r.Name == name {
			return r.Value
		}
	}
	return nil
}

func TestGPIOActuateErrors(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	str, _ := model.String("on")
	type rig = gpioRig[*gpiotest.Pin]
	tests := []struct {
		name string
		do   func(r *rig) error
		want string
	}{
		{"unknown output", func(r *rig) error { return r.g.Actuate(context.Background(), "fan", nil) },
			`gpio: unknown output "fan"; known: lamp, relay`},
		{"an input is not an output", func(r *rig) error { return r.g.Actuate(context.Background(), "door", nil) },
			`gpio: unknown output "door"; known: lamp, relay`},
		{"integer value", func(r *rig) error { return r.g.Actuate(context.Background(), "relay", gpioValue(model.Integer(1))) },
			`gpio: output "relay": argument "value": want BOOLEAN, got 1`},
		{"string value", func(r *rig) error { return r.g.Actuate(context.Background(), "relay", gpioValue(str)) },
			`gpio: output "relay": argument "value": want BOOLEAN, got "on"`},
		{"no value", func(r *rig) error { return r.g.Actuate(context.Background(), "relay", gpioValue(model.Value{})) },
			`gpio: output "relay": argument "value": want BOOLEAN, got <no value>`},
		{"unknown argument", func(r *rig) error {
			return r.g.Actuate(context.Background(), "lamp", map[string]model.Value{"seconds": model.Integer(5), "value": model.Boolean(true)})
		}, `gpio: output "lamp": unknown argument "seconds": expected "value" (a BOOLEAN), or no argument to toggle`},
		{"ctx canceled", func(r *rig) error { return r.g.Actuate(canceled, "relay", nil) },
			`gpio: actuate "relay": context canceled`},
		{"after close", func(r *rig) error {
			if err := r.g.Close(); err != nil {
				return err
			}
			return r.g.Actuate(context.Background(), "relay", nil)
		}, `gpio: actuate "relay": the driver is closed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newGPIORig(t, false, newGPIOTestPin)
			if err := tt.do(r); err == nil || err.Error() != tt.want {
				t.Errorf("error:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
	t.Run("no outputs", func(t *testing.T) {
		g, err := periph.NewGPIO(periph.GPIOConfig{Inputs: map[string]gpio.PinIO{"door": newGPIOTestPin("GPIO6", 6)}})
		if err != nil {
			t.Fatal(err)
		}
		want := `gpio: unknown output "relay"; known: none`
		if err := g.Actuate(t.Context(), "relay", nil); err == nil || err.Error() != want {
			t.Errorf("error:\n%v\nwant:\n%s", err, want)
		}
	})
}

func TestGPIOFailedActuateKeepsState(t *testing.T) {
	r := newGPIORig(t, false, newGPIOSpy) // for the failing pin
	relayReading := func() any {
		t.Helper()
		rs, err := r.g.Read(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return gpioReadingOf(rs, "relay")
	}
	r.relay.OutErr = errors.New("input/output error")
	want := `gpio: output "relay": pin GPIO17(17): Out(High): input/output error`
	if err := r.g.Actuate(t.Context(), "relay", gpioValue(model.Boolean(true))); err == nil || err.Error() != want {
		t.Errorf("Actuate on a failing pin: error:\n%v\nwant:\n%s", err, want)
	}
	if got := relayReading(); got != false {
		t.Errorf("relay reading after a failed set %v, want the last good state false", got)
	}
	r.relay.OutErr = nil
	if err := r.g.Actuate(t.Context(), "relay", gpioValue(model.Boolean(true))); err != nil {
		t.Fatal(err)
	}
	r.relay.OutErr = errors.New("input/output error")
	want = `gpio: output "relay": pin GPIO17(17): Out(Low): input/output error`
	if err := r.g.Actuate(t.Context(), "relay", nil); err == nil || err.Error() != want {
		t.Errorf("toggle on a failing pin: error:\n%v\nwant:\n%s", err, want)
	}
	if got := relayReading(); got != true {
		t.Errorf("relay reading after a failed toggle %v, want the last good state true", got)
	}
}

func TestGPIOReadErrors(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	r := newGPIORig(t, false, newGPIOTestPin)
	if _, err := r.g.Read(canceled); err == nil || err.Error() != "gpio: read: context canceled" {
		t.Errorf("Read with a canceled ctx: error %v", err)
	}
	if err := r.g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.g.Read(t.Context()); err == nil || err.Error() != "gpio: read: the driver is closed" {
		t.Errorf("Read after Close: error %v", err)
	}
}

func TestGPIOClose(t *testing.T) {
	tests := []struct {
		name      string
		activeLow bool
		want      string // the relay pin's calls
	}{
		{"active high", false, "Out(Low) Out(High) Out(Low)"},
		{"active low", true, "Out(High) Out(Low) Out(High)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newGPIORig(t, tt.activeLow, newGPIOSpy) // for the calls
			if err := r.g.Actuate(t.Context(), "relay", gpioValue(model.Boolean(true))); err != nil {
				t.Fatal(err)
			}
			if err := r.g.Close(); err != nil {
				t.Fatal(err)
			}
			if got := r.relay.calls(); got != tt.want {
				t.Errorf("relay calls %q, want %q", got, tt.want)
			}
			if got, want := r.relay.Read(), gpio.Level(tt.activeLow); got != want {
				t.Errorf("relay pin level after Close %s, want the inactive %s", got, want)
			}
			if got := r.button.calls() + r.door.calls(); got != "In(PullNoChange, NoEdge)In(PullNoChange, NoEdge)" {
				t.Errorf("Close touched the inputs: %q", got)
			}
		})
	}
}

func TestGPIOCloseErrors(t *testing.T) {
	r := newGPIORig(t, false, newGPIOSpy) // for the failing pins
	r.lamp.OutErr = errors.New("device busy")
	r.relay.OutErr = errors.New("input/output error")
	want := "gpio: close: output \"lamp\": pin GPIO22(22): Out(Low): device busy\n" +
		"output \"relay\": pin GPIO17(17): Out(Low): input/output error"
	if err := r.g.Close(); err == nil || err.Error() != want {
		t.Errorf("Close error:\n%v\nwant:\n%s", err, want)
	}
	// A second Close tries every output again.
	r.lamp.OutErr, r.relay.OutErr = nil, nil
	if err := r.g.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := r.relay.calls(); got != "Out(Low) Out(Low) Out(Low)" {
		t.Errorf("relay calls %q", got)
	}
}

// TestGPIOConcurrentUse runs Read, Actuate and the pins' changes at once,
// for the race detector.
func TestGPIOConcurrentUse(t *testing.T) {
	r := newGPIORig(t, false, newGPIOTestPin)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for range 50 {
				if i%2 == 0 {
					if _, err := r.g.Read(t.Context()); err != nil {
						t.Error(err)
					}
				} else if err := r.g.Actuate(t.Context(), "relay", nil); err != nil {
					t.Error(err)
				}
				setLevel(r.button, i%2 == 0)
			}
		})
	}
	wg.Wait()
	// 100 toggles from inactive end inactive.
	rs, err := r.g.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := gpioReadingOf(rs, "relay"); got != false {
		t.Errorf("relay after an even number of toggles: %v", got)
	}
	if got := r.relay.Read(); got != gpio.Low {
		t.Errorf("relay pin after an even number of toggles: %s", got)
	}
}

func ExampleNewGPIO() {
	// On a Raspberry Pi the pins come from host.Init and
	// gpioreg.ByName("GPIO17"); periph's fake pins stand in for them here.
	button, relay := &gpiotest.Pin{N: "GPIO5", Num: 5}, &gpiotest.Pin{N: "GPIO17", Num: 17}
	g, err := periph.NewGPIO(periph.GPIOConfig{
		Inputs:    map[string]gpio.PinIO{"button": button},
		Outputs:   map[string]gpio.PinIO{"relay": relay},
		Pull:      gpio.PullUp, // the button shorts the pin to ground
		ActiveLow: true,        // and the relay board switches on a low input
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer g.Close()
	fmt.Println("button pin:", button.Read()) // released: the pull-up holds it high
	button.Lock()
	button.L = gpio.Low // pressed
	button.Unlock()
	if err := g.Actuate(context.Background(), "relay", map[string]model.Value{"value": model.Boolean(true)}); err != nil {
		fmt.Println(err)
		return
	}
	rs, _ := g.Read(context.Background())
	fmt.Println(rs, "relay pin:", relay.Read())
	// Output:
	// button pin: High
	// [{button true} {relay true}] relay pin: Low
}
