// Package porttest holds hand-written fakes of the ports and the conformance
// suites that every adapter implementing a port must pass.
//
// A suite is a plain function taking *testing.T and a constructor, e.g.
//
//	func TestOutbox(t *testing.T) {
//		porttest.Outbox(t, func(t *testing.T, maxBytes int) ports.Outbox { return newDiskOutbox(t, maxBytes) })
//	}
//
// The fakes (MemModelStore, MemTrustStore, FakeClock) are real,
// concurrency-safe implementations kept in memory; they pass the same
// suites. There is no outbox fake: the in-memory outbox that package device
// uses by default is the one the Outbox suite runs against besides the disk
// outbox of adapters/fsstore.
//
// Imports: the standard library, domain/ and ports only (it is test support,
// so it may import testing).
package porttest
