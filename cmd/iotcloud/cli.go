package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/cloud/launch"
	"github.com/iotnode/iotnode/cloud/pki"
	cmdcli "github.com/iotnode/iotnode/internal/cli" // "cli" is a test helper here
)

// Environment variables read by the client commands.
const (
	EnvServer     = "IOTCLOUD_SERVER"     // the cloud URL
	EnvToken      = "IOTCLOUD_TOKEN"      // the admin token itself
	EnvCA         = "IOTCLOUD_CA"         // a PEM file with the cloud's CA
	EnvData       = "IOTCLOUD_DATA"       // the data directory of a local iotcloud serve
	EnvPassphrase = "IOTCLOUD_PASSPHRASE" // the provisioning file passphrase
)

// Main runs one iotcloud command. Build it with NewMain, then change fields
// (tests do) before calling Run. One Main runs one command at a time: Run is
// not safe for concurrent use on the same Main.
type Main struct {
	// Getenv reads the environment (os.Getenv).
	Getenv func(string) string
	// Stdin is read for a FILE argument of "-" (os.Stdin).
	Stdin io.Reader
	// Now is the clock (time.Now).
	Now func() time.Time

	// serveOptions, when set, adjusts the options of serve (tests lower the
	// KDF cost); onServe is called once serve is running.
	serveOptions func(*launch.Options)
	onServe      func(*launch.Instance)

	stdout, stderr io.Writer
}

// NewMain returns a Main that uses the process environment.
func NewMain() *Main {
	return &Main{Getenv: os.Getenv, Stdin: os.Stdin, Now: time.Now}
}

// usageError is a command line that cannot run: Run prints it with a pointer
// to the command's help and exits 2.
type usageError struct {
	cmd string // "device set"
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, args...)}
}

// exitError carries an exit status for a failure that was already reported
// (such as a request that ended FAILED).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// command is one leaf of the command tree.
type command struct {
	name    string // "device set"
	args    string // positional arguments, "ID URN ACTION [ARG]": Run checks their number
	flags   string // the main flags, for the synopsis: "--model URN [--wait]"
	summary string
	help    string // more text after the flags, may be empty
	conn    bool   // takes the connection flags and --json
	setup   func(fs *flag.FlagSet) func(ctx context.Context, m *Main, c *call) error
}

// call is what a command's run function gets.
type call struct {
	cmd    *command
	client *client.Client // the client built by Main.client, if any
	pos    []string
	json   bool
	conn   connFlags
}

func (m *Main) commands() []*command {
	return []*command{
		serveCommand(),
		modelAddCommand(), modelListCommand(), modelShowCommand(),
		policyAddCommand(), policyAssignCommand(), policyRmCommand(), policyListCommand(), policyShowCommand(),
		deviceRegisterCommand(), deviceProvisionCommand(), deviceListCommand(), deviceShowCommand(),
		deviceAttributesCommand(), deviceSetCommand(), deviceCallCommand(),
		messagesCommand(), requestShowCommand(), versionCommand(),
	}
}

