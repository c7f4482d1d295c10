package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"

	"github.com/iotnode/iotnode/adapters/fsstore"
	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
)

// Environment variables iotnode reads besides the IOTNODE_<KEY> overrides.
const (
	// EnvPassphrase holds the provisioning file's passphrase itself. It is
	// never a config key and never a flag, so that it shows up neither in a
	// file that is shared nor in the process list.
	EnvPassphrase = "IOTNODE_PASSPHRASE"
	// EnvConfig names the config file when --config is not given.
	EnvConfig = "IOTNODE_CONFIG"
	envPrefix = "IOTNODE_"
)

// The values of Config.Mode and Config.Transport.
const (
	ModeDirect    = "directly_connected"
	ModeGateway   = "gateway"
	TransportAuto = "auto"
	TransportHTTP = "https"
	TransportMQTT = "mqtt"
)

// The values of Config.Delivery: the reliability of the devices' attribute
// data (DATA messages).
const (
	DeliveryGuaranteed = "guaranteed"
	DeliveryBestEffort = "best_effort"
)

// Defaults of the config.
const (
	// DefaultDelivery is guaranteed: "nothing acknowledged is lost" must
	// hold for sensor data too, and the durable outbox makes it affordable
	// (docs/config.md weighs the fsyncs it costs).
	DefaultDelivery       = DeliveryGuaranteed
	DefaultDataDir        = "iotnode-data" // relative to the config file's directory
	DefaultSampleInterval = 10 * time.Second
	MinSampleInterval     = 100 * time.Millisecond
	DefaultLogLevel       = "info"
	DefaultLogFormat      = "text"
)

// Config is the node's configuration (docs/config.md is its reference). It
// is read from a YAML file, then IOTNODE_* environment variables, then the
// command line flags, each layer overriding the one before.
type Config struct {
	// ProvisioningFile is the device's provisioning file (required).
	ProvisioningFile string `koanf:"provisioning_file"`
	// PassphraseFile holds the passphrase on its first line; when empty the
	// passphrase comes from IOTNODE_PASSPHRASE.
	PassphraseFile string `koanf:"passphrase_file"`
	// DataDir holds the outbox, the device model store and the node's
	// state; DefaultDataDir when empty.
	DataDir string `koanf:"data_dir"`
	// Transport is "auto" (the provisioning file's server URI decides),
	// "https" or "mqtt" (the file must then name such a server).
	Transport string `koanf:"transport"`
	// Mode is ModeDirect (the default) or ModeGateway.
	Mode string `koanf:"mode"`
	// Delivery is the reliability of every device's attribute data:
	// DeliveryGuaranteed (the default) or DeliveryBestEffort. It is one
	// setting for the node because the device library sets data QoS per
	// directly connected device or gateway (device.WithDataQoS), and all the
	// node's devices share it.
	Delivery string `koanf:"delivery"`
	// Models are device model files (JSON) to use instead of asking the
	// cloud; the bindings are checked against them before anything starts.
	Models     []string         `koanf:"models"`
	Devices    []DeviceConfig   `koanf:"devices"`
	Outbox     OutboxConfig     `koanf:"outbox"`
	Dispatcher DispatcherConfig `koanf:"dispatcher"`
	Logging    LoggingConfig    `koanf:"logging"`
	Metrics    MetricsConfig    `koanf:"metrics"`

	// file is the config file read, "" when none; relative paths are
	// resolved against its directory.
	file string
	// passphrase is read from PassphraseFile or IOTNODE_PASSPHRASE by
	// resolve; it is a secret and never printed.
	passphrase string
	// drivers are the devices' prepared drivers, by index, set by Validate.
	drivers []prepared
}

// DeviceConfig is one device the node runs: the node itself (directly
// connected mode, or the gateway's own endpoint) or an indirectly connected
// device of a gateway (with a HardwareID).
type DeviceConfig struct {
	Name           string             `koanf:"name"`
	Model          string             `koanf:"model"`
	HardwareID     string             `koanf:"hardware_id"`
	Metadata       map[string]string  `koanf:"metadata"`
	Driver         string             `koanf:"driver"`
	Settings       map[string]any     `koanf:"settings"`
	SampleInterval time.Duration      `koanf:"sample_interval"`
	Offer          bool               `koanf:"offer"`
	Bindings       map[string]Binding `koanf:"bindings"`
	Writes         map[string]string  `koanf:"writes"`
	Actions        map[string]string  `koanf:"actions"`
}

