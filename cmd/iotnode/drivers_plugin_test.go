//go:build !noplugin

package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

// buildPlugin builds the plugin of package pkg into a temporary directory
// and returns the executable's path and SHA-256 in hexadecimal.
func buildPlugin(t *testing.T, pkg string) (string, string) {
	t.Helper()
	exe := filepath.Join(t.TempDir(), filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", exe, pkg).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	return exe, sha256File(t, exe)
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(data))
}

func TestPreparePlugin(t *testing.T) {
	dir := t.TempDir()
	exe := write(t, dir, "acme", "#!/bin/sh\n")
	if err := os.Chmod(exe, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256File(t, exe)
	notExec := write(t, dir, "not-executable", "#!/bin/sh\n")
	missing := filepath.Join(dir, "missing")
	other := fmt.Sprintf("%x", sha256.Sum256([]byte("another build")))
	const unknown = ": unknown key (expected one of args, checksum, outputs, path, readings, start_timeout)"
	const nothing = ": no readings and no outputs: expected the names of the plugin's readings or outputs, as its vendor documents them"
	testPrepare(t, "plugin", []prepareCase{
		{name: "readings and outputs", settings: m{"path": exe, "readings": []any{"temperature"}, "outputs": []any{"reset"}},
			readings: []string{"temperature"}, outputs: []string{"reset"}},
		{name: "every setting", settings: m{"path": exe, "args": []any{"-start", "21.5"}, "checksum": sum,
			"readings": []any{"temperature", "humidity"}, "outputs": []any{"reset"}, "start_timeout": "30s"},
			readings: []string{"temperature", "humidity"}, outputs: []string{"reset"}},
		{name: "checksum in capitals", settings: m{"path": exe, "checksum": strings.ToUpper(sum), "readings": []any{"t"}}, readings: []string{"t"}},
		{name: "outputs only", settings: m{"path": exe, "outputs": []any{"fan", "heater"}}, outputs: []string{"fan", "heater"}},
		{name: "nothing", problems: []string{
			K + ".path: missing (expected the absolute path of the plugin's executable)",
			K + nothing,
		}},
		{name: "relative path", settings: m{"path": "plugins/acme", "readings": []any{"t"}},
			problems: []string{K + `.path: "plugins/acme" is a relative path (expected an absolute path, such as /usr/local/lib/iotnode/acme)`}},
		{name: "missing executable", settings: m{"path": missing, "readings": []any{"t"}},
			problems: []string{K + ".path: cannot use " + missing + ": no such file or directory"}},
		{name: "a directory", settings: m{"path": dir, "readings": []any{"t"}},
			problems: []string{K + ".path: " + dir + " is a directory (expected an executable file)"}},
		{name: "not executable", settings: m{"path": notExec, "readings": []any{"t"}},
			problems: []string{K + ".path: " + notExec + " is not executable (mode -rw-------; expected an executable file: chmod +x)"}},
		{name: "checksum not SHA-256", settings: m{"path": exe, "checksum": "d41d8cd98f00b204e9800998ecf8427e", "readings": []any{"t"}},
			problems: []string{K + `.checksum: "d41d8cd98f00b204e9800998ecf8427e" is not a SHA-256 (expected 64 hexadecimal digits, as sha256sum prints them)`}},
		{name: "checksum of another file", settings: m{"path": exe, "checksum": other, "readings": []any{"t"}},
			problems: []string{K + ".checksum: " + exe + " has SHA-256 " + sum + ", not " + other + " (another build of the plugin?)"}},
		{name: "args not strings", settings: m{"path": exe, "args": []any{"-start", 21.5}, "readings": []any{"t"}},
			problems: []string{K + ".args[1]: expected a string, got the number 21.5"}},
		{name: "empty and repeated names", settings: m{"path": exe, "readings": []any{"t", "", "t"}, "outputs": []any{"fan", "fan"}},
			problems: []string{
				K + ".readings[1]: the name is empty (expected the name of one of the plugin's readings)",
				K + `.readings[2]: "t" is listed twice`,
				K + `.outputs[1]: "fan" is listed twice`,
			}},
		{name: "negative start_timeout", settings: m{"path": exe, "readings": []any{"t"}, "start_timeout": "-1s"},
			problems: []string{K + ".start_timeout: -1s is negative (expected a duration such as 10s; absent: 10s)"}},
		{name: "start_timeout as a number", settings: m{"path": exe, "readings": []any{"t"}, "start_timeout": 10},
			problems: []string{K + ".start_timeout: expected a duration such as 10s or 1m30s, got the number 10"}},
		{name: "several at once", settings: m{"command": exe, "path": notExec, "checksum": "xyz", "readings": "t"}, problems: []string{
			K + ".readings: source data must be an array or slice, got string", // decodeProblems's text for any list
			K + ".command" + unknown,
			K + ".path: " + notExec + " is not executable (mode -rw-------; expected an executable file: chmod +x)",
			K + `.checksum: "xyz" is not a SHA-256 (expected 64 hexadecimal digits, as sha256sum prints them)`,
		}},
	})
}

// logBuffer collects a logger's output; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// openPlugin prepares settings with the plugin driver and opens it,
// logging into logs; the sensor and actuator are closed at the end.
func openPlugin(t *testing.T, settings map[string]any, logs *logBuffer) (ports.Sensor, ports.Actuator, error) {
	t.Helper()
	p, ps := builtinDrivers(driverDeps{clock: systemClock{}})["plugin"].prepare(K, "attic", settings)
	if ps != nil {
		t.Fatalf("prepare: %q", ps)
	}
	s, a, err := p.open(slog.New(slog.NewTextHandler(logs, nil)))
	t.Cleanup(func() {
		for _, c := range []any{s, a} {
			if c, ok := c.(interface{ Close() error }); ok {
				if err := c.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			}
		}
	})
	return s, a, err
}

func temperature(t *testing.T, s ports.Sensor) float64 {
	t.Helper()
	rs, err := s.Read(t.Context())
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if len(rs) != 1 || rs[0].Name != "temperature" {
		t.Fatalf("readings %v", rs)
	}
	return rs[0].Value.(float64)
}

func TestPluginOpen(t *testing.T) {
	exe, sum := buildPlugin(t, "github.com/iotnode/iotnode/plugins/examples/randomwalk")
	settings := m{"path": exe, "args": []any{"-start", "30", "-step", "0.1", "-seed", "3"}, "checksum": sum,
		"readings": []any{"temperature"}, "outputs": []any{"reset"}}

	t.Run("reads and actuates", func(t *testing.T) {
		var logs logBuffer
		s, a, err := openPlugin(t, settings, &logs)
		if err != nil {
			t.Fatal(err)
		}
		if a == nil || s == nil {
			t.Fatalf("sensor %v, actuator %v", s, a)
		}
		if v := temperature(t, s); math.Abs(v-30) > 0.1 {
			t.Errorf("temperature %v, want 30 ± 0.1", v)
		}
		n, _ := model.Number(-5)
		if err := a.Actuate(t.Context(), "reset", map[string]model.Value{"value": n}); err != nil {
			t.Fatalf("actuate: %v", err)
		}
		if v := temperature(t, s); math.Abs(v+5) > 0.1 {
			t.Errorf("temperature after reset to -5: %v", v)
		}
		want := `level=INFO msg="plugin started" logger=iotnode.driver.plugin device=attic path=` + exe + " plugin=randomwalk version=1.0.0"
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log:\n%s\nwant a line with %s", logs.String(), want)
		}
	})

	t.Run("a sensor only", func(t *testing.T) {
		s, a, err := openPlugin(t, m{"path": exe, "readings": []any{"temperature"}}, &logBuffer{})
		if err != nil || s == nil || a != nil {
			t.Errorf("sensor %v, actuator %v, error %v", s, a, err)
		}
	})

	t.Run("settings the plugin does not match", func(t *testing.T) {
		_, _, err := openPlugin(t, m{"path": exe, "readings": []any{"temperature", "humidity", "pressure"}, "outputs": []any{"reset", "fan"}}, &logBuffer{})
		want := `device "attic": plugin ` + exe + ` (randomwalk 1.0.0) does not offer what the settings declare: ` +
			`no reading "humidity", "pressure" (it has: temperature); no output "fan" (it has: reset)`
		if err == nil || err.Error() != want {
			t.Errorf("error %v\nwant  %s", err, want)
		}
	})

	t.Run("executable changed after the check", func(t *testing.T) {
		data, err := os.ReadFile(exe)
		if err != nil {
			t.Fatal(err)
		}
		copied := filepath.Join(t.TempDir(), "randomwalk")
		if err := os.WriteFile(copied, data, 0o755); err != nil {
			t.Fatal(err)
		}
		p, ps := builtinDrivers(driverDeps{clock: systemClock{}})["plugin"].prepare(K, "attic", m{"path": copied, "readings": []any{"temperature"}, "checksum": sum})
		if ps != nil {
			t.Fatal(ps)
		}
		changed := append(data, 0)
		if err := os.WriteFile(copied, changed, 0o755); err != nil {
			t.Fatal(err)
		}
		_, _, err = p.open(slog.New(slog.DiscardHandler))
		want := fmt.Sprintf(`device "attic": plugin %s: checksum mismatch: its SHA-256 is %x, expected %s`, copied, sha256.Sum256(changed), sum)
		if err == nil || err.Error() != want {
			t.Errorf("error %v\nwant  %s", err, want)
		}
	})
}

