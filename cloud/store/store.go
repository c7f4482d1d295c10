package store

import (
	"encoding/json"
	"errors"
	"time"
)

// Sentinel errors; callers branch on them with errors.Is. Implementations
// wrap them with the operation and the key, in the texts the Tx methods
// document (the conformance suite in cloud/store/storetest checks them).
var (
	// ErrNotFound: no record with that key.
	ErrNotFound = errors.New("not found")
	// ErrExists: a unique key (hardware id, endpoint id, request id) is taken
	// by another record.
	ErrExists = errors.New("already exists")
)

// Store is the cloud's database. Open returns the bbolt implementation;
// cloud/store/storetest is the conformance suite every implementation passes.
//
// A Store is safe for concurrent use. Transactions are serializable: a
// transaction sees every transaction committed before it began and none
// committed after. Many View transactions may run at once, and alongside one
// writer.
//
// Errors returned by fn are returned unchanged (not wrapped), so callers may
// return their own errors (an HTTP status) from fn and test for them.
type Store interface {
	// View runs fn in a read-only transaction. Writing in it fails.
	View(fn func(Tx) error) error
	// Update runs fn in a read-write transaction and commits when fn returns
	// nil; the commit is durable when Update returns nil. When fn returns an
	// error (or panics) nothing of it is committed.
	Update(fn func(Tx) error) error
	// Batch is Update for concurrent callers: it may commit fn together with
	// the functions of other goroutines in one transaction (one fsync). fn
	// may be called more than once (when a function grouped with it fails,
	// the batch is rolled back and run again without it; the failing function
	// is then run alone), so fn must reset any result it collects at its
	// start, and must not have effects outside the transaction that a
	// repeat would duplicate. Only the effects of the run that committed are
	// stored. An error from fn is returned to its caller only, and nothing of
	// that fn is committed; the other functions of the batch still commit.
	Batch(fn func(Tx) error) error
	// Close waits for running transactions to end and releases the store.
	// The Store must not be used afterwards.
	Close() error
	// String says where the store lives (a file path, a database name), for
	// logs and error messages. It must not contain secrets.
	String() string
}

