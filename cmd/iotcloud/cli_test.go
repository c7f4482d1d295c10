package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/launch"
	"github.com/iotnode/iotnode/domain/trust"
)

const (
	humidityURN = "urn:com:oracle:iot:device:humidity_sensor"
	lightURN    = "urn:com:example:iot:device:light_switch"
	testKDF     = 1000 // v2 provisioning files cheap to write and read in tests
)

var modelsDir = filepath.Join("..", "..", "testdata", "devicemodels")

// startCloud runs a real cloud in-process on a free loopback port, with TLS.
func startCloud(t *testing.T) *launch.Instance {
	t.Helper()
	inst, err := launch.Start(t.Context(), launch.Options{DataDir: t.TempDir(), Listen: "127.0.0.1:0", KDFIterations: testKDF})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Shutdown(context.Background()) })
	return inst
}

// cli runs iotcloud commands in-process with an environment of its own.
type cli struct {
	t   *testing.T
	env map[string]string
}

func newCLI(t *testing.T, inst *launch.Instance) *cli {
	c := &cli{t: t, env: map[string]string{}}
	if inst != nil {
		c.env[EnvData] = inst.DataDir()
	}
	return c
}

func (c *cli) run(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	m := NewMain()
	m.Getenv = func(k string) string { return c.env[k] }
	var out, errb bytes.Buffer
	code = m.Run(c.t.Context(), args, &out, &errb)
	return out.String(), errb.String(), code
}

// ok runs a command that must succeed and returns its stdout.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("iotcloud %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func writeFile(t *testing.T, name, content string, mode os.FileMode) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

var idRE = regexp.MustCompile(`^Registered device (\S+) \(hardware id hw-1\)\n`)

