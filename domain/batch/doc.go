// Package batch groups outgoing messages into the batches that the
// transmitter posts to the cloud as one JSON array (protocol.md §3a).
//
// A Batcher decides when a batch is worth sending (Ready, Deadline) and which
// messages go into it (Next): the highest priority first, first in first out
// within a priority, never more than a message count nor more than a byte cap
// of encoded JSON array (the cloud's acceptBytes, or our own limit).
//
// The package is pure: it does no I/O, starts no goroutines, never logs and
// never reads the clock (the caller passes now). A Batcher is not safe for
// concurrent use; the transmitter that owns it serialises the calls. It does
// not bound how many messages it holds: the durable outbox in front of it
// does.
//
// It may import only the standard library and other domain/ packages.
package batch
