// Package integration holds the end-to-end tests: the node and the
// reference cloud talking over real HTTPS and MQTT on loopback, with faults,
// crashes and restarts. It may import every package of the module; nothing
// imports it.
package integration
