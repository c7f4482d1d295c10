package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotnode/iotnode/domain/message"
)

// validConfig is a config that passes, for the cases to break.
const validConfig = `
provisioning_file: device.prov
passphrase_file: passphrase
data_dir: data
models: [models/temperature_sensor.json]
devices:
  - name: thermometer
    model: urn:com:oracle:iot:device:temperature_sensor
    driver: sim
    settings:
      signals:
        temperature: {waveform: sine, min: 18, max: 26, period: 2m}
      outputs: {resets: null}
    bindings:
      temp: {reading: temperature}
    actions:
      reset: resets
`

// configDir makes a directory with the files a config refers to.
func configDir(t *testing.T) string {
	dir := t.TempDir()
	write(t, dir, "device.prov", "not checked by run --check")
	write(t, dir, "passphrase", testPassphrase+"\n")
	writeModels(t, dir)
	return dir
}

func TestConfigProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  []string
		want string // stderr; DIR/ stands for the config's directory
	}{
		{
			name: "unknown keys",
			yaml: strings.Replace(validConfig, "    driver: sim\n", "    driver: sim\n    sampling: 5s\n", 1) + "colour: red\n",
			want: `iotnode run: config DIR/iotnode.yaml has 2 problems:
  devices[0].sampling: unknown key (expected one of actions, bindings, driver, hardware_id, metadata, model, name, offer, sample_interval, settings, writes)
  colour: unknown key (expected one of data_dir, delivery, devices, dispatcher, logging, metrics, mode, models, outbox, passphrase_file, provisioning_file, transport)
`,
		},
		{
			name: "wrong types",
			yaml: validConfig + "    sample_interval: 10\n    offer: \"yes\"\nmetrics: {listen: 9100}\noutbox: {max_bytes: 1.5}\n",
			want: `iotnode run: config DIR/iotnode.yaml has 4 problems:
  devices[0].sample_interval: expected a duration such as 10s or 1m30s, got the number 10
  devices[0].offer: expected true or false, got the string "yes"
  outbox.max_bytes: expected a whole number, got the number 1.5
  metrics.listen: expected a string, got the number 9100
`,
		},
		{
			name: "missing provisioning file",
			yaml: strings.Replace(validConfig, "device.prov", "missing.prov", 1),
			want: "iotnode run: config DIR/iotnode.yaml: provisioning_file: DIR/missing.prov does not exist (expected the device's provisioning file)\n",
		},
		{
			name: "attribute not in the model",
			yaml: strings.Replace(validConfig, "      temp: {reading: temperature}\n",
				"      temp: {reading: temperature}\n      temperature: {}\n    writes: {unit: resets}\n", 1),
			want: `iotnode run: config DIR/iotnode.yaml has 2 problems:
  devices[0].bindings.temperature: attribute "temperature" is not in device model "urn:com:oracle:iot:device:temperature_sensor" (it has: temp, unit, minTemp, maxTemp, minThreshold, maxThreshold, startTime)
  devices[0].writes.unit: attribute "unit" of device model "urn:com:oracle:iot:device:temperature_sensor" is not writable (its writable attributes: minThreshold, maxThreshold)
`,
		},
		{
			name: "unknown driver",
			yaml: strings.Replace(validConfig, "driver: sim", "driver: foo", 1),
			want: "iotnode run: config DIR/iotnode.yaml: devices[0].driver: unknown driver \"foo\"; known: bme280, gpio, mcp3008, plugin, sim\n",
		},
		{
			name: "every problem at once",
			yaml: `
provisioning_file: nope.prov
colour: red
models: [models/temperature_sensor.json]
devices:
  - model: urn:com:oracle:iot:device:temperature_sensor
    driver: foo
    sample_interval: fast
    bindings:
      temperature: {}
  - model: urn:com:oracle:iot:device:temperature_sensor
    driver: sim
    hardware_id: t-2
    settings:
      signals:
        temperature: {waveform: square}
    actions: {explode: boom}
logging: {level: loud, format: xml}
metrics: {listen: "0.0.0.0:9100"}
`,
			env: []string{"IOTNODE_COLOR=blue"},
			want: `iotnode run: config DIR/iotnode.yaml has 13 problems:
  environment variable IOTNODE_COLOR: no such setting (expected one of IOTNODE_DATA_DIR, IOTNODE_DELIVERY, IOTNODE_DISPATCHER__BACKOFF_BASE, IOTNODE_DISPATCHER__BACKOFF_CAP, IOTNODE_DISPATCHER__BATCH_BYTES, IOTNODE_DISPATCHER__BATCH_DELAY, IOTNODE_DISPATCHER__BATCH_SIZE, IOTNODE_DISPATCHER__LONG_POLLING, IOTNODE_DISPATCHER__LONG_POLL_TIMEOUT, IOTNODE_DISPATCHER__MAX_IN_FLIGHT, IOTNODE_DISPATCHER__POLLING_INTERVAL, IOTNODE_LOGGING__FORMAT, IOTNODE_LOGGING__LEVEL, IOTNODE_METRICS__ALLOW_REMOTE, IOTNODE_METRICS__LISTEN, IOTNODE_MODE, IOTNODE_OUTBOX__MAX_BYTES, IOTNODE_PASSPHRASE_FILE, IOTNODE_PROVISIONING_FILE, IOTNODE_TRANSPORT)
  devices[0].sample_interval: expected a duration such as 10s or 1m30s, got "fast"
  colour: unknown key (expected one of data_dir, delivery, devices, dispatcher, logging, metrics, mode, models, outbox, passphrase_file, provisioning_file, transport)
  provisioning_file: DIR/nope.prov does not exist (expected the device's provisioning file)
  passphrase_file: no passphrase: set passphrase_file to a file whose first line is the passphrase, or the environment variable IOTNODE_PASSPHRASE (never a command-line argument)
  logging.level: unknown level "loud" (expected one of debug, info, warn, error)
  logging.format: unknown format "xml" (expected text or json)
  metrics.listen: 0.0.0.0:9100 is not a loopback address (expected 127.0.0.1, ::1 or localhost; set metrics.allow_remote: true to serve metrics to the network)
  devices[0].driver: unknown driver "foo"; known: bme280, gpio, mcp3008, plugin, sim
  devices[1].hardware_id: only a gateway has indirectly connected devices (set mode: gateway, or remove hardware_id)
  devices[1].settings.signals.temperature: unknown waveform "square": expected one of sine, random_walk, steps
  devices[0].bindings.temperature: attribute "temperature" is not in device model "urn:com:oracle:iot:device:temperature_sensor" (it has: temp, unit, minTemp, maxTemp, minThreshold, maxThreshold, startTime)
  devices[1].actions.explode: action "explode" is not in device model "urn:com:oracle:iot:device:temperature_sensor" (it has: reset, power, calibrate)
`,
		},
		{
			name: "not YAML",
			yaml: "devices: [\n",
			want: "iotnode run: config DIR/iotnode.yaml: not valid YAML: line 1: did not find expected node content\n",
		},
		{
			name: "empty passphrase file",
			yaml: strings.Replace(validConfig, "passphrase_file: passphrase", "passphrase_file: device.prov\nmode: mesh", 1) + "transport: coap\n",
			want: `iotnode run: config DIR/iotnode.yaml has 2 problems:
  transport: unknown transport "coap" (expected auto, which follows the provisioning file's server URI, https or mqtt)
  mode: unknown mode "mesh" (expected directly_connected or gateway)
`,
		},
		{
			name: "unknown delivery",
			yaml: validConfig + "delivery: exactly_once\n",
			want: "iotnode run: config DIR/iotnode.yaml: delivery: unknown delivery \"exactly_once\" (expected guaranteed, which keeps every value on disk until the cloud has it, or best_effort, which keeps values in memory only)\n",
		},
		{
			name: "unknown delivery from the environment",
			yaml: validConfig,
			env:  []string{"IOTNODE_DELIVERY=GUARANTEED"},
			want: "iotnode run: config DIR/iotnode.yaml: delivery: unknown delivery \"GUARANTEED\" (expected guaranteed, which keeps every value on disk until the cloud has it, or best_effort, which keeps values in memory only)\n",
		},
		{
			name: "dispatcher values out of range",
			yaml: validConfig + `dispatcher:
  batch_size: 0
  batch_bytes: 512
  max_in_flight: 0
  batch_delay: -1ms
  backoff_base: 0s
  long_poll_timeout: 0s
  polling_interval: -3s
`,
			want: `iotnode run: config DIR/iotnode.yaml has 7 problems:
  dispatcher.batch_size: 0, expected at least 1
  dispatcher.batch_bytes: 512, expected at least 1024
  dispatcher.max_in_flight: 0, expected at least 1
  dispatcher.batch_delay: -1ms, expected 0 or more
  dispatcher.backoff_base: 0s, expected more than 0
  dispatcher.long_poll_timeout: 0s, expected more than 0
  dispatcher.polling_interval: -3s, expected more than 0
`,
		},
		{
			name: "dispatcher backoff_cap below backoff_base",
			yaml: validConfig + "dispatcher: {backoff_base: 10s, backoff_cap: 5s}\n",
			want: "iotnode run: config DIR/iotnode.yaml: dispatcher.backoff_cap: 5s is below backoff_base 10s, expected at least backoff_base\n",
		},
		{
			name: "dispatcher backoff_cap below the default base",
			yaml: validConfig + "dispatcher: {backoff_cap: 500ms}\n",
			want: "iotnode run: config DIR/iotnode.yaml: dispatcher.backoff_cap: 500ms is below backoff_base 1s (the default), expected at least backoff_base\n",
		},
		{
			name: "dispatcher backoff_base above the default cap",
			yaml: validConfig + "dispatcher: {backoff_base: 1m}\n",
			want: "iotnode run: config DIR/iotnode.yaml: dispatcher.backoff_base: 1m0s is above backoff_cap 30s (the default), expected at most backoff_cap\n",
		},
		{
			name: "dispatcher wrong types and unknown key",
			yaml: validConfig + "dispatcher: {batch_size: 1.5, long_polling: \"yes\", batch_delay: 20, flush_interval: 1s}\n",
			want: `iotnode run: config DIR/iotnode.yaml has 4 problems:
  dispatcher.batch_size: expected a whole number, got the number 1.5
  dispatcher.batch_delay: expected a duration such as 10s or 1m30s, got the number 20
  dispatcher.long_polling: expected true or false, got the string "yes"
  dispatcher.flush_interval: unknown key (expected one of backoff_base, backoff_cap, batch_bytes, batch_delay, batch_size, long_poll_timeout, long_polling, max_in_flight, polling_interval)
`,
		},
		{
			name: "dispatcher numbers from the environment",
			yaml: validConfig,
			env:  []string{"IOTNODE_DISPATCHER__MAX_IN_FLIGHT=0", "IOTNODE_DISPATCHER__BATCH_SIZE=many"},
			want: `iotnode run: config DIR/iotnode.yaml has 2 problems:
  dispatcher.batch_size: expected a whole number, got the string "many"
  dispatcher.max_in_flight: 0, expected at least 1
`,
		},
		{
			name: "dispatcher value from the environment",
			yaml: validConfig,
			env:  []string{"IOTNODE_DISPATCHER__POLLING_INTERVAL=0s"},
			want: "iotnode run: config DIR/iotnode.yaml: dispatcher.polling_interval: 0s, expected more than 0\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := configDir(t)
			f := write(t, dir, "iotnode.yaml", tt.yaml)
			r := runMain(t, t.Context(), nil, tt.env, "run", "--check", "--config", f)
			if r.code != ExitUsage {
				t.Errorf("exit code %d, want %d", r.code, ExitUsage)
			}
			if want := strings.ReplaceAll(tt.want, "DIR/", dir+"/"); r.stderr != want {
				t.Errorf("stderr:\n%s\nwant:\n%s", r.stderr, want)
			}
			if r.stdout != "" {
				t.Errorf("stdout: %q, want nothing", r.stdout)
			}
		})
	}
}

