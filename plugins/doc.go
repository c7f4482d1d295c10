// Package plugins runs vendor sensor and actuator drivers as separate
// processes: a vendor ships an executable, the node starts it with
// hashicorp/go-plugin and talks to it over net/rpc on a local socket.
//
// Why processes: a vendor's driver is code the node does not control. In
// its own process it cannot corrupt the node's memory, take it down with a
// panic, or tie it to the vendor's dependencies; a crash is an error of one
// device, which the node retries by starting the plugin again.
//
// The package has two sides:
//
//   - the vendor's: implement Plugin and call Serve from main;
//   - the host's: Open starts a plugin and returns a Client, which is a
//     ports.Sensor and a ports.Actuator.
//
// The contract is this package, versioned by ProtocolVersion, and kept apart
// from ports so that internal refactors never break vendors. Values cross
// the wire in an explicit typed encoding (internal/wire), never as gob of
// interfaces; errors cross as their text; a context's deadline crosses as a
// timeout. net/rpc rather than gRPC: the contract is small, and a plugin
// builds with nothing but the Go toolchain (no protoc).
//
// Security: the host and the plugin authenticate each other with go-plugin's
// automatic mutual TLS over a Unix socket, and the host can check the
// executable's SHA-256 before running it (Options.Checksum).
//
// Imports: the standard library, domain/, ports and go-plugin; never
// adapters, device, cloud or cmd.
package plugins
