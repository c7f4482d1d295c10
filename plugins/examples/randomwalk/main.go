// Command randomwalk is an example iotnode plugin: a simulated temperature
// sensor whose value walks randomly, with an output that resets it.
//
// Readings: "temperature", a number in °C; each read moves it by at most
// -step. Outputs: "reset" sets it back to -start, or to its "value"
// argument when it has one (a writable attribute's new value, or an action
// argument of that name).
//
// Build it, then point a device of the node at it:
//
//	go build -o /usr/local/lib/iotnode/randomwalk ./plugins/examples/randomwalk
//
//	driver: plugin
//	settings:
//	  path: /usr/local/lib/iotnode/randomwalk
//	  args: [-start, "21.5", -step, "0.2"]
//	  readings: [temperature]
//	  outputs: [reset]
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/plugins"
	"github.com/iotnode/iotnode/ports"
)

func main() {
	start := flag.Float64("start", 20, "the first temperature, in °C")
	step := flag.Float64("step", 0.5, "the largest change per read, in °C")
	seed := flag.Uint64("seed", 0, "the seed of the walk (0: from the clock)")
	flag.Parse()
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	plugins.Serve(newWalk(*start, *step, rand.New(rand.NewPCG(*seed, *seed))))
}

// walk is the sensor and its output. Serve calls it from one goroutine at
// a time, so it needs no lock.
type walk struct {
	start, step, value float64
	rnd                *rand.Rand
}

func newWalk(start, step float64, rnd *rand.Rand) *walk {
	return &walk{start: start, step: step, value: start, rnd: rnd}
}

func (w *walk) Describe() plugins.Description {
	return plugins.Description{Name: "randomwalk", Version: "1.0.0", Readings: []string{"temperature"}, Outputs: []string{"reset"}}
}

func (w *walk) Read(ctx context.Context) ([]ports.Reading, error) {
	w.value += (2*w.rnd.Float64() - 1) * w.step
	return []ports.Reading{{Name: "temperature", Value: w.value}}, nil
}

func (w *walk) Actuate(ctx context.Context, output string, args map[string]model.Value) error {
	if output != "reset" {
		return fmt.Errorf("no output %q (expected reset)", output)
	}
	v, ok := args["value"]
	switch {
	case !ok:
		w.value = w.start
	case v.Type() == model.TypeNumber || v.Type() == model.TypeInteger:
		w.value = v.Float()
	default:
		return fmt.Errorf("reset: value %s is a %s (expected a number)", v, v.Type())
	}
	return nil
}

func (w *walk) Close() error { return nil }
