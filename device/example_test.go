package device_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/model"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
	"github.com/iotnode/iotnode/ports/porttest"
)

const lightURN = "urn:com:example:iot:device:light_switch"

// exampleCloud stands in for the cloud transport (in an application:
// adapters/http.New). It keeps what the device sends and hands requests
// queued with push to the device's next poll.
type exampleCloud struct {
	mu       sync.Mutex
	sent     []message.Message
	requests chan message.Message
}

func newExampleCloud() *exampleCloud {
	return &exampleCloud{requests: make(chan message.Message, 8)}
}

func (c *exampleCloud) Exchange(ctx context.Context, msgs []message.Message, _ int, wait time.Duration) ([]message.Message, error) {
	if len(msgs) > 0 {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.sent = append(c.sent, msgs...)
		return nil, nil
	}
	select {
	case r := <-c.requests:
		return []message.Message{r}, nil
	case <-time.After(wait):
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *exampleCloud) Policy(context.Context) (ports.ActivationPolicy, error) {
	return ports.ActivationPolicy{KeyType: "RSA", HashAlgorithm: "SHA256withRSA", KeySize: 2048}, nil
}

func (c *exampleCloud) ActivateDirect(_ context.Context, req ports.DirectActivation) (ports.Activation, error) {
	if _, err := req.Sign([]byte("proof")); err != nil {
		return ports.Activation{}, err
	}
	return ports.Activation{EndpointID: "0-EXAMPLE"}, nil
}

func (c *exampleCloud) ActivateIndirect(_ context.Context, req ports.IndirectActivation) (ports.Activation, error) {
	return ports.Activation{EndpointID: "0-" + req.HardwareID}, nil
}

func (c *exampleCloud) Model(_ context.Context, urn string) (*model.DeviceModel, error) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "devicemodels", "light_switch.json"))
	if err != nil || urn != lightURN {
		return nil, fmt.Errorf("device model %q: %w", urn, ports.ErrNotFound)
	}
	return model.Parse(data)
}

// push queues a request from the cloud.
func (c *exampleCloud) push(id, method, url, body string) {
	c.requests <- message.Message{ID: id, ClientID: id, Source: "iotserver", Destination: "0-EXAMPLE",
		Type: message.TypeRequest, Request: &message.Request{Method: method, URL: url, Body: []byte(body)}}
}

// print prints what the device sent, reports aside.
func (c *exampleCloud) print() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.sent {
		switch m.Type {
		case message.TypeData:
			fmt.Println("DATA", m.Data.Format, m.Data.Fields)
		case message.TypeAlert:
			fmt.Println("ALERT", m.Alert.Format, m.Alert.Severity, m.Alert.Fields)
		case message.TypeResponse:
			fmt.Println("RESPONSE", m.Response.StatusCode, string(m.Response.Body))
		}
	}
}

// exampleConfig returns the configuration of a device that is already
// activated as 0-EXAMPLE (its provisioning file holds an endpoint ID).
func exampleConfig(cloud *exampleCloud) device.Config {
	assets := &trust.Assets{ServerURI: "https://iot.example.com:443", ClientID: "light-1",
		SharedSecret: []byte("secret"), EndpointID: "0-EXAMPLE"}
	return device.Config{Trust: porttest.NewMemTrustStore(assets), Messenger: cloud, Activator: cloud, Models: cloud}
}

// exampleLight returns a running device and the virtual device of its
// light switch.
func exampleLight(cloud *exampleCloud) (*device.DirectlyConnectedDevice, *device.VirtualDevice) {
	dev, err := device.NewDirectlyConnectedDevice(exampleConfig(cloud))
	if err != nil {
		panic(err)
	}
	m, err := dev.DeviceModel(context.Background(), lightURN)
	if err != nil {
		panic(err)
	}
	light, err := dev.CreateVirtualDevice(dev.EndpointID(), m)
	if err != nil {
		panic(err)
	}
	return dev, light
}