// Run runs the command named by args (without the program name), writing
// its output to stdout and diagnostics to stderr, and returns the exit code:
// 0 success, 1 failure, 2 usage error. It blocks until the command is done;
// serve and messages --follow run until ctx ends.
func (m *Main) Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	m.stdout, m.stderr = stdout, stderr
	if m.Getenv == nil {
		m.Getenv = func(string) string { return "" }
	}
	if m.Now == nil {
		m.Now = time.Now
	}
	if m.Stdin == nil {
		m.Stdin = strings.NewReader("")
	}
	cmds := m.commands()
	if len(args) == 0 {
		m.printTopUsage(stderr, cmds)
		return 2
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		if len(args) > 1 {
			return m.Run(ctx, append(args[1:], "--help"), stdout, stderr)
		}
		m.printTopUsage(stdout, cmds)
		return 0
	}
	cmd, rest := findCommand(cmds, args)
	if cmd == nil {
		group := groupOf(cmds, args[0])
		if len(group) > 0 {
			if len(args) > 1 && (args[1] == "-h" || args[1] == "--help" || args[1] == "-help") {
				m.printTopUsage(stdout, cmds)
				return 0
			}
			if len(args) == 1 || strings.HasPrefix(args[1], "-") {
				fmt.Fprintf(stderr, "iotcloud %s: expected a subcommand: %s\n", args[0], strings.Join(group, ", "))
			} else {
				fmt.Fprintf(stderr, "iotcloud %s: unknown subcommand %q (expected %s)\n", args[0], args[1], strings.Join(group, ", "))
			}
			fmt.Fprintf(stderr, "Run 'iotcloud help' for usage.\n")
			return 2
		}
		if strings.HasPrefix(args[0], "-") {
			fmt.Fprintf(stderr, "iotcloud: flags go after the command, as in 'iotcloud device list %s'\nRun 'iotcloud help' for usage.\n", args[0])
			return 2
		}
		fmt.Fprintf(stderr, "iotcloud: unknown command %q\nRun 'iotcloud help' for usage.\n", args[0])
		return 2
	}
	err := m.runCommand(ctx, cmd, rest)
	return m.report(cmd, err)
}

// report prints err and maps it to an exit code.
func (m *Main) report(cmd *command, err error) int {
	var ue *usageError
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(m.stderr, "iotcloud %s: %s\nRun 'iotcloud %s --help' for usage.\n", cmd.name, ue.msg, cmd.name)
		return 2
	case errors.As(err, &ee):
		if ee.msg != "" {
			fmt.Fprintf(m.stderr, "iotcloud %s: %s\n", cmd.name, ee.msg)
		}
		return ee.code
	default:
		fmt.Fprintf(m.stderr, "iotcloud %s: %s\n", cmd.name, err)
		return 1
	}
}

