package outbox

import (
	"context"
	"fmt"
	"strings"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"

	"github.com/orderstream/orderstream/postgres"
)

// The outbox is postgres.MaxOutboxShards watermill-sql topics, each a table
// of rows and a table of the consumer groups' offsets; shard 0 is the
// topic "outbox" (watermill_outbox, watermill_offsets_outbox).

// messagesTable is shard's table of rows.
func messagesTable(shard int) string { return "watermill_" + postgres.OutboxTopic(shard) }

// offsetsTable is shard's table of offsets.
func offsetsTable(shard int) string { return "watermill_offsets_" + postgres.OutboxTopic(shard) }

// eachShard joins, with sep, what part says of each shard.
func eachShard(sep string, part func(shard int) string) string {
	parts := make([]string, postgres.MaxOutboxShards)
	for shard := range parts {
		parts[shard] = part(shard)
	}
	return strings.Join(parts, sep)
}

// skipLockedOffsets is watermill-sql's Postgres offsets adapter whose poll
// skips a shard that another forwarder is polling, rather than waiting
// for it: with the group's row locked elsewhere the poll reads no position
// and so no rows (outboxSchema), and the loop waits for its next wake-up.
// Waiting would hold a connection for the other's whole batch, then fail
// to serialize (the poll is REPEATABLE READ), only to try again. The lock
// is the one watermill-sql relies on for one reader at a time: a
// forwarder holds it from its read of the position to the commit of the
// new one, so two never forward one shard's rows at once.
type skipLockedOffsets struct {
	wsql.DefaultPostgreSQLOffsetsAdapter
}

func (a skipLockedOffsets) NextOffsetQuery(topic, consumerGroup string) wsql.Query {
	return wsql.Query{
		Query: `SELECT offset_acked, last_processed_transaction_id FROM ` + a.MessagesOffsetsTable(topic) + `
			WHERE consumer_group = $1 FOR UPDATE SKIP LOCKED`,
		Args: []any{consumerGroup},
	}
}

// unforwardedShards names the shards that hold rows the forwarder group has
// not passed and a poll would read (below the writers' horizon), each found
// through its primary key at the group's position.
var unforwardedShards = `
	WITH h AS MATERIALIZED (SELECT (` + writersHorizon + `) AS horizon)
	SELECT shard FROM (VALUES ` + eachShard(", ", func(shard int) string {
	return fmt.Sprintf(`(%d, EXISTS (SELECT FROM %s o WHERE (o.transaction_id, o."offset") >
		(SELECT last_processed_transaction_id, offset_acked FROM %s WHERE consumer_group = $1)
		AND o.transaction_id < (SELECT horizon FROM h)))`,
		shard, messagesTable(shard), offsetsTable(shard))
}) + `) AS s(shard, unforwarded) WHERE unforwarded`

// beyondPosition says whether shard holds rows past the forwarder group's
// position, visible or not: rows that a poll did not return are then
// hidden by the writers' horizon (or the shard is another forwarder's).
func beyondPosition(shard int) string {
	return fmt.Sprintf(`SELECT EXISTS (SELECT FROM %s o WHERE (o.transaction_id, o."offset") >
		(SELECT last_processed_transaction_id, offset_acked FROM %s WHERE consumer_group = $1))`,
		messagesTable(shard), offsetsTable(shard))
}

// beyond reports whether shard holds rows past the group's position; when
// that cannot be told, that it does, so that the loop rechecks.
func (f *Forwarder) beyond(shard int) func() bool {
	query := beyondPosition(shard)
	return func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), f.idle)
		defer cancel()
		var found bool
		err := f.db.QueryRowContext(ctx, query, forwarderGroup).Scan(&found)
		return found || err != nil
	}
}

// watchIdle wakes, every f.idle until ctx is done, the loops of the shards
// that hold rows not yet forwarded: the fallback for a wake-up that never
// came (a notification lost while the listener reconnected, a commit of
// a process that does not notify). It is one statement for all shards, so
// that an idle forwarder costs one transaction a fallback interval however
// many shards it reads. A loop that is busy finds its wake-up after its
// batch and polls once more.
func (f *Forwarder) watchIdle(ctx context.Context) {
	tick := time.NewTicker(f.idle)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := f.wakeUnforwarded(ctx); err != nil && ctx.Err() == nil {
			// The loops' own polls report the outage; this only logs it
			// at debug level, once per interval.
			f.logger.Debug("Cannot check the outbox shards", map[string]any{"err": err.Error()})
		}
	}
}

// wakeUnforwarded wakes the loops of the shards that hold rows not yet
// forwarded.
func (f *Forwarder) wakeUnforwarded(ctx context.Context) error {
	rows, err := f.db.QueryContext(ctx, unforwardedShards, forwarderGroup)
	if err != nil {
		return fmt.Errorf("check outbox shards: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var shard int
		if err := rows.Scan(&shard); err != nil {
			return fmt.Errorf("check outbox shards: %w", err)
		}
		f.Wake(shard)
	}
	return rows.Err()
}

// AllRows is a subquery of the rows of every shard, for the reports and
// tests that read the whole outbox: its columns are shard, "offset",
// transaction_id, uuid, created_at, payload and metadata. Use it as
// `SELECT … FROM ` + AllRows + ` AS o`.
var AllRows = "(" + eachShard(" UNION ALL ", func(shard int) string {
	return fmt.Sprintf(`SELECT %d AS shard, "offset", transaction_id, uuid, created_at, payload, metadata FROM %s`,
		shard, messagesTable(shard))
}) + ")"