func TestConfigLayers(t *testing.T) {
	dir := configDir(t)
	f := write(t, dir, "iotnode.yaml", validConfig+"logging: {level: warn}\n")
	other := t.TempDir()
	tests := []struct {
		name      string
		env       []string
		args      []string
		wantData  string
		wantLevel string
	}{
		{"file", nil, nil, filepath.Join(dir, "data"), "warn"},
		{"environment over file", []string{"IOTNODE_DATA_DIR=" + other, "IOTNODE_LOGGING__LEVEL=error"}, nil, other, "error"},
		{"flags over environment", []string{"IOTNODE_DATA_DIR=/nowhere", "IOTNODE_LOGGING__LEVEL=error"},
			[]string{"--data-dir", other, "--log-level", "debug"}, other, "debug"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMain()
			m.Environ = func() []string { return tt.env }
			fs := newFlagSet()
			var cf configFlags
			cf.define(fs, true)
			if _, err := parseArgs(fs, append([]string{"--config", f}, tt.args...)); err != nil {
				t.Fatal(err)
			}
			c, err := cf.load(m, builtinDrivers(driverDeps{clock: systemClock{}}))
			if err != nil {
				t.Fatal(err)
			}
			if c.DataDir != tt.wantData || c.Logging.Level != tt.wantLevel {
				t.Errorf("data_dir %q, level %q; want %q, %q", c.DataDir, c.Logging.Level, tt.wantData, tt.wantLevel)
			}
		})
	}
}