// Binding maps a reading of the driver to an attribute: value * scale + offset.
type Binding struct {
	// Reading is the driver's reading; the attribute's name when empty.
	Reading string `koanf:"reading"`
	// Scale multiplies a numeric reading; 1 when absent.
	Scale *float64 `koanf:"scale"`
	// Offset is added after scaling.
	Offset float64 `koanf:"offset"`
}

// OutboxConfig bounds the durable outbox.
type OutboxConfig struct {
	// MaxBytes bounds the size of the outbox directory on disk, where the
	// guaranteed messages wait; 0 is the outbox's default (64 MiB).
	MaxBytes int64 `koanf:"max_bytes"`
}

// DispatcherConfig tunes the device library's message dispatcher (the
// device.With* options named on each field). A nil field is an absent key:
// the library's default (device.Default*) applies. Validate checks each
// against the limits the device package enforces, in its words.
type DispatcherConfig struct {
	// BatchSize caps the messages sent in one call
	// (WithMaxMessagesPerConnection), at least 1.
	BatchSize *int `koanf:"batch_size"`
	// BatchBytes caps the encoded size of one call's messages
	// (WithMaxBatchBytes), at least 1024.
	BatchBytes *int `koanf:"batch_bytes"`
	// MaxInFlight is how many sends may await the cloud at once
	// (WithMaxInFlight), at least 1; 1 keeps the outbox's order.
	MaxInFlight *int `koanf:"max_in_flight"`
	// BatchDelay is how long the first queued message waits for others
	// (WithBatchDelay), 0 or more.
	BatchDelay *time.Duration `koanf:"batch_delay"`
	// BackoffBase and BackoffCap shape the backoff after a failed exchange
	// (WithBackoff): base more than 0, cap at least base.
	BackoffBase *time.Duration `koanf:"backoff_base"`
	BackoffCap  *time.Duration `koanf:"backoff_cap"`
	// LongPolling and LongPollTimeout: whether the cloud may hold a poll,
	// and for how long (WithLongPolling); the timeout more than 0 when on.
	LongPolling     *bool          `koanf:"long_polling"`
	LongPollTimeout *time.Duration `koanf:"long_poll_timeout"`
	// PollingInterval is the wait between polls without long polling
	// (WithPollingInterval), more than 0.
	PollingInterval *time.Duration `koanf:"polling_interval"`
}

// LoggingConfig says what is logged, and how.
type LoggingConfig struct {
	// Level is the level of every logger without a more specific entry in
	// Levels: debug, info, warn or error.
	Level string `koanf:"level"`
	// Format is text or json.
	Format string `koanf:"format"`
	// Levels sets the level per logger name prefix ("iotnode.http": debug);
	// the longest prefix that matches a logger's name, at a dot, wins.
	Levels map[string]string `koanf:"levels"`
}

// MetricsConfig enables the Prometheus /metrics endpoint.
type MetricsConfig struct {
	// Listen is HOST:PORT; empty disables the endpoint (the default).
	Listen string `koanf:"listen"`
	// AllowRemote permits a Listen address that is not loopback.
	AllowRemote bool `koanf:"allow_remote"`
}

// problems collects configuration problems; each names its key.
type problems []string

func (p *problems) add(key, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if key != "" {
		msg = key + ": " + msg
	}
	*p = append(*p, msg)
}

// ConfigError is a configuration that cannot run: every problem found, each
// naming its key. The node exits with code 2 for it.
type ConfigError struct {
	File     string // the config file, "" when none
	Problems []string
}

func (e *ConfigError) Error() string {
	where := "the configuration"
	if e.File != "" {
		where = "config " + e.File
	}
	if len(e.Problems) == 1 {
		return where + ": " + e.Problems[0]
	}
	return fmt.Sprintf("%s has %d problems:\n  %s", where, len(e.Problems), strings.Join(e.Problems, "\n  "))
}

func (p problems) err(file string) error {
	if len(p) == 0 {
		return nil
	}
	return &ConfigError{File: file, Problems: slices.Clone(p)}
}

