package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Advisory lock keys of the clean-up jobs: one process at a time cleans a
// table, however many run.
const (
	LockOutboxCleanup int64 = 0x6f7374_0001
	LockInboxCleanup  int64 = 0x6f7374_0002
)

// DeleteInBatches runs del, a DELETE that takes its batch size as its last
// parameter, in transactions of their own until a batch comes back short.
// Each transaction holds the advisory lock lockKey; when another process
// holds it, DeleteInBatches stops and leaves the work to that process.
// Small batches keep each transaction, and the locks it takes, short.
func DeleteInBatches(ctx context.Context, db *sql.DB, lockKey int64, batch int, del string, args ...any) (deleted int64, err error) {
	args = append(args, batch)
	for {
		var n int64
		err := InTx(ctx, db, func(ctx context.Context, tx *Tx) error {
			var locked bool
			if err := tx.QueryRowContext(ctx, `SELECT pg_try_advisory_xact_lock($1)`, lockKey).Scan(&locked); err != nil {
				return fmt.Errorf("take clean-up lock: %w", err)
			}
			if !locked {
				n = -1
				return nil
			}
			res, err := tx.ExecContext(ctx, del, args...)
			if err != nil {
				return fmt.Errorf("delete batch: %w", err)
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return deleted, err
		}
		if n < 0 {
			return deleted, nil
		}
		deleted += n
		if n < int64(batch) {
			return deleted, nil
		}
	}
}

// CleanInbox deletes the inbox rows of messages handled longer than
// retention ago. Keep them longer than a redelivery can arrive: a message
// redelivered after its row is gone would take effect again.
func CleanInbox(ctx context.Context, db *sql.DB, retention time.Duration) (int64, error) {
	n, err := DeleteInBatches(ctx, db, LockInboxCleanup, 1000, `
		DELETE FROM inbox WHERE ctid = ANY(ARRAY(
			SELECT ctid FROM inbox
			WHERE processed_at < now() - make_interval(secs => $1)
			LIMIT $2))`, retention.Seconds())
	if err != nil {
		return n, fmt.Errorf("clean inbox: %w", err)
	}
	return n, nil
}
