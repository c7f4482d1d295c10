//go:build !noplugin

package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/plugins"
	"github.com/iotnode/iotnode/ports"
)

// The plugin driver runs a vendor's driver as a separate executable, on
// package plugins (docs/config.md). prepare checks the settings and the
// executable without running it, so that `run --check` runs nothing; the
// settings declare the readings and outputs, which open checks against
// the plugin's description.

// pluginReadTimeout bounds a plugin's read: the node's sample loop gives no
// deadline, and a plugin is code the node does not control.
const pluginReadTimeout = 10 * time.Second

// pluginSettings are the settings of the plugin driver.
type pluginSettings struct {
	Path         string        `koanf:"path"`
	Args         []string      `koanf:"args"`
	Checksum     string        `koanf:"checksum"`
	Readings     []string      `koanf:"readings"`
	Outputs      []string      `koanf:"outputs"`
	StartTimeout time.Duration `koanf:"start_timeout"`
}

func (deps driverDeps) preparePlugin(key, device string, settings map[string]any) (prepared, problems) {
	var s pluginSettings
	decoded := decodeProblems(key, decodeSettings(settings, &s), reflect.TypeFor[pluginSettings]())
	ps := slices.Clone(decoded)
	add := func(k, format string, args ...any) {
		if !underAny(k, decoded) {
			ps.add(k, format, args...)
		}
	}
	executable := checkExecutable(s.Path, func(format string, args ...any) { add(key+".path", format, args...) })
	var checksum []byte
	if s.Checksum != "" {
		sum, err := hex.DecodeString(s.Checksum)
		switch {
		case err != nil || len(sum) != sha256.Size:
			add(key+".checksum", "%q is not a SHA-256 (expected 64 hexadecimal digits, as sha256sum prints them)", s.Checksum)
		case executable:
			// The node checks again when it starts the plugin.
			if actual, err := fileSHA256(s.Path); err != nil {
				add(key+".checksum", "cannot read %s: %v", s.Path, unwrapPath(err))
			} else if !slices.Equal(actual, sum) {
				add(key+".checksum", "%s has SHA-256 %x, not %s (another build of the plugin?)", s.Path, actual, strings.ToLower(s.Checksum))
			}
		}
		checksum = sum
	}
	for _, list := range []struct{ kind, key string }{{"reading", "readings"}, {"output", "outputs"}} {
		names := s.Readings
		if list.key == "outputs" {
			names = s.Outputs
		}
		for i, name := range names {
			k := fmt.Sprintf("%s.%s[%d]", key, list.key, i)
			switch {
			case name == "":
				add(k, "the name is empty (expected the name of one of the plugin's %ss)", list.kind)
			case slices.Contains(names[:i], name):
				add(k, "%q is listed twice", name)
			}
		}
	}
	if len(s.Readings) == 0 && len(s.Outputs) == 0 && len(decoded) == 0 {
		ps.add(key, "no readings and no outputs: expected the names of the plugin's readings or outputs, as its vendor documents them")
	}
	if s.StartTimeout < 0 {
		add(key+".start_timeout", "%s is negative (expected a duration such as 10s; absent: 10s)", s.StartTimeout)
	}
	if len(ps) > 0 {
		return prepared{}, ps
	}
	cfg := pluginConfig{
		path: s.Path, args: s.Args, checksum: checksum, readings: s.Readings, outputs: s.Outputs,
		startTimeout: cmp.Or(s.StartTimeout, plugins.DefaultStartTimeout),
	}
	return prepared{
		readings: slices.Clone(s.Readings),
		outputs:  slices.Clone(s.Outputs),
		open: func(logger *slog.Logger) (ports.Sensor, ports.Actuator, error) {
			d := &pluginDevice{cfg: cfg, log: driverLogger(logger, "plugin", device)}
			c, err := d.start(context.Background())
			if err != nil {
				return nil, nil, fmt.Errorf("device %q: %w", device, err)
			}
			d.client = c
			d.close = sync.OnceValue(d.doClose)
			var sensor ports.Sensor
			var actuator ports.Actuator
			if len(cfg.readings) > 0 {
				sensor = d
			}
			if len(cfg.outputs) > 0 {
				actuator = d
			}
			return sensor, actuator, nil
		},
	}, nil
}

