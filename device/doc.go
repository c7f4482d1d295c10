// Package device is the application layer and the public Go API of the
// device library: DirectlyConnectedDevice, GatewayDevice, VirtualDevice,
// StorageObject, and the message dispatcher and request dispatcher loops
// that connect virtual devices (domain/virtual) to the cloud.
//
// It imports only the standard library, domain/ and ports: adapters are
// injected by the composition roots (cmd/*) or by the small default
// constructors that a later issue adds.
//
// Status: the package is being built (see the project's issues); this file
// fixes its place in the layout.
package device
