package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/orderstream/orderstream/postgres"
)

// CleanOutbox deletes outbox rows that every consumer group of the outbox
// has passed and that are older than retention. watermill-sql never deletes
// a row it forwarded, and the table would grow without end.
//
// On a misaligned outbox (see Misalignment) it deletes nothing and returns
// the *Misalignment: the rows written since the copy sort below the
// forwarder's position, as if it had passed them, and are not forwarded.
func CleanOutbox(ctx context.Context, db *sql.DB, retention time.Duration) (int64, error) {
	if err := CheckOutboxAlignment(ctx, db); err != nil {
		return 0, fmt.Errorf("clean outbox: %w", err)
	}
	// A group's reads return only rows of transactions at or after its
	// last_processed_transaction_id, so the rows of earlier transactions
	// are behind every group. No group yet: nothing is deleted. Each batch
	// checks the alignment again (two primary key reads), should the
	// database be swapped for a copy under a running clean-up. Shard by
	// shard: each has its own groups.
	var deleted int64
	for shard := range postgres.MaxOutboxShards {
		rows, offsets := messagesTable(shard), offsetsTable(shard)
		n, err := postgres.DeleteInBatches(ctx, db, postgres.LockOutboxCleanup, 1000, `
		DELETE FROM `+rows+` WHERE ctid = ANY(ARRAY(
			SELECT ctid FROM `+rows+`
			WHERE transaction_id < (SELECT min(last_processed_transaction_id) FROM `+offsets+`)
			  AND created_at < LOCALTIMESTAMP - make_interval(secs => $1)
			  AND (SELECT max(last_processed_transaction_id) FROM `+offsets+`) < pg_snapshot_xmax(pg_current_snapshot())
			  AND (SELECT max(transaction_id) FROM `+rows+`) < pg_snapshot_xmax(pg_current_snapshot())
			LIMIT $2))`, retention.Seconds())
		deleted += n
		if err != nil {
			return deleted, fmt.Errorf("clean outbox shard %d: %w", shard, err)
		}
	}
	return deleted, nil
}