// checkExecutable checks that path names an executable file, reporting
// what is wrong with problem; it reports whether the file can be run.
func checkExecutable(path string, problem func(format string, args ...any)) bool {
	switch {
	case path == "":
		problem("missing (expected the absolute path of the plugin's executable)")
		return false
	case !filepath.IsAbs(path):
		// Relative to what? The working directory changes with how the node
		// is started, and PATH is not searched: what runs is named exactly.
		problem("%q is a relative path (expected an absolute path, such as /usr/local/lib/iotnode/%s)", path, filepath.Base(path))
		return false
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		problem("cannot use %s: %v", path, unwrapPath(err))
	case fi.IsDir():
		problem("%s is a directory (expected an executable file)", path)
	case !fi.Mode().IsRegular():
		problem("%s is not a regular file (expected an executable file)", path)
	case fi.Mode().Perm()&0o111 == 0:
		problem("%s is not executable (mode %s; expected an executable file: chmod +x)", path, fi.Mode().Perm())
	default:
		return true
	}
	return false
}

// fileSHA256 returns the SHA-256 of the file at path.
func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// pluginConfig is what a plugin device is started with.
type pluginConfig struct {
	path              string
	args              []string
	checksum          []byte
	readings, outputs []string // as the settings declare them
	startTimeout      time.Duration
}

// pluginDevice is a plugin as the node's sensor and actuator. A plugin
// whose process exited is started again at the next read or command: the
// call that found it dead failed, the node's backoff spaces the next ones,
// so a crashing plugin is restarted at most as often as the node retries.
// Safe for concurrent use.
type pluginDevice struct {
	cfg   pluginConfig
	log   *slog.Logger
	close func() error // once

	mu     sync.Mutex
	client *plugins.Client // nil after a failed restart
	closed bool
}

// start starts the plugin and checks that it offers what the settings
// declare; a plugin may offer more (a newer version, say).
func (d *pluginDevice) start(ctx context.Context) (*plugins.Client, error) {
	c, err := plugins.Open(ctx, d.cfg.path, d.cfg.args, plugins.Options{
		Logger: d.log, StartTimeout: d.cfg.startTimeout, Checksum: d.cfg.checksum,
	})
	if err != nil {
		return nil, err
	}
	desc := c.Description()
	var missing []string
	for _, list := range []struct {
		kind             string
		declared, offers []string
	}{{"reading", d.cfg.readings, desc.Readings}, {"output", d.cfg.outputs, desc.Outputs}} {
		var absent []string
		for _, name := range list.declared {
			if !slices.Contains(list.offers, name) {
				absent = append(absent, fmt.Sprintf("%q", name))
			}
		}
		if len(absent) > 0 {
			missing = append(missing, fmt.Sprintf("no %s %s (it has: %s)", list.kind, strings.Join(absent, ", "), orNone(list.offers)))
		}
	}
	if len(missing) > 0 {
		_ = c.Close()
		return nil, fmt.Errorf("plugin %s (%s %s) does not offer what the settings declare: %s", d.cfg.path, desc.Name, desc.Version, strings.Join(missing, "; "))
	}
	d.log.Info("plugin started", slog.String("path", d.cfg.path), slog.String("plugin", desc.Name), slog.String("version", desc.Version))
	return c, nil
}

// current returns the running plugin, starting it again when its process
// has exited.
func (d *pluginDevice) current(ctx context.Context) (*plugins.Client, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, fmt.Errorf("plugin %s: %w", d.cfg.path, plugins.ErrClosed)
	}
	if d.client != nil {
		err := d.client.Err()
		if err == nil {
			return d.client, nil
		}
		_ = d.client.Close() // the process is gone: nothing to report
		d.client = nil
		d.log.Info("starting the plugin again", slog.String("reason", err.Error()))
	}
	c, err := d.start(ctx)
	if err != nil {
		return nil, err
	}
	d.client = c
	return c, nil
}

// Read reads the plugin's sensor, for at most pluginReadTimeout.
func (d *pluginDevice) Read(ctx context.Context) ([]ports.Reading, error) {
	c, err := d.current(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, pluginReadTimeout)
	defer cancel()
	return c.Read(ctx)
}

// Actuate drives one of the plugin's outputs.
func (d *pluginDevice) Actuate(ctx context.Context, output string, args map[string]model.Value) error {
	c, err := d.current(ctx)
	if err != nil {
		return err
	}
	return c.Actuate(ctx, output, args)
}

// Close closes the plugin and stops its process; the node calls it on the
// sensor and on the actuator, which are the same pluginDevice.
func (d *pluginDevice) Close() error { return d.close() }

func (d *pluginDevice) doClose() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.client == nil {
		return nil
	}
	err := d.client.Close()
	d.client = nil
	return err
}

var (
	_ ports.Sensor   = (*pluginDevice)(nil)
	_ ports.Actuator = (*pluginDevice)(nil)
)
