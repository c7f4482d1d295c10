package sim_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/adapters/sim"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
	"github.com/iotnode/iotnode/ports/porttest"
)

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func ptr(f float64) *float64 { return &f }

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  sim.Config
		want string
	}{
		{"empty", sim.Config{Name: "x"}, `sim device "x": no signals and no outputs: expected at least one of them`},
		{"default name", sim.Config{}, `sim device "sim": no signals and no outputs: expected at least one of them`},
		{"missing waveform", sim.Config{Name: "x", Signals: map[string]sim.Signal{"t": {}}},
			`sim device "x": signal "t": waveform is missing: expected one of sine, random_walk, steps`},
		{"unknown waveform", sim.Config{Name: "x", Signals: map[string]sim.Signal{"t": {Waveform: "square"}}},
			`sim device "x": signal "t": unknown waveform "square": expected one of sine, random_walk, steps`},
		{"bad sine, every problem", sim.Config{Name: "x", Signals: map[string]sim.Signal{"t": {Waveform: sim.Sine, Min: 5, Max: 5, Noise: -1, Every: time.Second}}},
			"sim device \"x\": signal \"t\": min 5 is not below max 5: expected min < max\n" +
				"signal \"t\": period is 0s: expected a duration above 0, such as 10m\n" +
				"signal \"t\": noise is -1: expected 0 or more\n" +
				"signal \"t\": every does not apply to waveform sine"},
		{"bad random walk", sim.Config{Name: "x", Signals: map[string]sim.Signal{"h": {Waveform: sim.RandomWalk, Min: 0, Max: 10, Step: -1, Start: ptr(11)}}},
			"sim device \"x\": signal \"h\": step is -1: expected more than 0 (or 0 for a twentieth of the range)\n" +
				"signal \"h\": start 11 is outside 0..10"},
		{"not finite", sim.Config{Name: "x", Signals: map[string]sim.Signal{"h": {Waveform: sim.RandomWalk, Min: math.NaN(), Max: 10}}},
			`sim device "x": signal "h": min is NaN: expected a finite number`},
		{"bad steps", sim.Config{Name: "x", Signals: map[string]sim.Signal{"s": {Waveform: sim.Steps, Min: 1}}},
			"sim device \"x\": signal \"s\": values is empty: expected at least one value\n" +
				"signal \"s\": every is 0s: expected a duration above 0, such as 30s\n" +
				"signal \"s\": min does not apply to waveform steps"},
		{"outputs and failures", sim.Config{Name: "x",
			Signals:   map[string]sim.Signal{"light": {Waveform: sim.Steps, Values: []float64{1}, Every: time.Second}},
			Outputs:   map[string]any{"light": nil, "dim": []int{1}},
			FailEvery: -2},
			"sim device \"x\": output \"dim\": initial state: a []int is not a state: expected a boolean, number, string or time\n" +
				"output \"light\": a signal has the same name; expected distinct reading names\n" +
				"fail every -2 reads: expected 0 (never) or more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sim.New(tt.cfg)
			if err == nil {
				t.Fatalf("New: no error, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("New error:\n%s\nwant:\n%s", err, tt.want)
			}
		})
	}
}

// values reads the device at each offset from epoch and returns the value
// of the reading name.
func values(t *testing.T, d *sim.Device, clock *porttest.FakeClock, name string, offsets ...time.Duration) []float64 {
	t.Helper()
	var out []float64
	var at time.Duration
	for _, off := range offsets {
		clock.Advance(off - at)
		at = off
		rs, err := d.Read(t.Context())
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		found := false
		for _, r := range rs {
			if r.Name == name {
				out = append(out, r.Value.(float64))
				found = true
			}
		}
		if !found {
			t.Fatalf("Read returned no %q: %v", name, rs)
		}
	}
	return out
}

func round(fs []float64) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = fmt.Sprintf("%.3f", f)
	}
	return strings.Join(parts, " ")
}