func findCommand(cmds []*command, args []string) (*command, []string) {
	for _, c := range cmds {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && slicesEqual(args[:len(words)], words) {
			return c, args[len(words):]
		}
	}
	return nil, nil
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// groupOf lists the subcommands of a group word such as "device".
func groupOf(cmds []*command, word string) []string {
	var subs []string
	for _, c := range cmds {
		if w := strings.Fields(c.name); len(w) == 2 && w[0] == word {
			subs = append(subs, w[1])
		}
	}
	return subs
}

func (m *Main) printTopUsage(w io.Writer, cmds []*command) {
	fmt.Fprintf(w, "iotcloud is a self-hostable IoT cloud and the client of its enterprise API.\n\nUsage:\n\n")
	for _, c := range cmds {
		fmt.Fprintf(w, "  %s\n        %s\n", c.synopsis(false), c.summary)
	}
	fmt.Fprintf(w, `
Client commands find the cloud from --data DIR (the data directory of a local
iotcloud serve: DIR/url, DIR/admin.token, DIR/ca.pem), or from --server URL,
--token-file FILE and --ca FILE, or from the environment:
%s, %s, %s, %s.
Add --json for output meant for scripts.
Run 'iotcloud COMMAND --help' for the flags of a command.
`, EnvServer, EnvToken, EnvCA, EnvData)
}

// connFlags locate the cloud for client commands.
type connFlags struct {
	data, server, tokenFile, ca string
}

func (m *Main) runCommand(ctx context.Context, cmd *command, args []string) error {
	fs := flag.NewFlagSet("iotcloud "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	run := cmd.setup(fs)
	c := &call{cmd: cmd}
	if cmd.conn {
		fs.StringVar(&c.conn.data, "data", "", "data directory `DIR` of a local iotcloud serve (reads url, admin.token, ca.pem); env "+EnvData)
		fs.StringVar(&c.conn.server, "server", "", "cloud `URL`, such as https://127.0.0.1:8443; env "+EnvServer)
		fs.StringVar(&c.conn.tokenFile, "token-file", "", "`FILE` holding the admin token; env "+EnvToken+" holds the token itself")
		fs.StringVar(&c.conn.ca, "ca", "", "PEM `FILE` with the cloud's CA certificate; env "+EnvCA)
		fs.BoolVar(&c.json, "json", false, "print JSON for scripts instead of tables")
	}
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		m.printCommandUsage(m.stdout, cmd, fs)
		return flag.ErrHelp
	}
	if err != nil {
		return usagef(cmd.name, "%s", err)
	}
	c.pos = pos
	if err := c.wantArgs(cmd.argRange()); err != nil {
		return err
	}
	defer func() {
		if c.client != nil {
			c.client.CloseIdleConnections() // in-process callers (tests) keep running
		}
	}()
	return run(ctx, m, c)
}

// synopsis is the one-line usage of the command.
func (c *command) synopsis(withConn bool) string {
	line := "iotcloud " + c.name
	for _, part := range []string{c.args, c.flags} {
		if part != "" {
			line += " " + part
		}
	}
	if c.conn && withConn {
		line += " [--data DIR | --server URL --token-file FILE] [--json]"
	}
	return line
}

// connFlagNames are the flags every client command takes.
var connFlagNames = map[string]bool{"data": true, "server": true, "token-file": true, "ca": true, "json": true}

func (m *Main) printCommandUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s\n\n%s.\n", cmd.synopsis(true), cmd.summary)
	if cmd.help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.help))
	}
	var own, conn []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if cmd.conn && connFlagNames[f.Name] {
			conn = append(conn, f)
		} else {
			own = append(own, f)
		}
	})
	for _, group := range []struct {
		title string
		flags []*flag.Flag
	}{{"Flags", own}, {"Connection flags", conn}} {
		if len(group.flags) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", group.title)
		for _, f := range group.flags {
			name := "--" + f.Name
			vname, usage := flag.UnquoteUsage(f)
			if !cmdcli.IsBoolFlag(f) {
				if vname == "" || vname == "value" || vname == "string" {
					vname = "VALUE"
				}
				name += " " + vname
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(w, "  %-28s %s%s\n", name, usage, def)
		}
	}
}

// argParser parses the arguments of every command: a negative number
// such as -5 is a positional argument (device set ... -5).
var argParser = cmdcli.ArgParser{NumbersArePositional: true, DurationExample: "30s, 5m or 2h"}

// parseArgs parses flags anywhere among the arguments (see cmdcli.ArgParser).
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	return argParser.Parse(fs, args)
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// argRange is how many positional arguments the command takes, read from
// its synopsis: every word of args, the ones in brackets optional.
func (c *command) argRange() (min, max int) {
	for _, w := range strings.Fields(c.args) {
		if !strings.HasPrefix(w, "[") {
			min++
		}
		max++
	}
	return min, max
}

// wantArgs checks the number of positional arguments.
func (c *call) wantArgs(min, max int) error {
	n := len(c.pos)
	if n >= min && n <= max {
		return nil
	}
	plural := func(k int) string {
		if k == 1 {
			return "argument"
		}
		return "arguments"
	}
	var want string
	switch {
	case min == max && min == 0:
		return usagef(c.cmd.name, "unexpected argument %q", c.pos[0])
	case min == max:
		want = fmt.Sprintf("expected %d %s (%s)", min, plural(min), c.cmd.args)
	default:
		want = fmt.Sprintf("expected %d to %d arguments (%s)", min, max, c.cmd.args)
	}
	return usagef(c.cmd.name, "%s, got %d", want, n)
}

