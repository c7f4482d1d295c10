package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"strings"
	"time"

	"github.com/iotnode/iotnode/internal/cli"
	"github.com/iotnode/iotnode/ports"
)

// Exit codes of Run.
const (
	ExitOK      = 0
	ExitFailure = 1 // the command ran and failed (cloud unreachable, a doctor check failed...)
	ExitUsage   = 2 // a bad command line or a bad configuration: nothing ran
)

// Main runs one iotnode command. Build it with NewMain, adjust fields (tests
// do), then call Run. A Main runs one command at a time.
type Main struct {
	// Getenv reads one environment variable; Environ lists them all
	// (os.Getenv, os.Environ).
	Getenv  func(string) string
	Environ func() []string
	// Clock is the node's clock (the system clock).
	Clock ports.Clock
	// Dial opens TCP connections for doctor's reachability and TLS checks
	// (a net.Dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// LookupHost resolves names for doctor's DNS check (net.DefaultResolver).
	LookupHost func(ctx context.Context, host string) ([]string, error)
	// IsTerminal reports whether w is an interactive terminal; demo then
	// redraws one status line instead of printing a line per update.
	IsTerminal func(w io.Writer) bool

	// demoTuning, when set, adjusts the demo (tests shorten its intervals
	// and lower the cloud's KDF cost).
	demoTuning func(*demoOptions)
	// kdfIterations, when > 0, is the PBKDF2 cost of the provisioning file
	// written after activation (tests lower it; 0 keeps the library's
	// default).
	kdfIterations int
	// onRunning is called once run has started every device, with the
	// metrics address (nil when off) (tests).
	onRunning func(n *node, metrics net.Addr)
	// testDrivers are drivers added to the built-in ones (tests use
	// drivers whose hardware fails on demand).
	testDrivers map[string]driver

	stdout, stderr io.Writer
}

// NewMain returns a Main that uses the process environment and the system.
func NewMain() *Main {
	var d net.Dialer
	return &Main{
		Getenv:     os.Getenv,
		Environ:    os.Environ,
		Clock:      systemClock{},
		Dial:       d.DialContext,
		LookupHost: net.DefaultResolver.LookupHost,
		IsTerminal: isTerminal,
	}
}

// drivers returns the drivers configs may name: the built-in ones and
// testDrivers.
func (m *Main) drivers() map[string]driver {
	ds := builtinDrivers(driverDeps{clock: m.Clock})
	maps.Copy(ds, m.testDrivers)
	return ds
}

// systemClock is the real clock.
type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// usageError is a command line that cannot run: Run prints it with a
// pointer to the command's help and exits 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitError is a failure already reported (doctor's checks): Run prints
// nothing more and exits with code.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// command is one subcommand.
type command struct {
	name    string // "models pull"
	args    string // positional arguments for the synopsis, "FILE"; Run refuses any when empty
	summary string
	help    string
	// setup defines the flags and returns the function that runs the
	// command with the positional arguments.
	setup func(fs *flag.FlagSet) func(ctx context.Context, m *Main, pos []string) error
}

func (m *Main) commands() []*command {
	return []*command{
		runCommand(), demoCommand(), doctorCommand(), activateCommand(), modelsPullCommand(),
		trustShowCommand(), versionCommand(),
	}
}

