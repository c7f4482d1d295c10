package trust_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/iotnode/iotnode/domain/trust"
)

// A cloud provisions a device: it writes a v2 file, which the node decodes.
func ExampleEncodeV2() {
	a := &trust.Assets{
		ServerURI:    "https://iot.example.com:443",
		ClientID:     "thermostat-17",
		SharedSecret: []byte("s3cr3t"),
	}
	// Production code keeps the default iterations; fewer keep the example quick.
	file, err := trust.EncodeV2(a, "correct horse battery staple", rand.Reader, trust.WithIterations(trust.MinIterations))
	if err != nil {
		fmt.Println(err)
		return
	}
	header, _, _ := strings.Cut(string(file), " salt=")
	fmt.Println(header)

	got, format, err := trust.Decode(file, "correct horse battery staple")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(format, got.ClientID)
	// Output:
	// iotnode-trust/2 kdf=pbkdf2-sha256 iter=1000
	// v2 thermostat-17
}

// Decode tells a wrong passphrase from a file that is not a provisioning file.
func ExampleDecode() {
	file, _ := trust.EncodeV2(&trust.Assets{
		ServerURI: "https://iot.example.com:443", ClientID: "d", SharedSecret: []byte("s"),
	}, "right", rand.Reader, trust.WithIterations(trust.MinIterations))

	_, _, err := trust.Decode(file, "wrong")
	fmt.Println(errors.Is(err, trust.ErrPassphrase), err)

	_, _, err = trust.Decode([]byte("hello"), "right")
	fmt.Println(errors.Is(err, trust.ErrFormat), err)
	// Output:
	// true decode v2 file: wrong passphrase or damaged file
	// true decode provisioning file: unsupported or malformed provisioning file: it starts with "hello"; expected "iotnode-trust/2" (v2) or "!" (Oracle unified format)
}

// A device running Oracle's own client library gets a file in Oracle's format.
func ExampleEncodeOracle() {
	a := &trust.Assets{
		ServerURI:    "https://iot.example.com:443",
		ClientID:     "legacy-device",
		SharedSecret: []byte("s3cr3t"),
	}
	file, err := trust.EncodeOracle(a, "changeit", rand.Reader)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, comments, _ := strings.Cut(string(file), "\n#")
	fmt.Printf("%c...\n#%s", file[0], comments)

	a.ServerURI = "mqtts://iot.example.com:8883"
	_, err = trust.EncodeOracle(a, "changeit", rand.Reader)
	fmt.Println(err)
	// Output:
	// !...
	// #serverUri:https://iot.example.com:443
	// #clientId:legacy-device
	// encode oracle file: server URI "mqtts://iot.example.com:8883": Oracle's JavaScript library cannot read an mqtts URI from this format; use the cloud's https URI
}

func ExampleAssets_Validate() {
	a := &trust.Assets{ServerURI: "ftp://iot.example.com", ClientID: "d"}
	fmt.Println(a.Validate())
	// Output:
	// server URI "ftp://iot.example.com": scheme "ftp" is not supported; expected https, mqtts, http or mqtt
	// shared secret is missing
}

func ExampleAssets_String() {
	a := &trust.Assets{
		ServerURI:    "https://iot.example.com:443",
		ClientID:     "gateway-1",
		SharedSecret: []byte("never printed"),
		EndpointID:   "0-AEBAAA",
		Devices:      []trust.ConnectedDevice{{HardwareID: "sensor-a", SharedSecret: []byte("nor this")}},
	}
	fmt.Print(a)
	// Output:
	// server URI:    https://iot.example.com:443
	// client ID:     gateway-1
	// shared secret: set (hidden)
	// endpoint ID:   0-AEBAAA
	// trust anchors: 0
	// key pair:      none (not activated)
	// devices:       1
	//   1: sensor-a, shared secret set (hidden)
}
