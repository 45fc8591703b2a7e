package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/outbox"
)

// TestRun_redrivesUnsettledOrders: an event that Redis lost after the
// forwarder put it on its stream (here deleted with XDEL) leaves its
// order pending; the forwarder process's re-driver sends the order's
// events again once it has been unsettled for ORDER_SETTLE_TIMEOUT, and it
// settles, its stock reserved once. An order whose events the outbox no
// longer holds cannot be re-driven: it stays pending, and says so in an
// error line.
func TestRun_redrivesUnsettledOrders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	addr := testenv.FreeAddr(t)
	getenv := with(env(t, addr), map[string]string{"ORDER_SETTLE_TIMEOUT": "1s", "OUTBOX_SHARDS": "4"})
	start(t, getenv, "api")
	forwarders := []*testenv.Buffer{start(t, getenv, "forwarder"), start(t, getenv, "forwarder")}
	c := client{t, "http://" + addr}
	c.waitHealthy()
	db, err := sql.Open("postgres", getenv("DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rdb := redisOf(t, getenv("REDIS_URL"))
	placedStream := getenv("STREAM_PREFIX") + "orders.placed"

	sku := testenv.Unique("SKU")
	if code := c.do("PUT", "/inventory/"+sku, `{"available":10}`, nil); code != http.StatusOK {
		t.Fatalf("PUT /inventory = %d", code)
	}
	body := `{"customer_id":"c-1","items":[{"sku":"` + sku + `","quantity":2}]}`
	lost, kept, gone := c.place(body), c.place(body), c.place(body)

	// The workers are not running yet: the events wait on the stream,
	// where two of them are lost, every copy the forwarders wrote.
	eventually(t, func() bool {
		st, err := outbox.Outbox(ctx, db)
		return err == nil && st.HasForwarded && st.Pending == 0
	}, "the forwarders to pass every outbox row")
	for _, id := range []string{lost.ID, gone.ID} {
		if err := rdb.XDel(ctx, placedStream, entriesOf(t, rdb, placedStream, id)...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// And the outbox no longer holds gone's event, as after OUTBOX_RETENTION.
	for shard := range 16 {
		table := "watermill_outbox"
		if shard > 0 {
			table = fmt.Sprintf("watermill_outbox_%d", shard)
		}
		if _, err := db.Exec(`DELETE FROM `+table+` WHERE metadata->>'key' = $1`, gone.ID); err != nil {
			t.Fatal(err)
		}
	}

	start(t, getenv, "worker")
	if o := c.settled(kept.ID); o.Status != "confirmed" {
		t.Fatalf("the order whose event arrived is %s, want confirmed", o.Status)
	}
	if o := c.settled(lost.ID); o.Status != "confirmed" {
		t.Fatalf("the order whose event was lost is %s, want confirmed once re-driven", o.Status)
	}
	var stock struct{ Available, Reserved int }
	c.do("GET", "/inventory/"+sku, "", &stock)
	if stock.Available != 6 || stock.Reserved != 4 {
		t.Errorf("stock = %+v, want 6 available and 4 reserved: each settled order's reservation once", stock)
	}

	// The order with nothing left to resend is an error line, and a row
	// that waits longer each time.
	waitLog(t, forwarders, "unsettled order has no event left to re-drive", gone.ID)
	var status string
	if err := db.QueryRow(`SELECT status FROM orders WHERE id = $1`, gone.ID).Scan(&status); err != nil || status != "pending" {
		t.Errorf("the order with no event left is %q (%v), want pending", status, err)
	}
	var outcome string
	if err := db.QueryRow(`SELECT last_outcome FROM order_redrives WHERE order_id = $1`, gone.ID).Scan(&outcome); err != nil || outcome != "no_event" {
		t.Errorf("its re-drive was recorded as %q (%v), want no_event", outcome, err)
	}
	// A settled order's record goes.
	eventually(t, func() bool {
		var n int
		return db.QueryRow(`SELECT count(*) FROM order_redrives WHERE order_id = $1`, lost.ID).Scan(&n) == nil && n == 0
	}, "the settled order's re-drive record to go")
}

// entriesOf are the ids of the entries of stream that carry order id's
// OrderPlaced, waiting for one to arrive.
func entriesOf(t *testing.T, rdb redis.UniversalClient, stream, id string) []string {
	t.Helper()
	var found []string
	eventually(t, func() bool {
		entries, err := rdb.XRange(context.Background(), stream, "-", "+").Result()
		if err != nil {
			return false
		}
		found = nil
		for _, e := range entries {
			if p, _ := e.Values["payload"].(string); strings.Contains(p, id) {
				found = append(found, e.ID)
			}
		}
		return len(found) > 0
	}, "order %s's OrderPlaced on %s", id, stream)
	return found
}

// waitLog waits until one of logs has a line with msg that names id.
func waitLog(t *testing.T, logs []*testenv.Buffer, msg, id string) {
	t.Helper()
	eventually(t, func() bool {
		for _, l := range logs {
			for _, line := range strings.Split(l.String(), "\n") {
				if strings.Contains(line, msg) && strings.Contains(line, id) {
					return true
				}
			}
		}
		return false
	}, "a line %q about %s", msg, id)
}

// eventually waits until ok holds, for up to 20 s.
func eventually(t *testing.T, ok func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for "+format, args...)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
