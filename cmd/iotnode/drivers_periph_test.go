package main

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/conntest"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/spi"
	"periph.io/x/conn/v3/spi/spireg"
	"periph.io/x/conn/v3/spi/spitest"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

// K is the key prepare gets in these tests.
const K = "devices[0].settings"

// prepareCase is one call of a driver's prepare: either the readings and
// outputs it offers, or exactly these problems.
type prepareCase struct {
	name     string
	settings map[string]any
	readings []string
	outputs  []string
	problems []string
}

func testPrepare(t *testing.T, driverName string, tests []prepareCase) {
	t.Helper()
	drv := builtinDrivers(driverDeps{clock: systemClock{}})[driverName]
	if drv.prepare == nil {
		t.Fatalf("no driver %q", driverName)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ps := drv.prepare(K, "dev", tt.settings)
			if !slices.Equal(ps, tt.problems) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(ps, "\n  "), strings.Join(tt.problems, "\n  "))
			}
			if tt.problems != nil {
				if p.open != nil {
					t.Error("prepare returned an open function with problems")
				}
				return
			}
			if !slices.Equal(p.readings, tt.readings) || !slices.Equal(p.outputs, tt.outputs) {
				t.Errorf("readings %q, outputs %q; want %q, %q", p.readings, p.outputs, tt.readings, tt.outputs)
			}
			if p.open == nil {
				t.Error("no open function")
			}
		})
	}
}

type m = map[string]any

func TestPrepareBME280(t *testing.T) {
	bme := []string{"temperature", "pressure", "humidity"}
	const notBME280 = " is not a BME280 address: expected 0x76 (SDO to GND) or 0x77 (SDO to VDDIO)"
	testPrepare(t, "bme280", []prepareCase{
		{name: "no settings", readings: bme},
		{name: "every setting", settings: m{"bus": "/dev/i2c-1", "address": 0x77, "oversampling": 16, "filter": 4}, readings: bme},
		{name: "address in decimal", settings: m{"address": 118}, readings: bme},
		{name: "wrong address", settings: m{"address": 0x78}, problems: []string{K + ".address: address 0x78" + notBME280}},
		{name: "address beyond 16 bits", settings: m{"address": 70000}, problems: []string{K + ".address: address 70000" + notBME280}},
		{name: "negative address", settings: m{"address": -1}, problems: []string{K + ".address: address -1" + notBME280}},
		{name: "address as a string", settings: m{"address": "0x76"}, problems: []string{K + `.address: expected a whole number, got the string "0x76"`}},
		{name: "oversampling", settings: m{"oversampling": 3}, problems: []string{K + ".oversampling: oversampling 3: expected 1, 2, 4, 8 or 16 (0 means 1)"}},
		{name: "filter", settings: m{"filter": 1}, problems: []string{K + ".filter: filter 1: expected 0 (off), 2, 4, 8 or 16"}},
		{name: "bus as a number", settings: m{"bus": 1}, problems: []string{K + ".bus: expected a string, got the number 1"}},
		{name: "several at once", settings: m{"addr": 0x76, "address": 0x78, "oversampling": 3, "filter": 1.5}, problems: []string{
			K + ".filter: expected a whole number, got the number 1.5",
			K + ".addr: unknown key (expected one of address, bus, filter, oversampling)",
			K + ".address: address 0x78" + notBME280,
			K + ".oversampling: oversampling 3: expected 1, 2, 4, 8 or 16 (0 means 1)",
		}},
	})
}

