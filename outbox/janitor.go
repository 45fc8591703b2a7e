package outbox

import (
	"context"
	"database/sql"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
)

// Janitor keeps the outbox, the inbox and the consumed streams from growing
// without end: what every consumer is done with and is older than its
// retention is deleted. Also adds the clean-ups of other packages' tables
// (such as orders' expired idempotency keys), which it runs in the same
// rounds. The forwarder process runs it.
type Janitor struct {
	DB      *sql.DB
	Redis   redis.UniversalClient
	Streams redisstreams.Config // its Consumed streams are trimmed
	Logger  *slog.Logger

	Interval                                         time.Duration // between two rounds
	OutboxRetention, InboxRetention, StreamRetention time.Duration

	// Also are run in each round after the outbox, the inbox and the
	// streams, in their order, each reported as those are; one that fails
	// does not keep the next from running.
	Also []Cleanup
}

// Cleanup is a clean-up that the Janitor runs besides its own.
type Cleanup struct {
	What string // what it deletes, for the log ("idempotency keys")
	// Delete deletes what is to go, and returns how many went: its
	// owner knows what and when (its own retention, its own lock).
	Delete func(context.Context) (int64, error)
}

// Run cleans up every Interval until ctx is done. A failure (the database
// or Redis away) is logged and tried again next round.
func (j Janitor) Run(ctx context.Context) {
	tick := time.NewTicker(j.Interval)
	defer tick.Stop()
	for {
		j.Once(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Once runs one round of clean-up.
func (j Janitor) Once(ctx context.Context) {
	report := func(what string, n int64, err error) {
		switch {
		case err != nil && ctx.Err() == nil:
			j.Logger.WarnContext(ctx, "clean-up failed", "what", what, "err", err)
		case n > 0:
			j.Logger.InfoContext(ctx, "cleaned up", "what", what, "deleted", n)
		}
	}
	n, err := CleanOutbox(ctx, j.DB, j.OutboxRetention)
	report("outbox", n, err)
	n, err = postgres.CleanInbox(ctx, j.DB, j.InboxRetention)
	report("inbox", n, err)
	for _, stream := range j.Streams.Consumed {
		n, err = redisstreams.TrimStream(ctx, j.Redis, j.Streams.Name(stream), j.StreamRetention)
		report("stream "+stream, n, err)
	}
	for _, c := range j.Also {
		n, err = c.Delete(ctx)
		report(c.What, n, err)
	}
}
