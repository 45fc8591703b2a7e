package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// exercise runs the test proper against a running cluster: stock, load
// under chaos, settling, checks. Violations go into rep; an error means the
// run itself could not go on.
func exercise(ctx context.Context, logger *slog.Logger, opts options, cl *cluster, pg *pgServer, rd *redisServer, nw *network, rep *report) error {
	client := newAPIClient(cl.apiURL, opts.clients+4)
	if err := client.waitReady(ctx, 2*time.Minute); err != nil {
		return err
	}
	p := newPlan(rand.New(rand.NewPCG(opts.seed, 1)), opts.orders)
	if err := client.setStock(ctx, p); err != nil {
		return err
	}
	rep.orders = len(p.orders)
	f := newFindings()

	// The load, with the monkey at work until it is done.
	l := newLoad(client, p, opts.orderTimeout, logger)
	m := &monkey{cluster: cl, pg: pg, redis: rd, killEvery: opts.killEvery, logger: logger}
	chaosCtx, stopChaos := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { m.killUntil(chaosCtx, rand.New(rand.NewPCG(opts.seed, 2))) })
	wg.Go(func() { m.restartServers(ctx, l.progress) })
	wg.Go(func() { nw.faultUntil(chaosCtx, rand.New(rand.NewPCG(opts.seed, 4))) })
	began := time.Now()
	loadErr := l.run(ctx, opts.clients, opts.rate, opts.seed)
	rep.loadTime = time.Since(began)
	stopChaos()
	wg.Wait()
	if loadErr != nil {
		return loadErr
	}
	rep.kills, rep.pgRestarts, rep.redisRestarts, rep.problems = m.counts()
	rep.retries, rep.replays, rep.accepted = l.retries.Load(), l.replays.Load(), l.accepted()
	for _, pr := range l.problems {
		f.add("load", "%s", pr)
	}
	logger.Info("chaos: load done", "accepted", rep.accepted, "took", rep.loadTime.Round(time.Millisecond),
		"kills", rep.kills, "retries", rep.retries)

	// Every process back, then every order settled.
	if err := waitAllUp(ctx, cl, client); err != nil {
		f.add("processes", "not every process came back: %v", err)
	}
	db, err := sql.Open("postgres", pg.url(dbName))
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer db.Close()
	began = time.Now()
	if err := waitSettled(ctx, db, opts.settleTimeout); err != nil {
		logger.Warn("chaos: orders did not settle", "err", err)
	}
	rep.settleWait = time.Since(began)
	settled := time.Now()
	nw.checkSettled(settled, f)
	rep.network = nw.summary(settled)

	s, err := readSnapshot(ctx, db)
	if err != nil {
		return err
	}
	t := checkDatabase(s, p, l.ids, f)
	rep.confirmed, rep.rejected, rep.pending = t.confirmed, t.rejected, t.pending
	checkAPI(ctx, client, s, p, l.ids, opts.apiSample, rand.New(rand.NewPCG(opts.seed, 3)), f)
	for _, pr := range rep.problems {
		f.add("chaos", "%s", pr)
	}
	// A server that went away without the harness asking makes the run
	// say nothing about the application.
	if !pg.child.running() {
		f.add("servers", "postgres exited during the run without the harness asking; see %s", pg.logPath)
	}
	if !rd.child.running() {
		f.add("servers", "redis-server exited during the run without the harness asking; see %s", rd.logPath)
	}
	rep.violations = f.lines()
	rep.starts, rep.selfExits, rep.exitNotes = cl.counts()
	rep.streams = readStreams(ctx, rd)
	return nil
}

// waitAllUp waits until every process has run for a few seconds without
// being restarted and the api is ready.
func waitAllUp(ctx context.Context, cl *cluster, client *apiClient) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		err := cl.allRunning(3 * time.Second)
		if err == nil {
			return client.waitReady(ctx, time.Minute)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitSettled polls until no order is pending, or limit passes.
func waitSettled(ctx context.Context, db *sql.DB, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	pending := -1
	for {
		n, err := countPending(ctx, db)
		if err == nil && n == 0 {
			return nil
		}
		if err == nil {
			pending = n
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d orders still pending after %s", pending, limit)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