func TestPrepareMCP3008(t *testing.T) {
	const hz = " is out of range 10000..3600000 (the MCP3008 clocks at most 3.6 MHz at VDD 5 V, 1.35 MHz at 2.7 V, and needs at least about 10 kHz)"
	testPrepare(t, "mcp3008", []prepareCase{
		{name: "one channel", settings: m{"channels": m{"light": 0}}, readings: []string{"light"}},
		{name: "every setting", settings: m{"port": "/dev/spidev0.0", "max_hz": 1350000, "vref": 5,
			"channels": m{"light": 0, "temp": 7}, "differential": m{"bridge": 2}}, readings: []string{"bridge", "light", "temp"}},
		{name: "a pair sharing a channel's input", settings: m{"channels": m{"a": 0}, "differential": m{"b": 0}}, readings: []string{"a", "b"}},
		{name: "limits of max_hz", settings: m{"max_hz": 3600000, "differential": m{"b": 7}}, readings: []string{"b"}},
		{name: "no readings", problems: []string{K + ": no channels and no differential pairs: expected at least one reading"}},
		{name: "channel out of range", settings: m{"channels": m{"light": 9}}, problems: []string{K + ".channels.light: 9 is out of range 0..7"}},
		{name: "negative channel", settings: m{"channels": m{"light": -1}}, problems: []string{K + ".channels.light: -1 is out of range 0..7"}},
		{name: "channel twice", settings: m{"channels": m{"a": 3, "b": 3}}, problems: []string{K + `.channels.b: 3 is already read as "a"; expected each channel once`}},
		{name: "pair out of range", settings: m{"differential": m{"x": 8}}, problems: []string{K + ".differential.x: 8 is out of range 0..7"}},
		{name: "pair named like a channel", settings: m{"channels": m{"x": 1}, "differential": m{"x": 2}},
			problems: []string{K + `.differential.x: a channel has the same name; expected distinct reading names`}},
		{name: "vref", settings: m{"vref": -1, "channels": m{"a": 0}}, problems: []string{K + ".vref: vref -1: expected a finite voltage above 0 (or 0 for 3.3)"}},
		{name: "max_hz too high", settings: m{"max_hz": 5000000, "channels": m{"a": 0}}, problems: []string{K + ".max_hz: 5000000" + hz}},
		{name: "max_hz too low", settings: m{"max_hz": 9999, "channels": m{"a": 0}}, problems: []string{K + ".max_hz: 9999" + hz}},
		{name: "channel not a number", settings: m{"channels": m{"light": "CH0"}},
			problems: []string{K + `.channels.light: expected a whole number, got the string "CH0"`}},
		{name: "several at once", settings: m{"bus": "SPI0.0", "max_hz": -1, "vref": -2,
			"channels": m{"light": 9, "dark": 2, "dim": 2}, "differential": m{"dark": 1}}, problems: []string{
			K + ".bus: unknown key (expected one of channels, differential, max_hz, port, vref)",
			K + ".max_hz: -1" + hz,
			K + `.channels.dim: 2 is already read as "dark"; expected each channel once`,
			K + ".channels.light: 9 is out of range 0..7",
			K + `.differential.dark: a channel has the same name; expected distinct reading names`,
			K + ".vref: vref -2: expected a finite voltage above 0 (or 0 for 3.3)",
		}},
	})
}

