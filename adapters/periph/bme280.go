package periph

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/i2c"

	"github.com/iotnode/iotnode/ports"
)

// BME280 registers and values, from the Bosch BME280 data sheet (BST-BME280-DS002),
// section 5.3 "Memory map" and 5.4 "Register description".
const (
	bme280RegCalib1   = 0x88 // calib00..calib25: dig_T1..dig_P9, (0xA0 unused), dig_H1
	bme280Calib1Len   = 26   // 0x88..0xA1
	bme280RegChipID   = 0xD0
	bme280RegCalib2   = 0xE1 // calib26..calib32: dig_H2..dig_H6
	bme280Calib2Len   = 7    // 0xE1..0xE7
	bme280RegCtrlHum  = 0xF2 // osrs_h[2:0]
	bme280RegStatus   = 0xF3 // measuring[3], im_update[0]
	bme280RegCtrlMeas = 0xF4 // osrs_t[7:5], osrs_p[4:2], mode[1:0]
	bme280RegConfig   = 0xF5 // t_sb[7:5], filter[4:2], spi3w_en[0]
	bme280RegData     = 0xF7 // press[19:0], temp[19:0], hum[15:0]: 0xF7..0xFE
	bme280DataLen     = 8

	bme280ChipID        = 0x60
	bme280StatusMeasure = 1 << 3
	bme280ModeSleep     = 0b00
	bme280ModeForced    = 0b01

	// The raw values of a skipped measurement (section 4: "output set to
	// 0x80000"; humidity 0x8000), also the registers' reset values.
	bme280SkippedTP = 0x80000
	bme280SkippedH  = 0x8000

	// bme280PollInterval is how often Read polls the status register once
	// the typical measurement time has passed.
	bme280PollInterval = time.Millisecond
)

// bme280OtherChip names a chip that answers at the BME280's addresses with
// another id in register 0xD0 (data sheet section 5.2, table 17), or "".
func bme280OtherChip(id byte) string {
	switch id {
	case 0x56, 0x57:
		return "a BMP280 sample (temperature and pressure, no humidity)"
	case 0x58:
		return "a BMP280 (temperature and pressure, no humidity)"
	}
	return ""
}

// BME280Config configures NewBME280. The zero value is valid: address 0x76,
// oversampling ×1, filter off (the data sheet's suggested settings for
// weather monitoring).
type BME280Config struct {
	// Address is the I²C address: 0x76 (SDO to GND; the default when 0) or
	// 0x77 (SDO to VDDIO).
	Address uint16
	// Oversampling applies to temperature, pressure and humidity alike: 1,
	// 2, 4, 8 or 16 (0 means 1). More oversampling means less noise and a
	// longer Read: about 8 ms at 1, 98 ms at 16.
	Oversampling int
	// Filter is the IIR filter coefficient for temperature and pressure: 0
	// (off, the default), 2, 4, 8 or 16.
	Filter int
}

// Validate reports every problem of c at once (errors.Join of one error per
// problem), each naming the field, its value and what was expected.
func (c *BME280Config) Validate() error {
	var errs []error
	switch c.Address {
	case 0, 0x76, 0x77:
	default:
		errs = append(errs, fmt.Errorf("address 0x%02x is not a BME280 address: expected 0x76 (SDO to GND) or 0x77 (SDO to VDDIO)", c.Address))
	}
	if _, ok := bme280OversamplingCode(c.Oversampling); !ok {
		errs = append(errs, fmt.Errorf("oversampling %d: expected 1, 2, 4, 8 or 16 (0 means 1)", c.Oversampling))
	}
	if _, ok := bme280FilterCode(c.Filter); !ok {
		errs = append(errs, fmt.Errorf("filter %d: expected 0 (off), 2, 4, 8 or 16", c.Filter))
	}
	return errors.Join(errs...)
}

// bme280OversamplingCode returns the osrs_x[2:0] bits for an oversampling
// factor (data sheet sections 5.4.3 and 5.4.5).
func bme280OversamplingCode(n int) (byte, bool) {
	switch n {
	case 0, 1:
		return 0b001, true
	case 2:
		return 0b010, true
	case 4:
		return 0b011, true
	case 8:
		return 0b100, true
	case 16:
		return 0b101, true
	}
	return 0, false
}

// bme280FilterCode returns the filter[2:0] bits for an IIR filter
// coefficient (data sheet section 5.4.6).
func bme280FilterCode(n int) (byte, bool) {
	switch n {
	case 0:
		return 0b000, true
	case 2:
		return 0b001, true
	case 4:
		return 0b010, true
	case 8:
		return 0b011, true
	case 16:
		return 0b100, true
	}
	return 0, false
}

