package plugins

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/rpc"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/plugins/internal/wire"
	"github.com/iotnode/iotnode/ports"
)

// DefaultStartTimeout is how long Open waits for a plugin's handshake when
// Options.StartTimeout is 0.
const DefaultStartTimeout = 10 * time.Second

// closeTimeout bounds the plugin's Close at Client.Close; the process is
// killed after it, done or not.
const closeTimeout = 5 * time.Second

// Sentinel errors of a Client's calls.
var (
	// ErrExited: the plugin process has exited (crashed, or was killed
	// after its connection broke). The Client is of no further use: Open
	// the plugin again. The error's text is "plugin PATH exited: " and the
	// exit status.
	ErrExited = errors.New("plugin exited")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("plugin closed")
)

// Options are the host's settings of a plugin; the zero Options are usable.
type Options struct {
	// Logger gets go-plugin's messages (at debug level) and the plugin's
	// standard error and output (see Open); nil discards them.
	Logger *slog.Logger
	// StartTimeout bounds the start, from running the executable to its
	// handshake; 0 means DefaultStartTimeout. A deadline of Open's context
	// that comes sooner wins.
	StartTimeout time.Duration
	// Checksum is the SHA-256 of the executable: Open refuses to run a file
	// whose checksum differs. nil runs it unchecked.
	Checksum []byte
}

// Client is a running plugin: a ports.Sensor and a ports.Actuator. It is
// safe for concurrent use (the plugin runs the calls one at a time).
//
// A call returns the plugin's error with its text unchanged; an error
// wrapping ErrExited when the process has exited; an error wrapping the
// context's error when the context ended first (the plugin's own context
// ends at the same deadline). The owner calls Close, which stops the
// process.
type Client struct {
	path    string
	timeout time.Duration // of the start
	desc    Description
	pc      *goplugin.Client
	cmd     *exec.Cmd
	rpc     *rpc.Client
	// lifeline is the write end of the pipe the plugin watches (Serve):
	// closed when the Client is done, or when the node's process ends.
	lifeline *os.File

	closed atomic.Bool // Close was called
	dead   atomic.Bool // kill ran
	kill   func()      // stops the process and waits for go-plugin; once
	close  func() error
}

// Open runs the plugin executable at path with args, checks its checksum
// first when opts.Checksum is set, performs the handshake and asks for its
// description. The plugin gets the process's environment without the
// variables that start with IOTNODE_, which may hold secrets. It blocks until the plugin is ready, fails, or ctx ends or
// opts.StartTimeout passes.
//
// The plugin's standard error goes to opts.Logger line by line: lines that
// go-plugin's hclog wrote as JSON with their level, other lines at info
// (error for a panic); what it writes to os.Stdout or os.Stderr after Serve
// at info, with the attribute stream.
//
// Errors name the executable: "start plugin PATH: ..." with what went wrong
// (not executable, exited before the handshake with its status, no
// handshake within the timeout, another protocol version), or "plugin PATH:
// checksum mismatch: ...". Nothing is left running after an error.
func Open(ctx context.Context, path string, args []string, opts Options) (*Client, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	timeout := cmp.Or(opts.StartTimeout, DefaultStartTimeout)
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(min(timeout, time.Until(dl)), time.Millisecond)
	}
	// The process outlives ctx: ctx bounds the start only (AfterFunc below).
	procCtx, cancelProc := context.WithCancel(context.Background())
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		cancelProc()
		return nil, fmt.Errorf("start plugin %s: %w", path, err)
	}
	cmd := exec.CommandContext(procCtx, path, args...)
	cmd.ExtraFiles = []*os.File{lifeR} // file descriptor 3
	// The node's environment holds secrets (IOTNODE_PASSPHRASE): a
	// vendor's code gets the rest of it only.
	cmd.Env = []string{lifelineEnv + "=3"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "IOTNODE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cfg := &goplugin.ClientConfig{
		HandshakeConfig:  handshake(),
		Plugins:          goplugin.PluginSet{pluginName: &netrpcPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolNetRPC},
		StartTimeout:     timeout,
		Logger:           &hclogger{log: logger},
		AutoMTLS:         true,
		SkipHostEnv:      true, // cmd.Env has it
		SyncStdout:       &lineLogger{log: logger, stream: "stdout"},
		SyncStderr:       &lineLogger{log: logger, stream: "stderr"},
	}
	if len(opts.Checksum) > 0 {
		cfg.SecureConfig = &goplugin.SecureConfig{Checksum: opts.Checksum, Hash: sha256.New()}
	}
	c := &Client{path: path, timeout: timeout, pc: goplugin.NewClient(cfg), cmd: cmd, lifeline: lifeW}
	c.kill = sync.OnceFunc(func() {
		c.pc.Kill() // asks go-plugin to quit, kills after 2 s; waits for its goroutines
		_ = lifeW.Close()
		cancelProc()
		c.dead.Store(true)
	})
	c.close = sync.OnceValue(c.doClose)

	stop := context.AfterFunc(ctx, cancelProc)
	err = c.start(ctx)
	_ = lifeR.Close() // the child has its own
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		c.kill()
		return nil, c.startError(ctx, err, opts.Checksum)
	}
	return c, nil
}

