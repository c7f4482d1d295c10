package pgstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/iotnode/iotnode/cloud/store"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Options tune Open. The zero value is the production setting.
type Options struct {
	// Schema is the PostgreSQL schema holding the tables, created if
	// missing; default "iotcloud". Letters, digits and _ only, not starting
	// with a digit, at most 63 bytes.
	Schema string
	// MaxConns bounds the connections the store opens; default
	// max(4, GOMAXPROCS). Transactions beyond it wait for a connection.
	MaxConns int
	// TxTimeout bounds one transaction, waiting for a connection and (for
	// writers) for the writer lock included; default 30 s.
	TxTimeout time.Duration
}

var schemaName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// Validate reports every problem of o at once.
func (o Options) Validate() error {
	var errs []error
	if o.Schema != "" && !schemaName.MatchString(o.Schema) {
		errs = append(errs, fmt.Errorf("schema is %q, expected letters, digits and _ (not starting with a digit), at most 63", o.Schema))
	}
	if o.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("max conns is %d, expected >= 0 (0 = default)", o.MaxConns))
	}
	if o.TxTimeout < 0 {
		errs = append(errs, fmt.Errorf("tx timeout is %v, expected >= 0 (0 = default)", o.TxTimeout))
	}
	return errors.Join(errs...)
}

// batchRetries is how many times Batch runs fn again after a serialization
// failure or a deadlock (which the writer lock should make impossible, but
// the contract allows a repeat, and an operator may run other writers).
const batchRetries = 3

// Store is a store.Store in a PostgreSQL schema. It is safe for concurrent use.
type Store struct {
	pool    *pool
	schema  string // quoted identifier
	name    string // for String: URL without password, and schema
	lockKey int64  // advisory lock of the writers of this schema
	timeout time.Duration

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // running transactions
}

// Open connects to the database at url (a PostgreSQL URL or key=value
// string, as pgx parses it), creates the schema and its tables if missing
// and checks the schema version. ctx bounds connecting and creating; it is
// not kept. Errors are "open store DB: ..." (DB without the password).
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if opts.Schema == "" {
		opts.Schema = "iotcloud"
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = max(4, runtime.GOMAXPROCS(0))
	}
	if opts.TxTimeout == 0 {
		opts.TxTimeout = 30 * time.Second
	}
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors redact the password.
		return nil, fmt.Errorf("open store: %w", err)
	}
	pcfg.MaxConns = int32(min(opts.MaxConns, math.MaxInt32))
	cfg := pcfg.ConnConfig
	pp, err := pgxpool.NewWithConfig(ctx, pcfg) // connects lazily
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	h := fnv.New64a()
	h.Write([]byte("iotcloud store " + opts.Schema))
	s := &Store{
		pool:    &pool{pp},
		schema:  pgx.Identifier{opts.Schema}.Sanitize(),
		name:    fmt.Sprintf("postgres://%s@%s:%d/%s schema %s", cfg.User, cfg.Host, cfg.Port, cfg.Database, opts.Schema),
		lockKey: int64(h.Sum64()),
		timeout: opts.TxTimeout,
	}
	if err := s.migrate(ctx); err != nil {
		s.pool.close()
		return nil, fmt.Errorf("open store %s: %w", s.name, err)
	}
	return s, nil
}

// String is the database and schema, without the password.
func (s *Store) String() string { return s.name }

// Close waits for running transactions to end and closes the connections.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.wg.Wait()
	s.pool.close()
	return nil
}

// View runs fn in a read-only REPEATABLE READ transaction: one snapshot.
func (s *Store) View(fn func(store.Tx) error) error { return s.run(false, 0, fn) }

// Update runs fn in a read-write transaction (serialized with every other
// writer of the schema) and commits when fn returns nil. fn runs once.
func (s *Store) Update(fn func(store.Tx) error) error { return s.run(true, 0, fn) }

// Batch is Update, one transaction per call (PostgreSQL group-commits
// concurrent commits itself), except that fn runs again, up to 3 times,
// when the transaction fails with a serialization failure or a deadlock.
func (s *Store) Batch(fn func(store.Tx) error) error { return s.run(true, batchRetries, fn) }

