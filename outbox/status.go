package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/orderstream/orderstream/postgres"
)

// OutboxStatus is what the forwarder has not moved yet, over every shard.
type OutboxStatus struct {
	Pending      int64
	OldestAge    time.Duration // of the oldest pending row; 0 when none
	HasForwarded bool          // false until the forwarder first ran
	// Shards is each shard's part, by shard number.
	Shards []ShardStatus
	// Misalignment, when set, says that the outbox was copied from another
	// cluster and the forwarder will not run: Pending then leaves out the
	// rows written here, which sort before its position.
	Misalignment *Misalignment
}

// ShardStatus is what the forwarder has not moved yet of one shard.
type ShardStatus struct {
	Shard        int
	Pending      int64
	OldestAge    time.Duration
	Transaction  string // the forwarder's position: last transaction id
	OffsetAcked  int64  // and the last offset acked within it
	HasForwarded bool   // false until the forwarder first polled the shard
}

// outboxStatusQuery reads each shard's position and the rows after it, the
// count walking only those rows, through the primary key.
var outboxStatusQuery = eachShard(" UNION ALL ", func(shard int) string {
	return fmt.Sprintf(`(
		WITH f AS (
			SELECT last_processed_transaction_id AS tx, offset_acked AS "offset"
			FROM %s WHERE consumer_group = $1)
		SELECT %d, (SELECT tx::text FROM f), (SELECT "offset" FROM f), count(*),
		       EXTRACT(EPOCH FROM LOCALTIMESTAMP - min(o.created_at))
		FROM %s o
		WHERE (o.transaction_id, o."offset") >
		      (COALESCE((SELECT tx FROM f), '0'), COALESCE((SELECT "offset" FROM f), 0)))`,
		offsetsTable(shard), shard, messagesTable(shard))
}) + ` ORDER BY 1`

// Outbox reports the outbox rows the forwarder has not passed yet.
func Outbox(ctx context.Context, db postgres.Queryer) (OutboxStatus, error) {
	var st OutboxStatus
	rows, err := db.QueryContext(ctx, outboxStatusQuery, forwarderGroup)
	if err != nil {
		return OutboxStatus{}, fmt.Errorf("read outbox status: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var sh ShardStatus
		var tx sql.NullString
		var offset sql.NullInt64
		var age sql.NullFloat64
		if err := rows.Scan(&sh.Shard, &tx, &offset, &sh.Pending, &age); err != nil {
			return OutboxStatus{}, fmt.Errorf("read outbox status: %w", err)
		}
		sh.Transaction, sh.OffsetAcked, sh.HasForwarded = tx.String, offset.Int64, tx.Valid
		sh.OldestAge = time.Duration(age.Float64 * float64(time.Second))
		st.Shards = append(st.Shards, sh)
		st.Pending += sh.Pending
		st.OldestAge = max(st.OldestAge, sh.OldestAge)
		st.HasForwarded = st.HasForwarded || sh.HasForwarded
	}
	if err := rows.Err(); err != nil {
		return OutboxStatus{}, fmt.Errorf("read outbox status: %w", err)
	}
	if st.Misalignment, _, err = alignment(ctx, db); err != nil {
		return OutboxStatus{}, err
	}
	return st, nil
}
