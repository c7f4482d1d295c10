package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iotnode/iotnode/cloud/api"
	cloudclient "github.com/iotnode/iotnode/cloud/client"
	"github.com/iotnode/iotnode/device"
	"github.com/iotnode/iotnode/domain/message"
)

// postgresURL is the PostgreSQL of the tests: IOTCLOUD_TEST_POSTGRES, or the
// project machines' local server.
func postgresURL() string {
	if u := os.Getenv("IOTCLOUD_TEST_POSTGRES"); u != "" {
		return u
	}
	return "postgres://root@127.0.0.1:5432/test?sslmode=disable"
}

// startPostgresCloud is startCloud with the records in a fresh PostgreSQL
// schema, dropped at cleanup. It skips the test when PostgreSQL does not
// answer: the tests pass on machines without it.
func startPostgresCloud(t *testing.T) *cloud {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, postgresURL())
	if err != nil {
		t.Skipf("PostgreSQL is not reachable at %s (set IOTCLOUD_TEST_POSTGRES to test the PostgreSQL store): %v", postgresURL(), err)
	}
	conn.Close(ctx)
	schema := fmt.Sprintf("it_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, postgresURL()); err == nil {
			conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			conn.Close(ctx)
		}
	})
	c := &cloud{dir: t.TempDir(), addr: "127.0.0.1:0", clock: &skewClock{}, storeURL: postgresURL(), storeSchema: schema}
	c.start(t)
	for _, name := range []string{"humidity_sensor", "temperature_sensor", "light_switch"} {
		m, err := os.ReadFile(filepath.Join("..", "testdata", "devicemodels", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Client().AddModel(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// The reference cloud on its PostgreSQL store, end to end: activation,
// data, a cloud set answered by the device, a restart of the cloud that
// keeps everything (the store is the database, not the data directory's
// file), and delivery after it.
func TestPostgresStoreEndToEnd(t *testing.T) {
	c := startPostgresCloud(t)
	path := provision(t, c, api.DeviceTypeDirect, "pg-humidity-1")
	d, v := activated(t, path, humidityURN)
	endpoint := d.EndpointID()
	changes := make(chan device.ChangeEvent, 4)
	v.OnChange(func(e device.ChangeEvent) { changes <- e })
	for h := range 5 {
		if err := v.Set("humidity", 40+h); err != nil {
			t.Fatal(err)
		}
	}
	q := cloudclient.MessageQuery{Source: endpoint, Type: string(message.TypeData)}
	awaitMessages(t, c, q, 1, dataWith(humidityURN+":attributes", "humidity", 44))
	id, err := c.Client().SetAttribute(t.Context(), endpoint, humidityURN, "maxThreshold", 77)
	if err != nil {
		t.Fatal(err)
	}
	receive(t, changes, "the cloud's set of maxThreshold")
	if r := awaitRequest(t, c, id); r.Status != api.RequestCompleted {
		t.Fatalf("request %s is %s, want COMPLETED", id, r.Status)
	}

	c.stop(t)
	c.start(t)
	if err := v.Set("humidity", 61); err != nil {
		t.Fatal(err)
	}
	msgs := awaitMessages(t, c, q, 1, dataWith(humidityURN+":attributes", "humidity", 61))
	all := mustMessages(t, c, q)
	if len(all) < 7 { // 5 sets, the echo of the cloud's set, and 61
		t.Fatalf("after the restart the cloud has %d DATA messages, want at least 7 (nothing lost): %s", len(all), describe(all))
	}
	t.Logf("PostgreSQL store (schema %s): %d DATA messages kept across a cloud restart; the last: %s", c.storeSchema, len(all), describe(msgs[len(msgs)-1:]))
}