// TestDeviceFlow drives the CLI through a device's life against a real cloud
// and a device speaking the wire protocol: register, provisioning file,
// activation, list/show, set and call with their requests, messages.
func TestDeviceFlow(t *testing.T) {
	inst := startCloud(t)
	c := newCLI(t, inst)
	dir := t.TempDir()

	if got, want := c.ok("model", "add", filepath.Join(modelsDir, "humidity_sensor.json")),
		"Added device model urn:com:oracle:iot:device:humidity_sensor (Humidity Sensor): 2 attributes, 0 actions, 1 formats\n"; got != want {
		t.Errorf("model add: %q\nwant %q", got, want)
	}
	c.ok("model", "add", filepath.Join(modelsDir, "light_switch.json"))
	if got, want := c.ok("model", "list"),
		"URN                                        NAME             ATTRIBUTES  ACTIONS  FORMATS  SYSTEM\n"+
			"urn:com:example:iot:device:light_switch    Light Switch     5           3        2        no\n"+
			"urn:com:oracle:iot:device:humidity_sensor  Humidity Sensor  2           0        1        no\n"; got != want {
		t.Errorf("model list:\n%s\nwant\n%s", got, want)
	}
	if got, want := c.ok("model", "show", lightURN), `URN:          urn:com:example:iot:device:light_switch
Name:         Light Switch
Description:  A GPIO-driven light with a push button and a snapshot camera.

ATTRIBUTE    TYPE      RANGE  WRITABLE  DEFAULT  DESCRIPTION
power        BOOLEAN   -      yes       false    Light on/off (GPIO output)
brightness   INTEGER   0,100  yes       100      PWM duty in percent
label        STRING    -      yes       -        Where the light is
lastPressed  DATETIME  -      no        -        Last button press
snapshot     URI       -      no        -        Latest camera image

ACTION    ARGUMENTS                               DESCRIPTION
blink     value INTEGER [1,20]                    Blink N times
toggle    -                                       Flip power
schedule  at DATETIME, seconds INTEGER [1,86400]  Turn on at a time for a duration

FORMAT                                                  TYPE   NAME           FIELDS
urn:com:example:iot:device:light_switch:button_pressed  ALERT  buttonPressed  presses INTEGER, image URI?
urn:com:example:iot:device:light_switch:energy          DATA   energyReport   wattHours NUMBER, since DATETIME
`; got != want {
		t.Errorf("model show:\n%s\nwant\n%s", got, want)
	}

	// Register: the provisioning file is written 0600 and carries the secret.
	pass := writeFile(t, "pass", "correct horse battery\n", 0o600)
	out := filepath.Join(dir, "light.conf")
	got := c.ok("device", "register", "--model", lightURN, "--hardware-id", "hw-1", "--out", out, "--passphrase-file", pass)
	m := idRE.FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("device register printed %q", got)
	}
	id := m[1]
	if want := "Registered device " + id + " (hardware id hw-1)\nWrote provisioning file " + out +
		" (format v2, mode 0600): give it and its passphrase to the device\n"; got != want {
		t.Errorf("device register: %q\nwant %q", got, want)
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("provisioning file: %v, mode %v", err, fi.Mode().Perm())
	}
	file, _ := os.ReadFile(out)
	assets, format, err := trust.Decode(file, "correct horse battery")
	if err != nil || format != trust.FormatV2 || assets.ClientID != id || assets.ServerURI != inst.URL() || len(assets.TrustAnchors) != 1 {
		t.Fatalf("decode provisioning file: %v, format %v, assets %v", err, format, assets)
	}

	if got := c.ok("device", "list"); !regexp.MustCompile(`(?m)^` + id + `\s+hw-1\s+DIRECTLY_CONNECTED_DEVICE\s+REGISTERED\s+-\s+-\s+-$`).MatchString(got) {
		t.Errorf("device list before activation:\n%s", got)
	}

	dev := newTestDevice(t, inst, id, assets.SharedSecret)
	dev.activate(lightURN)
	ep := dev.endpoint

	got = c.ok("device", "show", id)
	for _, want := range []string{"ID:           " + id + "\n", "State:        ACTIVATED\n", "Endpoint ID:  " + ep + "\n",
		"Models:       " + lightURN + "\n", "              urn:oracle:iot:dcd:capability:direct_activation\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("device show lacks %q:\n%s", want, got)
		}
	}
	var shown api.Device
	if err := json.Unmarshal([]byte(c.ok("device", "show", ep, "--json")), &shown); err != nil || shown.ID != id || shown.SharedSecret != "" {
		t.Errorf("device show --json: %+v, %v (want the device, no shared secret)", shown, err)
	}

	// The device reports an attribute; messages and attributes show it.
	dev.post(map[string]any{"type": "DATA", "payload": map[string]any{"format": lightURN + ":attributes", "data": map[string]any{"brightness": 40}}})
	got = c.ok("messages", "--device", ep)
	if !regexp.MustCompile(`(?m)^RECEIVED +SOURCE +TYPE +CONTENT\n\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  ` + ep + `  DATA              ` + lightURN + `:attributes \{"brightness":40\}$`).MatchString(got) {
		t.Errorf("messages:\n%s", got)
	}
	if got, want := c.ok("device", "attributes", ep, lightURN), "ATTRIBUTE   VALUE\nbrightness  40\n"; got != want {
		t.Errorf("device attributes: %q\nwant %q", got, want)
	}

	// Set: queued, delivered in the PATCH form, answered, COMPLETED.
	got = c.ok("device", "set", ep, lightURN, "brightness", "75")
	rid := strings.TrimSuffix(strings.TrimPrefix(strings.SplitN(got, "\n", 2)[0], "Queued request "), ": set brightness = 75 on device "+ep)
	if want := "Queued request " + rid + ": set brightness = 75 on device " + ep + "\nFollow it with: iotcloud request show " + rid + " --wait\n"; got != want {
		t.Fatalf("device set: %q\nwant %q", got, want)
	}
	got = c.ok("request", "show", rid)
	if !strings.Contains(got, "Status:   PENDING\n") {
		t.Errorf("request show before the device polled:\n%s", got)
	}
	method, u, body := dev.answer(200, "OK")
	if method != "POST" || u != "deviceModels/"+lightURN+"/attributes" || body != `{"brightness":75}` {
		t.Errorf("the device got %s %s %s", method, u, body)
	}
	got = c.ok("request", "show", rid, "--wait")
	for _, want := range []string{"Request:        " + rid + "\n", "Device:         " + ep + "\n", "Call:           PATCH deviceModels/" + lightURN + "/attributes\n",
		"Status:         COMPLETED\n", "Response:       200\n", "Response body:  OK\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("request show --wait lacks %q:\n%s", want, got)
		}
	}

	// Call with one argument; the device refuses it: --wait exits 1.
	got = c.ok("device", "call", ep, lightURN, "blink", "3", "--json")
	var acc api.Accepted
	if err := json.Unmarshal([]byte(got), &acc); err != nil || acc.RequestID == "" {
		t.Fatalf("device call --json: %q", got)
	}
	method, u, body = dev.answer(400, "busy")
	if method != "POST" || u != "deviceModels/"+lightURN+"/actions/blink" || body != `{"value":3}` {
		t.Errorf("the device got %s %s %s", method, u, body)
	}
	_, errOut, code := c.run("request", "show", acc.RequestID, "--wait")
	if want := "iotcloud request show: request " + acc.RequestID + " ended FAILED: the device answered 400 busy\n"; code != 1 || errOut != want {
		t.Errorf("request show --wait of a failed request: exit %d, stderr %q\nwant 1, %q", code, errOut, want)
	}

	// Named arguments, and an action without argument.
	c.ok("device", "call", ep, lightURN, "schedule", `{"at":1767225600000,"seconds":60}`)
	if _, _, body := dev.answer(200, ""); body != `{"at":1767225600000,"seconds":60}` {
		t.Errorf("schedule body %s", body)
	}
	c.ok("device", "call", ep, lightURN, "toggle")
	if _, _, body := dev.answer(200, ""); body != "" {
		t.Errorf("toggle body %q, want empty", body)
	}

	// The server's message reaches the user, exit 1.
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"device", "set", ep, lightURN, "brightness", "140"},
			"iotcloud device set: set attribute brightness of device " + ep + ": server answered 400 Bad Request: "},
		{[]string{"device", "show", "nope"},
			`iotcloud device show: get device nope: server answered 404 Not Found: device "nope" is not registered` + "\n"},
		{[]string{"device", "call", ep, lightURN, "explode"},
			"iotcloud device call: call action explode of device " + ep + `: server answered 404 Not Found: device model "` + lightURN + `" has no action "explode"` + "\n"},
	}
	for _, tt := range tests {
		_, errOut, code := c.run(tt.args...)
		if code != 1 || !strings.HasPrefix(errOut, tt.want) {
			t.Errorf("iotcloud %s: exit %d, stderr %q\nwant 1, %q", strings.Join(tt.args, " "), code, errOut, tt.want)
		}
	}
	if _, errOut, _ := c.run("device", "set", ep, lightURN, "brightness", "140"); !strings.Contains(errOut, "140") || !strings.Contains(errOut, "0..100") && !strings.Contains(errOut, "0,100") {
		t.Errorf("out-of-range set: %q does not name the value and the range", errOut)
	}

	// The same file is not overwritten without --force.
	_, errOut, code = c.run("device", "register", "--hardware-id", "hw-2", "--out", out, "--passphrase-file", pass)
	if want := "iotcloud device register: " + out + " already exists: it may be a device's provisioning file; choose another --out or add --force\n"; code != 1 || errOut != want {
		t.Errorf("register over an existing file: exit %d %q\nwant 1 %q", code, errOut, want)
	}
}