// loadConfig reads the layers: the YAML file at path (none when ""), the
// IOTNODE_* variables of environ (IOTNODE_LOGGING__LEVEL sets
// logging.level; IOTNODE_PASSPHRASE and IOTNODE_CONFIG are not keys), then
// overrides (flat dotted keys, from the flags that were set). Unknown keys
// and values of the wrong type are problems; so is a file that does not
// exist or does not parse. It does not Validate.
func loadConfig(path string, environ []string, overrides map[string]any) (*Config, error) {
	k := koanf.New(".")
	var ps problems
	if path != "" {
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, &ConfigError{File: path, Problems: []string{"the file does not exist (expected a YAML config file; see docs/config.md)"}}
		case err != nil:
			return nil, &ConfigError{File: path, Problems: []string{fmt.Sprintf("cannot read it: %v", unwrapPath(err))}}
		}
		if err := k.Load(rawbytes.Provider(data), yaml.Parser()); err != nil {
			return nil, &ConfigError{File: path, Problems: []string{"not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
		}
	}
	envKeys, intKeys := envKeyNames()
	err := k.Load(env.Provider(".", env.Opt{
		Prefix:      envPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			if name == EnvPassphrase || name == EnvConfig {
				return "", nil
			}
			key, ok := envKeys[name]
			if !ok {
				ps.add("", "environment variable %s: no such setting (expected one of %s)", name, strings.Join(slices.Sorted(maps.Keys(envKeys)), ", "))
				return "", nil
			}
			switch value {
			case "true":
				return key, true
			case "false":
				return key, false
			}
			if intKeys[key] {
				// A variable is a string; a whole number is what the key
				// takes. Anything else stays a string, for decode to refuse.
				if n, err := strconv.ParseInt(value, 10, 64); err == nil {
					return key, n
				}
			}
			return key, absIfPath(key, value)
		},
	}), nil)
	if err != nil {
		return nil, fmt.Errorf("read the environment: %w", err)
	}
	if len(overrides) > 0 {
		if err := k.Load(confmap.Provider(overrides, "."), nil); err != nil {
			return nil, fmt.Errorf("read the flags: %w", err)
		}
	}
	var c Config
	err = k.UnmarshalWithConf("", &c, koanf.UnmarshalConf{DecoderConfig: decoderConfig(&c)})
	ps = append(ps, decodeProblems("", err, reflect.TypeFor[Config]())...)
	c.file = path
	return &c, ps.err(path)
}

// pathKeys are the scalar keys that hold paths. In the file a relative path
// is relative to the file's directory; from the environment and the flags,
// to the working directory.
var pathKeys = map[string]bool{"provisioning_file": true, "passphrase_file": true, "data_dir": true}

// absIfPath makes value absolute when key holds a path.
func absIfPath(key, value string) string {
	if !pathKeys[key] || value == "" {
		return value
	}
	if abs, err := filepath.Abs(value); err == nil {
		return abs
	}
	return value
}

