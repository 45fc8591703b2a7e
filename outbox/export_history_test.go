package outbox

import (
	"context"
	"database/sql"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/redisstreams"
)

// HistoryPaged is History reading page rows, and page entries, at a time.
func HistoryPaged(ctx context.Context, db *sql.DB, rdb redis.UniversalClient, streams redisstreams.Config, stream string, since time.Time, page int, fn func(HistoryEvent) error) error {
	return history(ctx, db, rdb, streams.Name(stream), stream, since, page, fn)
}
