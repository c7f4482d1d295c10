package periph_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"periph.io/x/conn/v3"
	"periph.io/x/conn/v3/conntest"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/spi"
	"periph.io/x/conn/v3/spi/spitest"

	"github.com/iotnode/iotnode/adapters/periph"
	"github.com/iotnode/iotnode/ports"
)

// mcpPlayback returns a connected spi.Conn that replays ops, and checks at
// the end of the test that every op was used.
func mcpPlayback(t *testing.T, ops ...conntest.IO) spi.Conn {
	t.Helper()
	p := &spitest.Playback{Playback: conntest.Playback{Ops: ops, D: conn.Full, DontPanic: true}}
	c, err := p.Connect(physic.MegaHertz, spi.Mode0, 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// mcpShow formats readings as "name=volts" with four decimals.
func mcpShow(rs []ports.Reading) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%s=%.4f", r.Name, r.Value.(float64))
	}
	return strings.Join(parts, " ")
}

func TestMCP3008ConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  periph.MCP3008Config
		want string
	}{
		{"empty", periph.MCP3008Config{},
			"mcp3008 on playback: no channels and no differential pairs: expected at least one reading"},
		{"out of range, every problem", periph.MCP3008Config{
			Channels:     map[string]int{"light": 9, "temp": -1, "ok": 7},
			Differential: map[string]int{"bridge": 8},
			VRef:         -3.3},
			"mcp3008 on playback: channel \"light\": 9 is out of range 0..7\n" +
				"channel \"temp\": -1 is out of range 0..7\n" +
				"differential \"bridge\": 8 is out of range 0..7\n" +
				"vref -3.3: expected a finite voltage above 0 (or 0 for 3.3)"},
		{"duplicates", periph.MCP3008Config{
			Channels:     map[string]int{"a": 3, "b": 3, "level": 1},
			Differential: map[string]int{"level": 0, "x": 5, "y": 5}},
			"mcp3008 on playback: channel \"b\": 3 is already read as \"a\"; expected each channel once\n" +
				"differential \"y\": 5 is already read as \"x\"; expected each differential once\n" +
				"differential \"level\": a channel has the same name; expected distinct reading names"},
		{"empty name", periph.MCP3008Config{Channels: map[string]int{"": 2}, Differential: map[string]int{"": 1}},
			"mcp3008 on playback: channel 2: the reading name is empty\n" +
				"differential 1: the reading name is empty"},
		{"vref NaN", periph.MCP3008Config{Channels: map[string]int{"a": 0}, VRef: math.NaN()},
			"mcp3008 on playback: vref NaN: expected a finite voltage above 0 (or 0 for 3.3)"},
		{"vref Inf", periph.MCP3008Config{Channels: map[string]int{"a": 0}, VRef: math.Inf(1)},
			"mcp3008 on playback: vref +Inf: expected a finite voltage above 0 (or 0 for 3.3)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := periph.NewMCP3008(mcpPlayback(t), tt.cfg)
			if err == nil || err.Error() != tt.want {
				t.Errorf("NewMCP3008 error:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
}

// mcpHalfConn is a spi.Conn that says it is half duplex.
type mcpHalfConn struct{ spi.Conn }

func (mcpHalfConn) Duplex() conn.Duplex { return conn.Half }

func TestMCP3008ConnErrors(t *testing.T) {
	cfg := periph.MCP3008Config{Channels: map[string]int{"a": 0}}
	if _, err := periph.NewMCP3008(nil, cfg); err == nil || err.Error() != "mcp3008: the spi conn is nil: expected a connected spi.Conn" {
		t.Errorf("nil conn: error %v", err)
	}
	_, err := periph.NewMCP3008(mcpHalfConn{mcpPlayback(t)}, periph.MCP3008Config{})
	want := "mcp3008 on playback: no channels and no differential pairs: expected at least one reading\n" +
		"spi conn playback is half duplex: expected a full-duplex conn"
	if err == nil || err.Error() != want {
		t.Errorf("half duplex: error:\n%v\nwant:\n%s", err, want)
	}
}

func TestMCP3008Read(t *testing.T) {
	tests := []struct {
		name string
		cfg  periph.MCP3008Config
		ops  []conntest.IO // in sorted name order
		want string
	}{
		{"one channel, default vref",
			periph.MCP3008Config{Channels: map[string]int{"light": 0}},
			// Bits 7..3 of the second reply byte are undefined and ignored.
			[]conntest.IO{{W: []byte{0x01, 0x80, 0x00}, R: []byte{0xff, 0xfa, 0x00}}},
			"light=1.6500"},
		{"several channels, sorted by name",
			periph.MCP3008Config{Channels: map[string]int{"soil": 7, "light": 2, "battery": 5}, VRef: 5},
			[]conntest.IO{
				{W: []byte{0x01, 0xd0, 0x00}, R: []byte{0x00, 0x01, 0x00}}, // battery, CH5: 256
				{W: []byte{0x01, 0xa0, 0x00}, R: []byte{0x00, 0x00, 0x00}}, // light, CH2: 0
				{W: []byte{0x01, 0xf0, 0x00}, R: []byte{0x00, 0x03, 0xff}}, // soil, CH7: 1023
			},
			"battery=1.2500 light=0.0000 soil=4.9951"},
		{"differential pairs",
			periph.MCP3008Config{Differential: map[string]int{"ch0-ch1": 0, "ch1-ch0": 1, "ch7-ch6": 7}, VRef: 2},
			[]conntest.IO{
				{W: []byte{0x01, 0x00, 0x00}, R: []byte{0x00, 0x02, 0x00}}, // 512
				{W: []byte{0x01, 0x10, 0x00}, R: []byte{0x00, 0x00, 0x01}}, // 1
				{W: []byte{0x01, 0x70, 0x00}, R: []byte{0x00, 0x01, 0x80}}, // 384
			},
			"ch0-ch1=1.0000 ch1-ch0=0.0020 ch7-ch6=0.7500"},
		{"single and differential on the same inputs",
			periph.MCP3008Config{Channels: map[string]int{"a": 0, "c": 1}, Differential: map[string]int{"b": 0}, VRef: 1024},
			[]conntest.IO{
				{W: []byte{0x01, 0x80, 0x00}, R: []byte{0x00, 0x00, 0x0a}},
				{W: []byte{0x01, 0x00, 0x00}, R: []byte{0x00, 0x00, 0x03}},
				{W: []byte{0x01, 0x90, 0x00}, R: []byte{0x00, 0x00, 0x07}},
			},
			"a=10.0000 b=3.0000 c=7.0000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := periph.NewMCP3008(mcpPlayback(t, tt.ops...), tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := d.Read(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if got := mcpShow(rs); got != tt.want {
				t.Errorf("Read = %s, want %s", got, tt.want)
			}
			names := make([]string, len(rs))
			for i, r := range rs {
				names[i] = r.Name
			}
			if got, want := strings.Join(d.Readings(), ","), strings.Join(names, ","); got != want {
				t.Errorf("Readings = %s, want the names Read returned, %s", got, want)
			}
		})
	}
}

// mcpFailConn fails its failAt-th Tx (counting from 1) with err, after
// calling onTx for every Tx; the others read zeros.
type mcpFailConn struct {
	spi.Conn
	failAt int
	err    error
	onTx   func()
	n      int
}

func (c *mcpFailConn) Tx(w, r []byte) error {
	c.n++
	if c.onTx != nil {
		c.onTx()
	}
	if c.n == c.failAt {
		return c.err
	}
	clear(r)
	return nil
}

func TestMCP3008ReadErrors(t *testing.T) {
	cfg := periph.MCP3008Config{Channels: map[string]int{"light": 2}, Differential: map[string]int{"probe": 3}}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		conn func(t *testing.T, cancel context.CancelFunc) spi.Conn
		ctx  bool // use a ctx that conn may cancel, rather than a canceled one
		want string
	}{
		{"ctx canceled before a read", func(t *testing.T, _ context.CancelFunc) spi.Conn { return mcpPlayback(t) }, false,
			"mcp3008 on playback: read: context canceled"},
		{"ctx canceled between transfers", func(t *testing.T, cancel context.CancelFunc) spi.Conn {
			return &mcpFailConn{Conn: mcpPlayback(t), onTx: cancel}
		}, true, "mcp3008 on playback: read: context canceled"},
		{"tx error names the reading", func(t *testing.T, _ context.CancelFunc) spi.Conn {
			return &mcpFailConn{Conn: mcpPlayback(t), failAt: 1, err: errors.New("spi0.0: input/output error")}
		}, true, `mcp3008 on playback: read "light" (channel 2): spi0.0: input/output error`},
		{"tx error on a pair", func(t *testing.T, _ context.CancelFunc) spi.Conn {
			return &mcpFailConn{Conn: mcpPlayback(t), failAt: 2, err: errors.New("timeout")}
		}, true, `mcp3008 on playback: read "probe" (pair 3, CH3-CH2): timeout`},
		{"null bit set: nothing answers", func(t *testing.T, _ context.CancelFunc) spi.Conn {
			return mcpPlayback(t, conntest.IO{W: []byte{0x01, 0xa0, 0x00}, R: []byte{0xff, 0xff, 0xff}})
		}, true, `mcp3008 on playback: read "light" (channel 2): reply ff ff ff has its null bit (byte 1, bit 2) set: expected 0; check the wiring, power and SPI mode`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if !tt.ctx {
				ctx = canceled
			}
			d, err := periph.NewMCP3008(tt.conn(t, cancel), cfg)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := d.Read(ctx)
			if err == nil || err.Error() != tt.want {
				t.Errorf("Read error:\n%v\nwant:\n%s", err, tt.want)
			}
			if rs != nil {
				t.Errorf("Read returned readings with its error: %v", rs)
			}
		})
	}
}

