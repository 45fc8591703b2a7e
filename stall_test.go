package main

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/postgres"
)

// TestRun_stalls: a stock row locked elsewhere holds no worker, and a
// transaction left idle stalls the outbox only until it ends, which
// orderstream's own sessions do after DB_IDLE_IN_TRANSACTION_TIMEOUT.
func TestRun_stalls(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	base := env(t, addr)
	vars := map[string]string{
		"WORKER_CONCURRENCY": "1", "HANDLER_TIMEOUT": "2s", "HANDLER_MAX_RETRIES": "1",
		"DB_LOCK_TIMEOUT": "100ms", "PARK_BACKOFF_INITIAL": "100ms", "PARK_BACKOFF_MAX": "500ms",
		"DB_IDLE_IN_TRANSACTION_TIMEOUT": "1s",
	}
	getenv := func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		return base(k)
	}
	ctx := context.Background()
	db, err := sql.Open("postgres", getenv("DATABASE_URL")) // someone else's sessions: no limits
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	opts, _ := redis.ParseURL(getenv("REDIS_URL"))
	rdb := redis.NewClient(opts)
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
		// The orders reach their stream first: a row lock gives its session
		// a transaction id, and the forwarder forwards nothing committed
		// after that until the lock goes (see the next subtests).
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
		waitFor("the other SKU's orders to be reserved while the row is held", func() bool { return stock(free).Reserved == 3 })
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

	// A transaction that holds a transaction id hides every commit after
	// it from the forwarder: the order placed meanwhile settles once it
	// ends.
	t.Run("orders_settle_once_an_idle_transaction_ends", func(t *testing.T) {
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
		if err := idle.Rollback(); err != nil {
			t.Fatal(err)
		}
		if got := c.settled(o.ID); got.Status != "confirmed" {
			t.Errorf("order is %s, want confirmed", got.Status)
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
		idle, err := own.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer idle.Rollback()
		if _, err := idle.Exec(`SELECT pg_current_xact_id()`); err != nil {
			t.Fatal(err)
		}
		o := c.place(item(sku)) // the session is never ended here
		if got := c.settled(o.ID); got.Status != "confirmed" {
			t.Errorf("order is %s, want confirmed", got.Status)
		}
		if _, err := idle.Exec(`SELECT 1`); err == nil {
			t.Error("the idle session is still usable, want it ended by idle_in_transaction_session_timeout")
		}
	})
}