// A plugin that crashed fails the call that met it, and starts again at
// the next one.
func TestPluginRestart(t *testing.T) {
	exe, _ := buildPlugin(t, "github.com/iotnode/iotnode/plugins/internal/testplugin")
	var logs logBuffer
	s, a, err := openPlugin(t, m{"path": exe, "readings": []any{"int"}, "outputs": []any{"exit"}}, &logs)
	if err != nil {
		t.Fatal(err)
	}
	err = a.Actuate(t.Context(), "exit", map[string]model.Value{"code": model.Integer(3)})
	if want := "plugin " + exe + " exited: exit status 3"; err == nil || err.Error() != want {
		t.Errorf("actuate: %v\nwant %s", err, want)
	}
	rs, err := s.Read(t.Context())
	if err != nil || len(rs) == 0 {
		t.Fatalf("read after the crash: %v, %v", rs, err)
	}
	want := `level=INFO msg="starting the plugin again" logger=iotnode.driver.plugin device=attic reason="plugin ` + exe + ` exited: exit status 3"`
	if !strings.Contains(logs.String(), want) || strings.Count(logs.String(), `msg="plugin started"`) != 2 {
		t.Errorf("log:\n%s\nwant two starts and %s", logs.String(), want)
	}
}

// `run --check` checks a plugin device without running the plugin.
func TestPluginConfigCheck(t *testing.T) {
	dir := configDir(t)
	exe := write(t, dir, "acme-th100", "#!/bin/sh\necho this would run\nexit 1\n")
	if err := os.Chmod(exe, 0o755); err != nil {
		t.Fatal(err)
	}
	config := `
provisioning_file: device.prov
passphrase_file: passphrase
models: [models/temperature_sensor.json]
devices:
  - name: attic
    model: urn:com:oracle:iot:device:temperature_sensor
    driver: plugin
    settings:
      path: ` + exe + `
      args: [-bus, "1"]
      checksum: ` + sha256File(t, exe) + `
      readings: [temperature]
      outputs: [reset]
      start_timeout: 5s
    bindings:
      temp: {reading: temperature}
    actions:
      reset: reset
`
	f := write(t, dir, "iotnode.yaml", config)
	r := runMain(t, t.Context(), nil, nil, "run", "--check", "--config", f)
	if r.code != ExitOK || r.stdout != "config "+f+" is valid: 1 device(s), mode directly_connected\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	for _, tt := range []struct{ name, old, new, want string }{
		{"settings", "start_timeout: 5s", "start_timeout: 5", `iotnode run: config FILE: devices[0].settings.start_timeout: expected a duration such as 10s or 1m30s, got the number 5
`},
		{"bindings", "reset: reset\n", "reset: rest\n", `iotnode run: config FILE has 2 problems:
  devices[0].bindings.temp.reading: driver plugin of this device has no reading "temperatur" (it has: temperature)
  devices[0].actions.reset: driver plugin of this device has no output "rest" (it has: reset)
`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bad := strings.ReplaceAll(config, tt.old, tt.new)
			if tt.name == "bindings" {
				bad = strings.ReplaceAll(bad, "{reading: temperature}", "{reading: temperatur}")
			}
			f := write(t, dir, tt.name+".yaml", bad)
			r := runMain(t, t.Context(), nil, nil, "run", "--check", "--config", f)
			want := strings.ReplaceAll(tt.want, "FILE", f)
			if r.code != ExitUsage || r.stderr != want || r.stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit %d, stderr:\n%s", r.code, r.stdout, r.stderr, ExitUsage, want)
			}
		})
	}
}