func TestPrepareGPIO(t *testing.T) {
	testPrepare(t, "gpio", []prepareCase{
		{name: "every setting", settings: m{"inputs": m{"door": "GPIO17", "button": "P1_11"}, "outputs": m{"relay": "GPIO27"}, "pull": "up", "active_low": true},
			readings: []string{"button", "door", "relay"}, outputs: []string{"relay"}},
		{name: "inputs only", settings: m{"inputs": m{"door": "GPIO17"}, "pull": "none"}, readings: []string{"door"}},
		{name: "outputs only", settings: m{"outputs": m{"relay": "GPIO27", "led": "GPIO22"}, "pull": "down"},
			readings: []string{"led", "relay"}, outputs: []string{"led", "relay"}},
		{name: "nothing", problems: []string{K + ": no inputs and no outputs: expected at least one pin"}},
		{name: "unknown pull", settings: m{"inputs": m{"door": "GPIO17"}, "pull": "sideways"},
			problems: []string{K + `.pull: unknown pull "sideways" (expected up, down or none; leave it out to keep the pins' pull as it is)`}},
		{name: "empty pin name", settings: m{"inputs": m{"door": ""}}, problems: []string{K + ".inputs.door: the pin name is empty (expected a name such as GPIO17)"}},
		{name: "pin twice", settings: m{"inputs": m{"door": "GPIO17"}, "outputs": m{"relay": "GPIO17"}},
			problems: []string{K + `.outputs.relay: pin GPIO17 is already used by input "door"; expected each pin once`}},
		{name: "input and output of one name", settings: m{"inputs": m{"x": "GPIO4"}, "outputs": m{"x": "GPIO5"}},
			problems: []string{K + `.outputs.x: an input has the same name; expected distinct reading names`}},
		{name: "pin number unquoted", settings: m{"inputs": m{"door": 17}}, problems: []string{K + ".inputs.door: expected a string, got the number 17"}},
		{name: "several at once", settings: m{"pull": "sideways", "active_low": "yes",
			"inputs": m{"door": "GPIO17", "button": "GPIO17", "x": "", "y": ""}, "outputs": m{"door": "GPIO4"}}, problems: []string{
			K + `.active_low: expected true or false, got the string "yes"`,
			K + `.pull: unknown pull "sideways" (expected up, down or none; leave it out to keep the pins' pull as it is)`,
			K + ".inputs.x: the pin name is empty (expected a name such as GPIO17)",
			K + ".inputs.y: the pin name is empty (expected a name such as GPIO17)",
			K + `.inputs.door: pin GPIO17 is already used by input "button"; expected each pin once`,
			K + `.outputs.door: an input has the same name; expected distinct reading names`,
		}},
	})
}

// openDriver prepares settings with the named driver and opens it.
func openDriver(t *testing.T, driverName, device string, settings map[string]any) (ports.Sensor, ports.Actuator, error) {
	t.Helper()
	p, ps := builtinDrivers(driverDeps{clock: systemClock{}})[driverName].prepare(K, device, settings)
	if ps != nil {
		t.Fatalf("prepare: %q", ps)
	}
	return p.open(slog.New(slog.DiscardHandler))
}

// On a machine without the hardware, open fails with an error that names
// the device and the bus, port or pins, and says what to check. host.Init
// may succeed here (it does on amd64): nothing is assumed of the machine
// but that it has no bus, port or pin of these names.
func TestPeriphOpenWithoutHardware(t *testing.T) {
	tests := []struct {
		driver   string
		settings map[string]any
		want     []string
	}{
		{"bme280", m{"bus": "iotnode-no-such-bus"}, []string{`device "weather": open I²C bus "iotnode-no-such-bus": `, "I²C bus"}},
		{"mcp3008", m{"port": "iotnode-no-such-port", "channels": m{"light": 0}}, []string{`device "weather": open SPI port "iotnode-no-such-port": `, "SPI port"}},
		{"gpio", m{"inputs": m{"door": "IOTNODE_NO_SUCH_PIN"}, "outputs": m{"relay": "IOTNODE_NO_SUCH_PIN_2"}},
			[]string{`device "weather": no GPIO pin "IOTNODE_NO_SUCH_PIN" (input "door"), "IOTNODE_NO_SUCH_PIN_2" (output "relay"): `}},
	}
	for _, tt := range tests {
		t.Run(tt.driver, func(t *testing.T) {
			s, a, err := openDriver(t, tt.driver, "weather", tt.settings)
			if err == nil {
				t.Fatal("open succeeded")
			}
			if s != nil || a != nil {
				t.Errorf("open failed but returned sensor %v, actuator %v", s, a)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	// Without any bus, the message says how to enable one.
	if _, err := hostInit(); err != nil {
		t.Logf("host.Init: %v", err)
		return
	}
	if len(i2creg.All()) == 0 {
		_, _, err := openDriver(t, "bme280", "weather", nil)
		want := `device "weather": open the first I²C bus: this machine has no I²C bus (on a Raspberry Pi, enable I²C with raspi-config or dtparam=i2c_arm=on in config.txt, reboot, and put the node's user in group i2c)`
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("open: %v\nwant: %s", err, want)
		}
	}
	if len(spireg.All()) == 0 {
		_, _, err := openDriver(t, "mcp3008", "adc", m{"channels": m{"light": 0}})
		want := `device "adc": open the first SPI port: this machine has no SPI port (on a Raspberry Pi, enable SPI with raspi-config or dtparam=spi=on in config.txt, reboot, and put the node's user in group spi)`
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("open: %v\nwant: %s", err, want)
		}
	}
}

// fakeBME280Bus answers a BME280's chip id (chipID) and zeros otherwise,
// and counts Close calls. It is looser than an i2ctest.Playback on
// purpose: these tests are about the bus's life, not the chip's protocol
// (adapters/periph tests that).
type fakeBME280Bus struct {
	name   string
	chipID byte
	mu     sync.Mutex
	addrs  []uint16
	closed int
}

func (b *fakeBME280Bus) String() string                    { return b.name }
func (b *fakeBME280Bus) SetSpeed(f physic.Frequency) error { return nil }
func (b *fakeBME280Bus) Tx(addr uint16, w, r []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.addrs = append(b.addrs, addr)
	clear(r)
	if len(w) == 1 && w[0] == 0xD0 && len(r) == 1 {
		r[0] = b.chipID
	}
	return nil
}
func (b *fakeBME280Bus) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed++
	return nil
}

// registerI2C puts bus in periph's registry for the test.
func registerI2C(t *testing.T, bus *fakeBME280Bus) {
	t.Helper()
	if _, err := hostInit(); err != nil {
		t.Skipf("host.Init: %v", err)
	}
	if err := i2creg.Register(bus.name, nil, -1, func() (i2c.BusCloser, error) { return bus, nil }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := i2creg.Unregister(bus.name); err != nil {
			t.Error(err)
		}
	})
}