func TestWaveforms(t *testing.T) {
	tests := []struct {
		name    string
		signal  sim.Signal
		offsets []time.Duration
		want    string
	}{
		{"sine", sim.Signal{Waveform: sim.Sine, Min: 10, Max: 30, Period: 4 * time.Minute},
			[]time.Duration{0, time.Minute, 2 * time.Minute, 3 * time.Minute, 4 * time.Minute, 30 * time.Second},
			"20.000 30.000 20.000 10.000 20.000 27.071"},
		{"steps", sim.Signal{Waveform: sim.Steps, Values: []float64{1, 2, 3}, Every: 10 * time.Second},
			[]time.Duration{0, 9 * time.Second, 10 * time.Second, 25 * time.Second, 30 * time.Second, 61 * time.Second},
			"1.000 1.000 2.000 3.000 1.000 1.000"},
		{"steps before the start", sim.Signal{Waveform: sim.Steps, Values: []float64{1, 2, 3}, Every: 10 * time.Second},
			[]time.Duration{-5 * time.Second, -15 * time.Second},
			"1.000 3.000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := porttest.NewFakeClock(epoch)
			d, err := sim.New(sim.Config{Name: "w", Signals: map[string]sim.Signal{"v": tt.signal}, Clock: clock})
			if err != nil {
				t.Fatal(err)
			}
			if got := round(values(t, d, clock, "v", tt.offsets...)); got != tt.want {
				t.Errorf("values %s, want %s", got, tt.want)
			}
		})
	}
}

