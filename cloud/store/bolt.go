package store

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the version of the bbolt file layout this package writes.
const SchemaVersion = 1

var (
	bucketMeta       = []byte("meta")
	bucketKeys       = []byte("keys")
	bucketDevices    = []byte("devices")
	bucketDevHW      = []byte("devices_by_hardware_id")
	bucketDevEP      = []byte("devices_by_endpoint_id")
	bucketModels     = []byte("models")
	bucketPolicies   = []byte("policies")
	bucketRequests   = []byte("requests")
	bucketQueue      = []byte("request_queue")
	bucketMsgs       = []byte("messages")
	bucketMsgsSrc    = []byte("messages_by_source")
	bucketMsgsType   = []byte("messages_by_type")
	bucketDedup      = []byte("dedup")
	bucketDedupExp   = []byte("dedup_by_expiry")
	bucketAttributes = []byte("attributes")
	bucketObjects    = []byte("objects")

	allBuckets = [][]byte{bucketMeta, bucketKeys, bucketDevices, bucketDevHW, bucketDevEP, bucketModels,
		bucketPolicies, bucketRequests, bucketQueue, bucketMsgs, bucketMsgsSrc, bucketMsgsType,
		bucketDedup, bucketDedupExp, bucketAttributes, bucketObjects}

	metaSchema   = []byte("schema_version")
	metaMsgCount = []byte("message_count")
	metaMsgLast  = []byte("message_last_received")
)

// BoltStore is a Store in one bbolt file. It is safe for concurrent use.
type BoltStore struct {
	db   *bolt.DB
	path string
}

// Options tune Open. The zero value is the production setting.
type Options struct {
	// LockTimeout is how long Open waits for another process to release the
	// file lock; default 2 s.
	LockTimeout time.Duration
	// MaxBatchDelay is the longest Batch waits to group commits; default 1 ms.
	MaxBatchDelay time.Duration
}

// Open opens (creating if missing, mode 0600) the store file at path, creates
// its buckets and checks its schema version. It fails if another process holds
// the file for longer than opts.LockTimeout.
func Open(path string, opts Options) (*BoltStore, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 2 * time.Second
	}
	if opts.MaxBatchDelay <= 0 {
		opts.MaxBatchDelay = time.Millisecond
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open store %s: the file is locked by another process (is another iotcloud running on this data directory?)", path)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db.MaxBatchDelay = opts.MaxBatchDelay
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		v := meta.Get(metaSchema)
		if v == nil {
			return meta.Put(metaSchema, u64(SchemaVersion))
		}
		if len(v) != 8 || binary.BigEndian.Uint64(v) != SchemaVersion {
			return fmt.Errorf("schema version is %x, expected %d (written by a newer iotcloud?)", v, SchemaVersion)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &BoltStore{db: db, path: path}, nil
}

// Close closes the file. It waits for running transactions to end.
func (s *BoltStore) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}

// Path is the file the store lives in.
func (s *BoltStore) Path() string { return s.path }

// String is the file the store lives in, for logs.
func (s *BoltStore) String() string { return s.path }

// View runs fn in a read-only transaction. Many may run at once.
func (s *BoltStore) View(fn func(Tx) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(&boltTx{tx: tx}) })
}

// Update runs fn in a read-write transaction and commits (with fsync) when fn
// returns nil; any error rolls everything back.
func (s *BoltStore) Update(fn func(Tx) error) error {
	return s.db.Update(func(tx *bolt.Tx) error { return fn(&boltTx{tx: tx}) })
}

// Batch is Update for concurrent callers: it may commit fn together with the
// functions of other goroutines in one transaction (one fsync). fn may be
// called more than once (if a grouped function fails, the others are retried
// alone), so it must reset any result it collects at its start.
func (s *BoltStore) Batch(fn func(Tx) error) error {
	return s.db.Batch(func(tx *bolt.Tx) error { return fn(&boltTx{tx: tx}) })
}

// boltTx is a Tx on a bbolt transaction.
type boltTx struct {
	tx *bolt.Tx
}

func (t *boltTx) b(name []byte) *bolt.Bucket { return t.tx.Bucket(name) }

// Key returns the server secret called name, creating n random bytes the
// first time (which needs a read-write transaction).
func (t *boltTx) Key(name string, n int) ([]byte, error) {
	b := t.b(bucketKeys)
	if v := b.Get([]byte(name)); v != nil {
		return append([]byte(nil), v...), nil
	}
	if !t.tx.Writable() {
		return nil, fmt.Errorf("server key %q: %w", name, ErrNotFound)
	}
	k := make([]byte, n)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("server key %q: %w", name, err)
	}
	if err := b.Put([]byte(name), k); err != nil {
		return nil, fmt.Errorf("server key %q: %w", name, err)
	}
	return k, nil
}

var (
	_ Store = (*BoltStore)(nil)
	_ Tx    = (*boltTx)(nil)
)

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// lp appends the 2-byte length-prefixed s to dst, so that composite keys with
// strings stay unambiguous whatever bytes the strings hold.
func lp(dst []byte, s string) []byte {
	if len(s) > 0xFFFF {
		s = s[:0xFFFF]
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

func getJSON(b *bolt.Bucket, key []byte, v any) (bool, error) {
	data := b.Get(key)
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return true, fmt.Errorf("corrupt record %q: %w", key, err)
	}
	return true, nil
}

func jsonUnmarshal(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("corrupt record: %w", err)
	}
	return nil
}
