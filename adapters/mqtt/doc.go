// Package mqtt is the cloud transport over MQTT (eclipse/paho.golang
// autopaho) with Oracle's topic mapping (protocol.md §9). It implements
// the same ports as adapters/http.
//
// Imports: the standard library, domain/, ports and the MQTT client library.
// Never another adapter.
//
// Status: planned (no code yet); this file fixes its place in the layout.
package mqtt
