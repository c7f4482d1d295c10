package client_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/iotnode/iotnode/client"
	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/device"
)

func TestNetworkCostEnvironment(t *testing.T) {
	tests := []struct {
		name string
		env  string
		opts []client.Option
		want string // the error, "" for none
	}{
		{name: "unset"},
		{name: "cellular, lower case", env: "cellular"},
		{name: "satellite", env: "SATELLITE"},
		{name: "invalid", env: "wifi",
			want: `new directly connected device: environment variable oracle_iot_client_network_cost: "wifi", expected ETHERNET, CELLULAR or SATELLITE`},
		{name: "an invalid option is reported as the option", env: "CELLULAR",
			opts: []client.Option{client.WithDeviceOptions(device.WithNetworkCost("wifi"))},
			want: `new directly connected device: option WithNetworkCost: "WIFI", expected ETHERNET, CELLULAR or SATELLITE`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(client.NetworkCostEnv, tt.env)
			dcd, err := client.NewDirectlyConnectedDevice(localFile(t, 0o600), passphrase, tt.opts...)
			if err == nil {
				closeDevice(t, dcd)
			}
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("error %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDevicePoliciesFromTheCloud(t *testing.T) {
	inst := startCloud(t)
	path := provision(t, inst, api.DeviceTypeDirect, "humidity-policy")
	ctx := t.Context()
	dcd, err := client.NewDirectlyConnectedDevice(path, passphrase, client.WithKDFIterations(kdf))
	if err != nil {
		t.Fatal(err)
	}
	defer closeDevice(t, dcd)
	if err := dcd.Activate(ctx, humidityURN); err != nil {
		t.Fatal(err)
	}
	m, err := dcd.DeviceModel(ctx, humidityURN)
	if err != nil {
		t.Fatal(err)
	}
	vd, err := dcd.CreateVirtualDevice(dcd.EndpointID(), m)
	if err != nil {
		t.Fatal(err)
	}
	awaitPolicy := func(want bool) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for (vd.PolicyID() != "") != want {
			if time.Now().After(deadline) {
				t.Fatalf("PolicyID() = %q after 10 s", vd.PolicyID())
			}
			time.Sleep(20 * time.Millisecond)
		}
		return vd.PolicyID()
	}

	// Assigning a policy pushes policyChanged; the device fetches it.
	stored, err := inst.Client().AddPolicy(ctx, []byte(`{"description":"drop implausible values","enabled":true,"pipelines":[`+
		`{"attributeName":"humidity","pipeline":[{"id":"filterCondition","parameters":{"condition":"$(humidity) > 90"}}]}]}`), humidityURN)
	if err != nil {
		t.Fatal(err)
	}
	var pol struct{ ID string }
	if err := json.Unmarshal(stored, &pol); err != nil || pol.ID == "" {
		t.Fatalf("stored policy %s: %v", stored, err)
	}
	if err := inst.Client().AssignPolicy(ctx, pol.ID, api.PolicyAssignment{DeviceModel: humidityURN}); err != nil {
		t.Fatal(err)
	}
	if id := awaitPolicy(true); id != pol.ID {
		t.Fatalf("PolicyID() = %q, want %q", id, pol.ID)
	}
	for _, h := range []int{95, 55} {
		if err := vd.Offer("humidity", h); err != nil {
			t.Fatal(err)
		}
	}
	awaitMessage(t, inst.Client(), dcd.EndpointID(), "DATA", humidityURN+":attributes", "humidity", 55)
	// 95 was offered before 55: had it been sent, the cloud would have it.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := waitMessage(short, inst.Client(), dcd.EndpointID(), "DATA", humidityURN+":attributes", "humidity", 95); err == nil {
		t.Error("the policy let 95 through")
	}

	// Deleting it pushes the change; Offer then sends like Set.
	if err := inst.Client().DeletePolicy(ctx, pol.ID); err != nil {
		t.Fatal(err)
	}
	awaitPolicy(false)
	if err := vd.Offer("humidity", 96); err != nil {
		t.Fatal(err)
	}
	awaitMessage(t, inst.Client(), dcd.EndpointID(), "DATA", humidityURN+":attributes", "humidity", 96)
}
