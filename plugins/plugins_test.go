package plugins

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/ports"
)

// testPlugin is the executable of ./internal/testplugin, built by TestMain.
var testPlugin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "plugins-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testPlugin = filepath.Join(dir, "testplugin")
	out, err := exec.Command("go", "build", "-o", testPlugin, "./internal/testplugin").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build the test plugin: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// logBuffer collects what a logger writes, for tests; safe for concurrent
// use.
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

// waitLog waits until the log holds want (logging is asynchronous).
func (b *logBuffer) waitLog(t *testing.T, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(b.String(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("the log has no %q:\n%s", want, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newLog(level slog.Level) (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		}})), b
}

// open opens the test plugin and closes it at the end of the test.
func open(t *testing.T, args []string, opts Options) *Client {
	t.Helper()
	c, err := Open(t.Context(), testPlugin, args, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func read(t *testing.T, c *Client) map[string]any {
	t.Helper()
	rs, err := c.Read(t.Context())
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	out := map[string]any{}
	for _, r := range rs {
		out[r.Name] = r.Value
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	c := open(t, []string{"-version", "2.1.0"}, Options{})
	if err := c.Err(); err != nil {
		t.Errorf("Err: %v", err)
	}
	want := Description{Name: "testplugin", Version: "2.1.0",
		Readings: []string{"bool", "int", "float", "string", "time", "echo", "slept"},
		Outputs:  []string{"echo", "env", "fail", "sleep", "stderr", "bad_read", "panic", "exit"}}
	if d := c.Description(); !reflect.DeepEqual(d, want) {
		t.Errorf("description %+v, want %+v", d, want)
	}
	if !reflect.DeepEqual(c.Readings(), want.Readings) || !reflect.DeepEqual(c.Outputs(), want.Outputs) {
		t.Errorf("readings %q, outputs %q", c.Readings(), c.Outputs())
	}

	// Every reading type, with its Go type.
	got := read(t, c)
	wantReadings := map[string]any{"bool": true, "int": int64(-42), "float": 3.25, "string": "héllo, wörld",
		"time": time.Date(2025, 1, 2, 3, 4, 5, 678_000_000, time.UTC), "echo": "none", "slept": "never"}
	if !reflect.DeepEqual(got, wantReadings) {
		t.Errorf("readings\n%#v\nwant\n%#v", got, wantReadings)
	}

	// Every model type as an argument, back as the plugin saw it.
	num, _ := model.Number(-0.5)
	str, _ := model.String("ünïcode \"quoted\"")
	uri, _ := model.URI("https://example.com/a?b=c")
	args := map[string]model.Value{
		"b": model.Boolean(true), "d": model.DateTime(time.Date(2024, 2, 29, 23, 59, 59, 999_000_000, time.UTC)),
		"i": model.Integer(1 << 40), "n": num, "s": str, "u": uri,
	}
	if err := c.Actuate(t.Context(), "echo", args); err != nil {
		t.Fatalf("actuate: %v", err)
	}
	const echo = `b=BOOLEAN:true d=DATETIME:2024-02-29T23:59:59.999Z i=INTEGER:1099511627776 n=NUMBER:-0.5 ` +
		`s=STRING:"ünïcode \"quoted\"" u=URI:"https://example.com/a?b=c"`
	if got := read(t, c)["echo"]; got != echo {
		t.Errorf("echo %q\nwant %q", got, echo)
	}

	if err := c.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if err := c.Err(); !errors.Is(err, ErrClosed) {
		t.Errorf("Err after close: %v", err)
	}
	if _, err := c.Read(t.Context()); !errors.Is(err, ErrClosed) || err.Error() != "plugin "+testPlugin+": read: plugin closed" {
		t.Errorf("read after close: %v", err)
	}
}

func TestErrors(t *testing.T) {
	c := open(t, nil, Options{})
	reason, _ := model.String("relay stuck: it needs service")
	tests := []struct {
		name, output string
		args         map[string]model.Value
		want         string
	}{
		{"the plugin's error keeps its text", "fail", map[string]model.Value{"reason": reason}, "relay stuck: it needs service"},
		{"an output the plugin has not", "fan", nil,
			`plugin ` + testPlugin + ` has no output "fan" (it has: echo, env, fail, sleep, stderr, bad_read, panic, exit)`},
		{"an invalid value", "echo", map[string]model.Value{"x": {}},
			`plugin ` + testPlugin + `: actuate echo: argument "x": no value (expected a BOOLEAN, INTEGER, NUMBER, STRING, URI or DATETIME)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Actuate(t.Context(), tt.output, tt.args)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error %v\nwant  %s", err, tt.want)
			}
		})
	}
	t.Run("a reading of a type the contract does not allow", func(t *testing.T) {
		if err := c.Actuate(t.Context(), "bad_read", nil); err != nil {
			t.Fatal(err)
		}
		_, err := c.Read(t.Context())
		const want = `the plugin returned reading "bad": a value of type int (expected bool, int64, float64, string or time.Time)`
		if err == nil || err.Error() != want {
			t.Errorf("error %v\nwant  %s", err, want)
		}
	})
}

// The context's deadline becomes the plugin's: both sides give up.
func TestContextTimeout(t *testing.T) {
	c := open(t, nil, Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Actuate(ctx, "sleep", nil)
	if !errors.Is(err, context.DeadlineExceeded) || err.Error() != "plugin "+testPlugin+": actuate sleep: context deadline exceeded" {
		t.Errorf("error %v, want the context's", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("returned after %s", d)
	}
	// The plugin runs one call at a time: this read waits for the sleep
	// to end, at the deadline the plugin got.
	if got := read(t, c)["slept"]; got != "context deadline exceeded (deadline: true)" {
		t.Errorf("the plugin slept until %q", got)
	}
	if _, err := c.Read(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("read with an ended context: %v", err)
	}
}

// A crashed plugin makes clear errors; Open starts it again.
func TestCrash(t *testing.T) {
	log, logs := newLog(slog.LevelInfo)
	for _, tt := range []struct {
		name, output string
		args         map[string]model.Value
		status       string
		log          string
	}{
		{"exit", "exit", map[string]model.Value{"code": model.Integer(3)}, "exit status 3", ""},
		{"panic", "panic", nil, "exit status 2", `level=ERROR msg="panic: boom"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := open(t, nil, Options{Logger: log})
			want := "plugin " + testPlugin + " exited: " + tt.status
			err := c.Actuate(t.Context(), tt.output, tt.args)
			if !errors.Is(err, ErrExited) || err.Error() != want {
				t.Errorf("actuate: %v\nwant %s", err, want)
			}
			if err := c.Err(); !errors.Is(err, ErrExited) || err.Error() != want {
				t.Errorf("Err: %v\nwant %s", err, want)
			}
			if _, err := c.Read(t.Context()); !errors.Is(err, ErrExited) || err.Error() != want {
				t.Errorf("read: %v\nwant %s", err, want)
			}
			if err := c.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			if tt.log != "" {
				logs.waitLog(t, tt.log)
			}
			// go-plugin's own messages go at debug level: the error says it.
			if strings.Contains(logs.String(), "plugin process exited") {
				t.Errorf("go-plugin's messages above debug level:\n%s", logs)
			}
			again := open(t, nil, Options{Logger: log})
			if got := read(t, again)["int"]; got != int64(-42) {
				t.Errorf("after a restart: %v", got)
			}
		})
	}
}

// The plugin gets the node's environment but its IOTNODE_ variables.
func TestEnvironment(t *testing.T) {
	t.Setenv("IOTNODE_PASSPHRASE", "correct horse")
	t.Setenv("ACME_BUS", "1")
	c := open(t, nil, Options{})
	name := model.Boolean(true) // the names matter
	if err := c.Actuate(t.Context(), "env", map[string]model.Value{"IOTNODE_PASSPHRASE": name, "ACME_BUS": name}); err != nil {
		t.Fatal(err)
	}
	if got, want := read(t, c)["echo"], `ACME_BUS="1" (true) IOTNODE_PASSPHRASE="" (false)`; got != want {
		t.Errorf("environment %s, want %s", got, want)
	}
}

// When the host is gone without closing, the plugin exits by itself.
func TestLifeline(t *testing.T) {
	c := open(t, nil, Options{})
	c.lifeline.Close()
	for deadline := time.Now().Add(10 * time.Second); !c.pc.Exited(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the plugin still runs")
		}
	}
	if _, err := c.Read(t.Context()); err == nil || err.Error() != "plugin "+testPlugin+" exited: exit status 0" {
		t.Errorf("read: %v", err)
	}
}

func TestChecksum(t *testing.T) {
	data, err := os.ReadFile(testPlugin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	open(t, nil, Options{Checksum: sum[:]})

	wrong := sha256.Sum256([]byte("another executable"))
	_, err = Open(t.Context(), testPlugin, nil, Options{Checksum: wrong[:]})
	want := fmt.Sprintf("plugin %s: checksum mismatch: its SHA-256 is %x, expected %x", testPlugin, sum, wrong)
	if err == nil || err.Error() != want {
		t.Errorf("error %v\nwant  %s", err, want)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	notPlugin := filepath.Join(dir, "not-a-plugin")
	if err := os.WriteFile(notPlugin, []byte("#!/bin/sh\necho hello\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		args    []string
		timeout time.Duration
		want    string
		log     string
	}{
		{name: "not executable", path: notExec, want: "start plugin " + notExec + ": fork/exec " + notExec + ": permission denied"},
		{name: "missing", path: missing, want: "start plugin " + missing + ": fork/exec " + missing + ": no such file or directory"},
		{name: "exits before the handshake", path: testPlugin, args: []string{"-exit-before", "4"},
			want: "start plugin " + testPlugin + ": it exited during the start (exit status 4); its standard error is in the log",
			log:  `level=INFO msg="testplugin: starting" stream=stderr`},
		{name: "no handshake", path: testPlugin, args: []string{"-hang"}, timeout: 300 * time.Millisecond,
			want: "start plugin " + testPlugin + ": no handshake within 300ms (is it an iotnode plugin, calling plugins.Serve?)"},
		{name: "not a plugin", path: notPlugin,
			want: "start plugin " + notPlugin + `: not an iotnode plugin: it printed "hello" instead of the handshake`},
		{name: "a wrong description", path: testPlugin, args: []string{"-bad-describe"},
			want: "start plugin " + testPlugin + `: its description: reading "bool" is listed twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := newLog(slog.LevelInfo)
			c, err := Open(t.Context(), tt.path, tt.args, Options{Logger: log, StartTimeout: tt.timeout})
			if err == nil {
				c.Close()
				t.Fatal("no error")
			}
			if err.Error() != tt.want {
				t.Errorf("error %v\nwant  %s", err, tt.want)
			}
			if tt.log != "" {
				logs.waitLog(t, tt.log)
			}
		})
	}

	t.Run("context ends", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		_, err := Open(ctx, testPlugin, []string{"-hang"}, Options{})
		if !errors.Is(err, context.DeadlineExceeded) || err.Error() != "start plugin "+testPlugin+": context deadline exceeded" {
			t.Errorf("error %v", err)
		}
	})
}

// The plugin's standard error reaches the log: before Serve through the
// process's stderr, after it through go-plugin's stream.
func TestStderrLogged(t *testing.T) {
	log, logs := newLog(slog.LevelInfo)
	c := open(t, nil, Options{Logger: log})
	logs.waitLog(t, `level=INFO msg="testplugin: starting" stream=stderr`)
	line, _ := model.String("a line from the plugin")
	if err := c.Actuate(t.Context(), "stderr", map[string]model.Value{"line": line}); err != nil {
		t.Fatal(err)
	}
	logs.waitLog(t, `level=INFO msg="a line from the plugin" stream=stderr`)
}

// Reads and commands may come from different goroutines.
func TestConcurrentCalls(t *testing.T) {
	c := open(t, nil, Options{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 20 {
				if i%2 == 0 {
					if _, err := c.Read(t.Context()); err != nil {
						t.Error(err)
					}
				} else if err := c.Actuate(t.Context(), "echo", map[string]model.Value{"i": model.Integer(int64(i))}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

var (
	_ ports.Sensor   = (*Client)(nil)
	_ ports.Actuator = (*Client)(nil)
)