// envKeyNames maps IOTNODE_<KEY> variable names to the scalar keys they set
// (lists and maps cannot be set from the environment), and tells which of
// those keys hold whole numbers.
func envKeyNames() (names map[string]string, ints map[string]bool) {
	out := map[string]string{}
	ints = map[string]bool{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("koanf")
			if tag == "" {
				continue
			}
			switch f.Type.Kind() {
			case reflect.Struct:
				walk(f.Type, prefix+tag+".")
			case reflect.Slice, reflect.Map:
			default:
				key := prefix + tag
				out[envPrefix+strings.ToUpper(strings.ReplaceAll(key, ".", "__"))] = key
				t := f.Type
				if t.Kind() == reflect.Pointer {
					t = t.Elem()
				}
				switch t.Kind() {
				case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
					ints[key] = t != durationType
				}
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return out, ints
}

// decoderConfig is strict: unknown keys are errors, and no value is
// converted from another kind except whole numbers to floats and strings to
// durations.
func decoderConfig(result any) *mapstructure.DecoderConfig {
	return &mapstructure.DecoderConfig{
		Result:      result,
		TagName:     "koanf",
		ErrorUnused: true,
		DecodeHook:  strictHook,
	}
}

var durationType = reflect.TypeFor[time.Duration]()

// strictHook turns duration strings into durations, and refuses what
// mapstructure would otherwise convert silently: a number as a duration
// (nanoseconds), a fraction as an integer (truncated).
func strictHook(from, to reflect.Type, data any) (any, error) {
	if to == durationType {
		s, ok := data.(string)
		if !ok {
			if _, isDur := data.(time.Duration); isDur {
				return data, nil
			}
			return nil, fmt.Errorf("expected a duration such as 10s or 1m30s, got %s", describeValue(data))
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("expected a duration such as 10s or 1m30s, got %q", s)
		}
		return d, nil
	}
	switch to.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if f, ok := data.(float64); ok && (f != math.Trunc(f) || math.IsInf(f, 0)) {
			return nil, fmt.Errorf("expected a whole number, got %s", describeValue(data))
		}
	}
	return data, nil
}

// mapKey matches a mapstructure map index such as [temp] (not [0]).
var mapKey = regexp.MustCompile(`\[([^\]]*[^\]0-9][^\]]*)\]`)

// keyName turns a mapstructure field name into the dotted key users write:
// devices[0].bindings[temp] -> devices[0].bindings.temp.
func keyName(prefix, name string) string {
	name = mapKey.ReplaceAllString(name, ".$1")
	switch {
	case prefix == "":
		return name
	case name == "":
		return prefix
	}
	return prefix + "." + name
}

// decodeProblems turns a mapstructure error into problems named by key.
// root is the type decoded into at prefix, to list the known keys.
func decodeProblems(prefix string, err error, root reflect.Type) problems {
	var ps problems
	var walk func(err error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		de, ok := err.(*mapstructure.DecodeError)
		if !ok {
			// mapstructure wraps the joined errors once more at the top.
			if inner := errors.Unwrap(err); inner != nil {
				walk(inner)
			} else {
				ps.add(prefix, "%v", err)
			}
			return
		}
		key := keyName(prefix, de.Name())
		inner := de.Unwrap()
		var ute *mapstructure.UnconvertibleTypeError
		var pe *mapstructure.ParseError
		switch msg := inner.Error(); {
		case strings.HasPrefix(msg, "has invalid keys: "):
			known := knownKeys(root, de.Name())
			for _, k := range strings.Split(strings.TrimPrefix(msg, "has invalid keys: "), ", ") {
				if len(known) > 0 {
					ps.add(keyName(key, k), "unknown key (expected one of %s)", strings.Join(known, ", "))
				} else {
					ps.add(keyName(key, k), "unknown key")
				}
			}
		case errors.As(inner, &ute):
			ps.add(key, "expected %s, got %s", describeType(ute.Expected.Type()), describeValue(ute.Value))
		case errors.As(inner, &pe):
			ps.add(key, "expected %s, got %s", describeType(pe.Expected.Type()), describeValue(pe.Value))
		default:
			ps.add(key, "%s", msg)
		}
	}
	walk(err)
	return ps
}

// knownKeys lists the keys of the struct at a mapstructure path within root.
func knownKeys(root reflect.Type, path string) []string {
	t := root
	for _, part := range strings.Split(mapKey.ReplaceAllString(path, "[x]"), ".") {
		if part == "" {
			continue
		}
		field, idx, _ := strings.Cut(part, "[")
		if t.Kind() != reflect.Struct {
			return nil
		}
		f, ok := fieldByTag(t, field)
		if !ok {
			return nil
		}
		t = f.Type
		for range strings.Count("["+idx, "[") {
			if t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
				t = t.Elem()
			}
		}
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("koanf"); tag != "" {
			keys = append(keys, tag)
		}
	}
	slices.Sort(keys)
	return keys
}

func fieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("koanf") == tag {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// describeType names a Go type the way a YAML author thinks of it.
func describeType(t reflect.Type) string {
	if t == durationType {
		return "a duration such as 10s"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping (key: value)"
	case reflect.Pointer:
		return describeType(t.Elem())
	}
	return t.String()
}

// describeValue shows a decoded YAML value with its kind.
func describeValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "nothing (null)"
	case string:
		return "the string " + strconv.Quote(x)
	case bool:
		return "the boolean " + strconv.FormatBool(x)
	case int, int64, int32, uint64, float64, float32:
		return fmt.Sprintf("the number %v", x)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("a %T", v)
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// path resolves p against the config file's directory.
func (c *Config) path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.file == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.file), p)
}