func TestPeriphOpenBME280(t *testing.T) {
	bus := &fakeBME280Bus{name: "iotnode-test-i2c", chipID: 0x60}
	registerI2C(t, bus)
	s, a, err := openDriver(t, "bme280", "weather", m{"bus": bus.name, "address": 0x77})
	if err != nil {
		t.Fatal(err)
	}
	if a != nil {
		t.Errorf("actuator %v, want none", a)
	}
	if slices.ContainsFunc(bus.addrs, func(a uint16) bool { return a != 0x77 }) {
		t.Errorf("addresses used: %#x, want 0x77 only", bus.addrs)
	}
	cl, ok := s.(interface{ Close() error })
	if !ok {
		t.Fatalf("sensor %T has no Close", s)
	}
	for range 2 { // the node may call it for the sensor and the actuator
		if err := cl.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	if bus.closed != 1 {
		t.Errorf("bus closed %d times, want 1", bus.closed)
	}

	t.Run("unknown bus", func(t *testing.T) {
		_, _, err := openDriver(t, "bme280", "weather", m{"bus": "nope"})
		if err == nil || !strings.HasPrefix(err.Error(), `device "weather": open I²C bus "nope": no such I²C bus (this machine has: `) ||
			!strings.Contains(err.Error(), bus.name) {
			t.Errorf("open: %v", err)
		}
	})
	t.Run("another chip", func(t *testing.T) {
		other := &fakeBME280Bus{name: "iotnode-test-i2c-bmp280", chipID: 0x58}
		registerI2C(t, other)
		_, _, err := openDriver(t, "bme280", "weather", m{"bus": other.name})
		if err == nil || !strings.HasPrefix(err.Error(), `device "weather": bme280 at 0x76: chip id 0x58 is a BMP280`) {
			t.Errorf("open: %v", err)
		}
		if other.closed != 1 {
			t.Errorf("bus closed %d times after a failed open, want 1", other.closed)
		}
	})
}

// spiPort is a spitest.Playback that records Connect's arguments and
// counts Close calls.
type spiPort struct {
	*spitest.Playback
	f      physic.Frequency
	mode   spi.Mode
	bits   int
	closed int
}

func (p *spiPort) Connect(f physic.Frequency, mode spi.Mode, bits int) (spi.Conn, error) {
	p.f, p.mode, p.bits = f, mode, bits
	return p.Playback.Connect(f, mode, bits)
}

func (p *spiPort) Close() error {
	p.closed++
	return p.Playback.Close()
}

func TestPeriphOpenMCP3008(t *testing.T) {
	if _, err := hostInit(); err != nil {
		t.Skipf("host.Init: %v", err)
	}
	// One conversion of CH0, single-ended: the reply is code 512.
	port := &spiPort{Playback: &spitest.Playback{Playback: conntest.Playback{D: conn.Full,
		Ops: []conntest.IO{{W: []byte{0x01, 0x80, 0x00}, R: []byte{0x00, 0x02, 0x00}}}}}}
	const name = "iotnode-test-spi"
	if err := spireg.Register(name, nil, -1, func() (spi.PortCloser, error) { return port, nil }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := spireg.Unregister(name); err != nil {
			t.Error(err)
		}
	})
	s, a, err := openDriver(t, "mcp3008", "adc", m{"port": name, "channels": m{"light": 0}})
	if err != nil {
		t.Fatal(err)
	}
	if a != nil {
		t.Errorf("actuator %v, want none", a)
	}
	if port.f != physic.MegaHertz || port.mode != spi.Mode0 || port.bits != 8 {
		t.Errorf("connected at %s, mode %v, %d bits; want 1MHz, mode 0, 8 bits", port.f, port.mode, port.bits)
	}
	got, err := s.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := []ports.Reading{{Name: "light", Value: 1.65}}; !slices.Equal(got, want) {
		t.Errorf("read %v, want %v", got, want)
	}
	cl := s.(interface{ Close() error })
	for range 2 {
		if err := cl.Close(); err != nil { // the playback checks every op was used
			t.Errorf("close: %v", err)
		}
	}
	if port.closed != 1 {
		t.Errorf("port closed %d times, want 1", port.closed)
	}
}

