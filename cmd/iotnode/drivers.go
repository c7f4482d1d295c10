package main

import (
	"log/slog"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/iotnode/iotnode/adapters/sim"
	"github.com/iotnode/iotnode/ports"
)

// driver turns a device's settings into its sensor and actuator. It is the
// node's seam for hardware: the periph.io drivers and the vendor plugins
// plug in here, next to the simulator.
type driver struct {
	// prepare decodes and checks settings, reporting every problem with its
	// key under key (devices[0].settings). It must not touch hardware: it
	// runs for validation too. problems is nil when p is usable.
	prepare func(key, device string, settings map[string]any) (p prepared, ps problems)
}

// prepared is a driver ready to open: what it offers, for checking the
// bindings, and how to open it.
type prepared struct {
	readings []string // the reading names its sensor produces
	outputs  []string // the outputs its actuator accepts
	// open builds the sensor and actuator; either may be nil when the
	// driver has none. The node closes neither: a driver that holds
	// resources returns a sensor or actuator with a Close() error method,
	// and the node calls it at shutdown.
	open func(logger *slog.Logger) (ports.Sensor, ports.Actuator, error)
}

// driverDeps are what drivers get from the composition root (the logger
// comes with open: the config that sets it up is read after the drivers
// are made).
type driverDeps struct {
	clock ports.Clock
}

// drivers returns the node's drivers by name.
func builtinDrivers(deps driverDeps) map[string]driver {
	return map[string]driver{
		"sim":     {prepare: deps.prepareSim},
		"bme280":  {prepare: deps.prepareBME280},
		"mcp3008": {prepare: deps.prepareMCP3008},
		"gpio":    {prepare: deps.prepareGPIO},
		"plugin":  {prepare: deps.preparePlugin},
	}
}

// simSettings are the settings of the sim driver (docs/config.md).
type simSettings struct {
	Seed      int64                `koanf:"seed"`
	FailEvery int                  `koanf:"fail_every"`
	Signals   map[string]simSignal `koanf:"signals"`
	Outputs   map[string]any       `koanf:"outputs"`
}

type simSignal struct {
	Waveform string        `koanf:"waveform"`
	Min      float64       `koanf:"min"`
	Max      float64       `koanf:"max"`
	Period   time.Duration `koanf:"period"`
	Noise    float64       `koanf:"noise"`
	Step     float64       `koanf:"step"`
	Start    *float64      `koanf:"start"`
	Values   []float64     `koanf:"values"`
	Every    time.Duration `koanf:"every"`
}

func (deps driverDeps) prepareSim(key, device string, settings map[string]any) (prepared, problems) {
	var s simSettings
	// What decodes is checked too, so that every problem shows at once.
	decoded := decodeProblems(key, decodeSettings(settings, &s), reflect.TypeFor[simSettings]())
	ps := slices.Clone(decoded)
	cfg := sim.Config{
		Name:      device,
		Seed:      s.Seed,
		FailEvery: s.FailEvery,
		Signals:   map[string]sim.Signal{},
		Outputs:   s.Outputs,
		Clock:     deps.clock,
	}
	for name, sg := range s.Signals {
		cfg.Signals[name] = sim.Signal(sg)
	}
	if err := cfg.Validate(); err != nil {
		for _, e := range splitJoined(err) {
			k, msg := simProblemKey(key, e.Error())
			if !underAny(k, decoded) {
				ps.add(k, "%s", msg)
			}
		}
	}
	if len(ps) > 0 {
		return prepared{}, ps
	}
	// Validate passed, so New cannot fail on the config; New is cheap and
	// has no side effect, so it runs here to learn the readings.
	dev, err := sim.New(cfg)
	if err != nil {
		var ps problems
		ps.add(key, "%v", err)
		return prepared{}, ps
	}
	return prepared{
		readings: dev.Readings(),
		outputs:  dev.Outputs(),
		open: func(logger *slog.Logger) (ports.Sensor, ports.Actuator, error) {
			cfg := cfg
			cfg.Logger = logger
			d, err := sim.New(cfg) // a fresh one: waveforms start now
			if err != nil {
				return nil, nil, err
			}
			return d, d, nil
		},
	}, nil
}

// simProblemKey moves the signal or output that a sim.Config problem names
// into its key: `signal "t": period is 0s...` becomes key.signals.t.
func simProblemKey(key, msg string) (string, string) {
	for _, kind := range []struct{ prefix, key string }{{"signal ", ".signals."}, {"output ", ".outputs."}} {
		rest, ok := strings.CutPrefix(msg, kind.prefix)
		if !ok {
			continue
		}
		if name, err := strconv.QuotedPrefix(rest); err == nil {
			if unq, err := strconv.Unquote(name); err == nil {
				return key + kind.key + unq, strings.TrimPrefix(rest[len(name):], ": ")
			}
		}
	}
	if strings.HasPrefix(msg, "fail every") {
		return key + ".fail_every", msg
	}
	return key, msg
}

// splitJoined returns the errors of an errors.Join, or err alone.
func splitJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
