package main

import (
	"context"
	"time"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/parked"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/router"
)

// liveInterval is how often the figures are read while a live page is open.
const liveInterval = time.Second

// watch reads the outbox and stream backlog on a timer, for the metrics
// and, while a live page is open, with the page's other figures for the
// page: one reader, however many pages or scrapes, and no page, no extra
// load.
func (a *app) watch(ctx context.Context) {
	a.metrics.RegisterBacklog()
	for {
		if err := a.collect(ctx); err != nil && ctx.Err() == nil {
			a.logger.WarnContext(ctx, "reading the backlog failed", "err", err)
		}
		interval := a.cfg.MetricsInterval
		if a.live.Watching() {
			interval = min(interval, liveInterval)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		case <-a.live.Joined():
		}
	}
}

func (a *app) collect(ctx context.Context) error {
	m := a.metrics
	snap := router.Snapshot{At: time.Now().UTC()}
	outbox, err := outbox.Outbox(ctx, a.db)
	if err != nil {
		return err
	}
	m.OutboxPending.Set(float64(outbox.Pending))
	m.OutboxOldestAge.Set(outbox.OldestAge.Seconds())
	snap.Outbox = router.OutboxFigures{Pending: outbox.Pending, OldestSeconds: outbox.OldestAge.Seconds()}
	oldestTx, err := postgres.OldestTransactionAge(ctx, a.db)
	if err != nil {
		return err
	}
	m.OldestTransactionAge.Set(oldestTx.Seconds())
	oldestWriter, err := postgres.OldestOutboxWriterAge(ctx, a.db)
	if err != nil {
		return err
	}
	m.OldestOutboxWriterAge.Set(oldestWriter.Seconds())
	parkedStatus, err := parked.ReadStatus(ctx, a.db)
	if err != nil {
		return err
	}
	m.ParkedMessages.Set(float64(parkedStatus.Messages))
	m.ParkedOldest.Set(parkedStatus.OldestFailing.Seconds())

	if snap.Streams, err = a.streams.Status(ctx, a.rdb); err != nil {
		return err
	}
	for _, st := range snap.Streams {
		if st.Stream == events.StreamDeadLetter {
			m.DeadLetters.Set(float64(st.Length))
		}
		for _, g := range st.Groups {
			m.StreamLag.WithLabelValues(st.Stream, g.Name).Set(float64(g.Lag))
			m.StreamPending.WithLabelValues(st.Stream, g.Name).Set(float64(g.Pending))
		}
	}

	if !a.live.Watching() {
		return nil
	}
	recent, err := a.orders.List(ctx, orders.ListRequest{Limit: 20})
	if err != nil {
		return err
	}
	snap.Orders = router.LiveOrdersOf(recent.Orders)
	stock, err := a.inventory.List(ctx, 50)
	if err != nil {
		return err
	}
	snap.Stock = router.LiveStockOf(stock)
	letters, err := a.streams.LatestDeadLetters(ctx, a.rdb, 20)
	if err != nil {
		return err
	}
	for _, d := range letters {
		snap.DeadLetters = append(snap.DeadLetters, router.DeadLetterOf(d))
	}
	a.live.Publish(snap)
	return nil
}