// run runs fn in a transaction, again (up to retries times) after a
// serialization failure, and again (whatever retries) when the connection
// failed before fn ran.
func (s *Store) run(writable bool, retries int, fn func(store.Tx) error) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("store %s: closed", s.name)
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	for attempt := 0; ; attempt++ {
		ran, err := s.runOnce(writable, fn)
		switch {
		case err == nil:
			return nil
		case !ran && pgconn.SafeToRetry(err) && attempt < 2: // a stale pooled connection
		case ran && retries > 0 && retryable(err) && attempt < retries:
		default:
			return err
		}
	}
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// runOnce runs one transaction; ran reports whether fn was called.
func (s *Store) runOnce(writable bool, fn func(store.Tx) error) (ran bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	conn, err := s.pool.acquire(ctx)
	if err != nil {
		return false, fmt.Errorf("store %s: %w", s.name, err)
	}
	healthy, done := false, false
	var ptx pgx.Tx
	defer func() {
		if ptx != nil && !done {
			healthy = ptx.Rollback(ctx) == nil
		}
		s.pool.release(conn, healthy)
	}()
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	if writable {
		opts = pgx.TxOptions{IsoLevel: pgx.ReadCommitted, AccessMode: pgx.ReadWrite}
	}
	ptx, err = conn.BeginTx(ctx, opts)
	if err != nil {
		return false, fmt.Errorf("store %s: begin: %w", s.name, err)
	}
	if writable {
		// The writer lock; see the package doc and AppendMessage. Taken in
		// READ COMMITTED, so the statements after it see every writer that
		// committed before it was granted.
		if _, err := ptx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.lockKey); err != nil {
			return false, fmt.Errorf("store %s: writer lock: %w", s.name, err)
		}
	}
	t := &Tx{s: s, ctx: ctx, tx: ptx, writable: writable}
	ran = true
	if err := fn(t); err != nil {
		return ran, err // rolled back by the deferred function
	}
	if t.err != nil {
		return ran, t.err
	}
	if err := t.flush(); err != nil {
		return ran, err
	}
	done = true
	if err := ptx.Commit(ctx); err != nil {
		return ran, fmt.Errorf("store %s: commit: %w", s.name, err)
	}
	healthy = true
	return ran, nil
}

// Tx is a store.Tx in a PostgreSQL transaction.
type Tx struct {
	s        *Store
	ctx      context.Context // the transaction's; the store.Tx methods take none
	tx       pgx.Tx
	writable bool
	// err is the first failure of a method that cannot return one
	// (LastMessageSeq, MessageCount, Seen, Queued); View, Update and Batch
	// return it.
	err error
	// meta is the meta row, read at its first use and written back at
	// commit when dirty.
	meta      *metaRow
	metaDirty bool
	// pending are the writes of the hot path (AppendMessage, Remember)
	// queued to go in one round trip: before any other statement, and at
	// commit. remembered are the client ids Remember queued, which Seen
	// reads without sending the queue (no other queued write touches the
	// dedup table).
	pending    pgx.Batch
	remembered map[string]int64 // source "\x00" client id -> expiry, ms
}

// sql returns q with "{s}." naming the store's schema.
func (t *Tx) sql(q string) string { return strings.ReplaceAll(q, "{s}.", t.s.schema+".") }

// queue adds a write to the pending ones.
func (t *Tx) queue(q string, args ...any) { t.pending.Queue(t.sql(q), args...) }

// send sends the pending writes in one round trip.
func (t *Tx) send() error {
	n := t.pending.Len()
	if n == 0 {
		return nil
	}
	b := t.pending // the results are read against it
	t.pending, t.remembered = pgx.Batch{}, nil
	br := t.tx.SendBatch(t.ctx, &b)
	var err error
	for range n {
		if _, err = br.Exec(); err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write the queued records: %w", err)
	}
	return nil
}

func (t *Tx) exec(q string, args ...any) (pgconn.CommandTag, error) {
	if err := t.send(); err != nil {
		return pgconn.CommandTag{}, err
	}
	return t.tx.Exec(t.ctx, t.sql(q), args...)
}

func (t *Tx) query(q string, args ...any) (pgx.Rows, error) {
	if err := t.send(); err != nil {
		return nil, err
	}
	return t.tx.Query(t.ctx, t.sql(q), args...)
}

func (t *Tx) queryRow(q string, args ...any) pgx.Row {
	if err := t.send(); err != nil {
		return errRow{err}
	}
	return t.tx.QueryRow(t.ctx, t.sql(q), args...)
}

// errRow is a pgx.Row whose Scan fails with err.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// fail records the first error of a method that cannot return one.
func (t *Tx) fail(err error) {
	if t.err == nil {
		t.err = err
	}
}

// Key returns the server secret called name, creating n random bytes the
// first time (which needs a read-write transaction).
func (t *Tx) Key(name string, n int) ([]byte, error) {
	var k []byte
	err := t.queryRow(`SELECT secret FROM {s}.keys WHERE name = $1`, []byte(name)).Scan(&k)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("server key %q: %w", name, err)
	}
	if !t.writable {
		return nil, fmt.Errorf("server key %q: %w", name, store.ErrNotFound)
	}
	k = make([]byte, n)
	rand.Read(k) // never fails
	if _, err := t.exec(`INSERT INTO {s}.keys (name, secret) VALUES ($1, $2)`, []byte(name), k); err != nil {
		return nil, fmt.Errorf("server key %q: %w", name, err)
	}
	return k, nil
}

// pool hands out the connections of a pgxpool.Pool; a connection that a
// failure left unusable is closed on release, so that the pool drops it.
type pool struct{ p *pgxpool.Pool }

func (p *pool) acquire(ctx context.Context) (*pgxpool.Conn, error) {
	c, err := p.p.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("wait for a connection: %w", err)
	}
	return c, nil
}

func (p *pool) release(c *pgxpool.Conn, healthy bool) {
	if !healthy {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c.Conn().Close(ctx)
	}
	c.Release()
}

func (p *pool) close() { p.p.Close() }

var (
	_ store.Store = (*Store)(nil)
	_ store.Tx    = (*Tx)(nil)
)
