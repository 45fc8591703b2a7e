package outbox

import (
	"context"
	"database/sql"
)

// OutboxAlignmentIn is CheckOutboxAlignment read in tx: a test holds the
// snapshot of a repeatable-read transaction, and so the database's next
// transaction id, while it sets the ids the check compares with it.
func OutboxAlignmentIn(ctx context.Context, tx *sql.Tx) error {
	m, _, err := alignment(ctx, tx)
	if err != nil {
		return err
	}
	if m != nil {
		return m
	}
	return nil
}
