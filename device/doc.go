// Package device is the application layer and the public Go API of the
// device library, the counterpart of Oracle's device client library:
// DirectlyConnectedDevice, GatewayDevice, VirtualDevice and the message
// dispatcher that connects virtual devices (domain/virtual) to the cloud.
//
// # Use
//
// Most programs use package client instead, which opens the provisioning
// file and wires the standard adapters in one call
// (client.NewDirectlyConnectedDevice(path, passphrase)). To choose the
// adapters yourself, build them (trust store, cloud transport, outbox) in
// the composition root, then:
//
//	dev, err := device.NewDirectlyConnectedDevice(device.Config{Trust: ts, Messenger: c, Activator: c, Models: c})
//	if !dev.IsActivated() { err = dev.Activate(ctx, urn) }
//	m, err := dev.DeviceModel(ctx, urn)
//	vd, err := dev.CreateVirtualDevice(dev.EndpointID(), m)
//	vd.OnChange(func(ev device.ChangeEvent) { ... })
//	err = vd.SetAttributeHandler("power", func(ctx context.Context, c device.Change) error {
//		return relay.Switch(ctx, c.New.Bool()) // an error refuses the cloud's set: 500, nothing committed
//	})
//	err = vd.Set("humidity", 42)
//	...
//	err = dev.Close(ctx)
//
// # Why it is built this way
//
// The package decides nothing that can be decided without time or I/O:
// validation, the effects of a cloud request and message building live in
// domain/virtual; this package carries them out. It imports only the
// standard library, domain/ and ports, so every adapter is injected
// (Config) and every test runs against fakes or the real adapters alike.
//
// Delivery has one source of truth: every outgoing message goes through
// the outbox (ports.Outbox, a durable one in production), and only the
// transmitter takes it out, after the cloud accepted it or refused it for
// good. The adapters make one attempt per call; retries, backoff and the
// circuit breaker for refused credentials live in the transmitter and the
// receiver.
//
// # Goroutines
//
// The constructors start nothing. The message dispatcher starts with Start
// or the first CreateVirtualDevice (both need an activated device) and
// runs: the transmitter, the receiver (long polling, or polling), the
// request dispatcher, a connectivity test when the cloud starts one, one
// callback goroutine per virtual device, which runs that device's callbacks
// one at a time, and, when Config.Policies is set, one policy goroutine per
// virtual device (it fetches the device policy, fetches it again on
// policyChanged and sends what a policy's windows and batches hold when
// they fall due), and one goroutine per message that waits for its storage
// object's sync (Set, Raise or Submit with a *StorageObject). Close stops
// every one of them and waits for them; what the policies still hold is
// queued before the final flush, and a message still waiting for its
// object is reported to OnError as not sent.
//
// # Device policies
//
// VirtualDevice.Offer runs values through the virtual device's device
// policy (protocol.md §5), whose engine is domain/policy: this package
// fetches, compiles and installs it, runs the engine under the virtual
// device's lock, turns its outcome into DATA and ALERT messages and calls
// of the device's own callables, and ticks it on the device's clock.
// Until a policy is installed, and without one, Offer is Set.
//
// # Built-in resources
//
// On its own endpoint the device answers the capability resources of
// protocol.md §8: message_dispatcher counters, reset and pollingInterval;
// diagnostics info and testConnectivity; device_policy policyChanged (the
// virtual devices of the model fetch their policy again). It announces
// them, and each virtual device's attributes and actions, in
// RESOURCES_REPORT messages.
package device
