// Package plugins is the versioned public contract for vendor sensor and
// actuator drivers that run as separate processes (hashicorp/go-plugin over
// gRPC), with a small SDK for vendors and the host-side loader.
//
// The contract is kept apart from ports so that internal refactors never
// break vendors. Imports: the standard library, domain/, ports and
// hashicorp/go-plugin.
//
// Status: planned (no code yet); this file fixes its place in the layout.
package plugins
