// Command humidity is a directly connected humidity sensor built with the
// iotnode device library: the Go counterpart of the humidity sensor sample
// of Oracle's client libraries.
//
// It opens its provisioning file, activates the device when it is not
// activated yet, then reports a simulated relative humidity every -interval.
// The cloud may change the alert threshold (attribute maxThreshold, 60..100);
// when the humidity rises above it the sensor raises the too-humid alert.
//
// Usage:
//
//	IOTNODE_PASSPHRASE=... humidity -file humidity.conf [-duration 1m] [-interval 3s]
//
// The passphrase is read from the environment variable that
// -passphrase-env names (IOTNODE_PASSPHRASE by default), never from the
// command line, where other users could see it. See README.md for running
// it against `iotcloud serve`.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/iotnode/iotnode/client"
	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/model"
)

// modelJSON is the device model this program implements. The cloud must
// know it too: `iotcloud model add humidity_sensor.json`.
//
//go:embed humidity_sensor.json
var modelJSON []byte

const (
	modelURN = "urn:com:oracle:iot:device:humidity_sensor"
	alertURN = modelURN + ":too_humid"
)

// config is what run needs; main fills it from the flags.
type config struct {
	File       string        // the provisioning file
	Passphrase string        // its passphrase
	DataDir    string        // "" for the library's default (FILE.d)
	Duration   time.Duration // how long to report; 0 until ctx ends
	Interval   time.Duration // between two readings
	Seed       uint64        // of the simulated sensor
	Out        io.Writer     // what the sensor does, for people
	Logger     *slog.Logger  // the library's logs
	Options    []client.Option
}

func main() {
	var (
		file     = flag.String("file", "humidity.conf", "the provisioning `FILE` (from `iotcloud device register`)")
		passEnv  = flag.String("passphrase-env", "IOTNODE_PASSPHRASE", "the environment `VARIABLE` that holds the provisioning file's passphrase")
		dataDir  = flag.String("data", "", "the `DIR` for the device's state (default FILE.d)")
		duration = flag.Duration("duration", 0, "stop after this long (0: run until interrupted)")
		interval = flag.Duration("interval", 3*time.Second, "time between two readings")
		verbose  = flag.Bool("v", false, "log the library's debug messages")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "humidity: unexpected argument %q\n", flag.Arg(0))
		flag.Usage()
		os.Exit(2)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	cfg := config{
		File:       *file,
		Passphrase: os.Getenv(*passEnv),
		DataDir:    *dataDir,
		Duration:   *duration,
		Interval:   *interval,
		Seed:       uint64(time.Now().UnixNano()),
		Out:        os.Stdout,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
	if cfg.Passphrase == "" {
		fmt.Fprintf(os.Stderr, "humidity: the environment variable %s is empty: set it to the passphrase of %s\n", *passEnv, *file)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "humidity: %v\n", err)
		stop()
		os.Exit(1)
	}
}

