package main

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
)

// workerResult is one worker process handling a stream of OrderPlaced
// events that were waiting for it.
type workerResult struct {
	events      int
	procs       int           // worker processes
	startup     time.Duration // from the process's start to the first acknowledgement seen
	handling    time.Duration // from the first acknowledgement seen to the last
	acked       int64
	perSecond   float64
	overall     float64 // every event, per second from the process's start
	complete    bool
	reserved    int // orders with reservations in the database afterwards
	deadLetters int64
	cpu         cpuUsage
	raw         *rawResult // the handler's transaction by pgbench, afterwards
}

// inventoryGroup is the consumer group of the inventory handler.
const inventoryGroup = "inventory"

// measureWorker puts opts.workerEvents OrderPlaced entries on the stream,
// as the forwarder writes them, then starts `orderstream worker` and times
// until its inventory group has acknowledged every one. No forwarder runs:
// the StockReserved events the handler writes stay in the outbox, and the
// figure is the inventory handler's alone (inbox row, stock locks,
// reservation and outbox write in one transaction per event).
func measureWorker(ctx context.Context, st *stage, rep *report) error {
	r, db, prefix, err := runWorkers(ctx, st, st.opts.workerEvents, 1)
	if db != nil {
		defer db.Close()
		defer func() { _ = st.clearStreams(context.WithoutCancel(ctx), prefix) }()
	}
	if err != nil {
		return err
	}
	if err := db.QueryRowContext(ctx, `SELECT count(DISTINCT order_id) FROM reservations`).Scan(&r.reserved); err != nil {
		return fmt.Errorf("count reservations: %w", err)
	}
	r.deadLetters, _ = st.rdb.XLen(ctx, prefix+events.StreamDeadLetter).Result()
	// The ceiling: the handler's transaction alone, as many at once as the
	// worker handles.
	if r.raw, err = runPgbench(ctx, st, st.opts.workerConcurrency, reserveStockScript(st.opts.skus)); err != nil {
		return err
	}
	rep.worker = r
	return nil
}

// measureScale runs the worker phase's load with 1, 2 and 3 worker
// processes, each on a fresh database: how the handlers' throughput grows
// with processes on this machine.
func measureScale(ctx context.Context, st *stage, rep *report) error {
	for _, procs := range []int{1, 2, 3} {
		r, db, prefix, err := runWorkers(ctx, st, st.opts.workerEvents, procs)
		if db != nil {
			db.Close()
			_ = st.clearStreams(context.WithoutCancel(ctx), prefix)
		}
		if err != nil {
			return fmt.Errorf("%d workers: %w", procs, err)
		}
		rep.scale = append(rep.scale, r)
	}
	return nil
}

// runWorkers puts n OrderPlaced on a fresh database's stream and runs
// procs worker processes until they have handled them all. The database
// and the stream prefix are returned for the caller to read and close.
func runWorkers(ctx context.Context, st *stage, n, procs int) (*workerResult, *sql.DB, string, error) {
	if err := st.needRedis7(ctx); err != nil {
		return nil, nil, "", err
	}
	db, err := st.freshDatabase(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	prefix := st.streamPrefix(fmt.Sprintf("worker%d", procs))
	fail := func(err error) (*workerResult, *sql.DB, string, error) { return nil, db, prefix, err }
	if _, err := db.ExecContext(ctx, `
		INSERT INTO stock (sku, available)
		SELECT 'SKU-' || lpad(i::text, 3, '0'), $2 FROM generate_series(0, $1 - 1) AS i`,
		st.opts.skus, stockUnits); err != nil {
		return fail(fmt.Errorf("set stock: %w", err))
	}
	stream := prefix + events.StreamOrdersPlaced
	if err := addOrderPlaced(ctx, st.rdb, stream, n, st.opts.skus); err != nil {
		return fail(err)
	}
	if err := st.checkpoint(ctx); err != nil {
		return fail(err)
	}

	r := &workerResult{events: n, procs: procs}
	var ws []*proc
	defer func() {
		for _, w := range ws {
			_ = w.stop()
		}
	}()
	for range procs {
		w, err := st.start("worker", prefix)
		if err != nil {
			return fail(err)
		}
		ws = append(ws, w)
	}
	w := ws[0]
	before := sampleCPU(ws...)
	var firstAt time.Time
	var firstAcked int64
	deadline := w.started.Add(st.opts.drainTimeout)
	for {
		g, err := groupProgress(ctx, st.rdb, stream, inventoryGroup)
		if err != nil {
			return fail(err)
		}
		now := time.Now()
		r.acked = g.EntriesRead - g.Pending
		if r.acked > 0 && firstAt.IsZero() {
			firstAt, firstAcked = now, r.acked
		}
		r.complete = r.acked >= int64(n) && g.Pending == 0 && g.Lag == 0
		if r.complete || now.After(deadline) {
			if !firstAt.IsZero() {
				r.startup, r.handling = firstAt.Sub(w.started), now.Sub(firstAt)
				if r.handling > 0 {
					r.perSecond = float64(r.acked-firstAcked) / r.handling.Seconds()
				}
			}
			r.overall = float64(r.acked) / now.Sub(w.started).Seconds()
			break
		}
		for _, w := range ws {
			select {
			case <-w.exited:
				return fail(fmt.Errorf("worker exited: %v", w.err))
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	r.cpu = sampleCPU(ws...).usageSince(before)
	for _, w := range ws {
		if err := w.stop(); err != nil {
			return fail(err)
		}
	}
	ws = nil
	return r, db, prefix, nil
}

// groupProgress returns the state of group on stream; a group not created
// yet has read nothing.
func groupProgress(ctx context.Context, rdb *redis.Client, stream, group string) (redis.XInfoGroup, error) {
	groups, err := rdb.XInfoGroups(ctx, stream).Result()
	if err != nil {
		return redis.XInfoGroup{}, fmt.Errorf("read consumer groups: %w", err)
	}
	for _, g := range groups {
		if g.Name == group {
			return g, nil
		}
	}
	return redis.XInfoGroup{Name: group, Lag: -1}, nil
}

// addOrderPlaced appends n OrderPlaced entries to stream in the format of
// watermill-redisstream's publisher, in pipelined batches.
func addOrderPlaced(ctx context.Context, rdb *redis.Client, stream string, n, skus int) error {
	const batch = 1000
	var marshaller redisstream.DefaultMarshallerUnmarshaller
	placed := time.Now().UTC()
	for from := 0; from < n; from += batch {
		pipe := rdb.Pipeline()
		for i := from; i < min(from+batch, n); i++ {
			msg, err := events.NewMessage(events.WithCorrelationID(ctx, fmt.Sprintf("bench-%d", i)), events.OrderPlaced{
				OrderID:    uuid.Must(uuid.NewV7()).String(),
				CustomerID: fmt.Sprintf("worker-%d", i%1000),
				Items:      []events.Item{{SKU: sku(i % skus), Quantity: 1}, {SKU: sku((i + 1) % skus), Quantity: 2}},
				PlacedAt:   placed,
			})
			if err != nil {
				return err
			}
			values, err := marshaller.Marshal(stream, msg)
			if err != nil {
				return fmt.Errorf("encode stream entry: %w", err)
			}
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: values})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("add stream entries: %w", err)
		}
	}
	return nil
}
