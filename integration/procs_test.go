package integration

// Helpers of the process-level tests (process_test.go, proof_test.go): the
// binaries are built once per test binary, every process is started with a
// filtered environment, its output is read line by line, and the test's
// cleanup stops it by PID (SIGKILL) if the test did not.

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cloudclient "github.com/iotnode/iotnode/cloud/client"
)

// longRun reports whether the long variants run (IOTNODE_LONG=1).
func longRun() bool { return os.Getenv("IOTNODE_LONG") == "1" }

// bins are the paths of the binaries the process tests run.
type bins struct {
	iotnode, iotcloud, killsender string
}

var (
	buildOnce sync.Once
	built     bins
	buildErr  error
)

// goTool returns the go command of the toolchain running the tests.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// buildBinaries builds iotnode, iotcloud and the kill-loop sender once per
// test binary (without -race: they are the programs under test, not the
// test). They go into a directory next to the test binary, which is go
// test's work directory (removed by go test); a test binary run by hand
// (go test -c) leaves a bin-* directory beside itself.
func buildBinaries(t testing.TB) bins {
	t.Helper()
	buildOnce.Do(func() {
		exe, err := os.Executable()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp(filepath.Dir(exe), "bin-")
		if err != nil {
			if dir, err = os.MkdirTemp("", "iotnode-integration-bin-"); err != nil {
				buildErr = err
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		cmd := exec.CommandContext(ctx, goTool(), "build", "-o", dir+string(filepath.Separator),
			"./cmd/iotnode", "./cmd/iotcloud", "./integration/testdata/killsender")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		built = bins{
			iotnode:    filepath.Join(dir, "iotnode"),
			iotcloud:   filepath.Join(dir, "iotcloud"),
			killsender: filepath.Join(dir, "killsender"),
		}
		fmt.Fprintf(os.Stderr, "integration: built iotnode, iotcloud and killsender in %s (%s)\n", dir, time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// childEnv is the test's environment without IOTNODE_* and IOTCLOUD_*
// variables (iotnode refuses an IOTNODE_ variable that names no setting,
// and IOTNODE_LONG is one), plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "IOTNODE_") || strings.HasPrefix(kv, "IOTCLOUD_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// proc is a started process whose standard output and error are read line
// by line. Safe for concurrent use.
type proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	// onLine, when set before start, sees every line (stream "stdout" or
	// "stderr") on the reading goroutine.
	onLine func(stream, line string)

	mu      sync.Mutex
	quiet   bool     // no output in the failure report (setQuiet)
	out     []string // every stdout line
	errTail []string // the last stderrTail stderr lines
	changed chan struct{}
	done    chan struct{} // closed when the process exited and its output was read
	state   *os.ProcessState
	exited  time.Time
}

const stderrTail = 200

// startProc starts bin with args in env (childEnv()+env) and arranges for
// the test's cleanup to kill it (SIGKILL by PID) if it still runs, wait
// for it, and print its stderr tail when the test failed.
func startProc(t testing.TB, name, bin string, args, env []string, onLine func(stream, line string)) *proc {
	t.Helper()
	p := &proc{t: t, name: name, onLine: onLine, changed: make(chan struct{}), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = childEnv(env...)
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	var readers sync.WaitGroup
	readers.Go(func() { p.read("stdout", stdout) })
	readers.Go(func() { p.read("stderr", stderr) })
	go func() { // owned by p: ends when the process exited; cleanup waits for done
		readers.Wait()
		p.cmd.Wait()
		p.mu.Lock()
		p.state, p.exited = p.cmd.ProcessState, time.Now()
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		p.mu.Lock()
		quiet := p.quiet
		p.mu.Unlock()
		if t.Failed() && !quiet {
			p.mu.Lock()
			t.Logf("%s (pid %d) stdout:\n%s\nstderr (last %d lines):\n%s", name, p.cmd.Process.Pid,
				strings.Join(lastN(p.out, 50), "\n"), stderrTail, strings.Join(p.errTail, "\n"))
			p.mu.Unlock()
		}
	})
	return p
}

func lastN(s []string, n int) []string { return s[max(0, len(s)-n):] }

func (p *proc) read(stream string, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if p.onLine != nil {
			p.onLine(stream, line)
		}
		p.mu.Lock()
		if stream == "stdout" {
			p.out = append(p.out, line)
		} else {
			p.errTail = append(p.errTail, line)
			if len(p.errTail) > 2*stderrTail {
				p.errTail = append(p.errTail[:0], p.errTail[len(p.errTail)-stderrTail:]...)
			}
		}
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
	io.Copy(io.Discard, r) // a line longer than the buffer: drain the rest
}

// setQuiet leaves the process's output out of the failure report (the
// kill loop starts hundreds).
func (p *proc) setQuiet() {
	p.mu.Lock()
	p.quiet = true
	p.mu.Unlock()
}

// stderr returns the last stderr lines.
func (p *proc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.errTail, "\n")
}

// pid is the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// stdout returns the stdout lines so far.
func (p *proc) stdout() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.out...)
}

// waitStdout waits until a stdout line matches re and returns its
// submatches; it fails the test when the process exits first or after
// timeout.
func (p *proc) waitStdout(re *regexp.Regexp, timeout time.Duration) []string {
	p.t.Helper()
	m, ok := p.awaitLine(func(lines []string) []string {
		for _, l := range lines {
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		}
		return nil
	}, timeout)
	if !ok {
		p.t.Fatalf("%s printed no line matching %s within %s (exited: %v)", p.name, re, timeout, p.hasExited())
	}
	return m
}

// awaitLine calls match with the stdout lines after every new line until
// it returns non-nil, the process exits or timeout passes.
func (p *proc) awaitLine(match func([]string) []string, timeout time.Duration) ([]string, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		m := match(p.out)
		changed := p.changed
		p.mu.Unlock()
		if m != nil {
			return m, true
		}
		select {
		case <-changed:
		case <-p.done:
			p.mu.Lock()
			m := match(p.out)
			p.mu.Unlock()
			return m, m != nil
		case <-deadline.C:
			return nil, false
		}
	}
}

func (p *proc) hasExited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process (by PID).
func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Errorf("signal %s to %s (pid %d): %v", sig, p.name, p.pid(), err)
	}
}