// TestRegisterOracleAndProvision writes an Oracle-format file for a gateway
// and a new file for the same device with device provision.
func TestRegisterOracleAndProvision(t *testing.T) {
	inst := startCloud(t)
	c := newCLI(t, inst)
	c.env[EnvPassphrase] = "from-the-environment"
	out := filepath.Join(t.TempDir(), "gw.conf")
	got := c.ok("device", "register", "--gateway", "--format", "oracle", "--out", out, "--json", "--metadata", "site=lab")
	var res struct {
		Device api.Device
		Format string
	}
	if err := json.Unmarshal([]byte(got), &res); err != nil || res.Device.Type != api.DeviceTypeGateway || res.Format != "oracle" ||
		res.Device.SharedSecret != "" || res.Device.Metadata["site"] != "lab" {
		t.Fatalf("register --json: %s (%v)", got, err)
	}
	file, _ := os.ReadFile(out)
	a, format, err := trust.Decode(file, "from-the-environment")
	if err != nil || format != trust.FormatOracle || a.ClientID != res.Device.ID {
		t.Fatalf("decode: %v %v %v", a, format, err)
	}
	again := filepath.Join(t.TempDir(), "again.conf")
	if got, want := c.ok("device", "provision", res.Device.ID, "--out", again),
		"Wrote provisioning file "+again+" for device "+res.Device.ID+" (format v2, mode 0600)\n"; got != want {
		t.Errorf("device provision: %q\nwant %q", got, want)
	}
}

