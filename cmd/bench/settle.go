package main

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// settleResult is the open-loop load: every order's time from its commit to
// its confirmation or rejection, by the database clock.
type settleResult struct {
	load        loadResult
	perSecond   int
	http        summary
	settle      summary
	confirmed   int
	rejected    int
	pending     int           // still pending when the bench gave up waiting
	tail        time.Duration // from the last send until no order was pending
	cpu         cpuUsage
	maxInFlight int
}

// measureSettle sends opts.rate orders a second for opts.duration on a
// fixed schedule, whatever the answers, against `orderstream all`, then
// waits until no order is pending. An order's latency is updated_at -
// created_at: the API inserts it with the database clock, and the orders
// worker sets updated_at with the same clock when it settles it.
func measureSettle(ctx context.Context, st *stage, rep *report) error {
	db, err := st.freshDatabase(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	prefix := st.streamPrefix("e2e")
	defer func() { _ = st.clearStreams(context.WithoutCancel(ctx), prefix) }()
	app, base, err := st.startAPI(ctx, "all", prefix)
	if err != nil {
		return err
	}
	defer func() { _ = app.stop() }()

	l := newLoader(base, st.opts.skus, min(st.opts.maxInFlight, 1024))
	defer l.close()
	if err := l.setStock(ctx); err != nil {
		return err
	}
	if st.opts.warmup > 0 {
		l.openLoop(ctx, "warmup", st.opts.rate, st.opts.warmup, st.opts.maxInFlight)
		if _, _, err := waitSettled(ctx, db, st.opts.settleTimeout); err != nil {
			return err
		}
	}
	before := sampleCPU(app)
	load := l.openLoop(ctx, "e2e", st.opts.rate, st.opts.duration, st.opts.maxInFlight)
	tail, pending, err := waitSettled(ctx, db, st.opts.settleTimeout)
	cpu := sampleCPU(app).usageSince(before)
	if err != nil {
		return err
	}
	r := &settleResult{
		load:        load,
		perSecond:   st.opts.rate,
		http:        summarize(load.latencies),
		pending:     pending,
		tail:        tail,
		cpu:         cpu,
		maxInFlight: st.opts.maxInFlight,
	}
	lat, err := settleTimes(ctx, db, "e2e-%", r)
	if err != nil {
		return err
	}
	r.settle = summarize(lat)
	rep.settle = r
	return app.stop()
}

// waitSettled waits until no order is pending, or timeout; it returns how
// long it waited and how many were still pending.
func waitSettled(ctx context.Context, db *sql.DB, timeout time.Duration) (time.Duration, int, error) {
	start := time.Now()
	for {
		var pending int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM orders WHERE status = 'pending'`).Scan(&pending); err != nil {
			return 0, 0, fmt.Errorf("count pending orders: %w", err)
		}
		waited := time.Since(start)
		if pending == 0 || waited > timeout {
			return waited, pending, nil
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// settleTimes returns the commit-to-settled time of every settled order
// whose customer id is like customers, and counts them by status into r.
func settleTimes(ctx context.Context, db *sql.DB, customers string, r *settleResult) ([]time.Duration, error) {
	rows, err := db.QueryContext(ctx, `
		SELECT status, EXTRACT(EPOCH FROM updated_at - created_at)::float8
		FROM orders WHERE customer_id LIKE $1`, customers)
	if err != nil {
		return nil, fmt.Errorf("read settle times: %w", err)
	}
	defer rows.Close()
	var lat []time.Duration
	for rows.Next() {
		var status string
		var secs float64
		if err := rows.Scan(&status, &secs); err != nil {
			return nil, fmt.Errorf("read settle times: %w", err)
		}
		switch status {
		case "confirmed":
			r.confirmed++
		case "rejected":
			r.rejected++
		default:
			continue
		}
		lat = append(lat, time.Duration(secs*float64(time.Second)))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read settle times: %w", err)
	}
	return lat, nil
}