// applyDefaults fills the defaults and resolves relative paths against the
// config file's directory. It runs before Validate.
func (c *Config) applyDefaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	c.ProvisioningFile = c.path(c.ProvisioningFile)
	c.PassphraseFile = c.path(c.PassphraseFile)
	c.DataDir = c.path(c.DataDir)
	for i := range c.Models {
		c.Models[i] = c.path(c.Models[i])
	}
	if c.Transport == "" {
		c.Transport = TransportAuto
	}
	if c.Mode == "" {
		c.Mode = ModeDirect
	}
	if c.Delivery == "" {
		c.Delivery = DefaultDelivery
	}
	if c.Logging.Level == "" {
		c.Logging.Level = DefaultLogLevel
	}
	if c.Logging.Format == "" {
		c.Logging.Format = DefaultLogFormat
	}
	for i := range c.Devices {
		d := &c.Devices[i]
		if d.Name == "" {
			d.Name = d.HardwareID
		}
		if d.Name == "" && d.Model != "" {
			d.Name = d.Model[strings.LastIndex(d.Model, ":")+1:]
		}
		if d.SampleInterval == 0 {
			d.SampleInterval = DefaultSampleInterval
		}
	}
}

// Validate reports every problem of the configuration at once, each naming
// its key. It reads the file system: the provisioning file, the passphrase
// file and the model files must exist and be readable. It checks the
// bindings against the driver's readings and outputs, and against the device
// models given in Models; bindings to other models are checked by
// validateModels once the models are known. drivers are the drivers the
// node has; the passphrase of IOTNODE_PASSPHRASE is passed in envPass.
func (c *Config) Validate(drivers map[string]driver, envPass string) error {
	var ps problems
	c.drivers = make([]prepared, len(c.Devices))

	switch {
	case c.ProvisioningFile == "":
		ps.add("provisioning_file", "missing (expected the path of the device's provisioning file, written by 'iotcloud device register')")
	default:
		checkFile(&ps, "provisioning_file", c.ProvisioningFile, "the device's provisioning file")
	}
	switch {
	case c.PassphraseFile != "":
		if checkFile(&ps, "passphrase_file", c.PassphraseFile, "a file whose first line is the passphrase") {
			pass, err := readPassphrase(c.PassphraseFile)
			if err != nil {
				ps.add("passphrase_file", "%v", err)
			}
			c.passphrase = pass
		}
	case envPass != "":
		c.passphrase = envPass
	default:
		ps.add("passphrase_file", "no passphrase: set passphrase_file to a file whose first line is the passphrase, or the environment variable %s (never a command-line argument)", EnvPassphrase)
	}
	if fi, err := os.Stat(c.DataDir); err == nil && !fi.IsDir() {
		ps.add("data_dir", "%s is not a directory", c.DataDir)
	}
	if c.Transport != TransportAuto && c.Transport != TransportHTTP && c.Transport != TransportMQTT {
		ps.add("transport", "unknown transport %q (expected auto, which follows the provisioning file's server URI, https or mqtt)", c.Transport)
	}
	if c.Mode != ModeDirect && c.Mode != ModeGateway {
		ps.add("mode", "unknown mode %q (expected %s or %s)", c.Mode, ModeDirect, ModeGateway)
	}
	if _, ok := dataReliability(c.Delivery); !ok {
		ps.add("delivery", "unknown delivery %q (expected %s, which keeps every value on disk until the cloud has it, or %s, which keeps values in memory only)",
			c.Delivery, DeliveryGuaranteed, DeliveryBestEffort)
	}
	for i, f := range c.Models {
		checkFile(&ps, fmt.Sprintf("models[%d]", i), f, "a device model file (JSON)")
	}
	if c.Outbox.MaxBytes < 0 {
		ps.add("outbox.max_bytes", "%d is negative (expected 0 for the default of 64 MiB, or a number of bytes)", c.Outbox.MaxBytes)
	}
	c.Dispatcher.validate(&ps)
	c.validateLogging(&ps)
	c.validateMetrics(&ps)
	c.validateDevices(&ps, drivers)
	return ps.err(c.file)
}

// dataReliability maps a Delivery value to the reliability of DATA messages.
func dataReliability(delivery string) (message.Reliability, bool) {
	switch delivery {
	case DeliveryGuaranteed:
		return message.GuaranteedDelivery, true
	case DeliveryBestEffort:
		return message.BestEffort, true
	}
	return message.BestEffort, false
}

// checkFile reports whether path is a readable regular file, adding a
// problem for key when not.
func checkFile(ps *problems, key, path, want string) bool {
	f, err := os.Open(path)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			ps.add(key, "%s does not exist (expected %s)", path, want)
		default:
			ps.add(key, "cannot read %s: %v", path, unwrapPath(err))
		}
		return false
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		ps.add(key, "%s is a directory (expected %s)", path, want)
		return false
	}
	return true
}

