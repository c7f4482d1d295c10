package integration

import (
	"maps"
	"os"
	"slices"
	"testing"

	"github.com/iotnode/iotnode/cloud/api"
	cloudclient "github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
)

// checkCloudDevice asserts what the cloud knows about the device id.
func checkCloudDevice(t *testing.T, c *cloud, id string, want api.Device, models ...string) api.Device {
	t.Helper()
	got, err := c.Client().Device(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Type != want.Type || got.State != want.State || got.EndpointID != want.EndpointID || got.Gateway != want.Gateway {
		t.Errorf("cloud device %s: type %s, state %s, endpoint %q, gateway %q; want %s, %s, %q, %q",
			id, got.Type, got.State, got.EndpointID, got.Gateway, want.Type, want.State, want.EndpointID, want.Gateway)
	}
	for _, urn := range models {
		if !slices.Contains(got.Models, urn) {
			t.Errorf("cloud device %s implements %q, want %s among them", id, got.Models, urn)
		}
	}
	for k, v := range want.Metadata {
		if got.Metadata[k] != v {
			t.Errorf("cloud device %s: metadata %q = %q, want %q (all: %v)", id, k, got.Metadata[k], v, got.Metadata)
		}
	}
	return got
}

// checkMode asserts the permission bits of path.
func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %04o, want %04o", path, got, want)
	}
}

func TestActivateDirectlyConnectedDeviceAndRestart(t *testing.T) {
	c := startCloud(t)
	path, reg := register(t, c, api.DeviceTypeDirect, "dcd-1")

	d := openDevice(t, path)
	if d.IsActivated() || d.EndpointID() != "" {
		t.Fatalf("a new provisioning file: IsActivated %v, EndpointID %q; want false, \"\"", d.IsActivated(), d.EndpointID())
	}
	if err := d.Activate(t.Context(), humidityURN); err != nil {
		t.Fatal(err)
	}
	endpoint := d.EndpointID()
	if !d.IsActivated() || endpoint == "" {
		t.Fatalf("after Activate: IsActivated %v, EndpointID %q", d.IsActivated(), endpoint)
	}
	checkCloudDevice(t, c, reg.ID, api.Device{Type: api.DeviceTypeDirect, State: api.StateActivated, EndpointID: endpoint},
		humidityURN, model.CapDirectActivation, model.CapMessageDispatcher, model.CapDiagnostics)
	v := virtualDevice(t, d.DirectlyConnectedDevice, endpoint, humidityURN)
	if err := v.Set("humidity", 41); err != nil {
		t.Fatal(err)
	}
	closeDevice(t, d)
	awaitMessages(t, c, cloudclient.MessageQuery{Source: endpoint, Type: string(message.TypeData)}, 1, dataWith(humidityURN+":attributes", "humidity", 41))
	// Activation rewrote the file with the endpoint and the key; it stays private.
	checkMode(t, path, 0o600)

	// Restart: the same file, the same data directory.
	d2 := openDevice(t, path)
	if !d2.IsActivated() || d2.EndpointID() != endpoint {
		t.Fatalf("after restart: IsActivated %v, EndpointID %q; want true, %q", d2.IsActivated(), d2.EndpointID(), endpoint)
	}
	v2 := virtualDevice(t, d2.DirectlyConnectedDevice, endpoint, humidityURN)
	// The stored key still authenticates: the next value arrives.
	if err := v2.Set("humidity", 42); err != nil {
		t.Fatal(err)
	}
	awaitMessages(t, c, cloudclient.MessageQuery{Source: endpoint, Type: string(message.TypeData)}, 1, dataWith(humidityURN+":attributes", "humidity", 42))
	if err := d2.Activate(t.Context(), humidityURN); err == nil || err.Error() != `activate: the device is already activated as endpoint "`+endpoint+`"` {
		t.Errorf("Activate after restart: %v, want the device is already activated", err)
	}
}

