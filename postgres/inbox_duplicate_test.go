package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/postgres"
)

// TestInbox_skipsTheHandlerOfADuplicate: the inbox row goes in before the
// handler runs, so a redelivered message does not run the handler at all.
// Recorded after the effect, the duplicate's effect would be rolled back,
// but the handler would run again, and what it does outside the
// transaction (a log line, a metric, a call) would happen twice.
func TestInbox_skipsTheHandlerOfADuplicate(t *testing.T) {
	t.Parallel()
	db := testenv.DB(t)
	c := newCounter(t, db)
	var calls atomic.Int32
	pubsub := route(t, db, nil, map[string]message.NoPublishHandlerFunc{
		"count": inInbox(func(ctx context.Context, tx *postgres.Tx, _ *message.Message) error {
			calls.Add(1)
			return c.add(ctx, tx)
		}),
	})
	msg := message.NewMessage(testenv.Unique("uuid"), nil)
	for range 3 {
		if err := pubsub.Publish("topic", msg.Copy()); err != nil {
			t.Fatal(err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler ran %d times for one message delivered 3 times, want 1", n)
	}
}

// TestDeleteInBatches exercises the clean-up loop with a lock key of its
// own, so that the clean-up tests of the package do not meet its lock.
func TestDeleteInBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.DB(t)
	seed := func(t *testing.T, n int) string {
		t.Helper()
		handler := testenv.Unique("batches")
		for i := range n {
			if _, err := db.Exec(`INSERT INTO inbox (handler, message_uuid) VALUES ($1, $2)`, handler, fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
		}
		return handler
	}
	const del = `DELETE FROM inbox WHERE ctid = ANY(ARRAY(SELECT ctid FROM inbox WHERE handler = $1 LIMIT $2))`
	left := func(t *testing.T, handler string) (n int) {
		t.Helper()
		if err := db.QueryRow(`SELECT count(*) FROM inbox WHERE handler = $1`, handler).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("deletes_batch_after_batch_until_one_comes_back_short", func(t *testing.T) {
		t.Parallel()
		handler := seed(t, 5)
		n, err := postgres.DeleteInBatches(ctx, db, 0x6f7374_ff01, 2, del, handler)
		if err != nil || n != 5 || left(t, handler) != 0 {
			t.Errorf("DeleteInBatches() = %d, %v, %d rows left; want 5 deleted in batches of 2, none left", n, err, left(t, handler))
		}
	})

	t.Run("leaves_the_work_to_the_process_that_holds_the_lock", func(t *testing.T) {
		t.Parallel()
		const key = 0x6f7374_ff02
		handler := seed(t, 3)
		holder, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer holder.Rollback()
		if _, err := holder.Exec(`SELECT pg_advisory_xact_lock($1)`, key); err != nil {
			t.Fatal(err)
		}
		n, err := postgres.DeleteInBatches(ctx, db, key, 2, del, handler)
		if err != nil || n != 0 || left(t, handler) != 3 {
			t.Errorf("DeleteInBatches() = %d, %v, %d rows left; want nothing deleted while another holds the lock", n, err, left(t, handler))
		}
		if err := holder.Rollback(); err != nil {
			t.Fatal(err)
		}
		if n, err := postgres.DeleteInBatches(ctx, db, key, 2, del, handler); err != nil || n != 3 {
			t.Errorf("DeleteInBatches() after the lock was released = %d, %v, want 3", n, err)
		}
	})
}

// TestInbox_recordsAMessageUUIDAsItIs: the inbox's insert is sent with the
// BEGIN, so a message's UUID is a quoted literal in it. Whatever a UUID
// holds (quotes, backslashes, SQL), its row holds the same text and its
// redelivery is a duplicate; one with a NUL byte, which no query's text
// can hold, is malformed.
func TestInbox_recordsAMessageUUIDAsItIs(t *testing.T) {
	t.Parallel()
	db := testenv.DB(t)
	var calls int
	inbox := postgres.Inbox(db, nil)(func(*message.Message) ([]*message.Message, error) {
		calls++
		return nil, nil
	})
	for _, suffix := range []string{`it's`, `back\slash\'`, `'); DELETE FROM inbox; --`, `$1 $$ E'\n'`, "über ✓"} {
		uuid := testenv.Unique("uuid") + suffix
		calls = 0
		for range 2 {
			if _, err := inbox(message.NewMessage(uuid, nil)); err != nil {
				t.Fatalf("%q: %v", uuid, err)
			}
		}
		if calls != 1 {
			t.Errorf("%q: handler ran %d times for one message delivered twice, want 1", uuid, calls)
		}
		var rows int
		if err := db.QueryRow(`SELECT count(*) FROM inbox WHERE message_uuid = $1`, uuid).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != 1 {
			t.Errorf("%q: %d inbox rows hold the UUID as it is, want 1", uuid, rows)
		}
	}
	if _, err := inbox(message.NewMessage("nul\x00"+testenv.Unique("uuid"), nil)); !errors.Is(err, events.ErrMalformed) {
		t.Errorf("a UUID with a NUL byte: error %v, want events.ErrMalformed", err)
	}
}
