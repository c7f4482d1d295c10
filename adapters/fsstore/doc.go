// Package fsstore keeps the node's state on the local disk. It implements
// three ports:
//
//   - ports.TrustStore with TrustStore: the provisioning file (trusted
//     assets) opened with its passphrase. It reads format v2 and Oracle's
//     unified format (domain/trust), refuses a file that group or others may
//     access, turns a wrong passphrase or tampered file into one error
//     naming the file, and writes format v2, mode 0600, atomically.
//   - ports.ModelStore with ModelStore: device models as
//     dm-<URL-encoded URN>.json files, named and filled exactly as Oracle's
//     Java and Python libraries do, so a directory can be shared with them.
//   - ports.Outbox with Outbox: the durable store-and-forward buffer of the
//     message dispatcher, on go.etcd.io/bbolt. GUARANTEED_DELIVERY messages
//     are fsynced before Add returns (group commit across concurrent
//     callers) and leave only when End says the cloud accepted them; other
//     messages wait in a bounded in-memory queue that drops the oldest.
//
// # Why these choices
//
// Files are replaced, never rewritten in place: every Save writes a
// temporary file in the same directory, fsyncs it, renames it over the old
// file and fsyncs the directory. A crash leaves the old or the new content,
// and a stray temporary file (".<name>.tmp-<random>"), which is ignored.
//
// The outbox uses bbolt rather than a hand-made log: its copy-on-write
// B+tree gives atomic multi-record commits and crash recovery by meta-page
// checksums, and a cursor makes dequeueing cost O(1) per message whatever
// the backlog. Each record carries its own CRC-32C as well, so a record
// damaged on the medium is detected, counted and skipped rather than sent.
// Group commit is done here, not with bbolt's Batch, so that a lone caller
// never waits for a timer.
//
// Every type is safe for concurrent use. No type starts a goroutine. The
// composition root owns what it opens and calls Close.
//
// Imports: the standard library, domain/, ports and bbolt; never another
// adapter.
package fsstore
