package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/postgres"
)

// The forwarder's graceful stop (finishingOutbox): the test takes the
// outbox subscriber's messages itself, as the forwarder's handler would
// once Redis accepted each, and stops it with a message in hand.

// TestForwarder_stopFinishesTheBatchInHand: a stop that comes in the
// middle of a batch lets the batch finish (the message in hand keeps its
// context, the rest of the batch is still handed out) and saves the
// group's position after the whole batch, so that nothing of it is
// forwarded again; the subscription then ends without another poll.
func TestForwarder_stopFinishesTheBatchInHand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.OwnDB(t)
	publishN(t, db, "batch-", 3)
	sub, stopAsked := forwarderOutbox(t, db, outbox.ForwarderConfig{PollInterval: 20 * time.Millisecond, BatchSize: 100})
	msgs, cancel := subscribe(t, sub)
	next(t, msgs).Ack()
	inHand := next(t, msgs)

	cancel() // as the router does when it stops, before it closes the subscriber
	closed := closeAsync(sub)
	waitFor(t, "the stop to reach the subscriber", stopAsked)
	if err := inHand.Context().Err(); err != nil {
		t.Fatalf("the stop ended the message in hand: %v", err)
	}
	inHand.Ack()
	next(t, msgs).Ack() // the rest of the batch
	waitClosed(t, closed)
	if msg, ok := <-msgs; ok {
		t.Errorf("message %s handed out after the stop's batch", msg.UUID)
	}
	if st, err := outbox.Outbox(ctx, db); err != nil || st.Pending != 0 {
		t.Errorf("after the stop: outbox status %+v (%v), want nothing pending", st, err)
	}
}

// TestForwarder_stopGivesUpABatchThatDoesNotFinish: a message in hand that
// is not done by the drain time (Redis away) is given up: the stop returns,
// and the position saved is after the messages acked before it, so that
// only the one in hand and those behind it are forwarded again.
func TestForwarder_stopGivesUpABatchThatDoesNotFinish(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.OwnDB(t)
	publishN(t, db, "stuck-", 3)
	// A stop of 5 s: the drain takes 4.5 s, and the half second after it,
	// before the batch would be rolled back, is ample for the given-up
	// batch to save what was acked.
	cfg := outbox.ForwarderConfig{PollInterval: 20 * time.Millisecond, BatchSize: 100, StopTimeout: 5 * time.Second}
	sub, _ := forwarderOutbox(t, db, cfg)
	msgs, cancel := subscribe(t, sub)
	next(t, msgs).Ack()
	stuck := next(t, msgs) // never acked

	cancel()
	waitClosed(t, closeAsync(sub))
	if st, err := outbox.Outbox(ctx, db); err != nil || st.Pending != 2 {
		t.Errorf("after the stop: outbox status %+v (%v), want the message in hand and the one behind it pending", st, err)
	}

	// The next subscription's own stop need not wait for the rows it
	// hands out here.
	cfg.StopTimeout = 100 * time.Millisecond
	again, _ := forwarderOutbox(t, db, cfg)
	defer again.Close()
	msgs, _ = subscribe(t, again)
	if msg := next(t, msgs); msg.UUID != stuck.UUID {
		t.Errorf("next subscription starts at %s, want the message given up, %s", msg.UUID, stuck.UUID)
	}
}

// TestForwarder_batchSize: a poll reads BatchSize rows, 100 when it is not
// set; a stop ends after the batch in hand, not after the rows behind it.
func TestForwarder_batchSize(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("a_stop_ends_after_a_batch_of_BatchSize_rows", func(t *testing.T) {
		t.Parallel()
		db := testenv.OwnDB(t)
		const rows, batch = 5, 2
		publishN(t, db, "two-of-", rows)
		sub, stopAsked := forwarderOutbox(t, db, outbox.ForwarderConfig{PollInterval: 20 * time.Millisecond, BatchSize: batch})
		msgs, cancel := subscribe(t, sub)
		next(t, msgs).Ack()
		inHand := next(t, msgs)
		cancel()
		closed := closeAsync(sub)
		waitFor(t, "the stop to reach the subscriber", stopAsked)
		inHand.Ack()
		// The first poll may have read one row only: a transaction
		// elsewhere in the cluster, older than the later rows, that ended
		// between the poll's snapshot and its read of pg_locks holds the
		// horizon below them for that poll (writersHorizon). So the one in
		// hand may be the first of its batch or its last: at most batch-1
		// rows follow it, and the position is saved after them.
		after := 0
		for msg := range msgs {
			after++
			msg.Ack()
		}
		waitClosed(t, closed)
		if after > batch-1 {
			t.Errorf("%d messages handed out after the stop, beyond the batch of %d in hand", after, batch)
		}
		if st, err := outbox.Outbox(ctx, db); err != nil || st.Pending != int64(rows-2-after) {
			t.Errorf("after the stop: outbox status %+v (%v), want the %d rows behind the batch pending", st, err, rows-2-after)
		}
	})

	t.Run("unset_reads_rows", func(t *testing.T) {
		t.Parallel()
		db := testenv.OwnDB(t)
		publish(t, db, ctx, events.OrderPlaced{OrderID: "unset-batch"})
		sub, _ := forwarderOutbox(t, db, outbox.ForwarderConfig{PollInterval: 20 * time.Millisecond})
		msgs, err := sub.Subscribe(ctx, postgres.OutboxTopic(0))
		if err != nil {
			t.Fatal(err)
		}
		next(t, msgs).Ack()
	})
}

// publishN publishes n OrderPlaced events, ids prefix0 … prefix(n-1).
func publishN(t *testing.T, db *sql.DB, prefix string, n int) {
	t.Helper()
	for i := range n {
		publish(t, db, context.Background(), events.OrderPlaced{OrderID: fmt.Sprintf("%s%d", prefix, i)})
	}
}

// subscribe subscribes sub to the outbox under a context of its own, which
// cancel ends (as the router does when it stops, before it closes its
// subscriber), and which ends with t at the latest.
func subscribe(t *testing.T, sub message.Subscriber) (<-chan *message.Message, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	msgs, err := sub.Subscribe(ctx, postgres.OutboxTopic(0))
	if err != nil {
		t.Fatal(err)
	}
	return msgs, cancel
}

// forwarderOutbox returns the forwarder's outbox subscriber
// (outbox.ForwarderOutbox), closed when t ends.
func forwarderOutbox(t *testing.T, db *sql.DB, cfg outbox.ForwarderConfig) (message.Subscriber, func() bool) {
	t.Helper()
	sub, stopAsked, err := outbox.ForwarderOutbox(db, cfg, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAsync(sub) })
	return sub, stopAsked
}

// next returns the next message of msgs, failing t if msgs is closed first.
func next(t *testing.T, msgs <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case msg, ok := <-msgs:
		if !ok {
			t.Fatal("the subscription ended, want another message")
		}
		return msg
	case <-time.After(15 * time.Second):
		t.Fatal("no message")
	}
	return nil
}

func closeAsync(sub message.Subscriber) <-chan error {
	closed := make(chan error, 1)
	go func() { closed <- sub.Close() }()
	return closed
}

func waitClosed(t *testing.T, closed <-chan error) {
	t.Helper()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close() = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
}

// waitFor waits until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
