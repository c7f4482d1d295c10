package integration

// Process-level tests of issue 6: the one-command demo exactly as the
// README runs it, and `iotnode run` against `iotcloud serve` as separate
// processes, stopped with SIGTERM.

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iotnode/iotnode/adapters/fsstore"
	cloudclient "github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/domain/message"
)

// The README's run command, run from the module root exactly as written:
// it exits 0 and its summary shows messages the cloud acknowledged from
// every device of the demo (the thermometer, the light switch, and the two
// humidity sensors the gateway carries) and at least one command executed.
func TestDemoCommandFromTheRepository(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(), "run", "./cmd/iotnode", "demo", "--duration", "20s")
	cmd.Dir = ".."
	cmd.Env = childEnv()
	// go run starts the demo as its child: a process group lets a timeout
	// stop both (by the group's id, the PID of go run).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	out := stdout.String()
	if err != nil {
		t.Fatalf("go run ./cmd/iotnode demo --duration 20s: %v after %s\nstdout:\n%s\nstderr:\n%s", err, took.Round(time.Millisecond), out, stderr.String())
	}
	t.Logf("go run ./cmd/iotnode demo --duration 20s exited 0 after %s (compile included)", took.Round(time.Millisecond))

	// The device list names the gateway and the two sensors behind it.
	gatewayLine := regexp.MustCompile(`(?m)^  gateway +(\S+) +gateway$`)
	if !gatewayLine.MatchString(out) {
		t.Errorf("the device list has no gateway line matching %s:\n%s", gatewayLine, out)
	}
	for _, name := range []string{"humidity-1", "humidity-2"} {
		re := regexp.MustCompile(`(?m)^  ` + name + ` +\S+ +urn:com:oracle:iot:device:humidity_sensor \(behind the gateway\)$`)
		if !re.MatchString(out) {
			t.Errorf("the device list does not show %s behind the gateway (%s):\n%s", name, re, out)
		}
	}

	_, summary, ok := strings.Cut(out, "\nSummary after ")
	if !ok {
		t.Fatalf("no summary in the output:\n%s", out)
	}
	header := regexp.MustCompile(`(?m)^  DEVICE +ENDPOINT +VALUES PUBLISHED +MESSAGES ACKNOWLEDGED +COMMANDS EXECUTED +ERRORS$`)
	if !header.MatchString(summary) {
		t.Fatalf("the summary has no header matching %s:\n%s", header, summary)
	}
	row := regexp.MustCompile(`(?m)^  (\S+) +(\S+) +(\d+) +(\d+) +(\d+) +(\d+)$`)
	type counts struct{ published, acked, commands, errors int }
	rows := map[string]counts{}
	for _, m := range row.FindAllStringSubmatch(summary, -1) {
		n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
		rows[m[1]] = counts{n(3), n(4), n(5), n(6)}
	}
	commands := 0
	for _, name := range []string{"thermometer", "light", "humidity-1", "humidity-2"} {
		c, ok := rows[name]
		switch {
		case !ok:
			t.Errorf("the summary has no row for %s:\n%s", name, summary)
		case c.acked == 0 || c.published == 0:
			t.Errorf("%s: %d values published, %d messages acknowledged; want both > 0", name, c.published, c.acked)
		case c.errors != 0:
			t.Errorf("%s: %d errors, want 0", name, c.errors)
		}
		commands += c.commands
		t.Logf("demo summary %-11s published %3d, acknowledged %3d, commands %d, errors %d", name, c.published, c.acked, c.commands, c.errors)
	}
	if len(rows) != 4 {
		t.Errorf("the summary has %d rows, want 4 (thermometer, light, humidity-1, humidity-2):\n%s", len(rows), summary)
	}
	if commands < 1 {
		t.Errorf("the summary shows %d commands executed, want at least 1:\n%s", commands, summary)
	}
	for _, ev := range []string{"cloud -> light: set power = true", "cloud -> light: call blink(value=3)"} {
		if !strings.Contains(out, ev) {
			t.Errorf("the output has no event %q", ev)
		}
	}
}