func TestPeriphOpenGPIO(t *testing.T) {
	if _, err := hostInit(); err != nil {
		t.Skipf("host.Init: %v", err)
	}
	in := &gpiotest.Pin{N: "IOTNODE_TEST_IN", Num: -1, L: gpio.Low}
	out := &gpiotest.Pin{N: "IOTNODE_TEST_OUT", Num: -1, L: gpio.Low}
	for _, p := range []*gpiotest.Pin{in, out} {
		if err := gpioreg.Register(p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := gpioreg.Unregister(p.N); err != nil {
				t.Error(err)
			}
		})
	}
	s, a, err := openDriver(t, "gpio", "porch", m{"inputs": m{"button": in.N}, "outputs": m{"relay": out.N}, "pull": "up", "active_low": true})
	if err != nil {
		t.Fatal(err)
	}
	if any(s) != any(a) {
		t.Errorf("sensor %v and actuator %v differ, want one GPIO", s, a)
	}
	if in.P != gpio.PullUp || out.L != gpio.High {
		t.Errorf("input pull %s, output %s; want Up and High (inactive, active low)", in.P, out.L)
	}
	if err := a.Actuate(t.Context(), "relay", map[string]model.Value{"value": model.Boolean(true)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The pull-up holds the input high: inactive, as the pins are active low.
	if want := []ports.Reading{{Name: "button", Value: false}, {Name: "relay", Value: true}}; !slices.Equal(got, want) || out.L != gpio.Low {
		t.Errorf("read %v with output %s, want %v and Low", got, out.L, want)
	}
	in.Lock()
	in.L = gpio.Low // pressed: the button pulls the input to ground
	in.Unlock()
	if got, err := s.Read(t.Context()); err != nil || !slices.Equal(got, []ports.Reading{{Name: "button", Value: true}, {Name: "relay", Value: true}}) {
		t.Errorf("read %v, %v; want the button pressed", got, err)
	}
	cl := s.(interface{ Close() error })
	for range 2 {
		if err := cl.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	if out.L != gpio.High {
		t.Errorf("output %s after Close, want High (inactive)", out.L)
	}
	if _, err := s.Read(context.Background()); err == nil {
		t.Error("read after Close succeeded")
	}

	t.Run("unknown pin", func(t *testing.T) {
		_, _, err := openDriver(t, "gpio", "porch", m{"inputs": m{"button": "IOTNODE_NO_SUCH_PIN"}})
		want := `device "porch": no GPIO pin "IOTNODE_NO_SUCH_PIN" (input "button"): expected a name such as GPIO17, a number such as 17, or a header position such as P1_11`
		if err == nil || err.Error() != want {
			t.Errorf("open: %v\nwant: %s", err, want)
		}
	})
	t.Run("one pin by two names", func(t *testing.T) {
		if err := gpioreg.RegisterAlias("IOTNODE_TEST_ALIAS", in.N); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = gpioreg.Unregister("IOTNODE_TEST_ALIAS") })
		_, _, err := openDriver(t, "gpio", "porch", m{"inputs": m{"a": in.N, "b": "IOTNODE_TEST_ALIAS"}})
		if err == nil || !strings.Contains(err.Error(), "is already used by") {
			t.Errorf("open: %v, want a pin used twice", err)
		}
	})
}

