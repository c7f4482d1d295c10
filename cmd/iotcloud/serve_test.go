package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/launch"
)

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serving runs `iotcloud serve` in-process until the returned stop function
// is called (the SIGTERM of main), which returns serve's exit code.
func serving(t *testing.T, args ...string) (inst *launch.Instance, stdout, stderr *syncBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	started := make(chan *launch.Instance, 1)
	m := NewMain()
	m.Getenv = func(string) string { return "" }
	m.serveOptions = func(o *launch.Options) { o.KDFIterations = testKDF }
	m.onServe = func(i *launch.Instance) { started <- i }
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	code := make(chan int, 1)
	go func() { code <- m.Run(ctx, append([]string{"serve"}, args...), stdout, stderr) }() // waited for by stop
	select {
	case inst = <-started:
	case c := <-code:
		cancel()
		t.Fatalf("serve exited %d before serving\nstderr: %s", c, stderr)
	}
	var once sync.Once
	var result int
	stop = func() int {
		once.Do(func() { cancel(); result = <-code })
		return result
	}
	t.Cleanup(func() { stop() })
	return inst, stdout, stderr, stop
}

// TestServe starts serve, checks that its URL answers over TLS with only its
// CA, stops it as SIGTERM does and checks a clean exit.
func TestServe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	inst, stdout, stderr, stop := serving(t, "--data", dir, "--listen", "127.0.0.1:0", "--hostname", "iot.example.com", "--log-format", "json")

	want := fmt.Sprintf("iotcloud serving at %s\n  admin token:    %s\n  CA certificate: %s\n  try:            iotcloud device list --data %s\n",
		inst.URL(), filepath.Join(dir, "admin.token"), filepath.Join(dir, "ca.pem"), dir)
	if got := stdout.String(); got != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
	}
	url, _ := os.ReadFile(filepath.Join(dir, "url"))
	if string(url) != inst.URL()+"\n" {
		t.Errorf("DIR/url = %q, want %q", url, inst.URL())
	}

	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := hc.Get(strings.TrimSuffix(string(url), "\n") + "/iot/api/v2/devices")
	if err != nil {
		t.Fatalf("GET over TLS with only DIR/ca.pem: %v", err)
	}
	resp.Body.Close()
	hc.CloseIdleConnections()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /devices without a token: %d, want 401", resp.StatusCode)
	}

	// A client command finds the cloud from --data alone.
	c := newCLI(t, nil)
	if got := c.ok("device", "list", "--data", dir); got != "ID  HARDWARE ID  TYPE  STATE  ENDPOINT  MODELS  LAST SEEN\n" {
		t.Errorf("device list: %q", got)
	}

	start := time.Now()
	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM, want 0\nstderr: %s", code, stderr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	logs := stderr.String()
	for _, want := range []string{`"msg":"iotcloud serving"`, `"msg":"shutting down"`, `"msg":"iotcloud stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, inst.AdminToken()) {
		t.Error("the admin token appears in the logs")
	}
	select {
	case <-inst.Done():
	default:
		t.Error("the server still runs after serve returned")
	}
}

func TestServeInsecureHTTP(t *testing.T) {
	dir := t.TempDir()
	inst, stdout, stderr, stop := serving(t, "--data", dir, "--listen", "127.0.0.1:0", "--insecure-http")
	if !strings.HasPrefix(inst.URL(), "http://127.0.0.1:") || !strings.Contains(stdout.String(), "WARNING: plain HTTP (--insecure-http)") {
		t.Errorf("url %s, stdout:\n%s", inst.URL(), stdout)
	}
	if !strings.Contains(stderr.String(), "level=WARN") {
		t.Errorf("no warning in the logs:\n%s", stderr)
	}
	c := newCLI(t, nil)
	c.ok("model", "list", "--data", dir)
	if code := stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestServeListenError(t *testing.T) {
	inst := startCloud(t)
	addr := strings.TrimPrefix(inst.URL(), "https://")
	c := newCLI(t, nil)
	_, errOut, code := c.run("serve", "--data", t.TempDir(), "--listen", addr, "--log-level", "error")
	want := "iotcloud serve: start iotcloud: listen on " + addr + ": listen tcp " + addr + ": bind: address already in use (is another iotcloud running? choose another address with --listen)\n"
	if code != 1 || errOut != want {
		t.Errorf("exit %d, stderr %q\nwant 1, %q", code, errOut, want)
	}
}

// TestMessagesFollow prints messages as the device sends them, until the
// context ends (Ctrl-C), which is a normal exit.
func TestMessagesFollow(t *testing.T) {
	inst := startCloud(t)
	c := newCLI(t, inst)
	c.ok("model", "add", filepath.Join(modelsDir, "humidity_sensor.json"))
	dev := registerAndActivate(t, inst, c, humidityURN)
	dev.post(map[string]any{"type": "DATA", "payload": map[string]any{"format": humidityURN + ":attributes", "data": map[string]any{"humidity": 41}}})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	m := NewMain()
	m.Getenv = func(k string) string { return c.env[k] }
	out, errOut := &syncBuffer{}, &syncBuffer{}
	code := make(chan int, 1)
	go func() { // waited for below
		code <- m.Run(ctx, []string{"messages", "--device", dev.endpoint, "--follow", "--interval", "20ms", "--json"}, out, errOut)
	}()
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(out.String(), "\n") < n {
			if time.Now().After(deadline) {
				t.Fatalf("after 10 s, %d lines, want %d:\n%s\nstderr: %s", strings.Count(out.String(), "\n"), n, out, errOut)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(1)
	for h := 42; h < 45; h++ {
		dev.post(map[string]any{"type": "DATA", "payload": map[string]any{"format": humidityURN + ":attributes", "data": map[string]any{"humidity": h}}})
	}
	dev.post(map[string]any{"type": "ALERT", "payload": map[string]any{"format": humidityURN + ":too_humid", "severity": "SIGNIFICANT", "data": map[string]any{"humidity": 44}}})
	waitFor(5)
	time.Sleep(100 * time.Millisecond) // a few more polls: nothing may be repeated
	cancel()
	if c := <-code; c != 0 {
		t.Fatalf("messages --follow exited %d after Ctrl-C, want 0; stderr %s", c, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := [][]string{
		{`"type":"DATA"`, `"humidity":41`}, {`"type":"DATA"`, `"humidity":42`}, {`"type":"DATA"`, `"humidity":43`},
		{`"type":"DATA"`, `"humidity":44`}, {`"type":"ALERT"`, `"humidity":44`},
	}
	if len(lines) != len(want) {
		t.Fatalf("follow printed %d lines, want %d messages once each:\n%s", len(lines), len(want), out)
	}
	for i, l := range lines {
		for _, w := range append(want[i], `"receivedTime":`) {
			if !strings.Contains(l, w) {
				t.Errorf("line %d lacks %s: %s", i+1, w, l)
			}
		}
	}
}

// TestMessagesFollowPages follows with --limit 10 while a device sends
// batches of 35 and 25 messages (each batch is received in one millisecond):
// the pages break inside a millisecond and every message is printed once, in
// the order sent. Without --json, then --after shows where to continue.
func TestMessagesFollowPages(t *testing.T) {
	inst := startCloud(t)
	c := newCLI(t, inst)
	c.ok("model", "add", filepath.Join(modelsDir, "humidity_sensor.json"))
	dev := registerAndActivate(t, inst, c, humidityURN)
	batch := func(from, n int) {
		var msgs []map[string]any
		for h := from; h < from+n; h++ {
			msgs = append(msgs, map[string]any{"type": "DATA", "payload": map[string]any{"format": humidityURN + ":attributes", "data": map[string]any{"humidity": h}}})
		}
		dev.post(msgs...)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	m := NewMain()
	m.Getenv = func(k string) string { return c.env[k] }
	out, errOut := &syncBuffer{}, &syncBuffer{}
	code := make(chan int, 1)
	go func() { // waited for below
		code <- m.Run(ctx, []string{"messages", "--device", dev.endpoint, "--after", "0", "--limit", "10", "--follow", "--interval", "20ms", "--json"}, out, errOut)
	}()
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(out.String(), "\n") < n {
			if time.Now().After(deadline) {
				t.Fatalf("after 10 s, %d lines, want %d:\n%s\nstderr: %s", strings.Count(out.String(), "\n"), n, out, errOut)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	batch(0, 35)
	waitFor(35)
	batch(35, 25)
	waitFor(60)
	time.Sleep(100 * time.Millisecond) // a few more polls: nothing may be repeated
	cancel()
	if c := <-code; c != 0 {
		t.Fatalf("messages --follow exited %d after Ctrl-C, want 0; stderr %s", c, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 60 {
		t.Fatalf("follow printed %d lines, want the 60 messages once each:\n%s", len(lines), out)
	}
	var got []api.Message
	for i, l := range lines {
		var msg api.Message
		var wire struct {
			Payload struct{ Data struct{ Humidity int } }
		}
		if err := json.Unmarshal([]byte(l), &msg); err != nil || json.Unmarshal(msg.Message, &wire) != nil {
			t.Fatalf("line %d: %v: %s", i+1, err, l)
		}
		if wire.Payload.Data.Humidity != i {
			t.Fatalf("line %d has humidity %d, want %d (in the order sent):\n%s", i+1, wire.Payload.Data.Humidity, i, out)
		}
		if i > 0 && msg.Seq != got[i-1].Seq+1 {
			t.Fatalf("line %d has seq %d after %d", i+1, msg.Seq, got[i-1].Seq)
		}
		got = append(got, msg)
	}
	for _, span := range [][2]int{{0, 35}, {35, 60}} { // the premise: one millisecond per batch
		if first, last := got[span[0]].Received, got[span[1]-1].Received; first != last {
			t.Fatalf("batch %v received from %d to %d, want one millisecond", span, first, last)
		}
	}

	stdout, stderr, exit := c.run("messages", "--device", dev.endpoint, "--after", strconv.FormatUint(got[9].Seq, 10), "--limit", "20")
	wantHint := fmt.Sprintf("(more messages: continue with --after %d)\n", got[29].Seq)
	if exit != 0 || strings.Count(stdout, "\n") != 21 || !strings.Contains(stdout, `{"humidity":10}`) || !strings.Contains(stdout, `{"humidity":29}`) || stderr != wantHint {
		t.Fatalf("messages --after: exit %d\nstdout:\n%s\nstderr %q, want 20 messages (humidity 10..29) and %q", exit, stdout, stderr, wantHint)
	}
}

// TestManualWalk runs docs/manual-activation.sh, the documented activation by
// hand with curl and openssl, against a real cloud.
func TestManualWalk(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "openssl", "base64", "od", "sed", "tr"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: the manual walk needs it", tool)
		}
	}
	inst := startCloud(t)
	script, err := filepath.Abs(filepath.Join("..", "..", "docs", "manual-activation.sh"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "bash", script, inst.DataDir())
	cmd.Env = append(os.Environ(), "WORK="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("manual walk failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "\nmanual walk: OK (device ") || !strings.Contains(string(out), " COMPLETED)\n") {
		t.Fatalf("manual walk output:\n%s", out)
	}
	// The device is activated, as the CLI sees it too.
	list := newCLI(t, inst).ok("device", "list")
	if !strings.Contains(list, " ACTIVATED ") || !strings.Contains(list, "urn:com:example:manual:thermometer") {
		t.Errorf("device list after the walk:\n%s", list)
	}
}
