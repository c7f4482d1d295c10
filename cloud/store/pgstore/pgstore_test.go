package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotnode/iotnode/cloud/store"
	"github.com/iotnode/iotnode/cloud/store/pgstore"
	"github.com/iotnode/iotnode/cloud/store/storetest"
	"github.com/jackc/pgx/v5"
)

// testURL is the test database: IOTCLOUD_TEST_POSTGRES, or the local server
// with trust authentication.
func testURL() string {
	if u := os.Getenv("IOTCLOUD_TEST_POSTGRES"); u != "" {
		return u
	}
	return "postgres://root@127.0.0.1:5432/test?sslmode=disable"
}

// admin connects to the test database, or skips t when it is not reachable.
func admin(tb testing.TB) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testURL())
	if err != nil {
		tb.Skipf("no PostgreSQL to test with (set IOTCLOUD_TEST_POSTGRES): %v", err)
	}
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// newSchema returns a fresh schema name, dropped when tb ends.
func newSchema(tb testing.TB) string {
	tb.Helper()
	conn := admin(tb)
	b := make([]byte, 6)
	rand.Read(b)
	schema := "pgstore_test_" + hex.EncodeToString(b)
	tb.Cleanup(func() {
		if _, err := conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

func open(tb testing.TB, schema string) *pgstore.Store {
	tb.Helper()
	s, err := pgstore.Open(tb.Context(), testURL(), pgstore.Options{Schema: schema})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

var schemas sync.Map // store -> schema, for Reopen

func TestConformance(t *testing.T) {
	t.Parallel()
	admin(t)
	storetest.Run(t, storetest.Opener{
		Open: func(t *testing.T) store.Store {
			schema := newSchema(t)
			s := open(t, schema)
			schemas.Store(s, schema)
			return s
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			schema, _ := schemas.Load(s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s2 := open(t, schema.(string))
			schemas.Store(s2, schema)
			return s2
		},
	})
}

func TestOpen(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	s := open(t, schema)
	if got, want := s.String(), "schema "+schema; !strings.HasSuffix(got, want) || !strings.HasPrefix(got, "postgres://") {
		t.Errorf("String %q", got)
	}
	t.Run("twice at once", func(t *testing.T) {
		// Two processes starting on one new schema: the writer lock
		// serializes the CREATE statements.
		schema := newSchema(t)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() {
				s, err := pgstore.Open(t.Context(), testURL(), pgstore.Options{Schema: schema})
				if err == nil {
					s.Close()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("newer schema", func(t *testing.T) {
		schema := newSchema(t)
		open(t, schema).Close()
		if _, err := admin(t).Exec(t.Context(), "UPDATE "+schema+".meta SET version = 2"); err != nil {
			t.Fatal(err)
		}
		_, err := pgstore.Open(t.Context(), testURL(), pgstore.Options{Schema: schema})
		if err == nil || !strings.HasSuffix(err.Error(), ": schema version is 2, expected 1 (written by a newer iotcloud?)") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("bad options", func(t *testing.T) {
		_, err := pgstore.Open(t.Context(), testURL(), pgstore.Options{Schema: "a;b", MaxConns: -1})
		want := "open store: schema is \"a;b\", expected letters, digits and _ (not starting with a digit), at most 63\nmax conns is -1, expected >= 0 (0 = default)"
		if err == nil || err.Error() != want {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		s := open(t, newSchema(t))
		s.Close()
		if err := s.View(func(store.Tx) error { return nil }); err == nil || !strings.HasSuffix(err.Error(), ": closed") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := pgstore.Open(ctx, "postgres://nobody:secret@127.0.0.1:1/none?sslmode=disable&connect_timeout=2", pgstore.Options{})
	if err == nil || !strings.HasPrefix(err.Error(), "open store postgres://nobody@127.0.0.1:1/none schema iotcloud: ") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("got %v", err)
	}
}

// TestCorruptRecord checks the errors of records that are not JSON, in the
// bbolt store's texts.
func TestCorruptRecord(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	s := open(t, schema)
	_, err := admin(t).Exec(t.Context(), "INSERT INTO "+schema+".devices (id, data) VALUES ('bad', '{'); INSERT INTO "+schema+".policies (id, data) VALUES ('bad', '{')")
	if err != nil {
		t.Fatal(err)
	}
	s.View(func(tx store.Tx) error {
		if _, err := tx.Device("bad"); err == nil || !strings.HasPrefix(err.Error(), `device "bad": corrupt record "bad": `) {
			t.Errorf("Device: %v", err)
		}
		if _, err := tx.Devices(); err == nil || !strings.HasPrefix(err.Error(), `device "bad": corrupt record: `) {
			t.Errorf("Devices: %v", err)
		}
		if _, err := tx.Policies(); err == nil {
			t.Error("Policies: no error")
		}
		return nil
	})
}

// TestTwoStores runs writers through two Stores (two processes) on one
// schema: the writer lock is the database's, so sequence numbers still
// follow commit order and nothing is lost.
func TestTwoStores(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	stores := []*pgstore.Store{open(t, schema), open(t, schema)}
	const writers, batches = 6, 20
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Go(func() {
			s := stores[w%2]
			for b := range batches {
				err := s.Batch(func(tx store.Tx) error {
					if err := tx.AppendMessage(&store.Message{Received: int64(b), Source: fmt.Sprint("w", w), Type: "DATA", Raw: []byte("{}")}); err != nil {
						return err
					}
					return tx.MergeAttributes("e", "urn", map[string]json.RawMessage{fmt.Sprint("w", w): json.RawMessage(fmt.Sprint(b))}, int64(b))
				})
				if err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	stores[1].View(func(tx store.Tx) error {
		got, more, err := tx.Messages(store.Query{Limit: 1000})
		if err != nil || more || len(got) != writers*batches || tx.LastMessageSeq() != writers*batches {
			t.Errorf("%d messages (more %v, err %v), last seq %d", len(got), more, err, tx.LastMessageSeq())
		}
		for i, m := range got {
			if m.Seq != uint64(i+1) {
				t.Fatalf("message %d numbered %d", i, m.Seq)
			}
		}
		a, err := tx.Attributes("e", "urn")
		if err != nil || len(a.Values) != writers {
			t.Errorf("attributes %v %v: a merge was lost", a, err)
		}
		return nil
	})
}

// TestFailedRead checks that the methods without an error result make the
// transaction fail when their query fails.
func TestFailedRead(t *testing.T) {
	t.Parallel()
	schema := newSchema(t)
	s := open(t, schema)
	if _, err := admin(t).Exec(t.Context(), "DROP TABLE "+schema+".dedup, "+schema+".request_queue"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		fn   func(store.Tx) bool
	}{
		{"Seen", func(tx store.Tx) bool { return tx.Seen("a", "c", time.Now()) }},
		{"Queued", func(tx store.Tx) bool { return tx.Queued("gw") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, run := range []func(func(store.Tx) error) error{s.View, s.Update, s.Batch} {
				var got bool
				err := run(func(tx store.Tx) error { got = tt.fn(tx); return nil })
				if err == nil || got || !strings.Contains(err.Error(), "does not exist") {
					t.Errorf("got %v, %v", got, err)
				}
			}
		})
	}
}
