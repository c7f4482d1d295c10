package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"

	"github.com/iotnode/iotnode/client"
	"github.com/iotnode/iotnode/cloud/api"
	cloudclient "github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
)

// A provisioning file that is not the one the cloud wrote, or that others
// may read, is refused by the constructor with one error naming the file;
// nothing more specific about a wrong passphrase or a change to the file.
func TestProvisioningFileErrors(t *testing.T) {
	c := startCloud(t)
	good, err := os.ReadFile(provision(t, c, api.DeviceTypeDirect, "dcd-1"))
	if err != nil {
		t.Fatal(err)
	}
	header, body, ok := bytes.Cut(good, []byte("\n"))
	if !ok || len(body) < 10 {
		t.Fatalf("the provisioning file is not header + body:\n%s", good)
	}
	// flip changes the byte at i of a copy of data to another character of
	// the same alphabet (base64, hexadecimal).
	flip := func(data []byte, i int) []byte {
		out := bytes.Clone(data)
		if out[i] == 'a' {
			out[i] = 'b'
		} else {
			out[i] = 'a'
		}
		return out
	}
	nonce := bytes.LastIndex(header, []byte("nonce=")) + len("nonce=")
	const badPass = "new directly connected device: provisioning file %s: wrong passphrase or damaged file"
	tests := []struct {
		name       string
		file       []byte
		perm       os.FileMode
		passphrase string
		want       string // %s is the path
		is         error
	}{
		{"wrong passphrase", good, 0o600, "not the passphrase", badPass, trust.ErrPassphrase},
		{"tampered payload", append(append(bytes.Clone(header), '\n'), flip(body, len(body)/2)...), 0o600, passphrase, badPass, trust.ErrPassphrase},
		{"tampered header", append(append(flip(header, nonce), '\n'), body...), 0o600, passphrase, badPass, trust.ErrPassphrase},
		{"truncated at a line end", good[:len(header)+1+2*77], 0o600, passphrase, badPass, trust.ErrPassphrase},
		{"world-readable", good, 0o644, passphrase,
			"new directly connected device: provisioning file %s: mode 0644 lets group or others access it; want 0600: run chmod 600 %s", nil},
		{"group-readable", good, 0o640, passphrase,
			"new directly connected device: provisioning file %s: mode 0640 lets group or others access it; want 0600: run chmod 600 %s", nil},
		{"missing", nil, 0, passphrase, "new directly connected device: provisioning file %s: file does not exist", fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := t.TempDir() + "/device.conf"
			if tt.file != nil {
				if err := os.WriteFile(path, tt.file, tt.perm); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.perm); err != nil { // the umask may have cleared bits
					t.Fatal(err)
				}
			}
			d, err := client.NewDirectlyConnectedDevice(path, tt.passphrase, client.WithKDFIterations(kdf))
			if err == nil {
				closeDevice(t, d)
				t.Fatal("the device opened")
			}
			want := tt.want
			if bytes.Count([]byte(want), []byte("%s")) == 2 {
				want = fmt.Sprintf(want, path, path)
			} else {
				want = fmt.Sprintf(want, path)
			}
			if err.Error() != want {
				t.Errorf("error\n%s\nwant\n%s", err, want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(err, %v) = false", tt.is)
			}
			if _, err := os.Stat(path + client.DataDirSuffix); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a refused file left a data directory: %v", err)
			}
		})
	}
}

// Unknown model URNs and values the model refuses give errors naming the
// URN, the attribute or field, what was wrong and what was expected; nothing
// reaches the cloud.
func TestModelErrors(t *testing.T) {
	c := startCloud(t)
	d := openDevice(t, provision(t, c, api.DeviceTypeDirect, "humidity-1"))
	const unknown = "urn:com:example:unknown"
	err := d.Activate(t.Context(), unknown)
	if want := `activate: activate directly: cloud answered 400: deviceModels: unknown device model "` + unknown +
		`", expected a model registered with POST /iot/api/v2/deviceModels (or activate with createDraft=true)`; err == nil || err.Error() != want {
		t.Errorf("Activate(%s): %v, want %s", unknown, err, want)
	}
	if d.IsActivated() {
		t.Fatal("a refused activation activated the device")
	}
	if err := d.Activate(t.Context(), humidityURN); err != nil {
		t.Fatal(err)
	}
	_, err = d.DeviceModel(t.Context(), unknown)
	if want := `device model "` + unknown + `": fetch device model "` + unknown + `": cloud answered 404: device model "` + unknown +
		`" is not registered (not found)`; err == nil || err.Error() != want || !errors.Is(err, ports.ErrNotFound) {
		t.Errorf("DeviceModel(%s): %v, want %s wrapping ports.ErrNotFound", unknown, err, want)
	}

	v := virtualDevice(t, d.DirectlyConnectedDevice, d.EndpointID(), humidityURN)
	const alert = humidityURN + ":too_humid"
	for _, tt := range []struct {
		name string
		do   func() error
		want string
	}{
		{"string for INTEGER", func() error { return v.Set("humidity", "wet") }, `attribute "humidity": want INTEGER, got "wet"`},
		{"fraction for INTEGER", func() error { return v.Set("humidity", 55.5) }, `attribute "humidity": want INTEGER, got 55.5`},
		{"bool for INTEGER", func() error { return v.Set("humidity", true) }, `attribute "humidity": want INTEGER, got true`},
		{"out of range", func() error { return v.Set("humidity", 140) }, `attribute "humidity": 140 is out of range 0..100`},
		{"unknown attribute", func() error { return v.Set("color", 1) }, `attribute "color": not in device model "` + humidityURN + `"`},
		{"update with two bad values", func() error { return v.Update().Set("humidity", "wet").Set("maxThreshold", 10).Finish() },
			"attribute \"humidity\": want INTEGER, got \"wet\"\nattribute \"maxThreshold\": 10 is out of range 60..100"},
		{"alert without its required field", func() error { return v.CreateAlert(alert).Raise() },
			`alert "` + alert + `": field "humidity" is required`},
		{"unknown alert format", func() error { return v.CreateAlert(humidityURN+":nope").Set("humidity", 1).Raise() },
			`alert format "` + humidityURN + `:nope": not in device model "` + humidityURN + `"`},
		{"alert format used as data", func() error { return v.CreateData(alert).Set("humidity", 1).Submit() },
			`data format "` + alert + `": has type ALERT, expected DATA`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); err == nil || err.Error() != tt.want {
				t.Errorf("error\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
	closeDevice(t, d)
	for _, typ := range []message.Type{message.TypeData, message.TypeAlert} {
		msgs, err := storedMessages(t.Context(), c.Client(), cloudclient.MessageQuery{Source: d.EndpointID(), Type: string(typ)})
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 0 {
			t.Errorf("refused values reached the cloud:\n%s", describe(msgs))
		}
	}
}
