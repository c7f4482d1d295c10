package launch

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/domain/trust"
)

func TestOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{
			name: "both brokers",
			o:    Options{MQTTListen: "127.0.0.1:8883", MQTTBroker: "mqtt://127.0.0.1:1883"},
			want: "mqtt: both an embedded broker address and an external broker URL given, expected one at most (the cloud runs its own broker or uses another)",
		},
		{
			name: "listen without a port",
			o:    Options{MQTTListen: "8883"},
			want: `mqtt listen address "8883": expected HOST:PORT such as 127.0.0.1:8883 (port 0 picks a free port)`,
		},
		{
			name: "broker with another scheme",
			o:    Options{MQTTBroker: "http://127.0.0.1:1883"},
			want: `mqtt broker url "http://127.0.0.1:1883": expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]`,
		},
		{
			name: "public url without a broker",
			o:    Options{MQTTPublicURL: "mqtts://iot.example.com:8883"},
			want: `mqtt public url "mqtts://iot.example.com:8883": given without an MQTT broker, expected an embedded broker address or an external broker URL too`,
		},
		{
			name: "public url with another scheme",
			o:    Options{MQTTListen: "127.0.0.1:0", MQTTPublicURL: "https://iot.example.com"},
			want: `mqtt public url "https://iot.example.com": expected mqtts://HOST[:PORT]`,
		},
		{
			name: "store that is not postgres",
			o:    Options{StoreURL: "mysql://127.0.0.1/x"},
			want: "store: the URL must start with postgres:// or postgresql:// (leave it empty for the embedded store in the data directory)",
		},
		{
			name: "store schema without a store",
			o:    Options{StoreSchema: "iot"},
			want: "store schema: given without a PostgreSQL store URL",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.DataDir = "x"
			if err := tt.o.Validate(); err == nil || err.Error() != tt.want {
				t.Errorf("Validate: %v\nwant %s", err, tt.want)
			}
		})
	}
}

// TestMQTTListen: the embedded broker serves TLS with the server certificate
// on the real port, provisioning files can name it, and Shutdown closes it
// with nothing left running.
func TestMQTTListen(t *testing.T) {
	before := runtime.NumGoroutine()
	inst, err := Start(t.Context(), Options{DataDir: t.TempDir(), Listen: "127.0.0.1:0", MQTTListen: "127.0.0.1:0", KDFIterations: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^mqtts://127\.0\.0\.1:[1-9][0-9]*$`).MatchString(inst.MQTTURL()) {
		t.Fatalf("MQTTURL() = %q, want mqtts://127.0.0.1:PORT", inst.MQTTURL())
	}
	addr := strings.TrimPrefix(inst.MQTTURL(), "mqtts://")
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: inst.CAPool(), NextProtos: []string{"mqtt"}})
	if err != nil {
		t.Fatalf("TLS to the broker with only the cloud's CA (and ALPN mqtt): %v", err)
	}
	conn.Close()

	dev, err := inst.Client().RegisterDevice(t.Context(), api.RegisterDevice{HardwareID: "mqtt-prov"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ transport, format, uri string }{
		{"mqtt", "v2", inst.MQTTURL()},
		{"", "oracle", inst.URL()},
		{"", "v2", inst.URL()},
	} {
		file, err := inst.Client().ProvisioningFile(t.Context(), dev.ID, api.ProvisioningFileRequest{Passphrase: "passphrase", Format: tt.format, Transport: tt.transport})
		if err != nil {
			t.Fatalf("provisioning file %s %s: %v", tt.transport, tt.format, err)
		}
		a, _, err := trust.Decode(file, "passphrase")
		if err != nil {
			t.Fatalf("decode the %s file: %v", tt.format, err)
		}
		if a.ServerURI != tt.uri {
			t.Errorf("transport %q format %s: server URI %q (%v), want %q", tt.transport, tt.format, a.ServerURI, err, tt.uri)
		}
	}

	if err := inst.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the MQTT port still accepts connections after Shutdown")
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before Start, %d after Shutdown:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMQTTPublicURLAndInsecure(t *testing.T) {
	inst := start(t, Options{DataDir: t.TempDir(), MQTTListen: "127.0.0.1:0", MQTTPublicURL: "mqtts://iot.example.com:8883/"})
	if inst.MQTTURL() != "mqtts://iot.example.com:8883" {
		t.Errorf("MQTTURL() = %q, want the public one", inst.MQTTURL())
	}
	var logs bytes.Buffer
	plain := start(t, Options{DataDir: t.TempDir(), InsecureHTTP: true, MQTTListen: "127.0.0.1:0", Logger: slogTo(&logs)})
	if !strings.HasPrefix(plain.MQTTURL(), "mqtt://127.0.0.1:") {
		t.Errorf("MQTTURL() = %q with InsecureHTTP, want mqtt://", plain.MQTTURL())
	}
	if !strings.Contains(logs.String(), `level=WARN msg="serving plain MQTT without TLS`) {
		t.Errorf("no warning logged; logs:\n%s", logs.String())
	}
	dev, err := inst.Client().RegisterDevice(t.Context(), api.RegisterDevice{HardwareID: "oracle-mqtt"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = inst.Client().ProvisioningFile(t.Context(), dev.ID, api.ProvisioningFileRequest{Passphrase: "passphrase", Format: "oracle", Transport: "mqtt"})
	if err == nil || !strings.Contains(err.Error(), "format oracle carries an https server URI only") {
		t.Errorf("format oracle with transport mqtt: %v", err)
	}
	none := start(t, Options{DataDir: t.TempDir()})
	if none.MQTTURL() != "" {
		t.Errorf("MQTTURL() = %q without MQTT", none.MQTTURL())
	}
	dev, err = none.Client().RegisterDevice(t.Context(), api.RegisterDevice{HardwareID: "no-mqtt"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = none.Client().ProvisioningFile(t.Context(), dev.ID, api.ProvisioningFileRequest{Passphrase: "passphrase", Transport: "mqtt"})
	if err == nil || !strings.Contains(err.Error(), "transport mqtt needs an MQTT broker, but this cloud runs none") {
		t.Errorf("transport mqtt without a broker: %v", err)
	}
}

func TestMQTTListenInUse(t *testing.T) {
	first := start(t, Options{DataDir: t.TempDir(), MQTTListen: "127.0.0.1:0"})
	addr := strings.TrimPrefix(first.MQTTURL(), "mqtts://")
	inst, err := Start(context.Background(), Options{DataDir: t.TempDir(), Listen: "127.0.0.1:0", MQTTListen: addr})
	if err == nil {
		inst.Shutdown(context.Background())
	}
	if err == nil || !strings.Contains(err.Error(), "mqtt listen on "+addr) || !strings.Contains(err.Error(), "choose another address with --mqtt-listen") {
		t.Errorf("err = %v", err)
	}
}
