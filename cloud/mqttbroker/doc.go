// Package mqttbroker carries iotcloud's device API over MQTT (docs/mqtt.md)
// in two ways, both feeding the broker-independent cloud.MQTT:
//
//   - Broker embeds a mochi-mqtt broker: TLS with the cloud's server
//     certificate, every CONNECT authenticated by its client assertion
//     (cloud.MQTT.Authenticate), and an access rule per client: publish only
//     under iotcs/{its id}/, subscribe only under devices/{its id}/. A
//     device's publishes are handled in its connection's goroutine, one
//     after the other, after the broker acknowledged them; the answers and
//     pushes are published by an in-process client.
//   - Bridge connects to an existing broker (Mosquitto) with paho.golang's
//     autopaho, subscribes to iotcs/+/# and answers there. It reconnects with
//     exponential backoff (1 s to 1 min). The broker owns authentication and
//     access control: the bridge trusts the id in a topic, so any client
//     allowed to publish under iotcs/X/ acts as device X. Use it on loopback,
//     or with a broker that authenticates devices and restricts each to its
//     own topics (Mosquitto: an ACL file with "pattern write iotcs/%c/#" and
//     "pattern read devices/%c/#"). It sees no connections either: a device
//     counts as connected, and gets its requests pushed, for BridgePresence
//     after each of its publishes.
//
// Why two: the embedded broker is the secure default of a single binary;
// the bridge serves sites that already run a broker.
//
// Imports: the standard library, cloud, and the MQTT libraries.
package mqttbroker
