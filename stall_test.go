package main

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/postgres"
)

// TestRun_stalls: a stock row locked elsewhere holds no worker and delays
// only the orders that need it, a transaction of another client left idle
// delays nothing, and one of orderstream's own that may write the outbox
// stalls the outbox only until the server ends it, after
// DB_IDLE_IN_TRANSACTION_TIMEOUT.
func TestRun_stalls(t *testing.T) {
	t.Parallel()
	addr := testenv.FreeAddr(t)
	base := env(t, addr)
	vars := map[string]string{
		"WORKER_CONCURRENCY": "1", "HANDLER_TIMEOUT": "2s", "HANDLER_MAX_RETRIES": "1",
		"DB_LOCK_TIMEOUT": "100ms", "PARK_BACKOFF_INITIAL": "100ms", "PARK_BACKOFF_MAX": "500ms",
		"DB_IDLE_IN_TRANSACTION_TIMEOUT": "1s",
	}
	getenv := with(base, vars)
	ctx := context.Background()
	db, err := sql.Open("postgres", getenv("DATABASE_URL")) // someone else's sessions: no limits
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rdb := redisOf(t, getenv("REDIS_URL"))
	defer rdb.Close()
	start(t, getenv, "api")
	start(t, getenv, "forwarder")
	c := client{t, "http://" + addr}
	c.waitHealthy()
	item := func(sku string) string {
		return fmt.Sprintf(`{"customer_id":"c-1","items":[{"sku":%q,"quantity":1}]}`, sku)
	}
	stock := func(sku string) (st struct{ Available, Reserved int }) {
		c.do("GET", "/inventory/"+sku, "", &st)
		return st
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	var workerOnce sync.Once
	worker := func() { workerOnce.Do(func() { start(t, getenv, "worker") }) }
	t.Run("a_held_stock_row_holds_no_worker", func(t *testing.T) {
		held, free := testenv.Unique("SKU"), testenv.Unique("SKU")
		for _, sku := range []string{held, free} {
			if code := c.do("PUT", "/inventory/"+sku, `{"available":10}`, nil); code != 200 {
				t.Fatalf("PUT /inventory = %d", code)
			}
		}
		// The held SKU's order reaches its stream before the worker starts,
		// so that it is first in line for the one consumer.
		stuck := c.place(item(held))
		others := []order{c.place(item(free)), c.place(item(free)), c.place(item(free))}
		stream := getenv("STREAM_PREFIX") + "orders.placed"
		waitFor("the orders to reach their stream", func() bool { return rdb.XLen(ctx, stream).Val() >= 4 })

		lock, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Rollback()
		if _, err := lock.Exec(`SELECT 1 FROM stock WHERE sku = $1 FOR UPDATE`, held); err != nil {
			t.Fatal(err)
		}
		// One consumer per group, the held order first in line; it runs on
		// for the subtests below.
		worker()
		// Placed while the row is held: the lock does not hold back the
		// outbox either.
		others = append(others, c.place(item(free)))
		for _, o := range others {
			if got := c.settled(o.ID); got.Status != "confirmed" {
				t.Errorf("order %s is %s while the row is held, want confirmed", o.ID, got.Status)
			}
		}
		if st := stock(held); st.Reserved != 0 {
			t.Fatalf("held SKU %+v while its row was locked", st)
		}
		if err := lock.Rollback(); err != nil {
			t.Fatal(err)
		}
		for _, o := range append(others, stuck) {
			if got := c.settled(o.ID); got.Status != "confirmed" {
				t.Errorf("order %s is %s, want confirmed", o.ID, got.Status)
			}
		}
		if n := rdb.XLen(ctx, getenv("STREAM_PREFIX")+"deadletter").Val(); n != 0 {
			t.Errorf("%d dead letters, want none", n)
		}
	})

	// Another client's transaction that holds a transaction id does not
	// write the outbox, and the forwarder does not wait for it.
	t.Run("orders_settle_while_another_clients_transaction_sits_idle", func(t *testing.T) {
		worker()
		sku := testenv.Unique("SKU")
		c.do("PUT", "/inventory/"+sku, `{"available":10}`, nil)
		idle, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer idle.Rollback()
		if _, err := idle.Exec(`SELECT pg_current_xact_id()`); err != nil {
			t.Fatal(err)
		}
		o := c.place(item(sku))
		if got := c.settled(o.ID); got.Status != "confirmed" {
			t.Errorf("order is %s, want confirmed", got.Status)
		}
		if err := idle.Rollback(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("an_idle_session_of_orderstream_is_ended_by_the_server", func(t *testing.T) {
		worker()
		sku := testenv.Unique("SKU")
		c.do("PUT", "/inventory/"+sku, `{"available":10}`, nil)
		own, err := postgres.Open(ctx, getenv("DATABASE_URL"), 1, postgres.IdleInTransactionTimeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer own.Close()
		// A transaction that may write the outbox, with a transaction id,
		// left idle: the forwarder waits for it.
		idle, release, ended := make(chan struct{}), make(chan struct{}), make(chan error, 1)
		go func() {
			ended <- postgres.InTx(ctx, own, func(ctx context.Context, tx *postgres.Tx) error {
				if _, err := tx.ExecContext(ctx, `SELECT pg_current_xact_id()`); err != nil {
					return err
				}
				close(idle)
				<-release
				return nil
			})
		}()
		select {
		case <-idle:
		case err := <-ended:
			t.Fatalf("begin the idle transaction: %v", err)
		}
		o := c.place(item(sku)) // the transaction is never ended here
		if got := c.settled(o.ID); got.Status != "confirmed" {
			t.Errorf("order is %s, want confirmed", got.Status)
		}
		close(release)
		if err := <-ended; err == nil {
			t.Error("the idle transaction committed, want it ended by idle_in_transaction_session_timeout")
		}
	})
}