// runNode is a node under test: iotnode run with a config in dir.
type runNode struct {
	*proc
	logs     *logWatch
	endpoint string
	metrics  string // the /metrics URL
}

// startRunNode starts `iotnode run --config cfg` with the passphrase in its
// environment and waits until it runs and serves metrics.
func startRunNode(t *testing.T, b bins, cfg, pass string) *runNode {
	t.Helper()
	n := &runNode{logs: newLogWatch()}
	n.proc = startProc(t, "iotnode run", b.iotnode, []string{"run", "--config", cfg}, []string{"IOTNODE_PASSPHRASE=" + pass}, n.logs.onLine)
	// Activation at the first start decrypts the file at the cloud's full
	// PBKDF2 cost and makes an RSA key: allow for a loaded machine.
	l, _, ok := n.logs.await("serving metrics", 0, time.Minute, n.done)
	if !ok {
		t.Fatal("iotnode run did not log \"serving metrics\" within a minute")
	}
	n.metrics = l.str("url")
	l, _, ok = n.logs.await("running", 0, time.Minute, n.done)
	if !ok {
		t.Fatal("iotnode run did not log \"running\" within a minute")
	}
	n.endpoint = l.str("endpoint_id")
	return n
}

// sigtermAfterSample waits until the node has just published a sample (its
// published counter moved), then sends SIGTERM at once, so that with a
// sample interval of 500 ms no further sample is taken before the signal:
// the counters it returns are the node's last.
func (n *runNode) sigtermAfterSample(t *testing.T, hc *http.Client) (map[string]float64, time.Time) {
	t.Helper()
	var before float64 = -1
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		m, err := metrics(t.Context(), hc, n.metrics)
		if err != nil {
			t.Fatal(err)
		}
		p := m["iotnode_device_values_published_total"]
		if before >= 0 && p != before {
			sent := time.Now()
			n.signal(syscall.SIGTERM)
			return m, sent
		}
		before = p
		time.Sleep(5 * time.Millisecond) // polling a counter of another process
	}
	t.Fatalf("the node published no sample within %s", waitFor)
	return nil, time.Time{}
}

// cloudMessages pages through every message the cloud stored from source
// and returns how many there are and how many distinct clientIds.
func cloudMessages(t *testing.T, cl *cloudclient.Client, source string) (total int, ids map[string]int) {
	t.Helper()
	ids = map[string]int{}
	for item, err := range cl.AllMessages(t.Context(), cloudclient.MessageQuery{Source: source, Limit: 1000}) {
		if err != nil {
			t.Fatal(err)
		}
		var env struct {
			ClientID string `json:"clientId"`
		}
		if err := json.Unmarshal(item.Message, &env); err != nil {
			t.Fatalf("stored message %s: %v", item.Message, err)
		}
		total++
		ids[env.ClientID]++
	}
	return total, ids
}

