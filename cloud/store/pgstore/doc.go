// Package pgstore is a PostgreSQL implementation of store.Store, for clouds
// that already run PostgreSQL (backups, replication, several iotcloud
// processes on one database) rather than the embedded bbolt file.
//
// It reproduces the bbolt store's contract exactly, the conformance suite in
// cloud/store/storetest being the judge:
//
//   - Writers are serialized, as in bbolt: every read-write transaction
//     first takes a transaction-level advisory lock keyed by the schema, in
//     READ COMMITTED, so it sees every writer committed before it and no
//     writer commits while it runs. That makes writers serializable without
//     SERIALIZABLE's retries, and numbers messages in commit order (see
//     AppendMessage). Readers run in REPEATABLE READ READ ONLY snapshots and
//     never wait for writers.
//   - Keys and strings that come from devices or the API are stored as
//     bytea, not text: PostgreSQL text rejects NUL bytes, and bytea orders
//     byte-wise like bbolt's keys, so "ordered by id" means the same.
//   - Records are the same JSON values as in bbolt, stored as bytea (not
//     jsonb, which would reformat them: model JSON must round-trip byte for
//     byte). Messages are columns; the wire message is stored as is.
//   - The counters (last message sequence number, message count, last
//     receive time, request queue sequence) live in one row of the meta
//     table with the schema version; a transaction reads it once and writes
//     it back once, at commit.
//
// All tables live in one PostgreSQL schema (Options.Schema), created if
// missing, so several clouds (or tests) can share a database.
//
// The store.Tx methods take no context (the contract is bbolt's); each
// transaction runs under a context with Options.TxTimeout, so a lost
// connection fails the transaction instead of hanging a writer forever.
//
// Connections: pgstore keeps its own small pool of pgx connections
// (Options.MaxConns). pgxpool would do, but needs github.com/jackc/puddle/v2,
// which the module does not require (go.mod is not this package's to change).
//
// Concurrency: a *Store is safe for concurrent use; a Tx must stay in the
// goroutine of the function it was passed to. The package starts no
// goroutines.
package pgstore
