package main

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"periph.io/x/conn/v3/driver/driverreg"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/spi"
	"periph.io/x/conn/v3/spi/spireg"
	"periph.io/x/host/v3"

	"github.com/iotnode/iotnode/adapters/periph"
	"github.com/iotnode/iotnode/ports"
)

// The hardware drivers bme280 (I²C), mcp3008 (SPI) and gpio, on
// adapters/periph (docs/config.md). Their prepare only decodes and checks
// the settings; open initialises periph.io's host drivers and opens the
// bus, port or pins, so that `run --check` works on any machine.

// hostInit runs periph.io's host.Init once and keeps its result. It is the
// one package-level variable of the node, on purpose: host.Init fills
// process-wide registries (i2creg, spireg, gpioreg), so the guard has the
// process's scope too; a guard per config would only ask the same
// registries again.
var hostInit = sync.OnceValues(host.Init)

// periphDevice is what the periph drivers open: the driver, with a Close
// that closes it and then what open acquired for it (the bus or port), once.
// The node calls Close on the sensor and on the actuator, which for gpio
// are the same periphDevice.
type periphDevice struct {
	ports.Sensor
	ports.Actuator // nil for the sensors; open then returns no actuator
	close          func() error
}

// Close closes the driver and its bus or port; later calls return the
// first call's error and do nothing else.
func (d *periphDevice) Close() error { return d.close() }

// Defaults and limits of the periph drivers' settings.
const (
	mcp3008DefaultHz = 1_000_000
	// The MCP3008's SPI clock: at most 3.6 MHz at VDD 5 V (1.35 MHz at
	// 2.7 V); at least about 10 kHz, or the sampled charge leaks away
	// before the conversion ends (data sheet, section 6.2).
	mcp3008MinHz = 10_000
	mcp3008MaxHz = 3_600_000
)

// bme280Settings are the settings of the bme280 driver.
type bme280Settings struct {
	Bus          string `koanf:"bus"`
	Address      int64  `koanf:"address"`
	Oversampling int    `koanf:"oversampling"`
	Filter       int    `koanf:"filter"`
}

func (deps driverDeps) prepareBME280(key, device string, settings map[string]any) (prepared, problems) {
	var s bme280Settings
	decoded := decodeProblems(key, decodeSettings(settings, &s), reflect.TypeFor[bme280Settings]())
	ps := slices.Clone(decoded)
	cfg := periph.BME280Config{Oversampling: s.Oversampling, Filter: s.Filter}
	if s.Address < 0 || s.Address > math.MaxUint16 {
		// BME280Config.Address is a uint16: say it here, as Validate would.
		ps.add(key+".address", "address %d is not a BME280 address: expected 0x76 (SDO to GND) or 0x77 (SDO to VDDIO)", s.Address)
	} else {
		cfg.Address = uint16(s.Address)
	}
	addPeriphProblems(&ps, key, cfg.Validate(), decoded, map[string]string{
		"address": "address", "oversampling": "oversampling", "filter": "filter",
	})
	if len(ps) > 0 {
		return prepared{}, ps
	}
	return prepared{
		// The readings do not depend on the chip or the settings.
		readings: new(periph.BME280).Readings(),
		open: func(logger *slog.Logger) (ports.Sensor, ports.Actuator, error) {
			bus, err := openI2C(device, s.Bus)
			if err != nil {
				return nil, nil, err
			}
			dev, err := periph.NewBME280(bus, cfg)
			if err != nil {
				return nil, nil, fmt.Errorf("device %q: %w", device, closeAfter(err, bus, "I²C bus"))
			}
			driverLogger(logger, "bme280", device).Info("sensor opened", slog.String("sensor", dev.String()))
			return &periphDevice{Sensor: dev, close: sync.OnceValue(func() error {
				return closeBoth(dev.Close(), bus, "I²C bus")
			})}, nil, nil
		},
	}, nil
}

// mcp3008Settings are the settings of the mcp3008 driver.
type mcp3008Settings struct {
	Port         string         `koanf:"port"`
	MaxHz        int64          `koanf:"max_hz"`
	Channels     map[string]int `koanf:"channels"`
	Differential map[string]int `koanf:"differential"`
	VRef         float64        `koanf:"vref"`
}

