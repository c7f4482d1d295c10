package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iotnode/iotnode/adapters/fsstore"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports/porttest"
)

const doctorConfig = `
provisioning_file: device.prov
passphrase_file: passphrase
data_dir: data
devices:
  - name: thermometer
    model: urn:com:oracle:iot:device:temperature_sensor
    driver: sim
    settings:
      signals:
        temperature: {waveform: sine, min: 18, max: 26, period: 2m}
    bindings:
      temp: {reading: temperature}
`

// rewriteAssets decodes dir/device.prov, lets change modify the assets and
// writes the file again.
func rewriteAssets(t *testing.T, dir string, change func(a *trust.Assets)) {
	t.Helper()
	p := filepath.Join(dir, "device.prov")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := trust.Decode(data, testPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	change(a)
	out, err := trust.EncodeV2(a, testPassphrase, rand.Reader, trust.WithIterations(trust.MinIterations))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// otherCA is a self-signed certificate that signed nothing the cloud uses.
func otherCA(t *testing.T) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "someone else's CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// line is one expected line of doctor's output: its status, its check and
// a pattern its detail must match.
type line struct{ status, check, detail string }

func TestDoctor(t *testing.T) {
	t.Parallel()
	c := startCloud(t)
	refused := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string, m *Main)
		want  []line
		code  int
	}{
		{
			name: "all well, not activated",
			want: []line{
				{"OK", "clock", `^\d{4}-\d\d-\d\dT`},
				{"OK", "provisioning", `device\.prov: server https://127\.0\.0\.1:\d+, not activated yet$`},
				{"OK", "dns", `^127\.0\.0\.1 is an IP address: nothing to resolve$`},
				{"OK", "tcp", `^connected to 127\.0\.0\.1:\d+ in `},
				{"OK", "tls", `^TLS 1\.3 verified against 1 provisioned trust anchor\(s\): CN=iotcloud server,O=iotcloud, expires \d{4}-\d\d-\d\d$`},
				{"OK", "clock-skew", `^within 1m0s of the server's clock \(0s\)$`},
				{"OK", "credentials", `^the cloud accepts the shared secret of \S+ \(activation pending: 'iotnode activate' or 'iotnode run' activates\)$`},
				{"OK", "data-dir", `data does not exist yet; it will be created \(mode 0700\)$`},
				{"OK", "outbox", `/outbox does not exist yet \(the first run creates it\)$`},
			},
		},
		{
			name: "all well, activated, outbox in use",
			setup: func(t *testing.T, dir string, m *Main) {
				if r := runMain(t, t.Context(), nil, nil, "activate", "--config", filepath.Join(dir, "iotnode.yaml")); r.code != 0 {
					t.Fatalf("activate: %d %s", r.code, r.stderr)
				}
				ob, err := fsstore.OpenOutbox(filepath.Join(dir, "data", outboxFile), fsstore.OutboxOptions{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ob.Close() })
			},
			want: []line{
				{"OK", "clock", ``},
				{"OK", "provisioning", `, activated as \S+$`},
				{"OK", "dns", ``},
				{"OK", "tcp", ``},
				{"OK", "tls", ``},
				{"OK", "clock-skew", ``},
				{"OK", "credentials", `^the cloud accepts endpoint \S+$`},
				{"OK", "data-dir", `data is writable \(mode drwx------\), \d+ MiB free$`},
				{"OK", "outbox", `/outbox is in use by a running iotnode$`},
			},
		},
		{
			name: "clock before 2020",
			setup: func(t *testing.T, dir string, m *Main) {
				m.Clock = porttest.NewFakeClock(time.Date(1970, 1, 1, 0, 0, 42, 0, time.UTC))
			},
			code: ExitFailure,
			want: []line{
				{"FAIL", "clock", `^the system time 1970-01-01T00:00:42Z is before 2020, so certificates and tokens cannot be checked — fix: set the clock and keep it set with NTP \(timedatectl set-ntp true\)$`},
				{"OK", "provisioning", ``},
				{"OK", "dns", ``},
				{"OK", "tcp", ``},
				{"FAIL", "tls", `failed: x509: certificate has expired or is not yet valid: .* — fix: the server's certificate must chain to a trust anchor of the provisioning file: provision the device again from this cloud, or check the clock$`},
				{"SKIP", "clock-skew", `^no connection to the server$`},
				{"SKIP", "credentials", `^no connection to the server$`},
				{"OK", "data-dir", ``},
				{"OK", "outbox", ``},
			},
		},
		{
			name: "clock off the server's",
			setup: func(t *testing.T, dir string, m *Main) {
				m.Clock = porttest.NewFakeClock(time.Now().Add(10 * time.Minute))
			},
			code: ExitFailure,
			want: []line{
				{"OK", "clock", ``},
				{"OK", "provisioning", ``},
				{"OK", "dns", ``},
				{"OK", "tcp", ``},
				{"OK", "tls", ``},
				{"FAIL", "clock-skew", `^this clock is (9m59s|10m0s|10m1s) off the server's \(.* here, .* there\) — fix: synchronise the clock with NTP \(timedatectl set-ntp true\)$`},
				{"OK", "credentials", ``},
				{"OK", "data-dir", ``},
				{"OK", "outbox", ``},
			},
		},
		{
			name: "trust anchor of another CA",
			setup: func(t *testing.T, dir string, m *Main) {
				ca := otherCA(t)
				rewriteAssets(t, dir, func(a *trust.Assets) { a.TrustAnchors = [][]byte{ca} })
			},
			code: ExitFailure,
			want: []line{
				{"OK", "clock", ``},
				{"OK", "provisioning", ``},
				{"OK", "dns", ``},
				{"OK", "tcp", ``},
				{"FAIL", "tls", `against 1 provisioned trust anchor\(s\) failed: x509: certificate signed by unknown authority — fix: the server's certificate must chain to a trust anchor of the provisioning file: provision the device again from this cloud, or check the clock$`},
				{"SKIP", "clock-skew", ``},
				{"SKIP", "credentials", ``},
				{"OK", "data-dir", ``},
				{"OK", "outbox", ``},
			},
		},
		{
			name:  "wrong passphrase",
			setup: func(t *testing.T, dir string, m *Main) { write(t, dir, "passphrase", "not the passphrase\n") },
			code:  ExitFailure,
			want: []line{
				{"OK", "clock", ``},
				{"FAIL", "provisioning", `^provisioning file \S+device\.prov: wrong passphrase or damaged file — fix: use the passphrase the file was written with \(passphrase_file or IOTNODE_PASSPHRASE\), or provision the device again$`},
				{"SKIP", "dns", `^no server URI \(the provisioning file could not be read\)$`},
				{"SKIP", "tcp", `^no server address$`},
				{"SKIP", "tls", `^the server cannot be reached$`},
				{"SKIP", "clock-skew", ``},
				{"SKIP", "credentials", ``},
				{"OK", "data-dir", ``},
				{"OK", "outbox", ``},
			},
		},
		{
			name:  "unreachable server",
			setup: func(t *testing.T, dir string, m *Main) { m.Dial = refused },
			code:  ExitFailure,
			want: []line{
				{"OK", "clock", ``},
				{"OK", "provisioning", ``},
				{"OK", "dns", ``},
				{"FAIL", "tcp", `^cannot connect to 127\.0\.0\.1:\d+: connection refused — fix: check that the cloud runs and that a firewall or proxy lets this machine reach 127\.0\.0\.1:\d+$`},
				{"SKIP", "tls", `^the server cannot be reached$`},
				{"SKIP", "clock-skew", ``},
				{"SKIP", "credentials", ``},
				{"OK", "data-dir", ``},
				{"OK", "outbox", ``},
			},
		},
		{
			name: "unknown host name",
			setup: func(t *testing.T, dir string, m *Main) {
				rewriteAssets(t, dir, func(a *trust.Assets) { a.ServerURI = "https://iot.example.invalid:8443" })
				m.LookupHost = func(ctx context.Context, host string) ([]string, error) {
					return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
				}
				m.Dial = refused
			},
			code: ExitFailure,
			want: []line{
				{"OK", "clock", ``},
				{"OK", "provisioning", `server https://iot\.example\.invalid:8443, not activated yet$`},
				{"FAIL", "dns", `^cannot resolve iot\.example\.invalid: lookup iot\.example\.invalid: no such host — fix: check /etc/resolv\.conf and the network, or the host name in the server URI$`},
				{"FAIL", "tcp", `^cannot connect to iot\.example\.invalid:8443: connection refused — fix: `},
				{"SKIP", "tls", ``},
				{"SKIP", "clock-skew", ``},
				{"SKIP", "credentials", ``},
				{"OK", "data-dir", ``},
				{"OK", "outbox", ``},
			},
		},
		{
			name: "shared secret the cloud does not know",
			setup: func(t *testing.T, dir string, m *Main) {
				rewriteAssets(t, dir, func(a *trust.Assets) { a.SharedSecret = []byte("not the secret the cloud made") })
			},
			code: ExitFailure,
			want: []line{
				{"OK", "clock", ``},
				{"OK", "provisioning", ``},
				{"OK", "dns", ``},
				{"OK", "tcp", ``},
				{"OK", "tls", ``},
				{"OK", "clock-skew", ``},
				{"FAIL", "credentials", `^the activation token was refused: .*unauthorized.* — fix: the shared secret does not match the cloud's, or the device is already activated elsewhere: provision the device again$`},
				{"OK", "data-dir", ``},
				{"OK", "outbox", ``},
			},
		},
		{
			name: "read-only data directory",
			setup: func(t *testing.T, dir string, m *Main) {
				data := filepath.Join(dir, "data")
				if err := os.Mkdir(data, 0o500); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.Chmod(data, 0o700) })
			},
			code: ExitFailure,
			want: []line{
				{"OK", "clock", ``},
				{"OK", "provisioning", ``},
				{"OK", "dns", ``},
				{"OK", "tcp", ``},
				{"OK", "tls", ``},
				{"OK", "clock-skew", ``},
				{"OK", "credentials", ``},
				{"FAIL", "data-dir", `data is not readable, writable and searchable by its owner \(mode dr-x------\) — fix: chmod 700 \S+data$`},
				{"OK", "outbox", ``},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c.provision(t, dir, false)
			f := write(t, dir, "iotnode.yaml", doctorConfig)
			m := NewMain()
			if tt.setup != nil {
				tt.setup(t, dir, m)
			}
			r := runMain(t, t.Context(), m, nil, "doctor", "--config", f)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d; stderr %q", r.code, tt.code, r.stderr)
			}
			lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("%d lines, want %d:\n%s", len(lines), len(tt.want), r.stdout)
			}
			for i, w := range tt.want {
				re := regexp.MustCompile(`^(OK|FAIL|SKIP) +(\S+) +(.*)$`)
				m := re.FindStringSubmatch(lines[i])
				if m == nil || m[1] != w.status || m[2] != w.check || !regexp.MustCompile(w.detail).MatchString(m[3]) {
					t.Errorf("line %d:\n%s\nwant %s %s matching %s", i+1, lines[i], w.status, w.check, w.detail)
				}
			}
		})
	}
}

// The doctor's config problems are those of run: exit status 2.
func TestDoctorBadConfig(t *testing.T) {
	dir := t.TempDir()
	f := write(t, dir, "iotnode.yaml", "devices: []\n")
	r := runMain(t, t.Context(), nil, nil, "doctor", "--config", f)
	want := "iotnode doctor: config " + f + " has 3 problems:\n" +
		"  provisioning_file: missing (expected the path of the device's provisioning file, written by 'iotcloud device register')\n" +
		"  passphrase_file: no passphrase: set passphrase_file to a file whose first line is the passphrase, or the environment variable IOTNODE_PASSPHRASE (never a command-line argument)\n" +
		"  devices: no devices (expected at least one device with a model, a driver and bindings)\n"
	if r.code != ExitUsage || r.stderr != want || r.stdout != "" {
		t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant:\n%s", r.code, r.stdout, r.stderr, want)
	}
}
