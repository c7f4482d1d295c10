package periph

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/spi"

	"github.com/iotnode/iotnode/ports"
)

// mcp3008DefaultVRef is the reference voltage assumed when MCP3008Config.VRef
// is 0: a board that feeds VREF from the Raspberry Pi's 3.3 V rail.
const mcp3008DefaultVRef = 3.3

// MCP3008Config configures NewMCP3008. Every reading name must be non-empty
// and unique across Channels and Differential.
type MCP3008Config struct {
	// Channels maps a reading name to a single-ended input, CH0..CH7 (0..7).
	// Each channel may be named once: two names for one input are almost
	// always a copy-paste mistake, and a binding can use one reading twice.
	Channels map[string]int
	// Differential maps a reading name to a pseudo-differential pair 0..7,
	// numbered like the D2 D1 D0 bits of the command (datasheet table 5-2):
	// 0 is CH0-CH1 (CH0 is IN+), 1 is CH1-CH0, 2 is CH2-CH3, 3 is CH3-CH2, and
	// so on to 7, CH7-CH6. Each pair may be named once. A pair may share its
	// inputs with single-ended channels. The MCP3008 is unipolar: when IN+ is
	// below IN- the reading is 0 V.
	Differential map[string]int
	// VRef is the voltage on the VREF pin, in volts: the full scale of every
	// reading. 0 means 3.3; otherwise it must be a finite number above 0.
	VRef float64
}

// Validate reports every problem of c at once (errors.Join of one error per
// problem), each naming the reading and the bad value, for example
// `channel "light": 9 is out of range 0..7`.
func (c *MCP3008Config) Validate() error {
	var errs []error
	if len(c.Channels) == 0 && len(c.Differential) == 0 {
		errs = append(errs, errors.New("no channels and no differential pairs: expected at least one reading"))
	}
	check := func(kind string, m map[string]int) {
		seen := map[int]string{}
		for _, name := range slices.Sorted(maps.Keys(m)) {
			n := m[name]
			switch {
			case name == "":
				errs = append(errs, fmt.Errorf("%s %d: the reading name is empty", kind, n))
			case n < 0 || n > 7:
				errs = append(errs, fmt.Errorf("%s %q: %d is out of range 0..7", kind, name, n))
			case seen[n] != "":
				errs = append(errs, fmt.Errorf("%s %q: %d is already read as %q; expected each %s once", kind, name, n, seen[n], kind))
			default:
				seen[n] = name
			}
		}
	}
	check("channel", c.Channels)
	check("differential", c.Differential)
	for _, name := range slices.Sorted(maps.Keys(c.Differential)) {
		if _, dup := c.Channels[name]; dup && name != "" {
			errs = append(errs, fmt.Errorf("differential %q: a channel has the same name; expected distinct reading names", name))
		}
	}
	if c.VRef != 0 && (!(c.VRef > 0) || math.IsInf(c.VRef, 0)) {
		errs = append(errs, fmt.Errorf("vref %g: expected a finite voltage above 0 (or 0 for %g)", c.VRef, mcp3008DefaultVRef))
	}
	return errors.Join(errs...)
}

// MCP3008 reads the Microchip MCP3008, an 8-channel 10-bit SAR ADC, over
// SPI. It implements ports.Sensor and is safe for concurrent use: transfers
// are serialized.
type MCP3008 struct {
	vref  float64
	reads []mcp3008Reading // sorted by name

	mu   sync.Mutex // serializes transfers on conn
	conn spi.Conn
}

// mcp3008Reading is one configured conversion.
type mcp3008Reading struct {
	name   string
	single bool
	n      int // channel or pair, 0..7
}

func (r mcp3008Reading) String() string {
	if r.single {
		return fmt.Sprintf("%q (channel %d)", r.name, r.n)
	}
	// Pair n measures CH(n) against its neighbour CH(n^1).
	return fmt.Sprintf("%q (pair %d, CH%d-CH%d)", r.name, r.n, r.n, r.n^1)
}