func (deps driverDeps) prepareMCP3008(key, device string, settings map[string]any) (prepared, problems) {
	var s mcp3008Settings
	decoded := decodeProblems(key, decodeSettings(settings, &s), reflect.TypeFor[mcp3008Settings]())
	ps := slices.Clone(decoded)
	if s.MaxHz == 0 {
		s.MaxHz = mcp3008DefaultHz
	}
	if s.MaxHz < mcp3008MinHz || s.MaxHz > mcp3008MaxHz {
		ps.add(key+".max_hz", "%d is out of range %d..%d (the MCP3008 clocks at most 3.6 MHz at VDD 5 V, 1.35 MHz at 2.7 V, and needs at least about 10 kHz)",
			s.MaxHz, mcp3008MinHz, mcp3008MaxHz)
	}
	cfg := periph.MCP3008Config{Channels: s.Channels, Differential: s.Differential, VRef: s.VRef}
	addPeriphProblems(&ps, key, cfg.Validate(), decoded, map[string]string{
		"channel": "channels", "differential": "differential", "vref": "vref",
	})
	if len(ps) > 0 {
		return prepared{}, ps
	}
	return prepared{
		readings: slices.Sorted(maps.Keys(mapUnion(s.Channels, s.Differential))),
		open: func(logger *slog.Logger) (ports.Sensor, ports.Actuator, error) {
			port, err := openSPI(device, s.Port)
			if err != nil {
				return nil, nil, err
			}
			f := physic.Frequency(s.MaxHz) * physic.Hertz
			conn, err := port.Connect(f, spi.Mode0, 8)
			if err != nil {
				err = fmt.Errorf("connect SPI port %s at %s, mode 0, 8 bits: %w", port, f, err)
				return nil, nil, fmt.Errorf("device %q: %w", device, closeAfter(err, port, "SPI port"))
			}
			dev, err := periph.NewMCP3008(conn, cfg)
			if err != nil {
				return nil, nil, fmt.Errorf("device %q: %w", device, closeAfter(err, port, "SPI port"))
			}
			driverLogger(logger, "mcp3008", device).Info("sensor opened", slog.String("port", port.String()), slog.String("max_hz", f.String()))
			// The MCP3008 holds nothing but the port.
			return &periphDevice{Sensor: dev, close: sync.OnceValue(func() error {
				return closeBoth(nil, port, "SPI port")
			})}, nil, nil
		},
	}, nil
}

// gpioSettings are the settings of the gpio driver.
type gpioSettings struct {
	Inputs    map[string]string `koanf:"inputs"`
	Outputs   map[string]string `koanf:"outputs"`
	Pull      string            `koanf:"pull"`
	ActiveLow bool              `koanf:"active_low"`
}

// gpioPulls maps the pull setting to periph's.
var gpioPulls = map[string]gpio.Pull{"": gpio.PullNoChange, "none": gpio.Float, "down": gpio.PullDown, "up": gpio.PullUp}

