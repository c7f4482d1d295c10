package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/iotnode/iotnode/client"
	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/device"
)

func ExampleNewDirectlyConnectedDevice() {
	// The provisioning file comes from `iotcloud device register`; here a
	// cloud started for the example writes it.
	path, stop := exampleCloud(api.DeviceTypeDirect)
	defer stop()
	const urn = "urn:com:oracle:iot:device:humidity_sensor"
	ctx := context.Background()

	dcd, err := client.NewDirectlyConnectedDevice(path, "correct horse battery staple")
	if err != nil {
		log.Fatal(err)
	}
	defer dcd.Close(ctx)
	if !dcd.IsActivated() {
		if err := dcd.Activate(ctx, urn); err != nil {
			log.Fatal(err)
		}
	}
	m, err := dcd.DeviceModel(ctx, urn)
	if err != nil {
		log.Fatal(err)
	}
	sensor, err := dcd.CreateVirtualDevice(dcd.EndpointID(), m)
	if err != nil {
		log.Fatal(err)
	}
	sensor.OnChange(func(ev device.ChangeEvent) {
		for _, c := range ev.Changes {
			log.Printf("the cloud set %s to %v", c.Name, c.New)
		}
	})
	if err := sensor.Set("humidity", 55); err != nil {
		log.Fatal(err)
	}
	fmt.Println(sensor.Set("humidity", 140))
	v, _ := sensor.Get("humidity")
	fmt.Println("humidity", v)
	// Output:
	// attribute "humidity": 140 is out of range 0..100
	// humidity 55
}

func ExampleNewGatewayDevice() {
	path, stop := exampleCloud(api.DeviceTypeGateway)
	defer stop()
	const urn = "urn:com:oracle:iot:device:humidity_sensor"
	ctx := context.Background()

	gw, err := client.NewGatewayDevice(path, "correct horse battery staple")
	if err != nil {
		log.Fatal(err)
	}
	defer gw.Close(ctx)
	if !gw.IsActivated() {
		if err := gw.Activate(ctx); err != nil {
			log.Fatal(err)
		}
	}
	// The sensors behind the gateway: registering again on every start is
	// normal, the cloud answers with the same endpoint.
	id, err := gw.RegisterDevice(ctx, "HUM-0042", map[string]string{
		device.MetaManufacturer: "Acme",
		device.MetaModelNumber:  "H-100",
		device.MetaSerialNumber: "0042",
	}, urn)
	if err != nil {
		log.Fatal(err)
	}
	m, err := gw.DeviceModel(ctx, urn)
	if err != nil {
		log.Fatal(err)
	}
	sensor, err := gw.CreateVirtualDevice(id, m)
	if err != nil {
		log.Fatal(err)
	}
	if err := sensor.Set("humidity", 48); err != nil {
		log.Fatal(err)
	}
	again, _ := gw.RegisterDevice(ctx, "HUM-0042", nil, urn)
	fmt.Println(again == id)
	// Output:
	// true
}