// BME280 is a Bosch BME280 temperature, pressure and humidity sensor on an
// I²C bus, used in forced mode: each Read triggers one measurement and the
// chip sleeps in between.
//
// It is safe for concurrent use; calls are serialised, so Close waits for a
// Read in progress. It does not own the bus: closing the bus is the
// caller's business.
type BME280 struct {
	bus      i2c.Bus
	addr     uint16
	calib    bme280Calib
	ctrlHum  byte // ctrl_hum value
	ctrlMeas byte // ctrl_meas value in sleep mode; Read ORs in forced mode
	typical  time.Duration
	maxPolls int
	maximum  time.Duration

	mu     sync.Mutex
	closed bool // Read fails
	asleep bool // Close put the chip to sleep
}

// NewBME280 checks the chip at cfg.Address on bus, reads its calibration
// and configures it (sleep mode until the first Read). It fails on an
// invalid cfg (naming every problem), a bus error (naming the step), or a
// chip whose id is not the BME280's 0x60; a BMP280 (0x58) is refused with
// a message saying so, as it has no humidity sensor.
func NewBME280(bus i2c.Bus, cfg BME280Config) (*BME280, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bme280: %w", err)
	}
	if bus == nil {
		return nil, errors.New("bme280: no I²C bus: expected a bus from the host (such as i2creg.Open)")
	}
	d := &BME280{bus: bus, addr: cfg.Address}
	if d.addr == 0 {
		d.addr = 0x76
	}
	osrs, _ := bme280OversamplingCode(cfg.Oversampling) // checked by Validate
	filter, _ := bme280FilterCode(cfg.Filter)
	d.ctrlHum = osrs
	d.ctrlMeas = osrs<<5 | osrs<<2 | bme280ModeSleep

	// Measurement time in µs with the same oversampling n for all three
	// (data sheet section 9.1): typical 1 + 2n + (2n + 0.5) + (2n + 0.5) ms,
	// maximum 1.25 + 2.3n + (2.3n + 0.575) + (2.3n + 0.575) ms.
	n := max(cfg.Oversampling, 1)
	d.typical = time.Duration(1000+2000*n+(2000*n+500)+(2000*n+500)) * time.Microsecond
	d.maximum = time.Duration(1250+2300*n+(2300*n+575)+(2300*n+575)) * time.Microsecond
	d.maxPolls = int((d.maximum + bme280PollInterval - 1) / bme280PollInterval)

	id := make([]byte, 1)
	if err := d.bus.Tx(d.addr, []byte{bme280RegChipID}, id); err != nil {
		return nil, d.errorf("read chip id: %w", err)
	}
	if id[0] != bme280ChipID {
		if name := bme280OtherChip(id[0]); name != "" {
			return nil, d.errorf("chip id 0x%02x is %s: expected 0x%02x for a BME280", id[0], name, bme280ChipID)
		}
		return nil, d.errorf("chip id 0x%02x: expected 0x%02x for a BME280 (is another device at this address?)", id[0], bme280ChipID)
	}

	c1 := make([]byte, bme280Calib1Len)
	if err := d.bus.Tx(d.addr, []byte{bme280RegCalib1}, c1); err != nil {
		return nil, d.errorf("read calibration: %w", err)
	}
	c2 := make([]byte, bme280Calib2Len)
	if err := d.bus.Tx(d.addr, []byte{bme280RegCalib2}, c2); err != nil {
		return nil, d.errorf("read calibration: %w", err)
	}
	d.calib = bme280ParseCalib(c1, c2)

	// One write of register/value pairs (data sheet 6.2.1). ctrl_hum goes
	// first: it takes effect only with the next write to ctrl_meas (5.4.3).
	// config follows ctrl_meas, which selects sleep mode: config writes may
	// be ignored in normal mode, never in sleep mode (5.4.6).
	w := []byte{
		bme280RegCtrlHum, d.ctrlHum,
		bme280RegCtrlMeas, d.ctrlMeas,
		bme280RegConfig, filter << 2,
	}
	if err := d.bus.Tx(d.addr, w, nil); err != nil {
		return nil, d.errorf("configure: %w", err)
	}
	return d, nil
}

// String names the chip and its bus, such as "bme280 at 0x76 on I2C1".
func (d *BME280) String() string { return fmt.Sprintf("bme280 at 0x%02x on %s", d.addr, d.bus) }

// Readings returns the names of the readings Read returns, in that order.
func (d *BME280) Readings() []string { return []string{"temperature", "pressure", "humidity"} }

