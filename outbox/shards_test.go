package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/postgres"
)

// An order's events all go to the shard of its id, of as many shards as
// the context spreads them over; without a count, to shard 0.
func TestPublish_writesAnOrdersEventsToTheShardOfItsID(t *testing.T) {
	t.Parallel()
	db := testenv.OwnDB(t)
	ctx := postgres.WithOutboxShards(context.Background(), 4)
	used := map[int]bool{}
	for i := range 40 {
		id := fmt.Sprintf("spread-%d", i)
		publish(t, db, ctx, events.OrderPlaced{OrderID: id})
		publish(t, db, ctx, events.StockReserved{OrderID: id})
		want := postgres.ShardOf(id, 4)
		used[want] = true
		for shard := range postgres.MaxOutboxShards {
			n := countOrderRows(t, db, shard, id)
			if shard == want && n != 2 || shard != want && n != 0 {
				t.Errorf("order %s: %d rows in shard %d, want both in shard %d", id, n, shard, want)
			}
		}
	}
	if len(used) != 4 {
		t.Errorf("40 orders used shards %v, want all 4", used)
	}
	publish(t, db, context.Background(), events.OrderPlaced{OrderID: "unspread"})
	if n := countOrderRows(t, db, 0, "unspread"); n != 1 {
		t.Errorf("without a shard count: %d rows in shard 0, want 1", n)
	}
}

// Changing OUTBOX_SHARDS loses and doubles nothing: the forwarder reads
// every shard, so the rows written with 4 shards before it started, and
// those written with 2 and then 1 while it runs, are each forwarded once,
// and every order's events in the order they were written.
func TestForwarder_forwardsEveryRowWhenTheShardCountChanges(t *testing.T) {
	t.Parallel()
	db := testenv.OwnDB(t)
	streams := testenv.Streams(t)
	rdb := streams.NewClient()
	defer rdb.Close()

	publishOrders(t, db, 4, "grown", 30) // a backlog in 4 shards
	waitPending(t, db, 60)               // the status counts every shard
	runForwarder(t, db, streams, outbox.ForwarderConfig{PollInterval: 50 * time.Millisecond, BatchSize: 7})
	publishOrders(t, db, 2, "shrunk", 30)
	publishOrders(t, db, 1, "one", 30)

	msgs := entries(t, rdb, streams.Name(events.StreamOrdersPlaced), 180)
	checkForwardedOnce(t, msgs, 90)
	waitPending(t, db, 0)
	if got := entries(t, rdb, streams.Name(events.StreamOrdersPlaced), 180); len(got) != 180 {
		t.Errorf("%d entries once the outbox is empty, want 180", len(got))
	}

	// The clean-up deletes in every shard all but the rows of the
	// transaction at its position (one row each here).
	deleted, err := outbox.CleanOutbox(context.Background(), db, 0)
	if err != nil {
		t.Fatal(err)
	}
	var left int64
	for shard := range 4 {
		var n int64
		if err := db.QueryRow(`SELECT count(*) FROM watermill_` + postgres.OutboxTopic(shard)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 1 {
			t.Errorf("shard %d keeps %d rows after the clean-up, want at most 1", shard, n)
		}
		left += n
	}
	if deleted+left != 180 {
		t.Errorf("the clean-up deleted %d rows and left %d, want 180 in all", deleted, left)
	}
}

// Two forwarders share the shards: each shard is forwarded by one at a
// time (its offsets row is locked by the poll that reads it), so nothing
// is forwarded twice while both run; once one stops, the other takes its
// shards and forwards the rest.
func TestForwarder_twoForwardersShareTheShards(t *testing.T) {
	t.Parallel()
	db := testenv.OwnDB(t)
	streams := testenv.Streams(t)
	rdb := streams.NewClient()
	defer rdb.Close()

	const orders = 150
	publishOrders(t, db, 4, "shared", orders)
	cfg := outbox.ForwarderConfig{PollInterval: 50 * time.Millisecond, BatchSize: 3}
	stopFirst := startForwarder(t, db, streams, cfg)
	runForwarder(t, db, streams, cfg)
	key := streams.Name(events.StreamOrdersPlaced)
	waitFor(t, "a third of the events", func() bool { return rdb.XLen(context.Background(), key).Val() >= 2*orders/3 })
	if err := stopFirst(); err != nil {
		t.Fatal(err)
	}

	msgs := entries(t, rdb, key, 2*orders)
	waitPending(t, db, 0)
	checkForwardedOnce(t, entriesNow(t, rdb, key), orders)
	if len(msgs) > 2*orders {
		t.Errorf("%d entries, want %d", len(msgs), 2*orders)
	}
}

// publishOrders places n orders, ids prefix-0 …, with the events spread
// over shards; each order is then cancelled, so that it has two events on
// orders.placed, in that order.
func publishOrders(t *testing.T, db *sql.DB, shards int, prefix string, n int) {
	t.Helper()
	ctx := postgres.WithOutboxShards(context.Background(), shards)
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		publish(t, db, ctx, events.OrderPlaced{OrderID: id})
		publish(t, db, ctx, events.OrderCancelled{OrderID: id})
	}
}