// client builds an enterprise API client from the connection flags, the
// environment and the data directory, in that order of precedence.
func (m *Main) client(c *call) (*client.Client, error) {
	name := c.cmd.name
	cf := c.conn
	if cf.data == "" {
		cf.data = m.Getenv(EnvData)
	}
	server := firstOf(cf.server, m.Getenv(EnvServer))
	if server == "" && cf.data != "" {
		b, err := os.ReadFile(filepath.Join(cf.data, launch.URLFile))
		if errors.Is(err, fs.ErrNotExist) {
			if _, serr := os.Stat(cf.data); serr != nil {
				return nil, fmt.Errorf("data directory %s: %w", cf.data, unwrapPathErr(serr))
			}
			return nil, fmt.Errorf("%s not found: has 'iotcloud serve --data %s' been started?", filepath.Join(cf.data, launch.URLFile), cf.data)
		}
		if err != nil {
			return nil, fmt.Errorf("read cloud url: %w", err)
		}
		server = strings.TrimSpace(string(b))
	}
	if server == "" {
		return nil, usagef(name, "no cloud given: use --data DIR (the data directory of iotcloud serve), or --server URL with --token-file FILE, or set %s and %s", EnvServer, EnvToken)
	}

	var token string
	switch {
	case cf.tokenFile != "":
		b, err := os.ReadFile(cf.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read admin token: %w", err)
		}
		token = string(b)
	case m.Getenv(EnvToken) != "":
		token = m.Getenv(EnvToken)
	case cf.data != "":
		b, err := os.ReadFile(filepath.Join(cf.data, launch.TokenFile))
		if err != nil {
			return nil, fmt.Errorf("read admin token: %w", err)
		}
		token = string(b)
	default:
		return nil, usagef(name, "no admin token given: use --token-file FILE (the admin.token of the cloud's data directory), --data DIR, or set %s", EnvToken)
	}
	if strings.TrimSpace(token) == "" {
		return nil, errors.New("the admin token is empty: expected the content of the cloud's admin.token file")
	}

	caFile := firstOf(cf.ca, m.Getenv(EnvCA))
	if caFile == "" && cf.data != "" {
		p := filepath.Join(cf.data, pki.CACertFile)
		if _, err := os.Stat(p); err == nil {
			caFile = p
		}
	}
	var opts []client.Option
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA certificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA certificate %s: no PEM certificate found (expected the cloud's ca.pem)", caFile)
		}
		opts = append(opts, client.WithCAPool(pool))
	}
	cl, err := client.New(server, token, opts...)
	if err != nil {
		return nil, err
	}
	c.client = cl
	return cl, nil
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// explain adds a hint to common connection failures.
func explain(cl *client.Client, err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w (is iotcloud serve running at %s?)", err, cl.BaseURL())
	case errors.As(err, new(x509.UnknownAuthorityError)):
		return fmt.Errorf("%w (give the cloud's CA certificate with --ca FILE or --data DIR)", err)
	case errors.As(err, new(x509.HostnameError)):
		return fmt.Errorf("%w (restart iotcloud serve with --hostname for this name, or use a name the certificate has)", err)
	}
	return err
}

// printJSON writes v as indented JSON.
func (m *Main) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	b = append(b, '\n')
	_, err = m.stdout.Write(b)
	return err
}

// show is the shape of the commands that fetch one thing and print it: it
// connects, calls get, and prints what get returned as JSON with --json or
// with table otherwise. Errors of get are explained (see explain).
func show[T any](ctx context.Context, m *Main, c *call, get func(context.Context, *client.Client) (T, error), table func(T) error) error {
	cl, err := m.client(c)
	if err != nil {
		return err
	}
	v, err := get(ctx, cl)
	if err != nil {
		return explain(cl, err)
	}
	if c.json {
		return m.printJSON(v)
	}
	return table(v)
}

// readInput reads a FILE argument; "-" is standard input.
func (m *Main) readInput(name string) ([]byte, error) {
	if name == "-" {
		b, err := io.ReadAll(io.LimitReader(m.Stdin, 16<<20))
		if err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		return b, nil
	}
	return os.ReadFile(name)
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// msTime formats epoch milliseconds for people ("-" for zero).
func msTime(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}