// Run runs the command named by args (without the program name), writing
// output to stdout and diagnostics and logs to stderr, and returns the exit
// code: ExitOK, ExitFailure or ExitUsage. It blocks until the command is
// done; run and demo run until ctx ends (SIGINT or SIGTERM in main).
func (m *Main) Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	m.stdout, m.stderr = stdout, stderr
	if m.Getenv == nil {
		m.Getenv = func(string) string { return "" }
	}
	if m.Environ == nil {
		m.Environ = func() []string { return nil }
	}
	if m.Clock == nil {
		m.Clock = systemClock{}
	}
	if m.Dial == nil {
		var d net.Dialer
		m.Dial = d.DialContext
	}
	if m.LookupHost == nil {
		m.LookupHost = net.DefaultResolver.LookupHost
	}
	if m.IsTerminal == nil {
		m.IsTerminal = func(io.Writer) bool { return false }
	}
	cmds := m.commands()
	if len(args) == 0 {
		m.printUsage(stderr, cmds)
		return ExitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return m.Run(ctx, append(args[1:], "--help"), stdout, stderr)
		}
		m.printUsage(stdout, cmds)
		return ExitOK
	case "--version", "-version":
		args = []string{"version"}
	}
	cmd, rest := findCommand(cmds, args)
	if cmd == nil {
		if args[0] == "models" || args[0] == "trust" {
			fmt.Fprintf(stderr, "iotnode %s: expected a subcommand (%s)\nRun 'iotnode help' for usage.\n", args[0], map[string]string{"models": "pull", "trust": "show"}[args[0]])
			return ExitUsage
		}
		fmt.Fprintf(stderr, "iotnode: unknown command %q\nRun 'iotnode help' for usage.\n", args[0])
		return ExitUsage
	}
	fs := flag.NewFlagSet("iotnode "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	run := cmd.setup(fs)
	pos, err := parseArgs(fs, rest)
	if errors.Is(err, flag.ErrHelp) {
		m.printCommandUsage(stdout, cmd, fs)
		return ExitOK
	}
	if err == nil && cmd.args == "" {
		err = wantArgs(pos, 0, "")
	}
	if err == nil {
		err = run(ctx, m, pos)
	}
	return m.report(cmd, err)
}

// report prints err and maps it to an exit code.
func (m *Main) report(cmd *command, err error) int {
	var ue *usageError
	var ce *ConfigError
	var ee *exitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(m.stderr, "iotnode %s: %s\nRun 'iotnode %s --help' for usage.\n", cmd.name, ue.msg, cmd.name)
		return ExitUsage
	case errors.As(err, &ce):
		fmt.Fprintf(m.stderr, "iotnode %s: %s\n", cmd.name, ce.Error())
		return ExitUsage
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(m.stderr, "iotnode %s: %s\n", cmd.name, err)
		return ExitFailure
	}
}

func findCommand(cmds []*command, args []string) (*command, []string) {
	for _, c := range cmds {
		words := strings.Fields(c.name)
		if len(args) < len(words) {
			continue
		}
		match := true
		for i, w := range words {
			match = match && args[i] == w
		}
		if match {
			return c, args[len(words):]
		}
	}
	return nil, nil
}

func (m *Main) printUsage(w io.Writer, cmds []*command) {
	fmt.Fprintf(w, "iotnode connects sensors and actuators to an IoT cloud (Oracle IoT Cloud Service protocol).\n\nUsage:\n\n")
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-44s %s\n", c.synopsis(), c.summary)
	}
	fmt.Fprintf(w, "\nThe provisioning file's passphrase comes from the config's passphrase_file or\nthe environment variable %s, never from the command line.\nRun 'iotnode COMMAND --help' for the flags of a command; docs/config.md\ndescribes the config file.\n", EnvPassphrase)
}

func (c *command) synopsis() string {
	s := "iotnode " + c.name
	if c.args != "" {
		s += " " + c.args
	}
	return s
}

func (m *Main) printCommandUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s [flags]\n\n%s.\n", cmd.synopsis(), cmd.summary)
	if cmd.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.help))
	}
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if first {
			fmt.Fprintf(w, "\nFlags:\n")
			first = false
		}
		name := "--" + f.Name
		vname, usage := flag.UnquoteUsage(f)
		if !cli.IsBoolFlag(f) {
			if vname == "" || vname == "value" {
				vname = "VALUE"
			}
			name += " " + vname
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "  %-26s %s%s\n", name, usage, def)
	})
}

// argParser parses the arguments of every command. It refuses --passphrase
// with a reason, since a passphrase must never be on a command line.
var argParser = cli.ArgParser{
	DurationExample: "30s or 5m",
	Refuse: func(name string) error {
		if name == "passphrase" {
			return fmt.Errorf("there is no --passphrase flag: a passphrase on the command line is visible to every user of the machine; use --passphrase-file FILE or the environment variable %s", EnvPassphrase)
		}
		return nil
	},
}

// parseArgs parses flags anywhere among the arguments (see cli.ArgParser).
// It returns the positional arguments, flag.ErrHelp for -h/--help, or a
// usage error.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	pos, err := argParser.Parse(fs, args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return nil, usagef("%s", err)
	}
	return pos, err
}