// NewMCP3008 returns a driver for the MCP3008 on conn, which the caller has
// already connected and keeps owning (the driver never closes it).
//
// Connect the port in spi.Mode0 (the chip also takes Mode3), 8 bits per
// word, at no more than 1.35 MHz when VDD is 2.7 V or 3.6 MHz when VDD is
// 5 V; 1 MHz suits a Raspberry Pi at 3.3 V. Do not go below about 10 kHz:
// the datasheet (section 6.2) allows at most 1.2 ms between the end of the
// sample and the last data bit before the held charge leaks away. A
// half-duplex conn is rejected, because the result comes back while the
// command goes out.
//
// Errors: every configuration problem at once (see Validate). NewMCP3008
// does no I/O.
func NewMCP3008(c spi.Conn, cfg MCP3008Config) (*MCP3008, error) {
	if c == nil {
		return nil, errors.New("mcp3008: the spi conn is nil: expected a connected spi.Conn")
	}
	errs := []error{cfg.Validate()}
	if d := c.Duplex(); d == conn.Half {
		errs = append(errs, fmt.Errorf("spi conn %s is half duplex: expected a full-duplex conn", c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("mcp3008 on %s: %w", c, err)
	}
	d := &MCP3008{conn: c, vref: cfg.VRef}
	if d.vref == 0 {
		d.vref = mcp3008DefaultVRef
	}
	for name, ch := range cfg.Channels {
		d.reads = append(d.reads, mcp3008Reading{name: name, single: true, n: ch})
	}
	for name, pair := range cfg.Differential {
		d.reads = append(d.reads, mcp3008Reading{name: name, n: pair})
	}
	slices.SortFunc(d.reads, func(a, b mcp3008Reading) int { return strings.Compare(a.name, b.name) })
	return d, nil
}

// Readings returns the names of the readings Read returns, sorted.
func (d *MCP3008) Readings() []string {
	names := make([]string, len(d.reads))
	for i, r := range d.reads {
		names[i] = r.name
	}
	return names
}

// Read implements ports.Sensor: one conversion per reading, in sorted name
// order, each a float64 in volts (code*VRef/1024, so 0 to VRef less one
// step). It is all or nothing: the first failed transfer ends the read and
// its error names the reading. It checks ctx before every transfer (a
// transfer, 24 clocks or 24 µs at 1 MHz, cannot be interrupted).
func (d *MCP3008) Read(ctx context.Context) ([]ports.Reading, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]ports.Reading, 0, len(d.reads))
	for _, r := range d.reads {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("mcp3008 on %s: read: %w", d.conn, err)
		}
		code, err := d.convert(r)
		if err != nil {
			return nil, fmt.Errorf("mcp3008 on %s: read %s: %w", d.conn, r, err)
		}
		out = append(out, ports.Reading{Name: r.name, Value: float64(code) * d.vref / 1024})
	}
	return out, nil
}

// convert runs one conversion and returns its 10-bit code.
//
// Framing (datasheet section 6.1, 8-bit SPI segments): the first byte holds
// seven leading zeros and the start bit; the second holds SGL/DIFF, D2, D1
// and D0 in its top nibble; the third is a don't-care that clocks out the
// rest of the result. The chip answers B9 and B8 in bits 1..0 of the second
// byte, after a null bit (bit 2) that it always drives low, and B7..B0 in the
// third. The bits above the null bit are undefined (the output is still high
// impedance). A high null bit means no MCP3008 answered in mode 0 or 3, for
// example MISO floats high, so it is an error rather than a full-scale
// reading.
func (d *MCP3008) convert(r mcp3008Reading) (uint16, error) {
	var sgl byte
	if r.single {
		sgl = 1
	}
	w := []byte{0x01, sgl<<7 | byte(r.n)<<4, 0x00}
	rd := make([]byte, len(w))
	if err := d.conn.Tx(w, rd); err != nil {
		return 0, err
	}
	if rd[1]&0x04 != 0 {
		return 0, fmt.Errorf("reply % x has its null bit (byte 1, bit 2) set: expected 0; check the wiring, power and SPI mode", rd)
	}
	return uint16(rd[1]&0x03)<<8 | uint16(rd[2]), nil
}

var _ ports.Sensor = (*MCP3008)(nil)
