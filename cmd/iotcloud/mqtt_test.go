package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/iotnode/iotnode/domain/trust"
)

// TestServeMQTT runs serve with an embedded broker and writes provisioning
// files that name it.
func TestServeMQTT(t *testing.T) {
	dir := t.TempDir()
	inst, stdout, stderr, stop := serving(t, "--data", dir, "--listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0")
	if !regexp.MustCompile(`\n  MQTT:           mqtts://127\.0\.0\.1:[0-9]+\n`).MatchString(stdout.String()) || !strings.Contains(stdout.String(), inst.MQTTURL()) {
		t.Errorf("stdout:\n%s\nwant the MQTT URL %s", stdout, inst.MQTTURL())
	}
	c := newCLI(t, inst)
	c.env[EnvPassphrase] = "mqtt passphrase"
	out := filepath.Join(t.TempDir(), "dev.conf")
	if got := c.ok("device", "register", "--out", out, "--mqtt", "--hardware-id", "mqtt-1"); !strings.Contains(got, "(format v2 for MQTT, mode 0600)") {
		t.Errorf("device register --mqtt: %q", got)
	}
	file, _ := os.ReadFile(out)
	a, _, err := trust.Decode(file, "mqtt passphrase")
	if err != nil || a.ServerURI != inst.MQTTURL() {
		t.Fatalf("provisioning file: server URI %v (%v), want %s", a, err, inst.MQTTURL())
	}
	again := filepath.Join(t.TempDir(), "again.conf")
	if got, want := c.ok("device", "provision", a.ClientID, "--out", again, "--mqtt"),
		"Wrote provisioning file "+again+" for device "+a.ClientID+" (format v2 for MQTT, mode 0600)\n"; got != want {
		t.Errorf("device provision --mqtt: %q\nwant %q", got, want)
	}
	_, errOut, code := c.run("device", "provision", a.ClientID, "--out", filepath.Join(t.TempDir(), "o.conf"), "--mqtt", "--format", "oracle")
	if code != 2 || !strings.Contains(errOut, "--mqtt with --format oracle") {
		t.Errorf("--mqtt --format oracle: exit %d, %s", code, errOut)
	}
	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d\nstderr: %s", code, stderr)
	}
	if !strings.Contains(stderr.String(), `msg="iotcloud serving MQTT"`) || !strings.Contains(stderr.String(), `msg="mqtt broker stopped"`) {
		t.Errorf("logs:\n%s", stderr)
	}
}

func TestServeMQTTUsage(t *testing.T) {
	tests := []struct{ args []string }{
		{[]string{"serve", "--data", "d", "--mqtt-listen", "127.0.0.1:8883", "--mqtt-broker", "mqtt://127.0.0.1:1883"}},
		{[]string{"serve", "--data", "d", "--mqtt-public-url", "mqtts://iot.example.com"}},
	}
	wants := []string{
		"iotcloud serve: --mqtt-listen and --mqtt-broker: expected one of them (the cloud runs its own broker or uses another)\n",
		"iotcloud serve: --mqtt-public-url needs --mqtt-listen or --mqtt-broker\n",
	}
	for i, tt := range tests {
		c := newCLI(t, nil)
		_, errOut, code := c.run(tt.args...)
		if code != 2 || !strings.HasPrefix(errOut, wants[i]) {
			t.Errorf("%v: exit %d, stderr %q, want 2 and %q", tt.args, code, errOut, wants[i])
		}
	}
	c := newCLI(t, nil)
	_, errOut, code := c.run("serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--mqtt-broker", "http://x", "--log-level", "error")
	if code != 1 || !strings.Contains(errOut, `mqtt broker url "http://x": expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]`) {
		t.Errorf("--mqtt-broker http://x: exit %d, %s", code, errOut)
	}
}
