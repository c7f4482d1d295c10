package launch_test

import (
	"context"
	"fmt"
	"os"

	"github.com/iotnode/iotnode/cloud/api"
	"github.com/iotnode/iotnode/cloud/launch"
)

// Start runs a whole cloud in-process (TLS with its own CA, admin token,
// store); Client is an enterprise API client already configured for it.
func ExampleStart() {
	dir, _ := os.MkdirTemp("", "launch-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	inst, err := launch.Start(ctx, launch.Options{DataDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer inst.Shutdown(ctx)

	dev, err := inst.Client().RegisterDevice(ctx, api.RegisterDevice{HardwareID: "sensor-1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(dev.HardwareID, dev.Type, dev.State, dev.SharedSecret != "")
	// Output: sensor-1 DIRECTLY_CONNECTED_DEVICE REGISTERED true
}
