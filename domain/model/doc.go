// Package model holds device models and the typed values they describe
// (protocol.md §4): the decoding, validation and encoding of the device model
// JSON, lookups of attributes, actions and formats by name or alias, the six
// value types with their conversions from Go and JSON values, range checks,
// action argument conversion, and the URNs of the system capability models.
//
// It is part of the pure domain: it imports only the standard library, does
// no I/O, reads no clock, logs nothing and starts no goroutines. Every
// function is safe for concurrent use; a *DeviceModel is read-only once
// Parse or Validate has returned, and may then be shared between goroutines.
//
// Errors are meant for users: each names the element (attribute, action,
// argument, format, field, or the JSON path), what was wrong and what was
// expected, e.g. `attribute "humidity": 140 is out of range 0..100`.
package model
