package mqtt_test

import (
	"fmt"
	"time"

	"github.com/iotnode/iotnode/adapters/mqtt"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
	"github.com/iotnode/iotnode/ports/porttest"
)

// A device whose provisioning file names an mqtts server talks to the cloud
// through this transport; New only checks the file, the first call connects.
func ExampleNew() {
	store := porttest.NewMemTrustStore(&trust.Assets{
		ServerURI:    "mqtts://iot.example.com",
		ClientID:     "thermostat-17",
		SharedSecret: []byte("s3cr3t"),
	})
	c, err := mqtt.New(mqtt.Config{Trust: store, Timeout: 10 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	// Hand it to the device as its messenger, activator and model source.
	var _ interface {
		ports.Messenger
		ports.Activator
		ports.ModelSource
	} = c
	fmt.Println("ready; no connection until the first call")

	// A file made for the HTTPS transport is refused with a pointer to it.
	_, err = mqtt.New(mqtt.Config{Trust: porttest.NewMemTrustStore(&trust.Assets{
		ServerURI: "https://iot.example.com", ClientID: "thermostat-17", SharedSecret: []byte("s3cr3t"),
	})})
	fmt.Println(err)
	// Output:
	// ready; no connection until the first call
	// new mqtt transport: server URI "https://iot.example.com" of the provisioning file uses https: this is the MQTT transport; use the HTTPS transport for this file, or provision an mqtts URI
}