// Read implements ports.Sensor. It triggers one measurement (forced mode),
// waits for it and returns "temperature" in °C, "pressure" in hPa and
// "humidity" in %RH, all float64, compensated with the data sheet's integer
// formulas (resolution 0.01 °C, 1/256 Pa, 1/1024 %RH).
//
// It waits the data sheet's typical measurement time, then polls the status
// register every millisecond for up to its maximum measurement time more:
// about 8 ms in all at oversampling 1, 98 ms at 16. It fails on a bus error
// (naming the step), when ctx is done (the chip finishes the measurement on
// its own and goes back to sleep), when the chip is still measuring after
// that, when a value is the one of a skipped measurement (0x80000 or
// 0x8000, say after the chip reset), and after Close.
func (d *BME280) Read(ctx context.Context) ([]ports.Reading, error) {
	if err := ctx.Err(); err != nil {
		return nil, d.errorf("read: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, d.errorf("read: %w", ports.ErrClosed)
	}

	// ctrl_hum is written again with each measurement so that a chip that
	// reset since NewBME280 (brown-out) measures humidity again; config
	// (the filter) is not, so as not to disturb the filter's memory.
	w := []byte{bme280RegCtrlHum, d.ctrlHum, bme280RegCtrlMeas, d.ctrlMeas | bme280ModeForced}
	if err := d.bus.Tx(d.addr, w, nil); err != nil {
		return nil, d.errorf("start measurement: %w", err)
	}
	if err := d.awaitMeasurement(ctx); err != nil {
		return nil, err
	}
	b := make([]byte, bme280DataLen)
	if err := d.bus.Tx(d.addr, []byte{bme280RegData}, b); err != nil {
		return nil, d.errorf("read data: %w", err)
	}

	adcP := int32(b[0])<<12 | int32(b[1])<<4 | int32(b[2])>>4
	adcT := int32(b[3])<<12 | int32(b[4])<<4 | int32(b[5])>>4
	adcH := int32(b[6])<<8 | int32(b[7])
	for _, raw := range []struct {
		name       string
		v, skipped int32
	}{{"temperature", adcT, bme280SkippedTP}, {"pressure", adcP, bme280SkippedTP}, {"humidity", adcH, bme280SkippedH}} {
		if raw.v == raw.skipped {
			return nil, d.errorf("read data: raw %s is 0x%x, the value of a skipped measurement: expected a measured value (did the chip reset?)", raw.name, raw.v)
		}
	}

	centi, tFine := d.calib.temperature(adcT)
	pressure, ok := d.calib.pressure(adcP, tFine)
	if !ok {
		return nil, d.errorf("compensate pressure: division by zero: the calibration is invalid (dig_P1 is %d)", d.calib.p1)
	}
	humidity := d.calib.humidity(adcH, tFine)
	return []ports.Reading{
		{Name: "temperature", Value: float64(centi) / 100},
		{Name: "pressure", Value: float64(pressure) / (256 * 100)},
		{Name: "humidity", Value: float64(humidity) / 1024},
	}, nil
}

// awaitMeasurement waits until the status register says the measurement
// is done: first the typical time, then every bme280PollInterval, at most
// maxPolls more times. It uses the real clock (no injected ports.Clock):
// these are hardware timings, and the tests run in a testing/synctest
// bubble instead.
func (d *BME280) awaitMeasurement(ctx context.Context) error {
	wait, waited := d.typical, time.Duration(0)
	status := make([]byte, 1)
	for polls := 0; ; polls++ {
		if err := bme280Sleep(ctx, wait); err != nil {
			return d.errorf("wait for measurement: %w", err)
		}
		waited += wait
		if err := d.bus.Tx(d.addr, []byte{bme280RegStatus}, status); err != nil {
			return d.errorf("read status: %w", err)
		}
		if status[0]&bme280StatusMeasure == 0 {
			return nil
		}
		if polls == d.maxPolls {
			return d.errorf("wait for measurement: still measuring after %s: expected at most %s (the data sheet's maximum)", waited, d.maximum)
		}
		wait = bme280PollInterval
	}
}

// bme280Sleep waits for d, or until ctx is done.
func bme280Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Close puts the chip to sleep mode, its lowest current; Read fails after
// it. It is idempotent: once the chip went to sleep, later
// calls do nothing; after a bus error, the next call tries again. It waits
// for a Read in progress and does not close the bus.
func (d *BME280) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.asleep {
		return nil
	}
	if err := d.bus.Tx(d.addr, []byte{bme280RegCtrlMeas, d.ctrlMeas}, nil); err != nil {
		return d.errorf("enter sleep mode: %w", err)
	}
	d.asleep = true
	return nil
}

