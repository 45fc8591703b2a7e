package main

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// openLoopResult is one open-loop load against `orderstream all`: every
// order's time from its commit to its confirmation or rejection, by the
// database clock.
type openLoopResult struct {
	fraction  float64 // of the raw pipeline's orders/s
	perSecond int
	load      loadResult
	http      summary
	settled
	pending     int           // still pending when the bench gave up waiting
	tail        time.Duration // from the last send until no order was pending
	cpu         cpuUsage
	maxInFlight int
	cost        *orderCost // when asked for
}

// settled is how the orders of a load ended, each timed from its commit to
// its confirmation or rejection, by the database clock, and in two hops.
type settled struct {
	settle    summary
	toReserve summary // from the order's commit to its reservation's start
	toSettle  summary // from there to its settlement
	confirmed int
	rejected  int
}

// keepUpP99 is the commit-to-settled p99 a load that keeps up stays within.
const keepUpP99 = 100 * time.Millisecond

// keptUp says whether the system carried the load: every order sent was
// placed and settled, the p99 stayed within keepUpP99, and nothing was
// pending at the end.
func (r *openLoopResult) keptUp() bool {
	return r.load.skipped == 0 && r.load.ok == r.load.sent && r.pending == 0 &&
		r.settle.n == r.load.ok && r.settle.p99 <= keepUpP99
}

// latencyFractions are the shares of the raw pipeline at which latency is
// measured; the cost per order is measured at costFraction.
var latencyFractions = []float64{0.25, 0.5}

const costFraction = 0.5

// measureSettle runs an open loop at each of latencyFractions of the raw
// pipeline.
func measureSettle(ctx context.Context, st *stage, rep *report) error {
	pipeline, err := pipelineRate(ctx, st, rep)
	if err != nil {
		return err
	}
	for _, f := range latencyFractions {
		r, err := runOpenLoop(ctx, st, f, pipeline, st.opts.duration, f == costFraction)
		if err != nil {
			return fmt.Errorf("at %.0f%%: %w", 100*f, err)
		}
		rep.latency = append(rep.latency, r)
	}
	return nil
}

// statsDelay is how long PostgreSQL may take to count a transaction in
// pg_stat_database: a backend reports at most once a second while busy,
// and within 10 s of going idle (PGSTAT_IDLE_INTERVAL).
const statsDelay = 11 * time.Second