// wantArgs checks the number of positional arguments.
func wantArgs(pos []string, n int, what string) error {
	switch {
	case len(pos) == n:
		return nil
	case n == 0:
		return usagef("unexpected argument %q", pos[0])
	case len(pos) < n:
		return usagef("missing %s", what)
	default:
		return usagef("unexpected argument %q (expected only %s)", pos[n], what)
	}
}

// configFlags are the flags of the commands that read the config: the
// file, and overrides of some keys (docs/config.md lists them).
type configFlags struct {
	file                    string
	dataDir                 string
	logLevel, logFormat     string
	metricsListen           string
	fs                      *flag.FlagSet
	overridesFromFlagsNames map[string]string // flag name -> config key
}

func (cf *configFlags) define(fs *flag.FlagSet, withMetrics bool) {
	cf.fs = fs
	fs.StringVar(&cf.file, "config", "", "the YAML config `FILE` (or env "+EnvConfig+")")
	fs.StringVar(&cf.dataDir, "data-dir", "", "override data_dir: the `DIR` for the outbox, models and state")
	fs.StringVar(&cf.logLevel, "log-level", "", "override logging.level: debug, info, warn or error")
	fs.StringVar(&cf.logFormat, "log-format", "", "override logging.format: text or json")
	cf.overridesFromFlagsNames = map[string]string{"data-dir": "data_dir", "log-level": "logging.level", "log-format": "logging.format"}
	if withMetrics {
		fs.StringVar(&cf.metricsListen, "metrics-listen", "", "override metrics.listen: serve Prometheus /metrics on `HOST:PORT`")
		cf.overridesFromFlagsNames["metrics-listen"] = "metrics.listen"
	}
}

// load reads and validates the config (file, environment, flags), and
// fills the defaults. Every problem comes back at once as a *ConfigError.
func (cf *configFlags) load(m *Main, drivers map[string]driver) (*Config, error) {
	file := cf.file
	if file == "" {
		file = m.Getenv(EnvConfig)
	}
	if file == "" {
		return nil, usagef("no config: give --config FILE or set %s (docs/config.md describes the file)", EnvConfig)
	}
	overrides := map[string]any{}
	cf.fs.Visit(func(f *flag.Flag) {
		if key, ok := cf.overridesFromFlagsNames[f.Name]; ok {
			overrides[key] = absIfPath(key, f.Value.String())
		}
	})
	c, err := loadConfig(file, m.Environ(), overrides)
	if c == nil {
		return nil, err // no file, or not YAML: nothing more to check
	}
	// Values of the wrong type were left at their zero value: checking them
	// again would only repeat the problem ("missing"), so the problems of
	// Validate under a key that failed to decode are left out.
	decoded := problemsOf(err)
	var later []string
	c.applyDefaults()
	if err := c.Validate(drivers, m.Getenv(EnvPassphrase)); err != nil {
		later = append(later, problemsOf(err)...)
	}
	if models, err := c.localModels(); err != nil {
		later = append(later, problemsOf(err)...)
	} else if err := c.validateModels(models); err != nil {
		later = append(later, problemsOf(err)...)
	}
	ps := decoded
	for _, p := range later {
		if !underAny(problemKey(p), decoded) {
			ps = append(ps, p)
		}
	}
	if len(ps) > 0 {
		return nil, &ConfigError{File: c.file, Problems: ps}
	}
	return c, nil
}

// problemKey is the key a problem names: the text before its first ": ".
func problemKey(p string) string {
	k, _, _ := strings.Cut(p, ": ")
	return k
}

// underAny reports whether key is, or is under, the key of one of ps.
func underAny(key string, ps []string) bool {
	for _, p := range ps {
		k := problemKey(p)
		if key == k || strings.HasPrefix(key, k+".") || strings.HasPrefix(key, k+"[") {
			return true
		}
	}
	return false
}

// problemsOf returns the problems of a *ConfigError, or err's text (none
// for nil).
func problemsOf(err error) []string {
	if err == nil {
		return nil
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		return ce.Problems
	}
	return []string{err.Error()}
}