func TestPolicies(t *testing.T) {
	inst := startCloud(t)
	c := newCLI(t, inst)
	c.ok("model", "add", filepath.Join(modelsDir, "humidity_sensor.json"))
	policy := filepath.Join("..", "..", "testdata", "devicepolicies", "humidity_sensor.policy.json")
	if got, want := c.ok("policy", "add", policy, "--model", humidityURN),
		"Added device policy policy-humidity-1 for device model "+humidityURN+"\n"+
			"Assign it with: iotcloud policy assign policy-humidity-1 --model "+humidityURN+" [--device ID]...\n"; got != want {
		t.Errorf("policy add: %q\nwant %q", got, want)
	}
	got := c.ok("policy", "list")
	if !regexp.MustCompile(`(?m)^policy-humidity-1  ` + humidityURN + `  yes      \S+  humidity: filterCondition > mean > alertCondition; maxThreshold: eliminateDuplicates; \*: batchByTime  Smooth humidity`).MatchString(got) {
		t.Errorf("policy list:\n%s", got)
	}
	if got, want := c.ok("policy", "assign", "policy-humidity-1", "--model", humidityURN),
		"Assigned device policy policy-humidity-1 to every device of model "+humidityURN+"\n"; got != want {
		t.Errorf("policy assign: %q\nwant %q", got, want)
	}
	if got := c.ok("policy", "show", "policy-humidity-1"); !strings.Contains(got, `"attributeName": "maxThreshold"`) {
		t.Errorf("policy show:\n%s", got)
	}
	if got, want := c.ok("policy", "rm", "policy-humidity-1"), "Deleted device policy policy-humidity-1\n"; got != want {
		t.Errorf("policy rm: %q", got)
	}
	if got := c.ok("policy", "list", "--json"); got != "{\n  \"items\": [],\n  \"hasMore\": false\n}\n" {
		t.Errorf("policy list --json after rm: %q", got)
	}
}

