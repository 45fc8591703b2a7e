package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/outbox"
)

// TestRun_throughPgBouncer: the parts as separate processes, their pools
// through a PgBouncer in transaction mode with fewer server sessions than
// they open, what needs a session of its own on PostgreSQL itself. Orders
// settle, the outbox drains (as `outbox status` says too), the stock is
// right, and a worker's transaction runs with DB_LOCK_TIMEOUT.
//
// The forwarders poll only once a minute on their own: the orders settle
// in time only if the commits' notifications reach the forwarders'
// listeners, which a LISTEN through the pooler would not.
func TestRun_throughPgBouncer(t *testing.T) {
	t.Parallel()
	addr := testenv.FreeAddr(t)
	base := env(t, addr)
	direct := base("DATABASE_URL")
	vars := map[string]string{
		"DATABASE_URL": testenv.PgBouncer(t, direct), "DATABASE_SESSION_URL": direct, "DATABASE_POOLER": "pgbouncer",
		"OUTBOX_SHARDS": "4", "OUTBOX_POLL_INTERVAL": "1m",
		"HANDLER_TIMEOUT": "2s", "HANDLER_MAX_RETRIES": "1", "DB_LOCK_TIMEOUT": "100ms",
		"PARK_BACKOFF_INITIAL": "100ms", "PARK_BACKOFF_MAX": "500ms",
	}
	getenv := with(base, vars)
	for _, cmd := range []string{"api", "forwarder", "forwarder", "worker", "worker"} {
		start(t, getenv, cmd)
	}
	c := client{t, "http://" + addr}
	c.waitHealthy()
	flow(t, c)

	db, err := sql.Open("postgres", direct) // someone else's sessions: no limits
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	t.Run("the_outbox_drains", func(t *testing.T) {
		waitUntil(t, "the outbox to drain", func() (bool, error) {
			st, err := outbox.Outbox(context.Background(), db)
			return err == nil && st.Pending == 0, err
		})
		// On the session URL: through PgBouncer, its read-only sessions
		// would be refused.
		var out strings.Builder
		if err := run(context.Background(), []string{"outbox", "status"}, getenv, &out, io.Discard); err != nil ||
			!strings.Contains(out.String(), "pending 0") {
			t.Errorf("outbox status = %v\n%s", err, out.String())
		}
	})
	t.Run("a_held_stock_row_fails_a_worker_in_DB_LOCK_TIMEOUT", func(t *testing.T) {
		lockTimeoutThroughPgBouncer(t, c, db)
	})
}

// lockTimeoutThroughPgBouncer holds a stock row and checks that the
// order that needs it is parked for a lock timeout, not for its handler's
// deadline, then settles once the row is free.
func lockTimeoutThroughPgBouncer(t *testing.T, c client, db *sql.DB) {
	sku := testenv.Unique("SKU")
	if code := c.do("PUT", "/inventory/"+sku, `{"available":10}`, nil); code != 200 {
		t.Fatalf("PUT /inventory = %d", code)
	}
	lock, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()
	if _, err := lock.Exec(`SELECT 1 FROM stock WHERE sku = $1 FOR UPDATE`, sku); err != nil {
		t.Fatal(err)
	}
	o := c.place(fmt.Sprintf(`{"customer_id":"c-1","items":[{"sku":%q,"quantity":1}]}`, sku))
	waitUntil(t, "the order's message to be parked for a lock timeout", func() (bool, error) {
		var n int
		err := db.QueryRow(`SELECT count(*) FROM parked_messages WHERE last_error LIKE '%lock timeout%'`).Scan(&n)
		return n > 0, err
	})
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got := c.settled(o.ID); got.Status != "confirmed" {
		t.Errorf("order is %s once the row is free, want confirmed", got.Status)
	}
	var st struct{ Available, Reserved int }
	c.do("GET", "/inventory/"+sku, "", &st)
	if st.Available != 9 || st.Reserved != 1 {
		t.Errorf("stock = %+v, want 9 available and 1 reserved", st)
	}
}

// waitUntil calls done every 20 ms until it says so, failing t after 20 s.
func waitUntil(t *testing.T, what string, done func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, err := done()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (%v)", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRun_throughPgBouncerWithoutItsSetting: a server started against
// PgBouncer without DATABASE_POOLER fails at once, saying what to set,
// instead of waiting STARTUP_TIMEOUT for a database that will refuse it
// every time.
func TestRun_throughPgBouncerWithoutItsSetting(t *testing.T) {
	t.Parallel()
	base := env(t, testenv.FreeAddr(t))
	direct := base("DATABASE_URL")
	vars := map[string]string{
		"DATABASE_URL": testenv.PgBouncer(t, direct), "DATABASE_SESSION_URL": direct, "STARTUP_TIMEOUT": "30s",
	}
	getenv := with(base, vars)
	logs := &testenv.Buffer{}
	began := time.Now()
	err := run(context.Background(), []string{"api"}, getenv, io.Discard, logs)
	if err == nil || !strings.Contains(err.Error(), "unsupported startup parameter") ||
		!strings.Contains(err.Error(), "DATABASE_POOLER=pgbouncer") {
		t.Errorf("run(api) = %v, want the refused parameter and DATABASE_POOLER=pgbouncer named", err)
	}
	if took := time.Since(began); took > 10*time.Second || strings.Contains(logs.String(), "waiting for the database") {
		t.Errorf("run(api) took %s, want it to fail at once:\n%s", took, logs.String())
	}
}
