// Package porttest holds hand-written fakes of the ports and the conformance
// suites that every adapter implementing a port must pass.
//
// A suite is a plain function taking *testing.T and a constructor, e.g.
//
//	func TestOutbox(t *testing.T) {
//		porttest.Outbox(t, func(t *testing.T) ports.Outbox { return newDiskOutbox(t) })
//	}
//
// The fakes (MemOutbox, MemModelStore, MemTrustStore, FakeClock) are real,
// concurrency-safe implementations kept in memory; they pass the same suites.
//
// Imports: the standard library, domain/ and ports only (it is test support,
// so it may import testing).
package porttest
