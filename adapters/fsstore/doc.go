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
//     message dispatcher, an append-only log of checksummed records in a
//     directory. GUARANTEED_DELIVERY messages
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
// The outbox is a log of its own rather than bbolt: a FIFO queue needs only
// sequential appends, and the log runs over a small file-system interface
// (FS) so that a fault-injecting file system (internal/faultfs) can crash it
// at every write and fsync and prove that nothing acknowledged is lost
// (TestOutboxPowerLoss). Measured on one machine in one run, it also beat the
// earlier bbolt outbox at every concurrency (see the Outbox type for the
// figures and the exact guarantee).
//
// Every type is safe for concurrent use. No type starts a goroutine. The
// composition root owns what it opens and calls Close.
//
// Imports: the standard library, domain/ and ports; never another adapter.
package fsstore
