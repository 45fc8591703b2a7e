package events

import (
	"fmt"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
)

// outboxSchema is watermill-sql's Postgres schema with a select whose cost
// does not grow with the backlog. The default select finds the next rows
// with an OR over (transaction id, offset), which the planner cannot turn
// into one index range: with a million pending rows each poll filters most
// of them. A row comparison on the primary key is that range, so a poll
// reads only the rows it returns.
type outboxSchema struct {
	wsql.DefaultPostgreSQLSchema
}

func (s outboxSchema) SelectQuery(topic, consumerGroup string, offsets wsql.OffsetsAdapter) wsql.Query {
	next := offsets.NextOffsetQuery(topic, consumerGroup)
	batch := s.SubscribeBatchSize
	if batch == 0 {
		batch = 100
	}
	// Same rows, same order as the default: after the group's position,
	// and only from transactions older than every transaction still
	// running, so that a transaction that commits late cannot slip in
	// behind rows already forwarded.
	query := `
		WITH last_processed AS (` + next.Query + `)
		SELECT "offset", transaction_id, uuid, payload, metadata FROM ` + s.MessagesTable(topic) + `
		WHERE (transaction_id, "offset") >
		      ((SELECT last_processed_transaction_id FROM last_processed), (SELECT offset_acked FROM last_processed))
		  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY transaction_id, "offset"
		LIMIT ` + fmt.Sprint(batch)
	return wsql.Query{Query: query, Args: next.Args}
}
