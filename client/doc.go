// Package client is the front door of the device library: the one-line
// constructors that Oracle's client libraries offer,
//
//	dcd, err := client.NewDirectlyConnectedDevice("humidity.conf", passphrase)
//	gw, err := client.NewGatewayDevice("gateway.conf", passphrase)
//
// built from the standard adapters. Package device holds the library itself
// and takes its adapters injected (device.Config); this package is the small
// composition root that builds them for applications that want the usual
// setup and no wiring:
//
//   - the provisioning file, opened with fsstore.OpenTrustStore (format v2
//     or Oracle's unified format; an Oracle file is upgraded to v2 by the
//     first save, activation usually, and the original kept as
//     "<file>.oracle.bak");
//   - the local device model store, fsstore.NewModelStore, in
//     DATADIR/models (WithModelStore changes it);
//   - the durable outbox, fsstore.OpenOutbox, in DATADIR/outbox:
//     GUARANTEED_DELIVERY messages survive a crash or a restart;
//   - the cloud transport the provisioning file's server URI names, which
//     trusts only the trust anchors of the file (the system pool when it
//     has none): adapters/http for https:// (http:// on loopback), or
//     adapters/mqtt for mqtts:// (mqtt:// on loopback).
//
// # HTTPS or MQTT
//
// Both transports carry activation, device models, messages and the
// cloud's requests (attribute sets, actions). MQTT carries nothing else,
// as in Oracle's service (docs/mqtt.md): a device on MQTT applies no
// device policies (Offer behaves like Set, a policyChanged is logged and
// ignored), and CreateStorageObject fails with an error that says storage
// objects need the HTTPS transport. Transport tells which one a device got.
// The options apply to both, except where an option says otherwise.
//
// # The data directory
//
// DATADIR defaults to the provisioning file's path with ".d" appended
// ("humidity.conf" -> "humidity.conf.d"), created with mode 0700 when
// missing: each device keeps its state next to its own identity, and two
// devices started from one working directory do not share an outbox.
// Oracle's libraries keep their files in the working directory or, for the
// model store, where a configuration property says (Python
// [device_model] device_model_store, Java
// oracle.iot.client.device_model_store); WithDataDir and WithModelStore are
// their counterparts.
//
// The outbox file is locked while it is open, so a second process started
// with the same data directory fails (after a second) instead of sending
// the same messages twice.
//
// # Ownership
//
// The returned DirectlyConnectedDevice and GatewayDevice embed the device
// package's types, so every method of those is available; only Close is
// theirs: it closes the device (which flushes what it can, see
// device.DirectlyConnectedDevice.Close) and then everything the constructor
// opened, in reverse order. Applications that need other adapters (a
// custom store, a fake clock) build a device.Config themselves instead; see
// package device.
//
// The package is a composition root like cmd/: it may import device and the
// adapters, and nothing in the library imports it.
package client