func (deps driverDeps) prepareGPIO(key, device string, settings map[string]any) (prepared, problems) {
	var s gpioSettings
	decoded := decodeProblems(key, decodeSettings(settings, &s), reflect.TypeFor[gpioSettings]())
	ps := slices.Clone(decoded)
	pull, ok := gpioPulls[s.Pull]
	if !ok {
		ps.add(key+".pull", "unknown pull %q (expected up, down or none; leave it out to keep the pins' pull as it is)", s.Pull)
	}
	// Pins cannot be resolved without the hardware: placeholders named
	// like them let GPIOConfig.Validate check the names, the pull and that
	// each pin is used once (open checks again with the real pins, which
	// also knows that GPIO17 and P1_11 are one pin).
	placeholders := func(kind string, m map[string]string) map[string]gpio.PinIO {
		out := make(map[string]gpio.PinIO, len(m))
		for _, name := range slices.Sorted(maps.Keys(m)) {
			if m[name] == "" {
				ps.add(key+"."+kind+"."+name, "the pin name is empty (expected a name such as GPIO17)")
			}
			out[name] = pinName{name: m[name]}
		}
		return out
	}
	cfg := periph.GPIOConfig{Inputs: placeholders("inputs", s.Inputs), Outputs: placeholders("outputs", s.Outputs), Pull: pull, ActiveLow: s.ActiveLow}
	addPeriphProblems(&ps, key, cfg.Validate(), decoded, map[string]string{
		"input": "inputs", "output": "outputs", "pull": "pull",
	})
	if len(ps) > 0 {
		return prepared{}, ps
	}
	return prepared{
		readings: slices.Sorted(maps.Keys(mapUnion(s.Inputs, s.Outputs))),
		outputs:  slices.Sorted(maps.Keys(s.Outputs)),
		open: func(logger *slog.Logger) (ports.Sensor, ports.Actuator, error) {
			state, err := hostInit()
			if err != nil {
				return nil, nil, fmt.Errorf("device %q: GPIO: initialise periph.io's host drivers: %w", device, err)
			}
			cfg := periph.GPIOConfig{Inputs: map[string]gpio.PinIO{}, Outputs: map[string]gpio.PinIO{}, Pull: pull, ActiveLow: s.ActiveLow}
			var missing []string
			for _, group := range []struct {
				kind  string
				names map[string]string
				pins  map[string]gpio.PinIO
			}{{"input", s.Inputs, cfg.Inputs}, {"output", s.Outputs, cfg.Outputs}} {
				for _, name := range slices.Sorted(maps.Keys(group.names)) {
					pin := gpioreg.ByName(group.names[name])
					if pin == nil {
						missing = append(missing, fmt.Sprintf("%q (%s %q)", group.names[name], group.kind, name))
					}
					group.pins[name] = pin
				}
			}
			if len(missing) > 0 {
				hint := "expected a name such as GPIO17, a number such as 17, or a header position such as P1_11"
				if len(gpioreg.All()) == 0 {
					hint = "this machine has no GPIO pins that periph.io can drive (expected a Raspberry Pi or another board periph.io supports, " +
						"with /dev/gpiochip0 readable by the node's user)" + hostFailures(state)
				}
				return nil, nil, fmt.Errorf("device %q: no GPIO pin %s: %s", device, strings.Join(missing, ", "), hint)
			}
			dev, err := periph.NewGPIO(cfg)
			if err != nil {
				return nil, nil, fmt.Errorf("device %q: %w", device, err)
			}
			driverLogger(logger, "gpio", device).Info("pins opened", slog.Any("inputs", s.Inputs), slog.Any("outputs", s.Outputs))
			d := &periphDevice{Sensor: dev, Actuator: dev, close: sync.OnceValue(dev.Close)}
			return d, d, nil
		},
	}, nil
}

// pinName stands for a pin in prepare. Values with the same name are equal,
// which is how GPIOConfig.Validate finds a pin used twice. Only String,
// Name and Number work: Validate compares and prints pins, nothing more.
type pinName struct {
	gpio.PinIO // nil
	name       string
}

func (p pinName) String() string { return p.name }
func (p pinName) Name() string   { return p.name }
func (p pinName) Number() int    { return -1 }

// openI2C opens the I²C bus named name ("" for the first one) for device.
// Its errors name the device and the bus, and say what to check.
func openI2C(device, name string) (i2c.BusCloser, error) {
	what := "the first I²C bus"
	if name != "" {
		what = fmt.Sprintf("I²C bus %q", name)
	}
	state, err := hostInit()
	if err != nil {
		return nil, fmt.Errorf("device %q: open %s: initialise periph.io's host drivers: %w", device, what, err)
	}
	var refs []busRef
	for _, r := range i2creg.All() {
		refs = append(refs, busRef{r.Name, r.Aliases, r.Number})
	}
	if err := findBus(name, refs, "I²C bus",
		"on a Raspberry Pi, enable I²C with raspi-config or dtparam=i2c_arm=on in config.txt, reboot, and put the node's user in group i2c", state); err != nil {
		return nil, fmt.Errorf("device %q: open %s: %w", device, what, err)
	}
	bus, err := i2creg.Open(name)
	if err != nil {
		return nil, fmt.Errorf("device %q: open %s: %w", device, what, err)
	}
	return bus, nil
}

// openSPI opens the SPI port named name ("" for the first one) for device.
// Its errors name the device and the port, and say what to check.
func openSPI(device, name string) (spi.PortCloser, error) {
	what := "the first SPI port"
	if name != "" {
		what = fmt.Sprintf("SPI port %q", name)
	}
	state, err := hostInit()
	if err != nil {
		return nil, fmt.Errorf("device %q: open %s: initialise periph.io's host drivers: %w", device, what, err)
	}
	var refs []busRef
	for _, r := range spireg.All() {
		refs = append(refs, busRef{r.Name, r.Aliases, r.Number})
	}
	if err := findBus(name, refs, "SPI port",
		"on a Raspberry Pi, enable SPI with raspi-config or dtparam=spi=on in config.txt, reboot, and put the node's user in group spi", state); err != nil {
		return nil, fmt.Errorf("device %q: open %s: %w", device, what, err)
	}
	port, err := spireg.Open(name)
	if err != nil {
		return nil, fmt.Errorf("device %q: open %s: %w", device, what, err)
	}
	return port, nil
}

