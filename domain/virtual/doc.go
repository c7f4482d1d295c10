// Package virtual is the state machine of one virtual device: one endpoint
// seen through one device model (protocol.md §3c and §4).
//
// A Device keeps the last-known attribute values and turns what happens to the
// device into effects for the application layer to carry out:
//
//   - Set and Update (the device reports values) return the DATA message to
//     send, format "<urn>:attributes";
//   - NewAlert and NewData build ALERT and custom DATA messages checked
//     against the model's formats;
//   - HandleRequest (the cloud sets attributes or calls an action) returns an
//     Outcome: either a final RESPONSE (bad input, unknown resource, wrong
//     method) or the Changes / Invocation for the application to run its
//     callbacks on, after which Complete returns the RESPONSE and, for an
//     accepted set, the DATA message echoing the new values.
//
// The package is pure: no I/O, no goroutines, no logging, no clock reads (now
// is passed in) and no randomness (clientIds come from an injected newID).
// A Device holds no lock and is not safe for concurrent use: the application
// layer serialises every call on one Device.
//
// It may import only the standard library and other domain/ packages.
package virtual
