package outbox_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/postgres"
)

// TestForwarder_rechecksUntilTheHiddenRowsShow: after a wake-up whose poll
// finds nothing, the forwarder keeps looking again (outboxWaker), not just
// once: here the older transaction that hides the committed row is still
// open through the wake-up poll and the first recheck, and the row is
// forwarded by a later recheck, long before the fallback poll.
//
// As in TestForwarder_rechecksAWakeUpWhoseRowsAreStillHidden, table locks
// queued behind a poll hold the next poll, with its snapshot taken: lock2
// holds the wake-up poll, and lock3, queued behind that poll, holds the
// first recheck while the older transaction ends.
func TestForwarder_rechecksUntilTheHiddenRowsShow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testenv.OwnDatabaseURL(t)
	db, err := postgres.Open(ctx, url, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	streams := testenv.Streams(t)
	rdb := streams.Client()
	defer rdb.Close()
	if _, err := db.Exec(`INSERT INTO watermill_offsets_outbox (consumer_group, offset_acked, last_processed_transaction_id)
		VALUES ('forwarder', 0, '0')`); err != nil {
		t.Fatal(err)
	}

	endOlder := openTx(t, ctx, db, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `SELECT pg_current_xact_id()`)
		return err
	})
	publish(t, db, ctx, events.OrderPlaced{OrderID: "hidden-longer"})

	lock1, pid1 := session(t, db)
	if err := lockOffsets(lock1); err != nil {
		t.Fatal(err)
	}
	runForwarder(t, db, streams, outbox.ForwarderConfig{DatabaseURL: url, PollInterval: time.Minute, BatchSize: 100})
	waitPollBlockedBy(t, db, pid1)
	waitListening(t, db)
	lock2, pid2 := session(t, db)
	locked2 := lockOutboxAsync(lock2)
	waitBlocked(t, db, pid2) // behind the first poll's ACCESS SHARE
	lock1.Rollback()         // the first poll finds nothing, and waits for a wake-up
	if err := <-locked2; err != nil {
		t.Fatal(err)
	}
	waitPollBlockedBy(t, db, pid2) // the wake-up poll
	lock3, pid3 := session(t, db)
	locked3 := lockOutboxAsync(lock3)
	waitBlocked(t, db, pid3) // behind lock2, and behind the wake-up poll queued first
	lock2.Rollback()         // the wake-up poll finds nothing: the older transaction is open
	if err := <-locked3; err != nil {
		t.Fatal(err)
	}
	waitPollBlockedBy(t, db, pid3) // the first recheck, with its snapshot taken
	endOlder(false)                // which notifies nobody
	lock3.Rollback()               // the first recheck finds nothing either

	entries(t, rdb, streams.Name(events.StreamOrdersPlaced), 1)
}

// lockOutboxAsync locks the outbox table in tx, in the background.
func lockOutboxAsync(tx *sql.Tx) <-chan error {
	locked := make(chan error, 1)
	go func() {
		_, err := tx.Exec(`LOCK TABLE watermill_outbox IN ACCESS EXCLUSIVE MODE`)
		locked <- err
	}()
	return locked
}
