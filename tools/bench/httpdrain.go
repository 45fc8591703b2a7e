package main

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
)

// measureHTTPDrain drains, by one forwarder process, a backlog that POST
// /orders built, once for each of -http-drain-shards: the backlog as it
// builds up in production while the forwarders are down, each order its own
// transaction with its own transaction id, spread over the shards by the
// writers' own hash of the order id, where the drain phase inserts rows
// 10,000 to a transaction, evenly. The shard count that drains fastest is
// the one to recommend; with -http-drain-durable, a backlog of the same
// size is built and drained once more at that count against a durable Redis
// of the bench's own (see measureDurable), the set-up shipped.
func measureHTTPDrain(ctx context.Context, st *stage, rep *report) error {
	for _, shards := range st.opts.httpShards {
		rs, err := drainPlaced(ctx, st, shards)
		rep.httpDrains = append(rep.httpDrains, rs...)
		if err != nil {
			return fmt.Errorf("drain orders placed over HTTP in %d shards: %w", shards, err)
		}
	}
	best := rep.bestHTTPDrain()
	if !st.opts.httpDurable || best == nil {
		return nil
	}
	return onDurableRedis(ctx, st, func(on *stage) error {
		rs, err := drainPlaced(ctx, on, best.shards)
		if len(rs) > 0 {
			rep.httpDurable = rs[0]
		}
		if err != nil {
			return fmt.Errorf("drain orders placed over HTTP in %d shards, durable Redis: %w", best.shards, err)
		}
		return nil
	})
}

// drainPlaced builds a backlog by placeBacklog on a fresh database and
// drains it by one forwarder process.
func drainPlaced(ctx context.Context, st *stage, shards int) ([]*drainResult, error) {
	var placed loadResult
	rs, err := drainBuilt(ctx, st, shards, []int{1}, func(ctx context.Context, db *sql.DB) (int, error) {
		n, load, err := placeBacklog(ctx, st, db, shards)
		placed = load
		return n, err
	})
	for _, r := range rs {
		r.placed = &placed
	}
	return rs, err
}

// placeBacklog places -http-backlog orders on `orderstream api` alone, with
// OUTBOX_SHARDS=shards and no forwarder anywhere, from -clients clients in a
// closed loop, then stops it and vacuums the outbox (vacuumOutbox); it
// returns how many orders it holds: the OrderPlaced entries the forwarder
// is to put on the stream.
func placeBacklog(ctx context.Context, st *stage, db *sql.DB, shards int) (int, loadResult, error) {
	prefix := st.streamPrefix(fmt.Sprintf("httpdrain-%d", shards))
	defer func() { _ = st.clearStreams(context.WithoutCancel(ctx), prefix) }()
	app, base, err := st.startAPI(ctx, "api", prefix, "OUTBOX_SHARDS="+strconv.Itoa(shards))
	if err != nil {
		return 0, loadResult{}, err
	}
	defer func() { _ = app.stop() }()
	l := newLoader(base, st.opts.skus, st.opts.clients, st.creds)
	defer l.close()
	if err := l.setStock(ctx); err != nil {
		return 0, loadResult{}, err
	}
	load := l.closedCount(ctx, "httpdrain", st.opts.clients, st.opts.httpBacklog, st.opts.drainTimeout)
	if ctx.Err() != nil {
		return 0, load, ctx.Err()
	}
	if err := app.stop(); err != nil {
		return 0, load, err
	}
	if load.ok < st.opts.httpBacklog {
		// Fewer to drain; the rate is still a rate.
		st.logger.Warn("bench: fewer orders placed than asked for", "placed", load.ok, "asked", st.opts.httpBacklog,
			"failures", describeFailures(load.failures))
	}
	var orders int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM orders`).Scan(&orders); err != nil {
		return 0, load, fmt.Errorf("count orders: %w", err)
	}
	if orders == 0 {
		return 0, load, fmt.Errorf("no order was placed: %s", describeFailures(load.failures))
	}
	// Setting the stock may have written events too: the tables hold at
	// least the orders' OrderPlaced.
	rows, used, err := vacuumOutbox(ctx, st, db, shards)
	if err != nil {
		return 0, load, err
	}
	if rows < orders {
		return 0, load, fmt.Errorf("the outbox's first %d shards hold %d rows for %d orders", shards, rows, orders)
	}
	// A binary that ignored OUTBOX_SHARDS would put every order in shard
	// 0, and the figure would be labelled with a shard count it was not
	// measured at.
	if shards > 1 && used <= 1 {
		return 0, load, fmt.Errorf("OUTBOX_SHARDS=%d put all %d orders in one shard", shards, orders)
	}
	return orders, load, nil
}

// bestHTTPDrain is the HTTP-built drain with the highest rate, those that
// finished first; nil if none ran.
func (r *report) bestHTTPDrain() *drainResult {
	if len(r.httpDrains) == 0 {
		return nil
	}
	return slices.MaxFunc(r.httpDrains, func(a, b *drainResult) int {
		return cmp.Or(cmp.Compare(btoi(a.complete), btoi(b.complete)), cmp.Compare(a.perSecond, b.perSecond))
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