// outboxLeft opens the node's outbox file after the node exited and
// returns its counters.
func outboxLeft(t *testing.T, path string) fsstore.OutboxStats {
	t.Helper()
	o, err := fsstore.OpenOutbox(path, fsstore.OutboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	return o.Stats()
}

// `iotnode run` against `iotcloud serve`, separate processes, provisioned
// with the iotcloud CLI. SIGTERM ends the node with status 0 within 5 s:
// with the cloud up, after sending everything it queued (the cloud holds
// exactly the node's queued count, no duplicates, the outbox is empty);
// with the cloud hung (SIGSTOP), by the shutdown deadline, keeping every
// unacknowledged message in the outbox (iotnode's data is
// GUARANTEED_DELIVERY by default), which the next start delivers: nothing
// guaranteed is lost.
func TestRunAgainstServeSIGTERM(t *testing.T) {
	b := buildBinaries(t)
	c := startCloudProc(t, b, "info")
	t.Cleanup(func() { c.signal(syscall.SIGCONT) })
	dir := t.TempDir()
	const pass = "run-test passphrase"
	passFile := filepath.Join(dir, "pass.txt")
	if err := os.WriteFile(passFile, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	modelFile, err := filepath.Abs(filepath.Join("..", "testdata", "devicemodels", "light_switch.json"))
	if err != nil {
		t.Fatal(err)
	}
	t.Log(strings.TrimSpace(c.cli(t, b, "model", "add", modelFile)))
	nodeDir := filepath.Join(dir, "node")
	if err := os.Mkdir(nodeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	prov := filepath.Join(nodeDir, "device.prov")
	out := c.cli(t, b, "device", "register", "--model", lightURN, "--hardware-id", "run-light-1", "--out", prov, "--passphrase-file", passFile)
	if !regexp.MustCompile(`(?m)^Registered device \S+ \(hardware id run-light-1\)$`).MatchString(out) {
		t.Fatalf("device register printed:\n%s", out)
	}
	cfg := filepath.Join(nodeDir, "iotnode.yaml")
	yaml := `provisioning_file: device.prov
data_dir: data
devices:
  - name: light
    model: ` + lightURN + `
    driver: sim
    sample_interval: 500ms
    settings:
      outputs: {relay: false, pwm: 40}
    bindings:
      power: {reading: relay}
      brightness: {reading: pwm}
    writes:
      power: relay
metrics:
  listen: 127.0.0.1:0
logging:
  level: info
  format: json
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	outbox := filepath.Join(nodeDir, "data", "outbox")

	// 1. The cloud is up.
	n := startRunNode(t, b, cfg, pass)
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	id, err := c.client.SetAttribute(ctx, n.endpoint, lightURN, "power", true)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.client.WaitRequest(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != "COMPLETED" || r.Response == nil || r.Response.StatusCode != 200 {
		t.Fatalf("set power = true: request %s ended %s (%+v), want COMPLETED with 200", id, r.Status, r.Response)
	}
	if !eventually(t.Context(), waitFor, func() bool {
		msgs, err := storedMessages(t.Context(), c.client, cloudclient.MessageQuery{Source: n.endpoint, Type: string(message.TypeData)})
		return err == nil && len(msgs) >= 3 && dataWith(lightURN+":attributes", "power", true)(&msgs[len(msgs)-1])
	}) {
		t.Fatal("the cloud did not get 3 DATA messages, the last with power = true, within", waitFor)
	}
	m, sigterm := n.sigtermAfterSample(t, hc)
	code, exited, ok := n.wait(10 * time.Second)
	if !ok {
		t.Fatal("iotnode run did not exit within 10 s of SIGTERM")
	}
	took := exited.Sub(sigterm)
	stopped, _, _ := n.logs.await("stopped", 0, 0, n.done)
	queued, sent := int(m["iotnode_messages_queued_total"]), int(m["iotnode_messages_sent_total"])
	total, ids := cloudMessages(t, c.client, n.endpoint)
	left := outboxLeft(t, outbox)
	t.Logf("cloud up:   SIGTERM -> exit %d in %s; node queued %d, acknowledged %d at SIGTERM; logged outbox_messages %v; cloud stored %d (%d distinct clientIds); outbox file: %d messages, %d guaranteed",
		code, took.Round(time.Millisecond), queued, sent, stopped["outbox_messages"], total, len(ids), left.Queued, left.Guaranteed)
	if code != 0 || took > 5*time.Second {
		t.Errorf("SIGTERM with the cloud up: exit %d after %s, want 0 within 5s", code, took)
	}
	if stopped == nil || stopped.num("outbox_messages") != 0 {
		t.Errorf("the node's \"stopped\" log line is %v, want outbox_messages 0", stopped)
	}
	if len(ids) != queued || total != len(ids) {
		t.Errorf("the cloud stored %d messages (%d distinct) from %s, want exactly the %d the node queued, each once", total, len(ids), n.endpoint, queued)
	}
	if left.Queued != 0 || left.Guaranteed != 0 {
		t.Errorf("the outbox file holds %d messages (%d guaranteed) after a clean shutdown, want none", left.Queued, left.Guaranteed)
	}

	// 2. The cloud hangs: its process is stopped, connections are accepted
	// by the kernel and never answered.
	n = startRunNode(t, b, cfg, pass)
	if !eventually(t.Context(), waitFor, func() bool {
		tot, _ := cloudMessages(t, c.client, n.endpoint)
		return tot > total
	}) {
		t.Fatal("the restarted node sent nothing within", waitFor)
	}
	c.signal(syscall.SIGSTOP)
	if !eventually(t.Context(), waitFor, func() bool {
		m, err := metrics(t.Context(), hc, n.metrics)
		return err == nil && m["iotnode_messages_queued_total"]-m["iotnode_messages_sent_total"] >= 3
	}) {
		t.Fatal("no messages piled up while the cloud hung")
	}
	m, sigterm = n.sigtermAfterSample(t, hc)
	code, exited, ok = n.wait(10 * time.Second)
	if !ok {
		t.Fatal("iotnode run did not exit within 10 s of SIGTERM with the cloud hung")
	}
	took = exited.Sub(sigterm)
	stopped, _, _ = n.logs.await("stopped", 0, 0, n.done)
	c.signal(syscall.SIGCONT)
	queued2, sent2 := int(m["iotnode_messages_queued_total"]), int(m["iotnode_messages_sent_total"])
	total2, ids2 := cloudMessages(t, c.client, n.endpoint)
	got := len(ids2) - len(ids)
	left = outboxLeft(t, outbox)
	t.Logf("cloud hung: SIGTERM -> exit %d in %s; node queued %d, acknowledged %d at SIGTERM; logged outbox_messages %v; cloud stored %d of them (%d not yet); outbox file: %d messages, %d guaranteed",
		code, took.Round(time.Millisecond), queued2, sent2, stopped["outbox_messages"], got, queued2-got, left.Queued, left.Guaranteed)
	if code != 0 {
		t.Errorf("SIGTERM with the cloud hung: exit %d, want 0", code)
	}
	if took > 5*time.Second {
		t.Errorf("SIGTERM with the cloud hung: exit after %s, want within 5s", took.Round(time.Millisecond))
	}
	if got < sent2 || got > queued2 || total2 != len(ids2) {
		t.Errorf("the cloud stored %d new messages (%d stored, %d distinct in all), want between the %d acknowledged and the %d queued, each once",
			got, total2, len(ids2), sent2, queued2)
	}
	// Every message queued in round 2 is at the cloud or kept in the outbox.
	kept := outboxClientIDs(t, outbox)
	missing := 0
	for cid := range kept {
		if ids2[cid] == 0 {
			missing++
		}
	}
	if got+missing < queued2 || int64(len(kept)) != left.Guaranteed {
		t.Errorf("after the hung shutdown: %d new at the cloud + %d kept only in the outbox < the %d queued (outbox holds %d, %d guaranteed)",
			got, missing, queued2, len(kept), left.Guaranteed)
	}
	// 3. The cloud is back: the next start delivers what was kept, once.
	n = startRunNode(t, b, cfg, pass)
	if !eventually(t.Context(), waitFor, func() bool {
		_, now := cloudMessages(t, c.client, n.endpoint)
		for cid := range kept {
			if now[cid] == 0 {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("the %d messages kept in the outbox did not reach the cloud within %s after the restart", len(kept), waitFor)
	}
	n.signal(syscall.SIGTERM)
	if code, _, ok := n.wait(10 * time.Second); !ok || code != 0 {
		t.Errorf("third run: exit %d (exited %v), want 0", code, ok)
	}
	total3, ids3 := cloudMessages(t, c.client, n.endpoint)
	if total3 != len(ids3) {
		t.Errorf("the cloud holds %d messages but %d distinct clientIds: a duplicate was stored", total3, len(ids3))
	}
	t.Logf("cloud back: the %d messages kept in the outbox were delivered by the next start, each once", len(kept))
}

// outboxClientIDs returns the clientIds of the guaranteed messages left in
// the node's outbox after the node exited.
func outboxClientIDs(t *testing.T, path string) map[string]bool {
	t.Helper()
	o, err := fsstore.OpenOutbox(path, fsstore.OutboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	b, err := o.Begin(1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, m := range b.Messages {
		if m.Reliability == message.GuaranteedDelivery {
			ids[m.ClientID] = true
		}
	}
	if err := o.End(b, nil); err != nil {
		t.Fatal(err)
	}
	return ids
}