// Tx is one transaction: the records of the cloud and the operations on
// them. A Tx is valid only inside the function passed to View, Update or
// Batch, and must not be used from other goroutines nor kept after the
// function returns.
//
// Records passed in are not retained (the caller may change them after the
// call); records returned are the caller's own copies. JSON values (Raw,
// Wire, model JSON, attribute values) round-trip byte for byte when they are
// compact JSON.
//
// The methods without an error result (LastMessageSeq, MessageCount, Seen,
// Queued) cannot report failure: an implementation whose reads can fail
// returns the zero value and makes View, Update or Batch return the error.
type Tx interface {
	// PutDevice inserts or replaces d (keyed by d.ID) and keeps the
	// hardware-id and endpoint-id indexes. It returns an error wrapping
	// ErrExists when another device already has d's hardware id
	// (`put device ID: hardware id "HW" is registered to device OTHER: already exists`)
	// or endpoint id (`put device ID: endpoint id "EP" belongs to device OTHER: already exists`),
	// and "put device: empty id" for an empty d.ID.
	PutDevice(d *Device) error
	// Device returns the device whose activation id or endpoint id is id, or
	// an error wrapping ErrNotFound (`device "ID": not found`).
	Device(id string) (*Device, error)
	// DeviceByHardwareID returns the device registered with hardware id hw,
	// or an error wrapping ErrNotFound (`device with hardware id "HW": not found`).
	DeviceByHardwareID(hw string) (*Device, error)
	// Devices returns every device, ordered by id.
	Devices() ([]*Device, error)

	// AppendMessage stores m and sets m.Seq. If m.Received is earlier than
	// the last stored message's receive time, it is raised to it (a clock
	// that stepped back never reorders messages).
	//
	// Sequence numbers are 1 for the first message the store ever kept, then
	// increase in commit order and are never reused once committed, not
	// even after the message is pruned: when a transaction commits, every
	// message it appended is numbered above every message of every
	// transaction committed before it, so a reader paging with Query.After
	// never skips a message committed later. The numbers a rolled-back
	// transaction (or a Batch run that was retried) drew may be reused or
	// left as a gap; in a store where none was rolled back they increase by
	// one per message.
	AppendMessage(m *Message) error
	// LastMessageSeq is the sequence number of the newest message the store
	// ever kept (pruned or not), 0 if none. Messages committed after this
	// transaction began get larger numbers.
	LastMessageSeq() uint64
	// MessageCount is the number of stored messages.
	MessageCount() int
	// PruneMessages deletes the oldest messages while there are more than
	// max (0 = no cap) or while they were received before cutoff (epoch ms;
	// 0 = no age limit), deleting at most budget messages so that one call
	// is bounded. It returns how many it deleted.
	PruneMessages(cutoff int64, max, budget int) (int, error)
	// Messages returns up to q.Limit matching messages in storage (= receive
	// = sequence) order, and whether more match: after them, or before them
	// with q.Newest. The page boundary is exact even when many messages share
	// one receive millisecond, so paging with After = the last Seq returned
	// sees every message once. Errors: "query messages: limit N, expected > 0";
	// ErrCursorAhead (wrapped: `query messages after A: cursor is beyond the
	// newest message (seq L)`) when q.After is beyond LastMessageSeq; or a
	// corrupt store.
	Messages(q Query) ([]Message, bool, error)

	// Seen reports whether (source, clientID) was remembered with an expiry
	// after now.
	Seen(source, clientID string, now time.Time) bool
	// Remember records (source, clientID) until the time until (replacing an
	// earlier expiry; millisecond precision).
	Remember(source, clientID string, until time.Time) error
	// PruneDedup forgets at most budget keys that expired at or before now
	// and returns how many it forgot.
	PruneDedup(now time.Time, budget int) (int, error)

	// PutModel stores the device model JSON raw under urn (replacing any);
	// "put model: empty urn" for an empty urn.
	PutModel(urn string, raw []byte) error
	// Model returns the JSON of the model urn, or an error wrapping
	// ErrNotFound (`device model "URN": not found`).
	Model(urn string) ([]byte, error)
	// Models returns the JSON of every model, ordered by URN.
	Models() ([][]byte, error)

	// PutPolicy inserts or replaces p; "put policy: empty id" for an empty
	// p.ID.
	PutPolicy(p *Policy) error
	// Policy returns the policy id, or an error wrapping ErrNotFound
	// (`device policy "ID": not found`).
	Policy(id string) (*Policy, error)
	// Policies returns every policy, ordered by id.
	Policies() ([]*Policy, error)
	// DeletePolicy deletes the policy id, or returns an error wrapping
	// ErrNotFound (`device policy "ID": not found`).
	DeletePolicy(id string) error

	// MergeAttributes sets the given values (keeping the others) for the
	// device endpointID and model urn; Updated becomes the later of at and
	// its old value.
	MergeAttributes(endpointID, urn string, values map[string]json.RawMessage, at int64) error
	// Attributes returns the last-known values (an empty, non-nil set when
	// none is known).
	Attributes(endpointID, urn string) (*Attributes, error)

	// PutObject inserts or replaces the metadata of o (keyed by o.Path).
	PutObject(o *Object) error
	// Object returns the metadata of the object at path, or an error
	// wrapping ErrNotFound (`object "PATH": not found`).
	Object(path string) (*Object, error)

	// EnqueueRequest stores r at the end of r.RouteTo's queue and sets
	// r.Status to PENDING and r.Seq to its position (increasing per store in
	// commit order). Errors: `enqueue request: id "ID" and route "R" must not
	// be empty`; ErrExists (`enqueue request ID: already exists`) when a
	// request with r.ID is stored.
	EnqueueRequest(r *Request) error
	// Request returns the request with that id, or an error wrapping
	// ErrNotFound (`request "ID": not found`).
	Request(id string) (*Request, error)
	// PutRequest replaces the stored request r. A request whose status is no
	// longer PENDING leaves its queue.
	PutRequest(r *Request) error
	// Queued reports whether any request waits in routeTo's queue.
	Queued(routeTo string) bool
	// TakeRequests walks routeTo's queue in order. A request that expired
	// (Expires > 0 and Expires <= now) is marked EXPIRED (Updated = now) and
	// skipped. For the others it calls fit: true marks the request DELIVERED
	// (Updated = now) and takes it out of the queue, false stops the walk
	// (the request stays first in line). It returns the taken requests.
	TakeRequests(routeTo string, now int64, fit func(*Request) bool) ([]*Request, error)

	// Key returns the server secret called name, creating n random bytes
	// the first time (which needs a read-write transaction; in a View a
	// missing key is an error wrapping ErrNotFound: `server key "NAME": not found`).
	Key(name string, n int) ([]byte, error)
}