func TestMCP3008ConcurrentReads(t *testing.T) {
	op := conntest.IO{W: []byte{0x01, 0x80, 0x00}, R: []byte{0x00, 0x02, 0x00}}
	d, err := periph.NewMCP3008(mcpPlayback(t, op, op, op, op), periph.MCP3008Config{Channels: map[string]int{"a": 0}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if rs, err := d.Read(t.Context()); err != nil || mcpShow(rs) != "a=1.6500" {
				t.Errorf("Read = %v, %v", rs, err)
			}
		})
	}
	wg.Wait()
}

func ExampleNewMCP3008() {
	// On a Raspberry Pi, the caller opens the port with host.Init and
	// spireg.Open("SPI0.0"), connects it with
	// port.Connect(physic.MegaHertz, spi.Mode0, 8) and closes it at exit.
	// Here a playback of the bytes the chip would answer stands in for it.
	port := &spitest.Playback{Playback: conntest.Playback{D: conn.Full, Ops: []conntest.IO{
		{W: []byte{0x01, 0x80, 0x00}, R: []byte{0x00, 0x01, 0x33}}, // light on CH0: 307
		{W: []byte{0x01, 0xb0, 0x00}, R: []byte{0x00, 0x02, 0x6c}}, // soil on CH3: 620
	}}}
	defer port.Close()
	c, err := port.Connect(physic.MegaHertz, spi.Mode0, 8)
	if err != nil {
		fmt.Println(err)
		return
	}
	adc, err := periph.NewMCP3008(c, periph.MCP3008Config{Channels: map[string]int{"light": 0, "soil": 3}})
	if err != nil {
		fmt.Println(err)
		return
	}
	rs, err := adc.Read(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range rs {
		fmt.Printf("%s = %.3f V\n", r.Name, r.Value)
	}
	// Output:
	// light = 0.989 V
	// soil = 1.998 V
}
