package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// SchemaVersion is the version of the tables this package writes (meta.version).
const SchemaVersion = 1

// schemaSQL creates the tables ({s}. is the schema). Every key a device or
// a client chooses is bytea (see the package doc).
var schemaSQL = []string{
	`CREATE SCHEMA IF NOT EXISTS {s}`,
	// One row: the schema version and the counters.
	`CREATE TABLE IF NOT EXISTS {s}.meta (
		id                    int PRIMARY KEY CHECK (id = 1),
		version               bigint NOT NULL,
		message_seq           bigint NOT NULL DEFAULT 0, -- highest sequence number ever assigned
		message_count         bigint NOT NULL DEFAULT 0,
		message_last_received bigint NOT NULL DEFAULT 0,
		request_seq           bigint NOT NULL DEFAULT 0  -- highest queue position ever assigned
	)`,
	`CREATE TABLE IF NOT EXISTS {s}.keys (name bytea PRIMARY KEY, secret bytea NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS {s}.devices (
		id          bytea PRIMARY KEY,
		hardware_id bytea UNIQUE, -- NULL when empty
		endpoint_id bytea UNIQUE, -- NULL until activation
		data        bytea NOT NULL  -- the store.Device JSON
	)`,
	`CREATE TABLE IF NOT EXISTS {s}.models (urn bytea PRIMARY KEY, data bytea NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS {s}.policies (id bytea PRIMARY KEY, data bytea NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS {s}.requests (id bytea PRIMARY KEY, data bytea NOT NULL)`,
	// The pending requests of each route, in queue order.
	`CREATE TABLE IF NOT EXISTS {s}.request_queue (
		route_to bytea  NOT NULL,
		seq      bigint NOT NULL,
		id       bytea  NOT NULL,
		PRIMARY KEY (route_to, seq)
	)`,
	// seq is assigned in commit order (see AppendMessage) and received never
	// decreases with it, so (received, seq) order is seq order: the indexes
	// serve Since bounds and seq order at once.
	`CREATE TABLE IF NOT EXISTS {s}.messages (
		seq      bigint PRIMARY KEY,
		received bigint NOT NULL,
		source   bytea  NOT NULL,
		type     bytea  NOT NULL,
		raw      bytea  NOT NULL -- the wire message, compact JSON
	)`,
	`CREATE INDEX IF NOT EXISTS messages_by_received ON {s}.messages (received, seq)`,
	`CREATE INDEX IF NOT EXISTS messages_by_source ON {s}.messages (source, received, seq)`,
	`CREATE INDEX IF NOT EXISTS messages_by_type ON {s}.messages (type, received, seq)`,
	`CREATE TABLE IF NOT EXISTS {s}.dedup (
		source    bytea  NOT NULL,
		client_id bytea  NOT NULL,
		expires   bigint NOT NULL, -- epoch ms
		PRIMARY KEY (source, client_id)
	)`,
	`CREATE INDEX IF NOT EXISTS dedup_by_expiry ON {s}.dedup (expires)`,
	`CREATE TABLE IF NOT EXISTS {s}.attributes (
		endpoint_id bytea NOT NULL,
		urn         bytea NOT NULL,
		data        bytea NOT NULL, -- the store.Attributes JSON
		PRIMARY KEY (endpoint_id, urn)
	)`,
	`CREATE TABLE IF NOT EXISTS {s}.objects (path bytea PRIMARY KEY, data bytea NOT NULL)`,
	`INSERT INTO {s}.meta (id, version) VALUES (1, ` + fmt.Sprint(SchemaVersion) + `) ON CONFLICT (id) DO NOTHING`,
}

// migrate creates the schema and its tables, and checks the version, in one
// transaction under the writer lock (concurrent CREATE ... IF NOT EXISTS of
// one table can fail).
func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.pool.acquire(ctx)
	if err != nil {
		return err
	}
	healthy := false
	defer func() { s.pool.release(conn, healthy) }()
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", s.lockKey); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", s.schema+".meta").Scan(&exists); err != nil {
			return err
		}
		if exists {
			var version int64
			err := tx.QueryRow(ctx, "SELECT version FROM "+s.schema+".meta WHERE id = 1").Scan(&version)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			if err == nil && version != SchemaVersion {
				return fmt.Errorf("schema version is %d, expected %d (written by a newer iotcloud?)", version, SchemaVersion)
			}
		}
		for _, q := range schemaSQL {
			if _, err := tx.Exec(ctx, strings.ReplaceAll(q, "{s}", s.schema)); err != nil {
				return err
			}
		}
		return nil
	})
	healthy = err == nil
	return err
}
