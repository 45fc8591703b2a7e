package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/orderstream/orderstream/postgres"
)

// OutboxStatus is what the forwarder has not moved yet.
type OutboxStatus struct {
	Pending      int64
	OldestAge    time.Duration // of the oldest pending row; 0 when none
	Transaction  string        // the forwarder's position: last transaction id
	OffsetAcked  int64         // and the last offset acked within it
	HasForwarded bool          // false until the forwarder first ran
	// Misalignment, when set, says that the outbox was copied from another
	// cluster and the forwarder will not run: Pending then leaves out the
	// rows written here, which sort before its position.
	Misalignment *Misalignment
}

// Outbox reports the outbox rows the forwarder has not passed yet. The
// count walks only those rows, through the primary key.
func Outbox(ctx context.Context, db postgres.Queryer) (OutboxStatus, error) {
	var st OutboxStatus
	var tx sql.NullString
	var offset sql.NullInt64
	var age sql.NullFloat64
	err := db.QueryRowContext(ctx, `
		WITH f AS (
			SELECT last_processed_transaction_id AS tx, offset_acked AS "offset"
			FROM watermill_offsets_outbox WHERE consumer_group = $1)
		SELECT (SELECT tx::text FROM f), (SELECT "offset" FROM f), count(*),
		       EXTRACT(EPOCH FROM LOCALTIMESTAMP - min(o.created_at))
		FROM watermill_outbox o
		WHERE (o.transaction_id, o."offset") >
		      (COALESCE((SELECT tx FROM f), '0'), COALESCE((SELECT "offset" FROM f), 0))`,
		forwarderGroup).Scan(&tx, &offset, &st.Pending, &age)
	if err != nil {
		return OutboxStatus{}, fmt.Errorf("read outbox status: %w", err)
	}
	st.Transaction, st.OffsetAcked, st.HasForwarded = tx.String, offset.Int64, tx.Valid
	st.OldestAge = time.Duration(age.Float64 * float64(time.Second))
	if st.Misalignment, _, err = alignment(ctx, db); err != nil {
		return OutboxStatus{}, err
	}
	return st, nil
}