// TestUsageErrors checks exit code 2 and the exact message of command lines
// that cannot run. None of them needs a cloud.
func TestUsageErrors(t *testing.T) {
	pass := writeFile(t, "pass", "long enough passphrase\n", 0o600)
	short := writeFile(t, "short", "abc\n", 0o600)
	tests := []struct {
		args []string
		env  map[string]string
		code int
		want string
	}{
		{nil, nil, 2, "iotcloud is a self-hostable IoT cloud"},
		{[]string{"frobnicate"}, nil, 2, "iotcloud: unknown command \"frobnicate\"\nRun 'iotcloud help' for usage.\n"},
		{[]string{"--data", "d", "device", "list"}, nil, 2, "iotcloud: flags go after the command, as in 'iotcloud device list --data'\nRun 'iotcloud help' for usage.\n"},
		{[]string{"device"}, nil, 2, "iotcloud device: expected a subcommand: register, provision, list, show, attributes, set, call\nRun 'iotcloud help' for usage.\n"},
		{[]string{"device", "delete"}, nil, 2, "iotcloud device: unknown subcommand \"delete\" (expected register, provision, list, show, attributes, set, call)\nRun 'iotcloud help' for usage.\n"},
		{[]string{"device", "set", "a", "b", "c"}, nil, 2, "iotcloud device set: expected 4 arguments (ID URN ATTR VALUE), got 3\nRun 'iotcloud device set --help' for usage.\n"},
		{[]string{"device", "call", "a"}, nil, 2, "iotcloud device call: expected 3 to 4 arguments (ID URN ACTION [ARG]), got 1\nRun 'iotcloud device call --help' for usage.\n"},
		{[]string{"device", "list", "extra"}, nil, 2, "iotcloud device list: unexpected argument \"extra\"\nRun 'iotcloud device list --help' for usage.\n"},
		{[]string{"device", "list", "--frob"}, nil, 2, "iotcloud device list: unknown flag --frob\nRun 'iotcloud device list --help' for usage.\n"},
		{[]string{"device", "show", "x", "--data"}, nil, 2, "iotcloud device show: flag --data needs a value\nRun 'iotcloud device show --help' for usage.\n"},
		{[]string{"messages", "--limit", "many"}, nil, 2, "iotcloud messages: flag --limit: invalid value \"many\": expected a whole number\nRun 'iotcloud messages --help' for usage.\n"},
		{[]string{"messages", "--since", "yesterday", "--data", "D"}, nil, 2, "iotcloud messages: --since \"yesterday\": expected a duration such as 10m, an RFC 3339 time such as 2026-01-02T15:04:05Z, or epoch milliseconds\nRun 'iotcloud messages --help' for usage.\n"},
		{[]string{"messages", "--type", "chatter"}, nil, 2, "iotcloud messages: --type \"chatter\": expected DATA, ALERT, REQUEST, RESPONSE or RESOURCES_REPORT\nRun 'iotcloud messages --help' for usage.\n"},
		{[]string{"device", "list"}, nil, 2, "iotcloud device list: no cloud given: use --data DIR (the data directory of iotcloud serve), or --server URL with --token-file FILE, or set IOTCLOUD_SERVER and IOTCLOUD_TOKEN\nRun 'iotcloud device list --help' for usage.\n"},
		{[]string{"device", "list", "--server", "https://127.0.0.1:1"}, nil, 2, "iotcloud device list: no admin token given: use --token-file FILE (the admin.token of the cloud's data directory), --data DIR, or set IOTCLOUD_TOKEN\nRun 'iotcloud device list --help' for usage.\n"},
		{[]string{"device", "list", "--server", "127.0.0.1:8443"}, map[string]string{EnvToken: "tok"}, 1, "iotcloud device list: cloud url \"127.0.0.1:8443\": expected https://HOST[:PORT] (or http:// for a cloud started with --insecure-http)\n"},
		{[]string{"device", "list", "--data", "/nonexistent/dir"}, nil, 1, "iotcloud device list: data directory /nonexistent/dir: no such file or directory\n"},
		{[]string{"device", "register", "--passphrase-file", pass}, nil, 2, "iotcloud device register: --out FILE is required (where to write the provisioning file)\nRun 'iotcloud device register --help' for usage.\n"},
		{[]string{"device", "register", "--out", "x.conf"}, nil, 2, "iotcloud device register: no passphrase: use --passphrase-file FILE or set IOTCLOUD_PASSPHRASE (a passphrase is never taken from the command line)\nRun 'iotcloud device register --help' for usage.\n"},
		{[]string{"device", "register", "--out", "x.conf", "--passphrase-file", short}, nil, 1, "iotcloud device register: the passphrase has 3 characters, expected at least 8\n"},
		{[]string{"device", "register", "--out", "x.conf", "--passphrase-file", pass, "--format", "pkcs12"}, nil, 2, "iotcloud device register: --format \"pkcs12\": expected v2 or oracle\nRun 'iotcloud device register --help' for usage.\n"},
		{[]string{"device", "register", "--out", "x.conf", "--passphrase-file", pass, "--metadata", "nokey"}, nil, 2, "iotcloud device register: --metadata \"nokey\": expected KEY=VALUE\nRun 'iotcloud device register --help' for usage.\n"},
		{[]string{"device", "register", "--out", "/nonexistent/x.conf", "--passphrase-file", pass}, nil, 1, "iotcloud device register: --out /nonexistent/x.conf: directory /nonexistent does not exist\n"},
		{[]string{"policy", "assign", "P1"}, nil, 2, "iotcloud policy assign: --model URN is required\nRun 'iotcloud policy assign --help' for usage.\n"},
		{[]string{"model", "add", "/nonexistent.json"}, nil, 1, "iotcloud model add: read device model: open /nonexistent.json: no such file or directory\n"},
		{[]string{"serve"}, nil, 2, "iotcloud serve: --data DIR is required (the directory for the cloud's data, such as ./iotcloud-data)\nRun 'iotcloud serve --help' for usage.\n"},
		{[]string{"serve", "--data", "d", "--log-level", "loud"}, nil, 2, "iotcloud serve: --log-level \"loud\": expected debug, info, warn or error\nRun 'iotcloud serve --help' for usage.\n"},
		{[]string{"serve", "--data", "d", "--log-format", "xml"}, nil, 2, "iotcloud serve: --log-format \"xml\": expected text or json\nRun 'iotcloud serve --help' for usage.\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			c := newCLI(t, nil)
			for k, v := range tt.env {
				c.env[k] = v
			}
			out, errOut, code := c.run(tt.args...)
			if code != tt.code || !strings.HasPrefix(errOut, tt.want) || (tt.args != nil && errOut != tt.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d, stderr:\n%s", code, errOut, tt.code, tt.want)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	c := newCLI(t, nil)
	out, errOut, code := c.run("device", "set", "--help")
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "Usage: iotcloud device set ID URN ATTR VALUE [--wait] [--data DIR | --server URL --token-file FILE] [--json]\n\nAsk a device to set an attribute.\n") ||
		!strings.Contains(out, "\nConnection flags:\n  --ca FILE ") {
		t.Errorf("device set --help: exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = c.run("help")
	if code != 0 || !strings.Contains(out, "  iotcloud device call ID URN ACTION [ARG] [--wait]\n        Ask a device to run an action\n") {
		t.Errorf("help: exit %d\n%s", code, out)
	}
	out, _, code = c.run("help", "messages")
	if code != 0 || !strings.HasPrefix(out, "Usage: iotcloud messages ") {
		t.Errorf("help messages: exit %d\n%s", code, out)
	}
	out, _, code = c.run("version")
	if code != 0 || !regexp.MustCompile(`^iotcloud \S+.* go1\.\d+.* \w+/\w+\n$`).MatchString(out) {
		t.Errorf("version: exit %d %q", code, out)
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		args    []string
		wantPos []string
		wantW   bool
	}{
		{[]string{"a", "--wait", "b"}, []string{"a", "b"}, true},
		{[]string{"a", "-5", "-wait"}, []string{"a", "-5"}, true},
		{[]string{"--wait=false", "x", "-1.5e3"}, []string{"x", "-1.5e3"}, false},
		{[]string{"a", "--", "--wait", "-x"}, []string{"a", "--wait", "-x"}, false},
		{[]string{"-"}, []string{"-"}, false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var w bool
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.BoolVar(&w, "wait", false, "")
			pos, err := parseArgs(fs, tt.args)
			if err != nil || strings.Join(pos, "|") != strings.Join(tt.wantPos, "|") || w != tt.wantW {
				t.Errorf("pos %q wait %v err %v; want %q %v", pos, w, err, tt.wantPos, tt.wantW)
			}
		})
	}
}

func TestParseValue(t *testing.T) {
	tests := []struct {
		in   string
		want string // JSON of the parsed value
	}{
		{"42", "42"}, {"-3.5", "-3.5"}, {"true", "true"}, {"null", "null"}, {`"42"`, `"42"`},
		{"kitchen", `"kitchen"`}, {"two words", `"two words"`}, {`{"a":1}`, `{"a":1}`}, {"", `""`},
	}
	for _, tt := range tests {
		b, _ := json.Marshal(parseValue(tt.in))
		if string(b) != tt.want {
			t.Errorf("parseValue(%q) = %s, want %s", tt.in, b, tt.want)
		}
	}
}

// registerAndActivate registers a device with the CLI, reads its shared
// secret from the provisioning file, and activates it with models.
func registerAndActivate(t *testing.T, inst *launch.Instance, c *cli, models ...string) *testDevice {
	t.Helper()
	pass := writeFile(t, "pass", "a long passphrase\n", 0o600)
	out := filepath.Join(t.TempDir(), "device.conf")
	var res struct{ Device api.Device }
	if err := json.Unmarshal([]byte(c.ok("device", "register", "--out", out, "--passphrase-file", pass, "--json")), &res); err != nil {
		t.Fatal(err)
	}
	file, _ := os.ReadFile(out)
	a, _, err := trust.Decode(file, "a long passphrase")
	if err != nil {
		t.Fatal(err)
	}
	dev := newTestDevice(t, inst, res.Device.ID, a.SharedSecret)
	dev.activate(models...)
	return dev
}