// busRef is what i2creg.Ref and spireg.Ref say of a bus.
type busRef struct {
	name    string
	aliases []string
	number  int
}

// names are the names the registry opens the bus by.
func (r busRef) names() []string {
	names := append([]string{r.name}, r.aliases...)
	if r.number >= 0 {
		names = append(names, strconv.Itoa(r.number))
	}
	return names
}

// findBus checks that the registry has a bus called name (any bus for "")
// before it is opened: the registries' own errors blame a missing Init.
func findBus(name string, refs []busRef, kind, enable string, state *driverreg.State) error {
	if len(refs) == 0 {
		return fmt.Errorf("this machine has no %s (%s)%s", kind, enable, hostFailures(state))
	}
	if name == "" || slices.ContainsFunc(refs, func(r busRef) bool { return slices.Contains(r.names(), name) }) {
		return nil
	}
	known := make([]string, len(refs))
	for i, r := range refs {
		known[i] = strings.Join(r.names(), " or ")
	}
	return fmt.Errorf("no such %s (this machine has: %s)", kind, strings.Join(known, "; "))
}

// hostFailures lists the periph.io host drivers that failed to load, as a
// sentence to append to an error; "" when none did.
func hostFailures(state *driverreg.State) string {
	if state == nil || len(state.Failed) == 0 {
		return ""
	}
	failed := make([]string, len(state.Failed))
	for i, f := range state.Failed {
		failed[i] = f.String()
	}
	return "; periph.io drivers that failed to load: " + strings.Join(failed, "; ")
}

// closeAfter closes c after a failed open, adding its error to err.
func closeAfter(err error, c interface{ Close() error }, what string) error {
	if cerr := c.Close(); cerr != nil {
		return errors.Join(err, fmt.Errorf("close %s: %w", what, cerr))
	}
	return err
}

// closeBoth returns the driver's close error joined with the bus's.
func closeBoth(devErr error, bus interface {
	Close() error
	String() string
}, what string) error {
	if err := bus.Close(); err != nil {
		devErr = errors.Join(devErr, fmt.Errorf("close %s %s: %w", what, bus, err))
	}
	return devErr
}

// addPeriphProblems adds the problems of a periph Config.Validate error
// under their keys. fields maps the word a problem starts with to its
// settings key: `channel "light": 9 is out of range 0..7` goes under
// key.channels.light as `9 is out of range 0..7`; `vref -1: ...` whole
// under key.vref; anything else under key. A problem under a key of ps
// already is left out; so is one about the settings as a whole when
// decoding failed, because what failed to decode is absent then.
func addPeriphProblems(ps *problems, key string, err error, decoded problems, fields map[string]string) {
	if err == nil {
		return
	}
	reported := slices.Clone(*ps)
	for _, e := range splitJoined(err) {
		k, msg := key, e.Error()
		word, rest, _ := strings.Cut(msg, " ")
		if field, ok := fields[word]; ok {
			k = key + "." + field
			if name, err := strconv.QuotedPrefix(rest); err == nil {
				if unq, err := strconv.Unquote(name); err == nil {
					k, msg = k+"."+unq, strings.TrimPrefix(rest[len(name):], ": ")
				}
			}
		}
		if underAny(k, reported) || (k == key && len(decoded) > 0) {
			continue
		}
		ps.add(k, "%s", msg)
	}
}

// mapUnion returns the keys of a and b, as a set.
func mapUnion[V any](a, b map[string]V) map[string]struct{} {
	out := map[string]struct{}{}
	for k := range a {
		out[k] = struct{}{}
	}
	for k := range b {
		out[k] = struct{}{}
	}
	return out
}

// driverLogger names the logger of a periph driver, as the sim names its
// own: iotnode.driver.NAME.
func driverLogger(logger *slog.Logger, name, device string) *slog.Logger {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return named(logger, "iotnode.driver."+name).With(slog.String("device", device))
}

var (
	_ ports.Sensor   = (*periphDevice)(nil)
	_ ports.Actuator = (*periphDevice)(nil)
)
