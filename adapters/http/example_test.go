package http_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"log"
	"os"
	"time"

	httpadapter "github.com/iotnode/iotnode/adapters/http"
	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/domain/message"
	"github.com/iotnode/iotnode/domain/trust"
	"github.com/iotnode/iotnode/ports"
	"github.com/iotnode/iotnode/ports/porttest"
)

func ExampleNew() {
	// The trust store is normally the opened provisioning file
	// (adapters/fsstore); this one names an MQTT server.
	store := porttest.NewMemTrustStore(&trust.Assets{
		ServerURI: "mqtts://iot.example.com:8883", ClientID: "dev-1", SharedSecret: []byte("secret"),
	})
	_, err := httpadapter.New(httpadapter.Config{Trust: store})
	fmt.Println(err)
	// Output:
	// new https transport: server URI "mqtts://iot.example.com:8883" of the provisioning file uses mqtts: this is the HTTPS transport; use the MQTT transport for this file, or provision an https URI
}

// Example activates a device registered at the reference cloud and sends
// its first message.
func Example() {
	ctx := context.Background()
	file, stop := exampleProvisioningFile(ctx)
	defer stop()

	assets, _, err := trust.Decode(file, "correct horse")
	if err != nil {
		log.Fatal(err)
	}
	store := porttest.NewMemTrustStore(assets)
	c, err := httpadapter.New(httpadapter.Config{Trust: store})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Activation: generate the key the policy asks for, prove possession.
	policy, err := c.Policy(ctx)
	if err != nil {
		log.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, policy.KeySize)
	if err != nil {
		log.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	act, err := c.ActivateDirect(ctx, ports.DirectActivation{
		PublicKey: spki,
		Sign: func(data []byte) ([]byte, error) {
			sum := sha256.Sum256(data)
			return rsa.SignPKCS1v15(nil, key, crypto.SHA256, sum[:])
		},
		ModelURNs: []string{"urn:com:oracle:iot:device:humidity_sensor", "urn:oracle:iot:dcd:capability:direct_activation"},
	})
	if err != nil {
		log.Fatal(err)
	}
	// The device keeps its identity; the client signs with it from now on.
	assets.EndpointID = act.EndpointID
	assets.PrivateKey, _ = x509.MarshalPKCS8PrivateKey(key)
	assets.PublicKey = spki
	if err := store.Save(assets); err != nil {
		log.Fatal(err)
	}

	// Send one attribute update and receive what the cloud has (nothing yet).
	m := message.Message{
		ClientID: "6b1a6d3e-0001", Source: act.EndpointID, EventTime: time.Now(),
		Priority: message.PriorityLow, Reliability: message.BestEffort, Type: message.TypeData,
		Data: &message.Data{Format: "urn:com:oracle:iot:device:humidity_sensor:attributes",
			Fields: []message.Field{{Name: "humidity", Value: 40}}},
	}
	in, err := c.Exchange(ctx, []message.Message{m}, 4192, 0)
	fmt.Println(len(in), err)
	// Output:
	// 0 <nil>
}

// exampleProvisioningFile starts the reference cloud on loopback, registers
// a device and returns its provisioning file (passphrase "correct horse").
func exampleProvisioningFile(ctx context.Context) ([]byte, func()) {
	dir, err := os.MkdirTemp("", "iotcloud-example")
	if err != nil {
		log.Fatal(err)
	}
	rc, err := newRealCloud(dir)
	if err != nil {
		log.Fatal(err)
	}
	stop := func() {
		rc.close()
		_ = os.RemoveAll(dir)
	}
	model, err := os.ReadFile("../../testdata/devicemodels/humidity_sensor.json")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := rc.admin.AddModel(ctx, model); err != nil {
		log.Fatal(err)
	}
	dev, err := rc.admin.RegisterDevice(ctx, api.RegisterDevice{HardwareID: "humidity-1"})
	if err != nil {
		log.Fatal(err)
	}
	file, err := rc.admin.ProvisioningFile(ctx, dev.ID, api.ProvisioningFileRequest{Passphrase: "correct horse"})
	if err != nil {
		log.Fatal(err)
	}
	return file, stop
}