func TestPassphraseFromEnvironment(t *testing.T) {
	dir := configDir(t)
	f := write(t, dir, "iotnode.yaml", strings.Replace(validConfig, "passphrase_file: passphrase\n", "", 1))
	r := runMain(t, t.Context(), nil, []string{EnvPassphrase + "=" + testPassphrase}, "run", "--check", "--config", f)
	if r.code != ExitOK || r.stdout != "config "+f+" is valid: 1 device(s), mode directly_connected\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// The example config of the documentation loads and validates, once its
// paths point at files that exist.
func TestExampleConfig(t *testing.T) {
	example, err := filepath.Abs("../../examples/iotnode.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := configDir(t)
	c, err := loadConfig(example, nil, map[string]any{
		"provisioning_file": filepath.Join(dir, "device.prov"),
		"passphrase_file":   filepath.Join(dir, "passphrase"),
		"data_dir":          filepath.Join(dir, "data"),
		"models": []any{filepath.Join(dir, "models/temperature_sensor.json"), filepath.Join(dir, "models/humidity_sensor.json"),
			filepath.Join(dir, "models/light_switch.json")},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.applyDefaults()
	if err := c.Validate(builtinDrivers(driverDeps{clock: systemClock{}}), ""); err != nil {
		t.Fatalf("examples/iotnode.yaml: %v", err)
	}
	models, err := c.localModels()
	if err != nil {
		t.Fatal(err)
	}
	if len(models) != 3 {
		t.Fatalf("%d models, want 3", len(models))
	}
	if err := c.validateModels(models); err != nil {
		t.Fatalf("examples/iotnode.yaml: %v", err)
	}
	if c.Mode != ModeGateway || len(c.Devices) < 2 {
		t.Errorf("the example should show a gateway with devices: mode %s, %d devices", c.Mode, len(c.Devices))
	}
	data, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	exampleText, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), string(exampleText)) {
		t.Errorf("docs/config.md does not show examples/iotnode.yaml as it is")
	}
	for _, key := range []string{"provisioning_file", "passphrase_file", "data_dir", "transport", "mode", "delivery", "guaranteed", "best_effort", "models", "devices",
		"hardware_id", "metadata", "driver", "settings", "sample_interval", "offer", "bindings", "writes", "actions",
		"scale", "offset", "max_bytes", "dispatcher", "batch_size", "batch_bytes", "max_in_flight", "batch_delay",
		"backoff_base", "backoff_cap", "long_polling", "long_poll_timeout", "polling_interval", "logging", "levels", "format", "metrics", "listen", "allow_remote", "waveform",
		"fail_every", "IOTNODE_PASSPHRASE"} {
		reference, _, _ := strings.Cut(string(data), "## A complete example")
		if !strings.Contains(reference, key) {
			t.Errorf("docs/config.md does not document %s", key)
		}
	}
}

// delivery maps to the reliability of the devices' DATA messages, guaranteed
// when absent.
func TestDelivery(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       message.Reliability
	}{
		{"absent", validConfig, message.GuaranteedDelivery},
		{"guaranteed", validConfig + "delivery: guaranteed\n", message.GuaranteedDelivery},
		{"best effort", validConfig + "delivery: best_effort\n", message.BestEffort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := configDir(t)
			c, err := loadConfig(write(t, dir, "iotnode.yaml", tt.yaml), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			c.applyDefaults()
			if err := c.Validate(builtinDrivers(driverDeps{clock: systemClock{}}), ""); err != nil {
				t.Fatal(err)
			}
			if got, ok := dataReliability(c.Delivery); !ok || got != tt.want {
				t.Errorf("delivery %q: reliability %s (known %v), want %s", c.Delivery, got, ok, tt.want)
			}
		})
	}
}