func TestSeededWaveformsAreDeterministic(t *testing.T) {
	signals := map[string]sim.Signal{
		"walk":  {Waveform: sim.RandomWalk, Min: 0, Max: 1, Step: 0.5, Start: ptr(0.5)},
		"noisy": {Waveform: sim.Sine, Min: 0, Max: 100, Period: time.Hour, Noise: 5},
	}
	run := func(seed int64, sigs map[string]sim.Signal) (walk, noisy string) {
		clock := porttest.NewFakeClock(epoch)
		d, err := sim.New(sim.Config{Seed: seed, Signals: sigs, Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		offs := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second, 5 * time.Second, 6 * time.Second, 7 * time.Second, 8 * time.Second}
		w := values(t, d, clock, "walk", offs...)
		for _, v := range w {
			if v < 0 || v > 1 {
				t.Errorf("random walk left its range 0..1: %g", v)
			}
		}
		if _, ok := sigs["noisy"]; !ok {
			return round(w), ""
		}
		clock2 := porttest.NewFakeClock(epoch)
		d2, _ := sim.New(sim.Config{Seed: seed, Signals: sigs, Clock: clock2})
		return round(w), round(values(t, d2, clock2, "noisy", offs...))
	}
	w1, n1 := run(7, signals)
	w2, n2 := run(7, signals)
	if w1 != w2 || n1 != n2 {
		t.Errorf("same seed, different values:\n%s / %s\n%s / %s", w1, n1, w2, n2)
	}
	w3, _ := run(8, signals)
	if w3 == w1 {
		t.Errorf("seeds 7 and 8 gave the same walk %s", w1)
	}
	// Each signal has its own source: dropping one leaves the other as it was.
	w4, _ := run(7, map[string]sim.Signal{"walk": signals["walk"]})
	if w4 != w1 {
		t.Errorf("removing a signal changed another: %s, want %s", w4, w1)
	}
}

func TestActuatorReflectsState(t *testing.T) {
	v42 := model.Integer(42)
	on := model.Boolean(true)
	at := model.DateTime(epoch)
	tests := []struct {
		name   string
		output string
		calls  []map[string]model.Value
		want   any
	}{
		{"attribute value", "light", []map[string]model.Value{{"value": on}}, true},
		{"single argument", "blink", []map[string]model.Value{{"value": v42}}, int64(42)},
		{"no argument counts calls", "reset", []map[string]model.Value{nil, {}, nil}, int64(3)},
		{"several arguments count calls", "schedule", []map[string]model.Value{{"at": at, "seconds": v42}}, int64(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := sim.New(sim.Config{Name: "a", Outputs: map[string]any{"light": false, "blink": nil, "reset": nil, "schedule": nil}})
			if err != nil {
				t.Fatal(err)
			}
			for _, args := range tt.calls {
				if err := d.Actuate(t.Context(), tt.output, args); err != nil {
					t.Fatalf("Actuate: %v", err)
				}
			}
			got, ok := d.State(tt.output)
			if !ok || got != tt.want {
				t.Errorf("State = %v (%T), %v; want %v (%T)", got, got, ok, tt.want, tt.want)
			}
			rs, err := d.Read(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var read any
			for _, r := range rs {
				if r.Name == tt.output {
					read = r.Value
				}
			}
			if read != tt.want {
				t.Errorf("reading %q = %v, want %v (readings %v)", tt.output, read, tt.want, rs)
			}
		})
	}
}

func TestReadReportsOnlyOutputsWithState(t *testing.T) {
	d, err := sim.New(sim.Config{Outputs: map[string]any{"light": false, "blink": nil, "level": 3}})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := d.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []ports.Reading{{Name: "level", Value: int64(3)}, {Name: "light", Value: false}}
	if fmt.Sprint(rs) != fmt.Sprint(want) {
		t.Errorf("Read = %v, want %v", rs, want)
	}
	if got := strings.Join(d.Readings(), ","); got != "blink,level,light" {
		t.Errorf("Readings = %s", got)
	}
	if got := strings.Join(d.Outputs(), ","); got != "blink,level,light" {
		t.Errorf("Outputs = %s", got)
	}
}

func TestErrors(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		do   func(d *sim.Device) error
		want string
	}{
		{"unknown output", func(d *sim.Device) error { return d.Actuate(context.Background(), "fan", nil) },
			`sim device "e": unknown output "fan"; known: light`},
		{"argument without value", func(d *sim.Device) error {
			return d.Actuate(context.Background(), "light", map[string]model.Value{"value": {}})
		}, `sim device "e": output "light": argument "value" has no value`},
		{"actuate after cancel", func(d *sim.Device) error { return d.Actuate(cancelled, "light", nil) },
			`sim device "e": actuate "light": context canceled`},
		{"read after cancel", func(d *sim.Device) error { _, err := d.Read(cancelled); return err },
			`sim device "e": read: context canceled`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := sim.New(sim.Config{Name: "e", Outputs: map[string]any{"light": nil}})
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.do(d); err == nil || err.Error() != tt.want {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestFailEvery(t *testing.T) {
	d, err := sim.New(sim.Config{Name: "f", FailEvery: 3, Signals: map[string]sim.Signal{"v": {Waveform: sim.Steps, Values: []float64{1}, Every: time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 6 {
		if _, err := d.Read(t.Context()); err != nil {
			got = append(got, err.Error())
		} else {
			got = append(got, "ok")
		}
	}
	want := []string{"ok", "ok", `sim device "f": simulated sensor failure (read 3; fail_every is 3)`, "ok", "ok",
		`sim device "f": simulated sensor failure (read 6; fail_every is 3)`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("reads:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func ExampleNew() {
	clock := porttest.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	d, err := sim.New(sim.Config{
		Name:    "thermostat",
		Signals: map[string]sim.Signal{"temperature": {Waveform: sim.Sine, Min: 18, Max: 26, Period: 4 * time.Minute}},
		Outputs: map[string]any{"heater": false},
		Clock:   clock,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	clock.Advance(time.Minute)
	_ = d.Actuate(context.Background(), "heater", map[string]model.Value{"value": model.Boolean(true)})
	rs, _ := d.Read(context.Background())
	for _, r := range rs {
		fmt.Printf("%s = %v\n", r.Name, r.Value)
	}
	// Output:
	// heater = true
	// temperature = 26
}
