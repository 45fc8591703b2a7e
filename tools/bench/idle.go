package main

import (
	"context"
	"time"
)

// idleResult is what `orderstream all` costs the database with nothing to do.
type idleResult struct {
	transactions int64
	window       time.Duration
	perSecond    float64
	appCPU       float64 // share of one core the process used
	rss          int64
}

// idleSettle is how long the idle process runs before it is watched. Its
// start-up (migrations check, first polls) commits a burst of transactions,
// and a backend that flushed its statistics less than a second before may
// hold the next ones for up to 10 s (PostgreSQL's PGSTAT_IDLE_INTERVAL):
// the burst must be counted before the window opens, not inside it.
const idleSettle = 12 * time.Second

// measureIdle counts the transactions committed or rolled back in the bench
// database while `orderstream all` runs with no traffic. The counters are
// read from the maintenance database, so reading them adds nothing. A
// backend reports its counters some time after its transactions; at a
// steady rate the ones missed at the end of the window make up for the
// ones counted late at its start.
func measureIdle(ctx context.Context, st *stage, rep *report) error {
	db, err := st.freshDatabase(ctx)
	if err != nil {
		return err
	}
	db.Close() // the bench's own connections must not count
	prefix := st.streamPrefix("idle")
	defer func() { _ = st.clearStreams(context.WithoutCancel(ctx), prefix) }()
	app, _, err := st.startAPI(ctx, "all", prefix)
	if err != nil {
		return err
	}
	defer func() { _ = app.stop() }()
	if err := sleep(ctx, idleSettle); err != nil {
		return err
	}
	before, err := st.transactions(ctx)
	if err != nil {
		return err
	}
	cpuBefore := sampleCPU(app)
	if err := sleep(ctx, st.opts.idleWindow); err != nil {
		return err
	}
	after, err := st.transactions(ctx)
	if err != nil {
		return err
	}
	cpuAfter := sampleCPU(app)
	window := cpuAfter.at.Sub(cpuBefore.at)
	_, rss, _ := app.memory()
	rep.idle = &idleResult{
		transactions: after - before,
		window:       window,
		perSecond:    float64(after-before) / window.Seconds(),
		appCPU:       float64(cpuAfter.app-cpuBefore.app) / float64(window),
		rss:          rss,
	}
	return app.stop()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