// checkForwardedOnce checks that msgs are the events of orders orders
// (publishOrders), each once, every OrderPlaced before its OrderCancelled.
func checkForwardedOnce(t *testing.T, msgs []*message.Message, orders int) {
	t.Helper()
	seen := map[string]bool{}
	placed := map[string]bool{}
	for _, msg := range msgs {
		if seen[msg.UUID] {
			t.Errorf("message %s forwarded twice", msg.UUID)
		}
		seen[msg.UUID] = true
		switch msg.Metadata.Get(events.MetadataEventType) {
		case "OrderPlaced":
			e, err := events.Decode[events.OrderPlaced](msg)
			if err != nil {
				t.Fatal(err)
			}
			placed[e.OrderID] = true
		case "OrderCancelled":
			e, err := events.Decode[events.OrderCancelled](msg)
			if err != nil {
				t.Fatal(err)
			}
			if !placed[e.OrderID] {
				t.Errorf("order %s: OrderCancelled forwarded before its OrderPlaced", e.OrderID)
			}
		}
	}
	if len(seen) != 2*orders || len(placed) != orders {
		t.Errorf("%d messages of %d orders forwarded, want %d of %d", len(seen), len(placed), 2*orders, orders)
	}
}

// entriesNow is every entry key holds now.
func entriesNow(t *testing.T, rdb redis.UniversalClient, key string) []*message.Message {
	t.Helper()
	n, err := rdb.XLen(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return entries(t, rdb, key, int(n))
}

// countOrderRows counts the rows of shard whose event names order id.
func countOrderRows(t *testing.T, db *sql.DB, shard int, id string) int {
	t.Helper()
	table := "watermill_" + postgres.OutboxTopic(shard)
	var n int
	err := db.QueryRow(`SELECT count(*) FROM `+table+`
		WHERE convert_from(decode(payload->>'payload', 'base64'), 'UTF8')::jsonb->>'order_id' = $1`, id).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The restore check reads every shard: a position ahead of the database's
// transaction ids in any shard stops the forwarder and the clean-up, and
// RealignOutbox moves it back.
func TestOutbox_misalignedInAnyShard(t *testing.T) {
	t.Parallel()
	db := testenv.OwnDB(t)
	ctx := context.Background()
	if _, err := db.Exec(`INSERT INTO watermill_offsets_outbox_3 (consumer_group, offset_acked, last_processed_transaction_id)
		VALUES ('forwarder', 7, '4000000000')`); err != nil {
		t.Fatal(err)
	}
	st, err := outbox.Outbox(ctx, db)
	if err != nil || st.Misalignment == nil || st.Misalignment.Position != 4000000000 {
		t.Fatalf("status %+v (%v), want the misalignment of shard 3", st, err)
	}
	if _, err := outbox.CleanOutbox(ctx, db, 0); err == nil {
		t.Error("CleanOutbox on a misaligned shard succeeded, want a refusal")
	}
	if r, err := outbox.RealignOutbox(ctx, db); err != nil || r.Misalignment == nil {
		t.Fatalf("RealignOutbox() = %+v, %v", r, err)
	}
	if err := outbox.CheckOutboxAlignment(ctx, db); err != nil {
		t.Errorf("after the realignment: %v", err)
	}
}
