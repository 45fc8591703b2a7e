package main

import (
	"context"
	"time"

	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
)

// cleanUp keeps the outbox, the inbox and the streams from growing without
// end, every CLEANUP_INTERVAL until ctx is done. A failure (the database or
// Redis away) is logged and tried again next time.
func (a *app) cleanUp(ctx context.Context) {
	tick := time.NewTicker(a.cfg.CleanupInterval)
	defer tick.Stop()
	for {
		a.cleanOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (a *app) cleanOnce(ctx context.Context) {
	report := func(what string, n int64, err error) {
		switch {
		case err != nil && ctx.Err() == nil:
			a.logger.WarnContext(ctx, "clean-up failed", "what", what, "err", err)
		case n > 0:
			a.logger.InfoContext(ctx, "cleaned up", "what", what, "deleted", n)
		}
	}
	n, err := outbox.CleanOutbox(ctx, a.db, a.cfg.OutboxRetention)
	report("outbox", n, err)
	n, err = postgres.CleanInbox(ctx, a.db, a.cfg.InboxRetention)
	report("inbox", n, err)
	for _, stream := range a.streams.Consumed {
		n, err = redisstreams.TrimStream(ctx, a.rdb, a.streams.Name(stream), a.cfg.StreamRetention)
		report("stream "+stream, n, err)
	}
}