// maxPassphraseFile bounds what is read of a passphrase file.
const maxPassphraseFile = 4 << 10

// readPassphrase returns the first line of path (read up to 4 KiB).
func readPassphrase(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %v", path, unwrapPath(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPassphraseFile))
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %v", path, unwrapPath(err))
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("the first line of %s is empty (expected the passphrase)", path)
	}
	return line, nil
}

// minBatchBytes is the device package's floor of WithMaxBatchBytes (not
// exported by it).
const minBatchBytes = 1024

// validate checks the dispatcher keys that are set against the limits
// device.NewDirectlyConnectedDevice enforces, with its texts ("%d, expected
// at least %d"), so that a bad value is a problem under its key rather than
// an error of the device at start. An absent key stands for its default in
// the checks that pair two keys.
func (d DispatcherConfig) validate(ps *problems) {
	atLeast := func(key string, n *int, least int) {
		if n != nil && *n < least {
			ps.add("dispatcher."+key, "%d, expected at least %d", *n, least)
		}
	}
	positive := func(key string, v *time.Duration) {
		if v != nil && *v <= 0 {
			ps.add("dispatcher."+key, "%s, expected more than 0", *v)
		}
	}
	atLeast("batch_size", d.BatchSize, 1)
	atLeast("batch_bytes", d.BatchBytes, minBatchBytes)
	atLeast("max_in_flight", d.MaxInFlight, 1)
	if d.BatchDelay != nil && *d.BatchDelay < 0 {
		ps.add("dispatcher.batch_delay", "%s, expected 0 or more", *d.BatchDelay)
	}
	positive("backoff_base", d.BackoffBase)
	base, limit := orDefault(d.BackoffBase, device.DefaultBackoffBase), orDefault(d.BackoffCap, device.DefaultBackoffCap)
	switch {
	case base <= 0 || limit >= base:
	case d.BackoffCap != nil:
		ps.add("dispatcher.backoff_cap", "%s is below backoff_base %s%s, expected at least backoff_base", limit, base, defaultNote(d.BackoffBase))
	default:
		ps.add("dispatcher.backoff_base", "%s is above backoff_cap %s (the default), expected at most backoff_cap", base, limit)
	}
	if d.LongPolling == nil || *d.LongPolling {
		positive("long_poll_timeout", d.LongPollTimeout)
	}
	positive("polling_interval", d.PollingInterval)
}

// orDefault is *v, or def when v is nil.
func orDefault[T any](v *T, def T) T {
	if v == nil {
		return def
	}
	return *v
}

// defaultNote marks a value in a problem as a default the user did not set.
func defaultNote[T any](v *T) string {
	if v == nil {
		return " (the default)"
	}
	return ""
}

var logLevels = []string{"debug", "info", "warn", "error"}

func (c *Config) validateLogging(ps *problems) {
	if !slices.Contains(logLevels, c.Logging.Level) {
		ps.add("logging.level", "unknown level %q (expected one of %s)", c.Logging.Level, strings.Join(logLevels, ", "))
	}
	if c.Logging.Format != "text" && c.Logging.Format != "json" {
		ps.add("logging.format", "unknown format %q (expected text or json)", c.Logging.Format)
	}
	for _, prefix := range slices.Sorted(maps.Keys(c.Logging.Levels)) {
		if lvl := c.Logging.Levels[prefix]; !slices.Contains(logLevels, lvl) {
			ps.add("logging.levels."+prefix, "unknown level %q (expected one of %s)", lvl, strings.Join(logLevels, ", "))
		}
	}
}