// start connects to the started plugin and asks for its description.
func (c *Client) start(ctx context.Context) error {
	proto, err := c.pc.Client()
	if err != nil {
		return err
	}
	raw, err := proto.Dispense(pluginName)
	if err != nil {
		return err
	}
	c.rpc = raw.(*rpc.Client)
	// Describe is the plugin's code: it gets the start's time again.
	dctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var d wire.Description
	if err := c.do(dctx, "Plugin.Describe", wire.Empty{}, &d); err != nil {
		if ctx.Err() == nil && dctx.Err() != nil {
			return &describeError{fmt.Errorf("none within %s", c.timeout)}
		}
		return fmt.Errorf("describe: %w", err)
	}
	c.desc = Description{Name: d.Name, Version: d.Version, Readings: d.Readings, Outputs: d.Outputs}
	if err := c.desc.check(); err != nil {
		return &describeError{err}
	}
	return nil
}

// describeError is a plugin's description that is not usable.
type describeError struct{ err error }

func (e *describeError) Error() string { return "its description: " + e.err.Error() }

// unrecognized starts go-plugin's error for a plugin that printed
// something else than the handshake.
const unrecognized = "Unrecognized remote plugin message: "

// startError makes err, which Open met, say what went wrong in the terms
// of a plugin's user. The process has been killed and waited for.
func (c *Client) startError(ctx context.Context, err error, checksum []byte) error {
	var se rpc.ServerError
	var de *describeError
	switch state := c.cmd.ProcessState; {
	case errors.Is(err, goplugin.ErrChecksumsDoNotMatch):
		sum := "unreadable"
		if f, ferr := os.Open(c.path); ferr == nil {
			h := sha256.New()
			if _, ferr := io.Copy(h, f); ferr == nil {
				sum = fmt.Sprintf("%x", h.Sum(nil))
			}
			_ = f.Close()
		}
		return fmt.Errorf("plugin %s: checksum mismatch: its SHA-256 is %s, expected %x", c.path, sum, checksum)
	case ctx.Err() != nil:
		return fmt.Errorf("start plugin %s: %w", c.path, ctx.Err())
	case errors.As(err, &de):
		return fmt.Errorf("start plugin %s: %w", c.path, err)
	case state != nil && state.Exited():
		// It exited by itself (go-plugin kills with a signal).
		return fmt.Errorf("start plugin %s: it exited during the start (%s); its standard error is in the log", c.path, state)
	case errors.As(err, &se):
		return fmt.Errorf("start plugin %s: %s", c.path, string(se))
	case strings.HasPrefix(err.Error(), unrecognized):
		line, _, _ := strings.Cut(strings.TrimPrefix(err.Error(), unrecognized), "\n")
		return fmt.Errorf("start plugin %s: not an iotnode plugin: it printed %q instead of the handshake", c.path, line)
	case strings.HasPrefix(err.Error(), "timeout while waiting for plugin to start"):
		return fmt.Errorf("start plugin %s: no handshake within %s (is it an iotnode plugin, calling plugins.Serve?)", c.path, c.timeout.Round(time.Millisecond))
	}
	// go-plugin's errors span lines.
	return fmt.Errorf("start plugin %s: %s", c.path, strings.Join(strings.Fields(err.Error()), " "))
}