// run is the sensor: it returns nil after cfg.Duration or when ctx ends,
// and an error when the device cannot start or a reading cannot be queued.
// It closes the device before it returns, sending what is queued for up to
// 10 seconds.
func run(ctx context.Context, cfg config) (err error) {
	if cfg.Interval <= 0 {
		return fmt.Errorf("interval %s: expected more than 0", cfg.Interval)
	}
	opts := append([]client.Option{client.WithLogger(cfg.Logger)}, cfg.Options...)
	if cfg.DataDir != "" {
		opts = append(opts, client.WithDataDir(cfg.DataDir))
	}
	dcd, err := client.NewDirectlyConnectedDevice(cfg.File, cfg.Passphrase, opts...)
	if err != nil {
		return err
	}
	defer func() {
		// ctx may be over already (an interrupt): closing gets its own time.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		err = errors.Join(err, dcd.Close(cctx))
	}()

	if !dcd.IsActivated() {
		fmt.Fprintf(cfg.Out, "activating %s\n", cfg.File)
		if err := dcd.Activate(ctx, modelURN); err != nil {
			return err
		}
	}
	fmt.Fprintf(cfg.Out, "endpoint %s\n", dcd.EndpointID())

	// The program carries the model it was written for. Oracle's samples
	// fetch it instead, which works the same: dcd.DeviceModel(ctx, modelURN).
	m, err := model.Parse(modelJSON)
	if err != nil {
		return fmt.Errorf("embedded device model: %w", err)
	}
	vd, err := dcd.CreateVirtualDevice(dcd.EndpointID(), m)
	if err != nil {
		return err
	}
	s := newSensor(vd, cfg.Seed, 0, cfg.Out, cfg.Logger)
	if err := s.listen(); err != nil {
		return err
	}

	var deadline <-chan time.Time
	if cfg.Duration > 0 {
		timer := time.NewTimer(cfg.Duration)
		defer timer.Stop()
		deadline = timer.C
	}
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for {
		if err := s.report(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-deadline:
			return nil
		case <-tick.C:
		}
	}
}

// sensor is one simulated humidity sensor and its virtual device.
type sensor struct {
	vd   *device.VirtualDevice
	rnd  *rand.Rand
	step int
	// phase shifts the simulated curve, so that sensors differ.
	phase float64
	out   io.Writer
	log   *slog.Logger

	// threshold is maxThreshold: read by report, written by the OnChange
	// callback on the virtual device's callback goroutine.
	threshold atomic.Int64
	above     bool // the last reading was above the threshold (report only)
}

func newSensor(vd *device.VirtualDevice, seed uint64, phase float64, out io.Writer, log *slog.Logger) *sensor {
	s := &sensor{vd: vd, rnd: rand.New(rand.NewPCG(seed, 0x1f2e3d4c)), phase: phase, out: out, log: log}
	// The model's default (80) until the cloud sets another.
	t, _ := vd.Get("maxThreshold")
	s.threshold.Store(t.Int())
	return s
}

// listen installs the callbacks.
func (s *sensor) listen() error {
	s.vd.OnError(func(ev device.ErrorEvent) {
		s.log.Error("the cloud refused a message of the sensor", "endpoint_id", s.vd.EndpointID(),
			"messages", len(ev.Messages), "error", ev.Err)
	})
	// The cloud checked the value against the model's range (60..100)
	// before the callback runs; the set is answered 200 when it returns.
	return s.vd.OnChangeAttribute("maxThreshold", func(ev device.ChangeEvent) {
		for _, c := range ev.Changes {
			s.threshold.Store(c.New.Int())
			fmt.Fprintf(s.out, "%s: maxThreshold is now %d%%\n", s.vd.EndpointID(), c.New.Int())
		}
	})
}

// report reads the simulated humidity, sends it, and raises the too-humid
// alert when it crossed the threshold upwards.
func (s *sensor) report() error {
	h := s.read()
	if err := s.vd.Set("humidity", h); err != nil {
		return err
	}
	limit := s.threshold.Load()
	above := h > limit
	fmt.Fprintf(s.out, "%s: humidity %d%%\n", s.vd.EndpointID(), h)
	if above && !s.above {
		if err := s.vd.CreateAlert(alertURN).Set("humidity", h).Raise(); err != nil {
			return err
		}
		fmt.Fprintf(s.out, "%s: too humid: %d%% > %d%%, alert raised\n", s.vd.EndpointID(), h, limit)
	}
	s.above = above
	return nil
}

// read simulates a sensor: a slow wave between about 45 and 95 percent,
// one period every 20 readings, with a little noise.
func (s *sensor) read() int64 {
	s.step++
	wave := 70 + 25*math.Sin(2*math.Pi*float64(s.step)/20+s.phase)
	h := int64(math.Round(wave)) + s.rnd.Int64N(5) - 2
	return min(max(h, 0), 100)
}