func (c *Config) validateMetrics(ps *problems) {
	if c.Metrics.Listen == "" {
		return
	}
	host, port, err := net.SplitHostPort(c.Metrics.Listen)
	if err != nil || port == "" {
		ps.add("metrics.listen", "%q is not HOST:PORT (expected an address such as 127.0.0.1:9100)", c.Metrics.Listen)
		return
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		ps.add("metrics.listen", "port %q is not a number from 0 to 65535", port)
	}
	if !c.Metrics.AllowRemote && !isLoopback(host) {
		ps.add("metrics.listen", "%s is not a loopback address (expected 127.0.0.1, ::1 or localhost; set metrics.allow_remote: true to serve metrics to the network)", c.Metrics.Listen)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Config) validateDevices(ps *problems, drivers map[string]driver) {
	if len(c.Devices) == 0 {
		ps.add("devices", "no devices (expected at least one device with a model, a driver and bindings)")
	}
	names := map[string]int{}
	hardware := map[string]int{}
	ownModels := map[string]int{} // models on the node's own endpoint
	for i := range c.Devices {
		d := &c.Devices[i]
		key := fmt.Sprintf("devices[%d]", i)
		if d.Name != "" {
			if j, dup := names[d.Name]; dup {
				ps.add(key+".name", "%q repeats the name of devices[%d] (expected a unique name)", d.Name, j)
			} else {
				names[d.Name] = i
			}
		}
		switch {
		case d.Model == "":
			ps.add(key+".model", "missing (expected the URN of the device's model, such as urn:com:oracle:iot:device:temperature_sensor)")
		case !strings.HasPrefix(d.Model, "urn:"):
			ps.add(key+".model", "%q is not a URN (expected urn:...)", d.Model)
		case model.IsSystemURN(d.Model):
			ps.add(key+".model", "%q is a system model of the device library (expected one of your device models)", d.Model)
		}
		switch {
		case d.HardwareID != "" && c.Mode != ModeGateway:
			ps.add(key+".hardware_id", "only a gateway has indirectly connected devices (set mode: gateway, or remove hardware_id)")
		case d.HardwareID != "":
			if j, dup := hardware[d.HardwareID]; dup {
				ps.add(key+".hardware_id", "%q repeats the hardware id of devices[%d] (expected a unique id)", d.HardwareID, j)
			} else {
				hardware[d.HardwareID] = i
			}
		default:
			if len(d.Metadata) > 0 {
				ps.add(key+".metadata", "metadata describes an indirectly connected device (expected it only with a hardware_id)")
			}
			if d.Model != "" {
				if j, dup := ownModels[d.Model]; dup {
					ps.add(key+".model", "%s is already the model of devices[%d] on the node's own endpoint (expected each model once per endpoint)", d.Model, j)
				} else {
					ownModels[d.Model] = i
				}
			}
		}
		if d.SampleInterval < MinSampleInterval {
			ps.add(key+".sample_interval", "%s is too short (expected at least %s)", d.SampleInterval, MinSampleInterval)
		}
		c.validateDriver(ps, key, i, drivers)
	}
}

// validateDriver prepares the device's driver and checks the bindings
// against what it offers.
func (c *Config) validateDriver(ps *problems, key string, i int, drivers map[string]driver) {
	d := &c.Devices[i]
	if d.Driver == "" {
		ps.add(key+".driver", "missing (expected one of %s)", strings.Join(slices.Sorted(maps.Keys(drivers)), ", "))
		return
	}
	drv, ok := drivers[d.Driver]
	if !ok {
		ps.add(key+".driver", "unknown driver %q; known: %s", d.Driver, strings.Join(slices.Sorted(maps.Keys(drivers)), ", "))
		return
	}
	p, dps := drv.prepare(key+".settings", d.Name, d.Settings)
	*ps = append(*ps, dps...)
	if dps != nil {
		return
	}
	c.drivers[i] = p
	for _, attr := range slices.Sorted(maps.Keys(d.Bindings)) {
		b := d.Bindings[attr]
		reading := cmpOr(b.Reading, attr)
		bkey := key + ".bindings." + attr
		if !slices.Contains(p.readings, reading) {
			rkey := bkey
			if b.Reading != "" {
				rkey += ".reading"
			}
			ps.add(rkey, "driver %s of this device has no reading %q (it has: %s)", d.Driver, reading, orNone(p.readings))
		}
		if b.Scale != nil && (*b.Scale == 0 || math.IsNaN(*b.Scale) || math.IsInf(*b.Scale, 0)) {
			ps.add(bkey+".scale", "%v (expected a finite number other than 0)", *b.Scale)
		}
		if math.IsNaN(b.Offset) || math.IsInf(b.Offset, 0) {
			ps.add(bkey+".offset", "%v (expected a finite number)", b.Offset)
		}
	}
	for _, group := range []struct {
		name string
		m    map[string]string
	}{{"writes", d.Writes}, {"actions", d.Actions}} {
		for _, from := range slices.Sorted(maps.Keys(group.m)) {
			out := cmpOr(group.m[from], from)
			if !slices.Contains(p.outputs, out) {
				ps.add(key+"."+group.name+"."+from, "driver %s of this device has no output %q (it has: %s)", d.Driver, out, orNone(p.outputs))
			}
		}
	}
	if len(d.Bindings) == 0 && len(d.Writes) == 0 && len(d.Actions) == 0 {
		ps.add(key+".bindings", "the device binds nothing (expected bindings from readings to attributes, writes or actions)")
	}
}

// validateModels checks the bindings of the devices whose model is in
// models (by URN) against it; devices whose model is absent are skipped.
func (c *Config) validateModels(models map[string]*model.DeviceModel) error {
	var ps problems
	for i := range c.Devices {
		d := &c.Devices[i]
		m, ok := models[d.Model]
		if !ok {
			continue
		}
		key := fmt.Sprintf("devices[%d]", i)
		for _, name := range slices.Sorted(maps.Keys(d.Bindings)) {
			a, ok := m.Attribute(name)
			if !ok {
				ps.add(key+".bindings."+name, "attribute %q is not in device model %q (it has: %s)", name, m.URN, orNone(attributeNames(m, false)))
				continue
			}
			b := d.Bindings[name]
			if (b.Scale != nil || b.Offset != 0) && a.Type != model.TypeInteger && a.Type != model.TypeNumber {
				ps.add(key+".bindings."+name, "scale and offset apply to numbers, but attribute %q is %s", name, a.Type)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(d.Writes)) {
			a, ok := m.Attribute(name)
			switch {
			case !ok:
				ps.add(key+".writes."+name, "attribute %q is not in device model %q (its writable attributes: %s)", name, m.URN, orNone(attributeNames(m, true)))
			case !a.Writable:
				ps.add(key+".writes."+name, "attribute %q of device model %q is not writable (its writable attributes: %s)", name, m.URN, orNone(attributeNames(m, true)))
			}
		}
		for _, name := range slices.Sorted(maps.Keys(d.Actions)) {
			if _, ok := m.Action(name); !ok {
				var actions []string
				for _, a := range m.Actions {
					actions = append(actions, a.Name)
				}
				ps.add(key+".actions."+name, "action %q is not in device model %q (it has: %s)", name, m.URN, orNone(actions))
			}
		}
	}
	return ps.err(c.file)
}

func attributeNames(m *model.DeviceModel, writable bool) []string {
	var out []string
	for _, a := range m.Attributes {
		if !writable || a.Writable {
			out = append(out, a.Name)
		}
	}
	return out
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// localModels returns the device models the node has without asking the
// cloud: the files of Models, and those in the data directory's model store
// (written by an earlier run or by 'models pull'). A model the store cannot
// read is left out: the device library fetches it again.
func (c *Config) localModels() (map[string]*model.DeviceModel, error) {
	models, err := c.loadModelFiles()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(c.DataDir, modelsDir)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return models, nil
	}
	store, err := fsstore.NewModelStore(dir)
	if err != nil {
		return models, nil
	}
	for _, d := range c.Devices {
		if _, ok := models[d.Model]; ok || d.Model == "" {
			continue
		}
		if m, err := store.Load(d.Model); err == nil {
			models[d.Model] = m
		}
	}
	return models, nil
}

// loadModelFiles parses the model files of c.Models, by URN.
func (c *Config) loadModelFiles() (map[string]*model.DeviceModel, error) {
	var ps problems
	out := map[string]*model.DeviceModel{}
	for i, f := range c.Models {
		key := fmt.Sprintf("models[%d]", i)
		data, err := os.ReadFile(f)
		if err != nil {
			ps.add(key, "cannot read %s: %v", f, unwrapPath(err))
			continue
		}
		m, err := model.Parse(data)
		if err != nil {
			ps.add(key, "%s is not a valid device model: %s", f, strings.ReplaceAll(err.Error(), "\n", "; "))
			continue
		}
		if _, dup := out[m.URN]; dup {
			ps.add(key, "%s repeats device model %s", f, m.URN)
			continue
		}
		out[m.URN] = m
	}
	return out, ps.err(c.file)
}

// decodeSettings decodes a driver's settings into out (a pointer to a
// struct with koanf tags), as strictly as the config itself.
func decodeSettings(settings map[string]any, out any) error {
	d, err := mapstructure.NewDecoder(decoderConfig(out))
	if err != nil {
		return err
	}
	if settings == nil {
		settings = map[string]any{}
	}
	return d.Decode(settings)
}
