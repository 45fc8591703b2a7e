package events

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
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
func Outbox(ctx context.Context, db *sql.DB) (OutboxStatus, error) {
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

// GroupStatus is where one consumer group is in a stream.
type GroupStatus struct {
	Name          string `json:"name"`
	Lag           int64  `json:"lag"`     // entries not yet handed to the group
	Pending       int64  `json:"pending"` // handed to a consumer, not yet acknowledged
	LastDelivered string `json:"last_delivered"`
}

// StreamStatus describes one stream and its consumer groups.
type StreamStatus struct {
	Stream string        `json:"stream"`
	Length int64         `json:"length"`
	Groups []GroupStatus `json:"groups"`
}

// Status describes the consumed streams and the dead-letter stream.
func (s Streams) Status(ctx context.Context, rdb redis.UniversalClient) ([]StreamStatus, error) {
	var out []StreamStatus
	for _, stream := range append(slices.Clip(s.Consumed), StreamDeadLetter) {
		key := s.Name(stream)
		st := StreamStatus{Stream: stream}
		n, err := rdb.XLen(ctx, key).Result()
		if err != nil {
			return nil, fmt.Errorf("read stream %s: %w", key, err)
		}
		st.Length = n
		if stream != StreamDeadLetter {
			groups, err := rdb.XInfoGroups(ctx, key).Result()
			if err != nil && !strings.Contains(err.Error(), "no such key") {
				return nil, fmt.Errorf("read groups of %s: %w", key, err)
			}
			for _, g := range groups {
				st.Groups = append(st.Groups, GroupStatus{Name: g.Name, Lag: g.Lag, Pending: g.Pending, LastDelivered: g.LastDeliveredID})
			}
		}
		out = append(out, st)
	}
	return out, nil
}