func TestActivateGatewayWithIndirectDevicesAndRestart(t *testing.T) {
	c := startCloud(t)
	path, reg := register(t, c, api.DeviceTypeGateway, "gateway-1")
	icds := []struct {
		hardwareID, urn, attr string
		meta                  map[string]string
		value                 any
	}{
		{"icd-humidity", humidityURN, "humidity",
			map[string]string{device.MetaManufacturer: "Acme", device.MetaModelNumber: "H-100", device.MetaSerialNumber: "SN-0001"}, 37},
		{"icd-temperature", tempURN, "temp",
			map[string]string{device.MetaManufacturer: "Acme", device.MetaModelNumber: "T-200", device.MetaSerialNumber: "SN-0002"}, 21.5},
	}

	g := openGateway(t, path)
	if g.IsActivated() {
		t.Fatal("a new gateway file is activated already")
	}
	if err := g.Activate(t.Context()); err != nil {
		t.Fatal(err)
	}
	gw := g.EndpointID()
	checkCloudDevice(t, c, reg.ID, api.Device{Type: api.DeviceTypeGateway, State: api.StateActivated, EndpointID: gw}, model.CapIndirectActivation)

	endpoints := map[string]string{}
	for _, icd := range icds {
		ep, err := g.RegisterDevice(t.Context(), icd.hardwareID, icd.meta, icd.urn)
		if err != nil {
			t.Fatal(err)
		}
		if ep == "" || ep == gw || slices.Contains(slices.Collect(maps.Values(endpoints)), ep) {
			t.Fatalf("RegisterDevice(%s) = %q: want a new endpoint ID (gateway %s, others %v)", icd.hardwareID, ep, gw, endpoints)
		}
		endpoints[icd.hardwareID] = ep
		checkCloudDevice(t, c, ep, api.Device{Type: api.DeviceTypeIndirect, State: api.StateActivated, EndpointID: ep, Gateway: gw, Metadata: icd.meta}, icd.urn)
	}
	send := func(g *device.GatewayDevice) {
		t.Helper()
		for _, icd := range icds {
			v := virtualDevice(t, g.DirectlyConnectedDevice, endpoints[icd.hardwareID], icd.urn)
			if err := v.Set(icd.attr, icd.value); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Each indirectly connected device's data arrives with its own endpoint as source.
	send(g.GatewayDevice)
	for _, icd := range icds {
		awaitMessages(t, c, cloudclient.MessageQuery{Source: endpoints[icd.hardwareID], Type: string(message.TypeData)}, 1,
			dataWith(icd.urn+":attributes", icd.attr, icd.value))
	}
	closeDevice(t, g)
	checkMode(t, path, 0o600)

	// Restart: still activated as the same gateway, and registering the
	// devices again (what a gateway does on every start) gives the same
	// endpoints.
	g2 := openGateway(t, path)
	if !g2.IsActivated() || g2.EndpointID() != gw {
		t.Fatalf("after restart: IsActivated %v, EndpointID %q; want true, %q", g2.IsActivated(), g2.EndpointID(), gw)
	}
	for _, icd := range icds {
		ep, err := g2.RegisterDevice(t.Context(), icd.hardwareID, icd.meta, icd.urn)
		if err != nil {
			t.Fatal(err)
		}
		if ep != endpoints[icd.hardwareID] {
			t.Errorf("RegisterDevice(%s) after restart = %q, want %q", icd.hardwareID, ep, endpoints[icd.hardwareID])
		}
	}
	send(g2.GatewayDevice)
	for _, icd := range icds {
		got := awaitMessages(t, c, cloudclient.MessageQuery{Source: endpoints[icd.hardwareID], Type: string(message.TypeData)}, 2,
			dataWith(icd.urn+":attributes", icd.attr, icd.value))
		if got[1].ClientID == got[0].ClientID {
			t.Errorf("the value sent after the restart has the clientId of the first one: %s", got[1].ClientID)
		}
	}
}