// A config with the periph drivers passes `run --check` on a machine
// without the hardware: prepare touches none.
func TestPeriphConfigCheck(t *testing.T) {
	const config = `
provisioning_file: device.prov
passphrase_file: passphrase
models: [models/temperature_sensor.json, models/humidity_sensor.json, models/light_switch.json]
devices:
  - name: weather
    model: urn:com:oracle:iot:device:temperature_sensor
    driver: bme280
    settings: {bus: "1", address: 0x76, oversampling: 2, filter: 4}
    bindings:
      temp: {reading: temperature}
  - name: cellar
    model: urn:com:oracle:iot:device:humidity_sensor
    driver: mcp3008
    settings:
      port: /dev/spidev0.0
      max_hz: 1000000
      vref: 3.3
      channels: {raw_humidity: 0}
    bindings:
      humidity: {reading: raw_humidity, scale: 30.3}
  - name: porch
    model: urn:com:example:iot:device:light_switch
    driver: gpio
    settings:
      inputs: {button: GPIO17}
      outputs: {relay: GPIO27}
      pull: up
    bindings:
      power: {reading: relay}
    writes:
      power: relay
`
	dir := configDir(t)
	f := write(t, dir, "iotnode.yaml", config)
	r := runMain(t, t.Context(), nil, nil, "run", "--check", "--config", f)
	if r.code != ExitOK || r.stdout != "config "+f+" is valid: 3 device(s), mode directly_connected\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// Every problem at once, each under its key, exit status 2: the
	// readings of a prepared driver are checked against the bindings.
	bad := strings.NewReplacer("{reading: temperature}", "{reading: temperatur}", "raw_humidity: 0}", "raw_humidity: 9}",
		"pull: up", "pull: sideways").Replace(config)
	f = write(t, dir, "bad.yaml", bad)
	r = runMain(t, t.Context(), nil, nil, "run", "--check", "--config", f)
	want := `iotnode run: config ` + f + ` has 3 problems:
  devices[0].bindings.temp.reading: driver bme280 of this device has no reading "temperatur" (it has: temperature, pressure, humidity)
  devices[1].settings.channels.raw_humidity: 9 is out of range 0..7
  devices[2].settings.pull: unknown pull "sideways" (expected up, down or none; leave it out to keep the pins' pull as it is)
`
	if r.code != ExitUsage || r.stderr != want || r.stdout != "" {
		t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit %d, stderr:\n%s", r.code, r.stdout, r.stderr, ExitUsage, want)
	}
}
