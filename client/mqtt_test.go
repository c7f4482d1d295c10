package client_test

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotnode/iotnode/client"
	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/launch"
	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/trust"
)

// provisionMQTT registers a device of type typ and writes a provisioning
// file that names the cloud's MQTT broker. It returns the path.
func provisionMQTT(t testing.TB, inst *launch.Instance, typ, hardwareID string) string {
	t.Helper()
	path, err := provisionFileFor(t.Context(), inst.Client(), t.TempDir(), typ, hardwareID, "mqtt")
	if err != nil {
		t.Fatal(err)
	}
	a := readAssets(t, path)
	if !strings.HasPrefix(a.ServerURI, "mqtts://") {
		t.Fatalf("the MQTT provisioning file names %q, want an mqtts URI", a.ServerURI)
	}
	return path
}

func readAssets(t testing.TB, path string) *trust.Assets {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := trust.Decode(data, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// An mqtts provisioning file opens the MQTT transport: activation, models,
// messages and the cloud's attribute sets go over the embedded broker (the
// file names no HTTPS URL), and a restart connects as the endpoint.
func TestMQTTProvisioningFileOpensTheMQTTTransport(t *testing.T) {
	inst := startCloudWith(t, launch.Options{MQTTListen: "127.0.0.1:0"})
	path := provisionMQTT(t, inst, api.DeviceTypeDirect, "humidity-mqtt")
	ctx := t.Context()

	dcd, err := client.NewDirectlyConnectedDevice(path, passphrase, client.WithKDFIterations(kdf), client.WithHTTPTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got := dcd.Transport(); got != client.TransportMQTT {
		t.Fatalf("Transport() = %q for %s, want %q", got, inst.MQTTURL(), client.TransportMQTT)
	}
	if err := dcd.Activate(ctx, humidityURN); err != nil {
		t.Fatal(err)
	}
	endpoint := dcd.EndpointID()
	m, err := dcd.DeviceModel(ctx, humidityURN)
	if err != nil {
		t.Fatal(err)
	}
	vd, err := dcd.CreateVirtualDevice(endpoint, m)
	if err != nil {
		t.Fatal(err)
	}
	changed := make(chan string, 1)
	vd.OnChange(func(ev device.ChangeEvent) {
		for _, c := range ev.Changes {
			changed <- c.Name + "=" + c.New.String()
		}
	})
	if err := vd.Set("humidity", 55); err != nil {
		t.Fatal(err)
	}
	// No device policies over MQTT: Offer sends the value as Set does.
	if err := vd.Offer("humidity", 56); err != nil {
		t.Fatal(err)
	}
	awaitMessage(t, inst.Client(), endpoint, "DATA", humidityURN+":attributes", "humidity", 55)
	awaitMessage(t, inst.Client(), endpoint, "DATA", humidityURN+":attributes", "humidity", 56)

	id, err := inst.Client().SetAttribute(ctx, endpoint, humidityURN, "maxThreshold", 90)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-changed:
		if got != "maxThreshold=90" {
			t.Errorf("OnChange got %s, want maxThreshold=90", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the cloud's attribute set did not reach OnChange within 10 s")
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if r, err := inst.Client().WaitRequest(wctx, id); err != nil || r.Status != api.RequestCompleted {
		t.Errorf("request %s: %+v, %v; want %s", id, r, err, api.RequestCompleted)
	}

	// Storage objects have no MQTT topics: the error says what is needed.
	_, err = dcd.CreateStorageObject("notes/today.txt", "text/plain")
	for _, want := range []string{`create storage object "notes/today.txt"`, "storage objects need the HTTPS transport", inst.MQTTURL(), "https server URI"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CreateStorageObject over MQTT: %v; want it to say %q", err, want)
		}
	}
	closeDevice(t, dcd)

	again, err := client.NewDirectlyConnectedDevice(path, passphrase, client.WithKDFIterations(kdf))
	if err != nil {
		t.Fatal(err)
	}
	defer closeDevice(t, again)
	if !again.IsActivated() || again.EndpointID() != endpoint || again.Transport() != client.TransportMQTT {
		t.Fatalf("after restart: activated %v as %q over %s, want activated as %q over mqtt", again.IsActivated(), again.EndpointID(), again.Transport(), endpoint)
	}
	m2, err := again.DeviceModel(ctx, humidityURN)
	if err != nil {
		t.Fatal(err)
	}
	vd2, err := again.CreateVirtualDevice(endpoint, m2)
	if err != nil {
		t.Fatal(err)
	}
	if err := vd2.Set("humidity", 61); err != nil {
		t.Fatal(err)
	}
	awaitMessage(t, inst.Client(), endpoint, "DATA", humidityURN+":attributes", "humidity", 61)
}

func TestMQTTGatewayRegistersDevices(t *testing.T) {
	inst := startCloudWith(t, launch.Options{MQTTListen: "127.0.0.1:0"})
	path := provisionMQTT(t, inst, api.DeviceTypeGateway, "gateway-mqtt")
	ctx := t.Context()
	gw, err := client.NewGatewayDevice(path, passphrase, client.WithKDFIterations(kdf))
	if err != nil {
		t.Fatal(err)
	}
	defer closeDevice(t, gw)
	if gw.Transport() != client.TransportMQTT {
		t.Fatalf("Transport() = %q, want mqtt", gw.Transport())
	}
	if err := gw.Activate(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := gw.RegisterDevice(ctx, "hum-mqtt", map[string]string{device.MetaManufacturer: "Acme"}, humidityURN)
	if err != nil {
		t.Fatal(err)
	}
	m, err := gw.DeviceModel(ctx, humidityURN)
	if err != nil {
		t.Fatal(err)
	}
	vd, err := gw.CreateVirtualDevice(id, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := vd.Set("humidity", 42); err != nil {
		t.Fatal(err)
	}
	awaitMessage(t, inst.Client(), id, "DATA", humidityURN+":attributes", "humidity", 42)
	if _, err := gw.CreateStorageObject("x.bin", ""); err == nil || !strings.Contains(err.Error(), "storage objects need the HTTPS transport") {
		t.Errorf("gateway CreateStorageObject over MQTT: %v", err)
	}
}

// The server URI picks the transport; what a transport refuses is the
// constructor's error, naming the file's URI.
func TestTransportFromServerURI(t *testing.T) {
	tests := []struct {
		uri       string
		transport string // "" when the constructor fails
		want      string
	}{
		{uri: "https://127.0.0.1:1", transport: client.TransportHTTPS},
		{uri: "mqtts://127.0.0.1:1", transport: client.TransportMQTT},
		{uri: "mqtt://127.0.0.1:1", transport: client.TransportMQTT},
		{uri: "mqtts://iot.example.com", transport: client.TransportMQTT},
		{uri: "mqtt://iot.example.com:1883", want: `server URI "mqtt://iot.example.com:1883" of the provisioning file uses plain mqtt to iot.example.com, which is not a loopback address`},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			path := fileFor(t, tt.uri)
			dcd, err := client.NewDirectlyConnectedDevice(path, passphrase)
			if tt.transport == "" {
				if err == nil {
					closeDevice(t, dcd)
					t.Fatal("no error")
				}
				if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "new directly connected device: ") {
					t.Errorf("error %q, want it to say %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer closeDevice(t, dcd)
			if got := dcd.Transport(); got != tt.transport {
				t.Errorf("Transport() = %q, want %q", got, tt.transport)
			}
		})
	}
}

// fileFor writes a provisioning file (mode 0600) for a cloud at uri that
// is never called.
func fileFor(t testing.TB, uri string) string {
	t.Helper()
	data, err := trust.EncodeV2(&trust.Assets{ServerURI: uri, ClientID: "offline-sensor", SharedSecret: []byte("s3cret")},
		passphrase, rand.Reader, trust.WithIterations(kdf))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "device.conf")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