// wait waits at most timeout for the process to exit and returns its exit
// code (-1 when a signal ended it) and when it exited; ok is false on
// timeout.
func (p *proc) wait(timeout time.Duration) (code int, exited time.Time, ok bool) {
	select {
	case <-p.done:
	case <-time.After(timeout):
		return 0, time.Time{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.ExitCode(), p.exited, true
}

// kill ends the process with SIGKILL (by PID) unless it exited, and waits
// for it. Killing twice is harmless.
func (p *proc) kill() {
	if !p.hasExited() {
		p.cmd.Process.Kill()
	}
	<-p.done
}

// jsonLog is one line of a slog JSON log.
type jsonLog map[string]any

func parseJSONLog(line string) (jsonLog, bool) {
	if !strings.HasPrefix(line, "{") {
		return nil, false
	}
	var l jsonLog
	if json.Unmarshal([]byte(line), &l) != nil {
		return nil, false
	}
	return l, true
}

func (l jsonLog) str(k string) string {
	s, _ := l[k].(string)
	return s
}

func (l jsonLog) num(k string) float64 {
	f, _ := l[k].(float64)
	return f
}

// logWatch collects the JSON log lines of a process (its onLine hook) and
// lets a test wait for one with a given msg. Safe for concurrent use.
type logWatch struct {
	mu      sync.Mutex
	lines   []jsonLog
	changed chan struct{}
}

func newLogWatch() *logWatch { return &logWatch{changed: make(chan struct{})} }

func (w *logWatch) onLine(stream, line string) {
	l, ok := parseJSONLog(line)
	if !ok {
		return
	}
	w.mu.Lock()
	w.lines = append(w.lines, l)
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}

// await returns the first line from index from on whose msg is msg, and its
// index; ok is false after timeout or when done closes first.
func (w *logWatch) await(msg string, from int, timeout time.Duration, done <-chan struct{}) (jsonLog, int, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		for i := from; i < len(w.lines); i++ {
			if w.lines[i].str("msg") == msg {
				l := w.lines[i]
				w.mu.Unlock()
				return l, i, true
			}
		}
		changed := w.changed
		w.mu.Unlock()
		select {
		case <-changed:
		case <-done:
			// The output is read completely before done closes: look once more.
			done = nil
		case <-deadline.C:
			return nil, 0, false
		}
		if done == nil {
			w.mu.Lock()
			for i := from; i < len(w.lines); i++ {
				if w.lines[i].str("msg") == msg {
					l := w.lines[i]
					w.mu.Unlock()
					return l, i, true
				}
			}
			w.mu.Unlock()
			return nil, 0, false
		}
	}
}

// cloudProc is `iotcloud serve` running as a process.
type cloudProc struct {
	*proc
	dir    string // its --data
	url    string
	client *cloudclient.Client
	pool   *x509.CertPool
	logs   *logWatch
}

// startCloudProc starts iotcloud serve on a free loopback port with a new
// data directory (JSON logs at level, on stderr) and connects an enterprise
// client to it.
func startCloudProc(t testing.TB, b bins, level string) *cloudProc {
	t.Helper()
	c := &cloudProc{dir: filepath.Join(t.TempDir(), "cloud"), logs: newLogWatch()}
	c.proc = startProc(t, "iotcloud serve", b.iotcloud,
		[]string{"serve", "--data", c.dir, "--listen", "127.0.0.1:0", "--log-format", "json", "--log-level", level,
			"--shutdown-timeout", "2s"},
		nil, c.logs.onLine)
	c.url = c.waitStdout(regexp.MustCompile(`^iotcloud serving at (https://127\.0\.0\.1:\d+)$`), 30*time.Second)[1]
	token, err := os.ReadFile(filepath.Join(c.dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(c.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c.pool = x509.NewCertPool()
	if !c.pool.AppendCertsFromPEM(ca) {
		t.Fatalf("%s/ca.pem holds no certificate", c.dir)
	}
	c.client, err = cloudclient.New(c.url, strings.TrimSpace(string(token)), cloudclient.WithCAPool(c.pool))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.client.CloseIdleConnections)
	return c
}

// cli runs `iotcloud ARGS --data DIR` against the cloud and returns its
// standard output; it fails the test unless the command exits 0 within a
// minute.
func (c *cloudProc) cli(t testing.TB, b bins, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.iotcloud, append(args, "--data", c.dir)...)
	cmd.Env = childEnv()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("iotcloud %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// metrics scrapes a Prometheus text endpoint into name{labels} -> value.
func metrics(ctx context.Context, hc *http.Client, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j] // one device per node in these tests
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		out[name] = v
	}
	return out, sc.Err()
}

// each calls fn with every JSON line collected so far.
func (w *logWatch) each(fn func(jsonLog)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lines {
		fn(l)
	}
}

// kv parses the "key=value" words of a line into integers (other words
// are skipped).
func kv(line string) map[string]int {
	out := map[string]int{}
	for _, w := range strings.Fields(line) {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			continue
		}
		if i, err := strconv.Atoi(v); err == nil {
			out[k] = i
		}
	}
	return out
}
