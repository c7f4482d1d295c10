// Command iotnode is the node binary: one static executable for a Raspberry
// Pi or a gateway that binds sensors and actuators to device-model
// attributes and actions, as a YAML config says, and runs them as a directly
// connected device or as a gateway with indirectly connected devices.
//
// Subcommands: run, demo, doctor, activate, models pull, trust show,
// version. docs/config.md is the config reference; docs/raspberry-pi.md
// goes from a blank Pi to a reporting sensor.
//
// # Structure
//
// This is the node's composition root (after WTF Dial's cmd/wtfd): main.go
// only wires signals to Main.Run, which parses the command line and runs a
// command in-process, so that the tests drive every command as a user would
// (exit code, stdout, stderr). Only here are the adapters built and
// connected to the device library: fsstore (provisioning file, model store,
// outbox) and the HTTPS transport, plus the drivers (adapters/sim today;
// periph.io drivers and vendor plugins plug into the same driver table).
// koanf reads the config and appears nowhere else in the module.
//
// Exit codes: 0 success; 1 a failure at run time (the cloud refused, a
// doctor check failed); 2 a bad command line or config, with every problem
// listed and named by its key.
//
// # Goroutines
//
// A node owns one sampling loop per device (stopped and waited for by its
// close) and the device library's dispatcher (closed by the node). The
// metrics server's goroutine is stopped and waited for by its shutdown. The
// demo owns the iotcloud it starts and one goroutine that sends its own
// commands; it waits for both.
package main