func ExampleNewDirectlyConnectedDevice() {
	ctx := context.Background()
	cloud := newExampleCloud()
	// In an application, Trust is the opened provisioning file
	// (adapters/fsstore) and the cloud is the HTTPS transport.
	trustStore := porttest.NewMemTrustStore(&trust.Assets{
		ServerURI: "https://iot.example.com:443", ClientID: "light-1", SharedSecret: []byte("secret")})
	dev, err := device.NewDirectlyConnectedDevice(
		device.Config{Trust: trustStore, Messenger: cloud, Activator: cloud, Models: cloud},
		device.WithPollingInterval(5*time.Second),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dev.Close(ctx)

	fmt.Println("activated:", dev.IsActivated())
	if err := dev.Activate(ctx, lightURN); err != nil {
		fmt.Println(err)
		return
	}
	assets, _ := trustStore.Load()
	fmt.Println("activated:", dev.IsActivated(), "as", dev.EndpointID())
	fmt.Println("endpoint and key stored:", assets.EndpointID, len(assets.PrivateKey) > 0)

	_, err = device.NewDirectlyConnectedDevice(device.Config{Trust: trustStore})
	fmt.Println(err)
	// Output:
	// activated: false
	// activated: true as 0-EXAMPLE
	// endpoint and key stored: 0-EXAMPLE true
	// new directly connected device: config: Messenger is nil, expected the cloud transport that sends and receives messages
	// config: Activator is nil, expected the cloud transport that activates devices
	// config: Models is nil, expected the cloud transport that fetches device models
}

func ExampleDirectlyConnectedDevice_CreateVirtualDevice() {
	ctx := context.Background()
	dev, err := device.NewDirectlyConnectedDevice(exampleConfig(newExampleCloud()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dev.Close(ctx)
	m, err := dev.DeviceModel(ctx, lightURN)
	if err != nil {
		fmt.Println(err)
		return
	}
	light, err := dev.CreateVirtualDevice(dev.EndpointID(), m)
	if err != nil {
		fmt.Println(err)
		return
	}
	brightness, _ := light.Get("brightness")
	fmt.Println(light.EndpointID(), light.Model().Name, "brightness", brightness)

	_, err = dev.CreateVirtualDevice("0-OTHER", m)
	fmt.Println(err)
	// Output:
	// 0-EXAMPLE Light Switch brightness 100
	// create virtual device: endpoint "0-OTHER" is not this device's endpoint "0-EXAMPLE"; only a GatewayDevice creates virtual devices for other endpoints
}

func ExampleVirtualDevice_Set() {
	cloud := newExampleCloud()
	dev, light := exampleLight(cloud)
	if err := light.Set("brightness", 40); err != nil {
		fmt.Println(err)
	}
	fmt.Println(light.Set("brightness", 140))
	fmt.Println(light.Set("power", "on"))
	dev.Close(context.Background()) // sends what is queued
	cloud.print()
	// Output:
	// attribute "brightness": 140 is out of range 0..100
	// attribute "power": want BOOLEAN, got "on"
	// DATA urn:com:example:iot:device:light_switch:attributes [{brightness 40}]
}

func ExampleVirtualDevice_Update() {
	cloud := newExampleCloud()
	dev, light := exampleLight(cloud)
	err := light.Update().Set("power", true).Set("brightness", 30).Set("label", "porch").Finish()
	if err != nil {
		fmt.Println(err)
	}
	fmt.Println(light.Update().Set("brightness", -1).Set("colour", "red").Finish())
	dev.Close(context.Background())
	cloud.print()
	// Output:
	// attribute "brightness": -1 is out of range 0..100
	// attribute "colour": not in device model "urn:com:example:iot:device:light_switch"
	// DATA urn:com:example:iot:device:light_switch:attributes [{power true} {brightness 30} {label porch}]
}

func ExampleVirtualDevice_SetCallable() {
	cloud := newExampleCloud()
	dev, light := exampleLight(cloud)
	done := make(chan struct{})
	err := light.SetCallable("blink", func(ctx context.Context, args map[string]model.Value) error {
		defer close(done)
		fmt.Println("blink", args["value"].Int(), "times")
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	fmt.Println(light.SetCallable("explode", nil))

	cloud.push("r1", "POST", "deviceModels/"+lightURN+"/actions/blink", `{"value":3}`)
	<-done
	dev.Close(context.Background())
	cloud.print()
	// Output:
	// set callable: action "explode": not in device model "urn:com:example:iot:device:light_switch"
	// blink 3 times
	// RESPONSE 200 OK
}

func ExampleVirtualDevice_CreateAlert() {
	cloud := newExampleCloud()
	dev, light := exampleLight(cloud)
	err := light.CreateAlert(lightURN+":button_pressed").Set("presses", 2).Severity(message.SeverityCritical).Raise()
	if err != nil {
		fmt.Println(err)
	}
	fmt.Println(light.CreateAlert(lightURN + ":button_pressed").Raise())
	dev.Close(context.Background())
	cloud.print()
	// Output:
	// alert "urn:com:example:iot:device:light_switch:button_pressed": field "presses" is required
	// ALERT urn:com:example:iot:device:light_switch:button_pressed CRITICAL [{presses 2}]
}

func ExampleVirtualDevice_OnChange() {
	cloud := newExampleCloud()
	dev, light := exampleLight(cloud)
	done := make(chan struct{})
	light.OnChange(func(ev device.ChangeEvent) {
		defer close(done)
		for _, c := range ev.Changes {
			fmt.Println(c.Name, c.Old, "->", c.New)
		}
	})
	cloud.push("r1", "PATCH", "deviceModels/"+lightURN+"/attributes", `{"power":true,"brightness":10}`)
	<-done
	dev.Close(context.Background())
	cloud.print()
	// Output:
	// power false -> true
	// brightness 100 -> 10
	// RESPONSE 200 OK
	// DATA urn:com:example:iot:device:light_switch:attributes [{power true} {brightness 10}]
}

func ExampleVirtualDevice_SetAttributeHandler() {
	cloud := newExampleCloud()
	dev, light := exampleLight(cloud)
	// The handlers drive the hardware before a cloud set is committed; the
	// dimmer here cannot go above 80%.
	err := light.SetAttributeHandler("power", func(ctx context.Context, c device.Change) error {
		fmt.Println("switch", c.Old, "->", c.New)
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	err = light.SetAttributeHandler("brightness", func(ctx context.Context, c device.Change) error {
		if c.New.Int() > 80 {
			return fmt.Errorf("dimmer: %d%% is above the driver's limit of 80%%", c.New.Int())
		}
		fmt.Println("dim", c.Old, "->", c.New)
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	fmt.Println(light.SetAttributeHandler("lastPressed", nil))
	done := make(chan struct{})
	light.OnError(func(ev device.ErrorEvent) {
		fmt.Println("OnError:", ev.Err)
		done <- struct{}{}
	})
	light.OnChange(func(device.ChangeEvent) { done <- struct{}{} })

	// One refused attribute refuses the whole request.
	cloud.push("r1", "PATCH", "deviceModels/"+lightURN+"/attributes", `{"power":true,"brightness":90}`)
	<-done
	power, _ := light.Get("power")
	fmt.Println("power after the refused set:", power)
	cloud.push("r2", "PATCH", "deviceModels/"+lightURN+"/attributes", `{"power":true,"brightness":60}`)
	<-done
	// OnChange runs before the set is committed (a callback can still fail
	// it); Close waits until the request is done.
	dev.Close(context.Background())
	power, _ = light.Get("power")
	fmt.Println("power after the applied set:", power)
	cloud.print()
	// Output:
	// set attribute handler: attribute "lastPressed": read-only in device model "urn:com:example:iot:device:light_switch", the cloud cannot set it
	// switch false -> true
	// OnError: attribute "brightness": dimmer: 90% is above the driver's limit of 80%
	// power after the refused set: false
	// switch false -> true
	// dim 100 -> 60
	// power after the applied set: true
	// RESPONSE 500 attribute "brightness": dimmer: 90% is above the driver's limit of 80%
	// RESPONSE 200 OK
	// DATA urn:com:example:iot:device:light_switch:attributes [{power true} {brightness 60}]
}

func ExampleGatewayDevice_RegisterDevice() {
	ctx := context.Background()
	cloud := newExampleCloud()
	gw, err := device.NewGatewayDevice(exampleConfig(cloud))
	if err != nil {
		fmt.Println(err)
		return
	}
	id, err := gw.RegisterDevice(ctx, "sensor-7", map[string]string{
		device.MetaManufacturer: "Acme", device.MetaSerialNumber: "7",
	}, lightURN)
	if err != nil {
		fmt.Println(err)
		return
	}
	m, _ := gw.DeviceModel(ctx, lightURN)
	sensor, err := gw.CreateVirtualDevice(id, m)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := sensor.Set("label", "garden"); err != nil {
		fmt.Println(err)
	}
	gw.Close(ctx)
	cloud.mu.Lock()
	defer cloud.mu.Unlock()
	for _, msg := range cloud.sent {
		if msg.Type == message.TypeData {
			fmt.Println(msg.Source, msg.Data.Fields)
		}
	}
	// Output:
	// 0-sensor-7 [{label garden}]
}
