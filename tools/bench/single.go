package main

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// singleResult is orders placed one at a time against a fresh `orderstream
// all`, each once the one before had settled: the latency of an order that
// meets no other, as a lone customer's does, without the queueing of a load.
type singleResult struct {
	orders int     // placed and measured
	http   summary // POST /orders, each answer
	settled
	pending int // not settled within -settle-timeout: the run stopped there
}

// singleGap is the pause after an order has settled and before the next is
// placed: the events that follow the settlement (OrderConfirmed, forwarded
// and handled) have passed by then, so each order finds the process idle.
const singleGap = 20 * time.Millisecond

// measureSingle places -single-orders orders one at a time.
func measureSingle(ctx context.Context, st *stage, rep *report) error {
	r, err := runSingle(ctx, st, "single")
	if err != nil {
		return err
	}
	rep.single = r
	return nil
}

// runSingle places -single-orders orders, after -warmup of unmeasured ones,
// on a fresh database and a fresh `orderstream all` with the defaults;
// name labels its streams and its customers. Each order's latency is
// updated_at - created_at, as for the open loops (settleTimes).
func runSingle(ctx context.Context, st *stage, name string) (*singleResult, error) {
	db, err := st.freshDatabase(ctx)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	prefix := st.streamPrefix(name)
	defer func() {
		if !st.keep {
			_ = st.clearStreams(context.WithoutCancel(ctx), prefix)
		}
	}()
	app, base, err := st.startAPI(ctx, "all", prefix)
	if err != nil {
		return nil, err
	}
	defer func() { _ = app.stop() }()
	l := newLoader(base, st.opts.skus, 1, st.creds)
	defer l.close()
	if err := l.setStock(ctx); err != nil {
		return nil, err
	}

	// one places an order of group and waits until it has settled.
	one := func(group []customer, load *loadResult) (pending int, err error) {
		began := time.Now()
		err = l.place(ctx, group)
		load.record(time.Since(began), err)
		if err != nil {
			return 0, fmt.Errorf("place an order: %w", err)
		}
		if pending, err = waitSettled(ctx, db, st.opts.settleTimeout); err != nil || pending > 0 {
			return pending, err
		}
		return 0, sleep(ctx, singleGap)
	}
	var warm loadResult
	// Not name-...: settleTimes picks the measured orders by that.
	warmup, err := customersOf(st.creds, "warmup-"+name)
	if err != nil {
		return nil, err
	}
	for start := time.Now(); time.Since(start) < st.opts.warmup; {
		pending, err := one(warmup, &warm)
		if err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
		if pending > 0 {
			st.keepLogs()
			return nil, fmt.Errorf("warm-up: an order still pending after %s; logs kept in %s", st.opts.settleTimeout, st.dir)
		}
	}
	customers, err := customersOf(st.creds, name)
	if err != nil {
		return nil, err
	}
	var load loadResult
	r := &singleResult{}
	for r.orders < st.opts.singleOrders {
		if r.pending, err = one(customers, &load); err != nil {
			return nil, err
		}
		r.orders++
		if r.pending > 0 {
			// Not a slow system: an order that no worker settled. What
			// the process logged says why.
			st.keepLogs()
			st.logger.Warn("bench: an order still pending after the settle timeout; logs kept",
				"timeout", st.opts.settleTimeout, "logs", st.dir)
			break
		}
	}
	r.http = summarize(load.latencies)
	// Settled orders only: the customers of name, not those of the warm-up.
	if r.settled, err = settleTimes(ctx, db, name+"-%"); err != nil {
		return nil, err
	}
	return r, app.stop()
}

// waitSettled waits, in the database, until no order is pending or timeout
// has passed, and returns how many still are. A statement of PL/pgSQL reads
// with a snapshot of its own, so the loop sees the settlement's commit
// within a millisecond, without a round trip per look: the wait adds next to
// nothing to the order's latency nor to the machine's load.
func waitSettled(ctx context.Context, db *sql.DB, timeout time.Duration) (int, error) {
	_, err := db.ExecContext(ctx, fmt.Sprintf(`DO $$
		BEGIN
			WHILE EXISTS (SELECT 1 FROM orders WHERE status = 'pending')
			      AND clock_timestamp() < statement_timestamp() + interval '%d milliseconds' LOOP
				PERFORM pg_sleep(0.001);
			END LOOP;
		END $$`, timeout.Milliseconds()))
	if err != nil {
		return 0, fmt.Errorf("wait for the order to settle: %w", err)
	}
	var pending int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM orders WHERE status = 'pending'`).Scan(&pending); err != nil {
		return 0, fmt.Errorf("count pending orders: %w", err)
	}
	return pending, nil
}