// runOpenLoop sends fraction × pipeline orders a second for d on a fixed
// schedule, whatever the answers, against a fresh `orderstream all`, then
// waits until no order is pending. An order's latency is updated_at -
// created_at: the API inserts it with the database clock, and the orders
// worker sets updated_at with the same clock when it settles it. With
// withCost it also measures what each order cost.
func runOpenLoop(ctx context.Context, st *stage, fraction, pipeline float64, d time.Duration, withCost bool) (*openLoopResult, error) {
	perSecond := max(int(fraction*pipeline+0.5), 1)
	db, err := st.freshDatabase(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { db.Close() }()
	prefix := st.streamPrefix(fmt.Sprintf("e2e-%d", perSecond))
	defer func() {
		if !st.keep {
			_ = st.clearStreams(context.WithoutCancel(ctx), prefix)
		}
	}()
	profile := withCost && st.opts.profile != ""
	app, base, err := st.startAPI(ctx, "all", prefix)
	if err != nil {
		return nil, err
	}
	defer func() { _ = app.stop() }()

	l := newLoader(base, st.opts.skus, min(st.opts.maxInFlight, 1024), st.creds)
	defer l.close()
	if err := l.setStock(ctx); err != nil {
		return nil, err
	}
	w := &pendingWatch{db: db}
	if st.opts.warmup > 0 {
		l.openLoop(ctx, "warmup", perSecond, st.opts.warmup, st.opts.maxInFlight)
		if _, _, err := w.wait(ctx, st.opts.settleTimeout); err != nil {
			return nil, err
		}
	}
	var xactsBefore int64
	if withCost {
		// Until the warm-up's transactions are counted, they would count
		// as the load's.
		if err := sleep(ctx, statsDelay); err != nil {
			return nil, err
		}
		if xactsBefore, err = st.transactions(ctx); err != nil {
			return nil, err
		}
	}
	before, err := st.sampleCost(ctx, app)
	if err != nil {
		return nil, err
	}
	w.queries = 0
	group := fmt.Sprintf("e2e%d", perSecond)
	profiled := func() error { return nil }
	if profile {
		profiled = captureProfiles(ctx, app.ops, st.opts.profile, fmt.Sprint(perSecond), profileWindow(d))
	}
	load := l.openLoop(ctx, group, perSecond, d, st.opts.maxInFlight)
	if err := profiled(); err != nil {
		return nil, err
	}
	tail, pending, err := w.wait(ctx, st.opts.settleTimeout)
	if err != nil {
		return nil, err
	}
	if pending > 0 {
		// Not a slow system: orders that no worker settled. What the
		// process logged says why.
		st.keepLogs()
		st.logger.Warn("bench: orders still pending after the settle timeout; logs kept", "pending", pending,
			"timeout", st.opts.settleTimeout, "logs", st.dir)
	}
	after, err := st.sampleCost(ctx, app)
	if err != nil {
		return nil, err
	}
	r := &openLoopResult{
		fraction:    fraction,
		perSecond:   perSecond,
		load:        load,
		http:        summarize(load.latencies),
		pending:     pending,
		tail:        tail,
		cpu:         after.cpu.usageSince(before.cpu),
		maxInFlight: st.opts.maxInFlight,
	}
	if err := app.stop(); err != nil {
		return nil, err
	}
	if withCost {
		// A backend reports what it has not yet when it exits: stop the
		// application and close the bench's own connections, then read.
		db.Close()
		if err := sleep(ctx, time.Second); err != nil {
			return nil, err
		}
		xactsAfter, err := st.transactions(ctx)
		if err != nil {
			return nil, err
		}
		r.cost = costOf(before, after, load.ok, xactsAfter-xactsBefore, w.queries)
		if db, err = st.openBenchDB(); err != nil {
			return nil, err
		}
	}
	if r.settled, err = settleTimes(ctx, db, group+"-%"); err != nil {
		return nil, err
	}
	return r, nil
}

// pendingWatch waits for the orders to settle, and counts its queries: they
// are transactions of the bench database that the application did not make.
type pendingWatch struct {
	db      *sql.DB
	queries int64
}

// wait waits until no order is pending, or timeout; it returns how long it
// waited and how many were still pending.
func (w *pendingWatch) wait(ctx context.Context, timeout time.Duration) (time.Duration, int, error) {
	start := time.Now()
	for {
		var pending int
		w.queries++
		if err := w.db.QueryRowContext(ctx, `SELECT count(*) FROM orders WHERE status = 'pending'`).Scan(&pending); err != nil {
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

// settleTimes times every settled order whose customer id is like
// customers, counts them by status, and splits the time of the reserved
// ones in two at the start of the reservation's transaction
// (reservations.created_at).
func settleTimes(ctx context.Context, db *sql.DB, customers string) (settled, error) {
	var r settled
	rows, err := db.QueryContext(ctx, `
		SELECT o.status, EXTRACT(EPOCH FROM o.updated_at - o.created_at)::float8,
		       EXTRACT(EPOCH FROM res.at - o.created_at)::float8
		FROM orders o
		LEFT JOIN LATERAL (SELECT min(created_at) AS at FROM reservations WHERE order_id = o.id) res ON true
		WHERE o.customer_id LIKE $1`, customers)
	if err != nil {
		return r, fmt.Errorf("read settle times: %w", err)
	}
	defer rows.Close()
	var lat, toReserve, toSettle []time.Duration
	secs := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	for rows.Next() {
		var status string
		var total float64
		var reserved sql.NullFloat64
		if err := rows.Scan(&status, &total, &reserved); err != nil {
			return r, fmt.Errorf("read settle times: %w", err)
		}
		switch status {
		case "confirmed":
			r.confirmed++
		case "rejected":
			r.rejected++
		default:
			continue
		}
		lat = append(lat, secs(total))
		if reserved.Valid {
			toReserve = append(toReserve, secs(reserved.Float64))
			toSettle = append(toSettle, secs(total-reserved.Float64))
		}
	}
	if err := rows.Err(); err != nil {
		return r, fmt.Errorf("read settle times: %w", err)
	}
	r.settle, r.toReserve, r.toSettle = summarize(lat), summarize(toReserve), summarize(toSettle)
	return r, nil
}
