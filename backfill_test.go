package main

import (
	"bytes"
	"context"
	"database/sql"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
)

// TestRun_handlersBackfill: a handler added after 1,000 orders were
// confirmed handles each of them once, from the outbox rows clean-up has
// left and the stream's entries, when its backfill is interrupted halfway
// and run again.
func TestRun_handlersBackfill(t *testing.T) {
	t.Parallel()
	dsn := testenv.OwnDatabaseURL(t)
	getenv := envOn(t, dsn)
	db, err := postgres.Open(t.Context(), dsn, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	streams := testenv.StreamsOn(t, nil, getenv("STREAM_PREFIX"))
	streams.Redis, _ = redisstreams.ParseURL(getenv("REDIS_URL"))
	pub, err := streams.Publisher()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })

	// 1,000 confirmed orders: 400 only in the outbox (not forwarded yet),
	// 300 in both, 300 only on the stream (their rows cleaned up); and 50
	// rejected ones, which the handler does not handle.
	const orders = 1000
	var all []events.Event
	for i := range orders {
		all = append(all, events.OrderConfirmed{OrderID: uuid.NewString(), CustomerID: "c-backfill", ConfirmedAt: time.Now()})
		if i%20 == 0 {
			all = append(all, events.OrderRejected{OrderID: uuid.NewString(), CustomerID: "c-backfill", Reason: events.ReasonUnknownSKU})
		}
	}
	confirmed := 0
	for start := 0; start < len(all); start += 100 {
		batch := all[start:min(start+100, len(all))]
		err := postgres.InTx(t.Context(), db, func(ctx context.Context, tx *postgres.Tx) error {
			for _, e := range batch {
				if err := tx.Publish(ctx, e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// In the order written: the later ones also on the stream.
	envelopes := testenv.OutboxEvents(t, db, "customer_id", "c-backfill")
	if len(envelopes) != len(all) {
		t.Fatalf("outbox holds %d events, want %d", len(envelopes), len(all))
	}
	for _, env := range envelopes {
		if env.Metadata[events.MetadataEventType] == "OrderConfirmed" {
			confirmed++
		}
		if confirmed <= 400 {
			continue
		}
		msg := message.NewMessage(env.UUID, env.Payload)
		msg.Metadata = env.Metadata
		if err := pub.Publish(events.StreamOrderOutcomes, msg); err != nil {
			t.Fatal(err)
		}
		if confirmed > 700 {
			if _, err := db.Exec(`DELETE FROM watermill_outbox WHERE payload->>'uuid' = $1`, env.UUID); err != nil {
				t.Fatal(err)
			}
		}
	}

	// And one the handler cannot read: refused, not retried.
	junk := message.NewMessage(uuid.NewString(), []byte(`{"order_id":`))
	junk.Metadata.Set(events.MetadataEventType, "OrderConfirmed")
	if err := pub.Publish(events.StreamOrderOutcomes, junk); err != nil {
		t.Fatal(err)
	}

	// Interrupted once 300 are done...
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		defer cancel()
		for ctx.Err() == nil && notified(t, db) < 300 {
			time.Sleep(5 * time.Millisecond)
		}
	}()
	err = run(ctx, []string{"handlers", "backfill", "notifications.order_confirmed"}, getenv, io.Discard, io.Discard)
	if err == nil {
		t.Fatalf("the first run was not interrupted: it handled all %d", notified(t, db))
	}
	if n := notified(t, db); n == 0 || n >= orders {
		t.Fatalf("the interrupted run notified %d orders of %d", n, orders)
	}

	// ... and run again: every order once.
	out, err := cli(getenv, "handlers", "backfill", "notifications.order_confirmed")
	if err != nil {
		t.Fatalf("backfill: %v\n%s", err, out)
	}
	var total, distinct, inbox int
	if err := db.QueryRow(`SELECT count(*), count(DISTINCT order_id) FROM notifications`).Scan(&total, &distinct); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM inbox WHERE handler = 'notifications.order_confirmed'`).Scan(&inbox); err != nil {
		t.Fatal(err)
	}
	if total != orders || distinct != orders || inbox != orders {
		t.Errorf("notifications %d (%d orders), inbox rows %d; want %d of each", total, distinct, inbox, orders)
	}
	if !strings.Contains(out, "1051 events read from orders.outcomes since ") || !strings.Contains(out, "50 of other types") ||
		!strings.Contains(out, " 1 refused as malformed, 0 failed") {
		t.Errorf("the summary does not add up:\n%s", out)
	}

	// Further back than the inbox remembers, it does not go.
	var stdout, stderr bytes.Buffer
	err = run(t.Context(), []string{"handlers", "backfill", "notifications.order_confirmed", "--since", "720h"}, getenv, &stdout, &stderr)
	if err != nil || !strings.Contains(stderr.String(), "is before INBOX_RETENTION (168h0m0s) ago") ||
		!strings.Contains(stdout.String(), " 0 handled now, 1000 handled before") {
		t.Errorf("backfill --since 720h = %v:\n%s%s", err, stderr.String(), stdout.String())
	}
}

// notified is how many notifications db holds.
func notified(t *testing.T, db *sql.DB) int {
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM notifications`).Scan(&n); err != nil {
		t.Error(err)
	}
	return n
}
