// Package store is the reference cloud's database: devices,
// device models, device policies, requests to devices (with their status and
// queue), received messages (numbered in the order received, which is also
// receive-time order; indexed by source and type; with bounded retention), replay-protection keys, last-known attribute
// values, stored-object metadata and the server's secret keys.
//
// The cloud codes against two interfaces, Store (transactions) and Tx (the
// records), whose doc comments are the contract; cloud/store/storetest is
// the conformance suite that checks an implementation keeps it. Open returns
// the default implementation, *BoltStore; others (PostgreSQL) live in
// subpackages named after what they wrap.
//
// BoltStore is built on go.etcd.io/bbolt, a pure-Go B+tree file store: no cgo, so
// iotcloud cross-compiles to every platform Go supports (a Raspberry Pi
// included); one file (DataDir/cloud.db); ACID transactions with fsync on
// commit, so a batch of messages acknowledged with 200 is on disk and a crash
// never leaves a half-written batch; and one writer with many concurrent
// readers, which is the cloud's access pattern. Store.Batch groups the
// commits of concurrent writers into one fsync.
//
// Records are JSON values; composite keys are binary (big-endian times and
// sequence numbers, length-prefixed strings) so that cursors iterate them in
// order. The "meta" bucket holds the schema version; Open refuses a file
// written by a newer schema.
//
// Concurrency: a Store is safe for concurrent use. A Tx is valid only inside
// the function passed to View, Update or Batch and must not be used from other
// goroutines. The package starts no goroutines of its own (bbolt's Batch arms
// a timer whose callback does nothing once the batch has run).
//
// It may import the standard library and bbolt only; it knows nothing of HTTP
// or of the wire protocol.
package store
