package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/postgres"
)

// A poll that returns rows has set its transaction's settings in its
// select, with no round trip of its own: the commit that moves the group's
// position does not wait for the disk (synchronous_commit off), and the
// batch may sit idle for longer than a stop takes.
func TestPollQuery_setsItsTransactionsSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openDB(t, testenv.OwnDatabaseURL(t))
	publish(t, db, ctx, events.OrderPlaced{OrderID: "settings"})

	for shard := range postgres.MaxOutboxShards {
		// The group's position, which subscribing writes.
		if _, err := db.ExecContext(ctx, `INSERT INTO watermill_offsets_`+postgres.OutboxTopic(shard)+
			` (consumer_group, offset_acked, last_processed_transaction_id) VALUES ('forwarder', 0, '0')`); err != nil {
			t.Fatal(err)
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		query, args := outbox.PollQuery(shard, time.Minute)
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			t.Fatal(err)
		}
		found := rows.Next()
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		if !found {
			tx.Rollback() //nolint:errcheck // read only
			continue
		}
		var syncCommit, idle string
		err = tx.QueryRowContext(ctx, `SELECT current_setting('synchronous_commit'), current_setting('idle_in_transaction_session_timeout')`).
			Scan(&syncCommit, &idle)
		tx.Rollback() //nolint:errcheck // read only
		if err != nil {
			t.Fatal(err)
		}
		if syncCommit != "off" {
			t.Errorf("synchronous_commit in the poll's transaction = %q, want off", syncCommit)
		}
		if d, err := time.ParseDuration(idle); err != nil || d <= time.Minute {
			t.Errorf("idle_in_transaction_session_timeout in the poll's transaction = %q, want more than the stop's minute", idle)
		}
		return
	}
	t.Fatal("no shard's poll returned the published event")
}
