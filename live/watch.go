package live

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/activity"
	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/parked"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
)

// liveInterval is how often the figures are read while a live page is open.
const liveInterval = time.Second

// activityShown is how many of the handlers' latest messages a snapshot
// carries: read once a reading, so a busy system sends a page at most this
// many a second.
const activityShown = 20

// Watcher reads the outbox and stream backlog on a timer, for the metrics
// and, while a live page is open, with the page's other figures for the
// page: one reader, however many pages or scrapes, and no page, no extra
// load. The API process runs it: the backlog must be seen most when the
// forwarder or the workers are down.
type Watcher struct {
	DB        *sql.DB
	Redis     redis.UniversalClient
	Streams   redisstreams.Config
	Orders    *orders.Service
	Inventory *inventory.Service
	Metrics   *metrics.Metrics
	Live      *Live
	Logger    *slog.Logger
	// Interval is how often the metrics are read with no page open.
	Interval time.Duration
}

// databaseFigures are the backlog's figures from PostgreSQL.
type databaseFigures struct {
	outbox       outbox.OutboxStatus
	oldestTx     time.Duration
	oldestWriter time.Duration
	parked       parked.Status
	unsettled    time.Duration // the oldest unsettled order's age
	flow         orders.Flow   // placed and settled since the reading before
}

// readDatabase reads the figures in one read-only transaction: a
// statement of its own each would be a transaction each, and these reads
// are most of what an idle process costs the database.
func (w Watcher) readDatabase(ctx context.Context, since time.Time) (databaseFigures, error) {
	var f databaseFigures
	tx, err := postgres.BeginTx(ctx, w.DB, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return f, fmt.Errorf("read the backlog: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, ErrTxDone
	if f.outbox, err = outbox.Outbox(ctx, tx); err != nil {
		return f, err
	}
	if f.oldestTx, err = postgres.OldestTransactionAge(ctx, tx); err != nil {
		return f, err
	}
	if f.oldestWriter, err = postgres.OldestOutboxWriterAge(ctx, tx); err != nil {
		return f, err
	}
	if f.parked, err = parked.ReadStatus(ctx, tx); err != nil {
		return f, err
	}
	if f.unsettled, err = orders.OldestUnsettled(ctx, tx); err != nil {
		return f, err
	}
	if f.flow, err = orders.ReadFlow(ctx, tx, since); err != nil {
		return f, err
	}
	return f, tx.Commit()
}

// Run reads until ctx is done.
func (w Watcher) Run(ctx context.Context) {
	w.Metrics.RegisterBacklog()
	var since time.Time // where the flow's window starts: where the one before ended
	for {
		until, err := w.collect(ctx, since)
		if err != nil && ctx.Err() == nil {
			w.Logger.WarnContext(ctx, "reading the backlog failed", "err", err)
		}
		if err == nil {
			since = until
		}
		interval := w.Interval
		if w.Live.Watching() {
			interval = min(interval, liveInterval)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		case <-w.Live.Joined():
		}
	}
}

// collect reads every figure once, sets the metrics, adds a Point to the
// charts' history, and with a page open, publishes a Snapshot. It returns
// where the flow's window ended, for the next one to start there.
func (w Watcher) collect(ctx context.Context, since time.Time) (time.Time, error) {
	m := w.Metrics
	snap := Snapshot{At: time.Now().UTC()}
	db, err := w.readDatabase(ctx, since)
	if err != nil {
		return since, err
	}
	m.OutboxPending.Set(float64(db.outbox.Pending))
	m.OutboxOldestAge.Set(db.outbox.OldestAge.Seconds())
	snap.Outbox = OutboxFigures{Pending: db.outbox.Pending, OldestSeconds: db.outbox.OldestAge.Seconds()}
	m.OldestTransactionAge.Set(db.oldestTx.Seconds())
	m.OldestOutboxWriterAge.Set(db.oldestWriter.Seconds())
	m.ParkedMessages.Set(float64(db.parked.Messages))
	m.ParkedOldest.Set(db.parked.OldestFailing.Seconds())
	m.OldestUnsettledOrder.Set(db.unsettled.Seconds())

	if snap.Streams, err = w.Streams.Status(ctx, w.Redis); err != nil {
		return since, err
	}
	var deadLetters int64
	for _, st := range snap.Streams {
		if st.Stream == events.StreamDeadLetter {
			deadLetters = st.Length
			m.DeadLetters.Set(float64(st.Length))
		}
		for _, g := range st.Groups {
			m.StreamLag.WithLabelValues(st.Stream, g.Name).Set(float64(g.Lag))
			m.StreamPending.WithLabelValues(st.Stream, g.Name).Set(float64(g.Pending))
		}
	}

	snap.Point = pointOf(snap.At, db.flow, db.outbox.Pending, snap.Streams, deadLetters, db.parked)
	w.Live.history.add(snap.Point)

	if !w.Live.Watching() {
		return db.flow.Until, nil
	}
	recent, err := w.Orders.List(ctx, orders.ListRequest{Limit: 20})
	if err != nil {
		return db.flow.Until, err
	}
	snap.Orders = ordersOf(recent.Orders)
	stock, err := w.Inventory.List(ctx, 50)
	if err != nil {
		return db.flow.Until, err
	}
	snap.Stock = stockOf(stock)
	letters, err := w.Streams.LatestDeadLetters(ctx, w.Redis, 20)
	if err != nil {
		return db.flow.Until, err
	}
	for _, d := range letters {
		snap.DeadLetters = append(snap.DeadLetters, DeadLetterOf(d))
	}
	if snap.Activity, err = activity.Latest(ctx, w.Redis, w.Streams, activityShown); err != nil {
		return db.flow.Until, err
	}
	w.Live.Publish(snap)
	return db.flow.Until, nil
}