// errorf returns an error prefixed with the chip and its address.
func (d *BME280) errorf(format string, args ...any) error {
	return fmt.Errorf("bme280 at 0x%02x: "+format, append([]any{d.addr}, args...)...)
}

// bme280Calib holds the trimming parameters (data sheet section 4.2.2,
// table 16), named as there without the "dig_" prefix.
type bme280Calib struct {
	t1                             uint16
	t2, t3                         int16
	p1                             uint16
	p2, p3, p4, p5, p6, p7, p8, p9 int16
	h1                             uint8
	h2                             int16
	h3                             uint8
	h4, h5                         int16 // 12-bit signed
	h6                             int8
}

// bme280ParseCalib decodes the registers 0x88..0xA1 (c1) and 0xE1..0xE7
// (c2). Words are little-endian.
func bme280ParseCalib(c1, c2 []byte) bme280Calib {
	le := func(b []byte, at int) uint16 { return binary.LittleEndian.Uint16(b[at:]) }
	c := bme280Calib{
		t1: le(c1, 0),
		t2: int16(le(c1, 2)),
		t3: int16(le(c1, 4)),
		p1: le(c1, 6),
		h1: c1[25], // 0xA1; 0xA0 is unused
		h2: int16(le(c2, 0)),
		h3: c2[2],
		// dig_H4 is 0xE4 [11:4] and 0xE5 [3:0]; dig_H5 is 0xE5 [7:4] and
		// 0xE6 [11:4]. Both are 12-bit signed: the sign is in 0xE4 and 0xE6.
		h4: int16(int8(c2[3]))<<4 | int16(c2[4]&0x0F),
		h5: int16(int8(c2[5]))<<4 | int16(c2[4]>>4),
		h6: int8(c2[6]),
	}
	for i, p := range []*int16{&c.p2, &c.p3, &c.p4, &c.p5, &c.p6, &c.p7, &c.p8, &c.p9} {
		*p = int16(le(c1, 8+2*i))
	}
	return c
}

// The compensation below is the data sheet's integer code (section 4.2.3,
// rev. 1.1), written in Go: >> on signed integers is arithmetic and / truncates,
// as the C code expects.

// temperature returns the temperature in 0.01 °C and t_fine, which the
// pressure and humidity formulas take (BME280_compensate_T_int32).
func (c *bme280Calib) temperature(adcT int32) (centi, tFine int32) {
	var1 := (((adcT >> 3) - (int32(c.t1) << 1)) * int32(c.t2)) >> 11
	dt := (adcT >> 4) - int32(c.t1)
	var2 := (((dt * dt) >> 12) * int32(c.t3)) >> 14
	tFine = var1 + var2
	return (tFine*5 + 128) >> 8, tFine
}

// pressure returns the pressure in Pa as Q24.8, that is in 1/256 Pa
// (BME280_compensate_P_int64); false where the C code returns 0 to avoid a
// division by zero.
func (c *bme280Calib) pressure(adcP, tFine int32) (uint32, bool) {
	var1 := int64(tFine) - 128000
	var2 := var1 * var1 * int64(c.p6)
	var2 += (var1 * int64(c.p5)) << 17
	var2 += int64(c.p4) << 35
	var1 = ((var1 * var1 * int64(c.p3)) >> 8) + ((var1 * int64(c.p2)) << 12)
	var1 = (((int64(1) << 47) + var1) * int64(c.p1)) >> 33
	if var1 == 0 {
		return 0, false
	}
	p := 1048576 - int64(adcP)
	p = (((p << 31) - var2) * 3125) / var1
	var1 = (int64(c.p9) * (p >> 13) * (p >> 13)) >> 25
	var2 = (int64(c.p8) * p) >> 19
	p = ((p + var1 + var2) >> 8) + (int64(c.p7) << 4)
	return uint32(p), true
}

// humidity returns the relative humidity in %RH as Q22.10, that is in
// 1/1024 %RH, from 0 to 100 (bme280_compensate_H_int32).
func (c *bme280Calib) humidity(adcH, tFine int32) uint32 {
	v := tFine - 76800
	x := (((adcH << 14) - (int32(c.h4) << 20) - (int32(c.h5) * v)) + 16384) >> 15
	y := (((((((v * int32(c.h6)) >> 10) * (((v * int32(c.h3)) >> 11) + 32768)) >> 10) + 2097152) * int32(c.h2)) + 8192) >> 14
	v = x * y
	v -= (((((v >> 15) * (v >> 15)) >> 7) * int32(c.h1)) >> 4)
	v = min(max(v, 0), 419430400) // 100 %RH in Q22.10, << 12
	return uint32(v >> 12)
}

var _ ports.Sensor = (*BME280)(nil)
