// Package faultnet is a fault-injecting TCP proxy for tests. A Proxy
// listens on 127.0.0.1 (a port the kernel picks), forwards each connection
// to one upstream address on the loopback interface, and lets a test change
// the network under the running connections: latency per direction, a
// bandwidth cap, resetting every connection at once, a black hole that
// accepts and reads but forwards nothing (for a while or until cleared),
// and refusing new connections. Counters say what happened.
//
// Why our own rather than Shopify's toxiproxy: its Go module pulls an HTTP
// API server, a metrics stack and a logging library for what is, here,
// three hundred lines; a test wants knobs it calls directly, and one Close
// that waits for every goroutine so that goleak stays quiet.
//
// Loopback only, by design: Listen refuses an upstream that is not a
// loopback address, so a test can never send traffic off the machine.
//
// Goroutines: each connection has a reader and a writer per direction (the
// writer delays and paces what the reader queued), all started by the
// Proxy and ended by the connection's end, ResetAll or Close; Close waits
// for all of them. All methods are safe for concurrent use.
package faultnet