// check checks a plugin's description; the error lists every problem.
func (d Description) check() error {
	var problems []string
	if d.Name == "" {
		problems = append(problems, "no name")
	}
	for _, list := range []struct {
		kind  string
		names []string
	}{{"reading", d.Readings}, {"output", d.Outputs}} {
		for i, name := range list.names {
			switch {
			case name == "":
				problems = append(problems, fmt.Sprintf("%s %d has no name", list.kind, i))
			case slices.Contains(list.names[:i], name):
				problems = append(problems, fmt.Sprintf("%s %q is listed twice", list.kind, name))
			}
		}
	}
	if len(d.Readings) == 0 && len(d.Outputs) == 0 {
		problems = append(problems, "no readings and no outputs")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Description returns what the plugin said of itself at Open.
func (c *Client) Description() Description {
	d := c.desc
	d.Readings, d.Outputs = slices.Clone(d.Readings), slices.Clone(d.Outputs)
	return d
}

// Readings returns the names of the plugin's readings.
func (c *Client) Readings() []string { return slices.Clone(c.desc.Readings) }

// Outputs returns the names of the plugin's outputs.
func (c *Client) Outputs() []string { return slices.Clone(c.desc.Outputs) }

// Err returns nil while the plugin runs; an error wrapping ErrExited, such
// as "plugin PATH exited: exit status 3", once its process has exited (or
// was killed after its connection broke): then Close it and Open it again;
// an error wrapping ErrClosed after Close.
func (c *Client) Err() error {
	switch {
	case c.closed.Load():
		return fmt.Errorf("plugin %s: %w", c.path, ErrClosed)
	case c.exited():
		c.kill() // reaps it, so that its exit status is known
		return c.exitError()
	}
	return nil
}

// exited reports whether the process has exited or was killed.
func (c *Client) exited() bool { return c.dead.Load() || c.pc.Exited() }

// Read reads the plugin's sensor (ports.Sensor).
func (c *Client) Read(ctx context.Context) ([]ports.Reading, error) {
	var reply wire.ReadReply
	if err := c.call(ctx, "read", "Plugin.Read", wire.ReadArgs{Timeout: timeLeft(ctx)}, &reply); err != nil {
		return nil, err
	}
	if len(reply.Readings) == 0 {
		return nil, fmt.Errorf("plugin %s: read: no readings (expected at least one, or an error)", c.path)
	}
	out := make([]ports.Reading, len(reply.Readings))
	for i, r := range reply.Readings {
		var err error
		if out[i], err = wire.DecodeReading(r); err != nil {
			return nil, fmt.Errorf("plugin %s: read: %w", c.path, err)
		}
	}
	return out, nil
}

// Actuate drives one of the plugin's outputs (ports.Actuator). An output
// the plugin did not describe is refused without asking it.
func (c *Client) Actuate(ctx context.Context, output string, args map[string]model.Value) error {
	if !slices.Contains(c.desc.Outputs, output) {
		return fmt.Errorf("plugin %s has no output %q (it has: %s)", c.path, output, orNone(c.desc.Outputs))
	}
	wargs, err := wire.EncodeArgs(args)
	if err != nil {
		return fmt.Errorf("plugin %s: actuate %s: %w", c.path, output, err)
	}
	return c.call(ctx, "actuate "+output, "Plugin.Actuate", wire.ActuateArgs{Timeout: timeLeft(ctx), Output: output, Args: wargs}, &wire.Empty{})
}

// Close asks the plugin to close, waits for it at most 5 s, then stops the
// process (go-plugin waits 2 s more for it to exit before killing it). It
// returns the plugin's close error. Later calls return the first's result.
func (c *Client) Close() error { return c.close() }

func (c *Client) doClose() error {
	c.closed.Store(true)
	var err error
	if !c.exited() {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		var se rpc.ServerError
		if e := c.do(ctx, "Plugin.Close", wire.Empty{}, &wire.Empty{}); errors.As(e, &se) {
			err = fmt.Errorf("plugin %s: close: %s", c.path, string(se))
		}
		cancel()
	}
	c.kill()
	return err
}

// call makes one call and turns its error into the Client's contract.
func (c *Client) call(ctx context.Context, op, method string, args, reply any) error {
	if c.closed.Load() {
		return fmt.Errorf("plugin %s: %s: %w", c.path, op, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("plugin %s: %s: %w", c.path, op, err)
	}
	if c.exited() {
		c.kill()
		return c.exitError()
	}
	err := c.do(ctx, method, args, reply)
	var se rpc.ServerError
	switch {
	case err == nil:
		return nil
	case expired(ctx) != nil && (errors.Is(err, expired(ctx)) || errors.As(err, &se)):
		// The plugin's context ended with the host's: whichever came
		// first, the call ran out of time.
		return fmt.Errorf("plugin %s: %s: %w", c.path, op, expired(ctx))
	case errors.As(err, &se):
		return errors.New(string(se)) // the plugin's error, as it was
	case c.closed.Load():
		return fmt.Errorf("plugin %s: %s: %w", c.path, op, ErrClosed)
	}
	// The connection broke: the process died, or is of no use any more.
	c.kill()
	return c.exitError()
}

// do makes one call, returning when it does or when ctx ends.
func (c *Client) do(ctx context.Context, method string, args, reply any) error {
	call := c.rpc.Go(method, args, reply, make(chan *rpc.Call, 1))
	select {
	case <-call.Done:
		return call.Error
	case <-ctx.Done():
		return ctx.Err() // the plugin's context ends at the same deadline
	}
}

// exitError is the error of calls after the process exited; kill has run.
func (c *Client) exitError() error {
	state := "its exit status is unknown"
	if ps := c.cmd.ProcessState; ps != nil {
		state = ps.String()
	}
	return &exitError{path: c.path, state: state}
}

type exitError struct{ path, state string }

func (e *exitError) Error() string        { return "plugin " + e.path + " exited: " + e.state }
func (e *exitError) Is(target error) bool { return target == ErrExited }

// expired is ctx's error, or context.DeadlineExceeded once its deadline
// has passed even if its timer has not fired yet: the plugin's context
// may end, and its answer arrive, first.
func expired(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// timeLeft is what is left of ctx's deadline, for the plugin's context;
// 0 when there is none.
func timeLeft(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Nanosecond)
	}
	return 0
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

var (
	_ ports.Sensor   = (*Client)(nil)
	_ ports.Actuator = (*Client)(nil)
)
