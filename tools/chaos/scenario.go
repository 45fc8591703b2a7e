package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"time"
)

// harness is what every scenario works with: the servers, the application,
// the plan and the load, and where faults and violations are counted.
type harness struct {
	opts    options
	logger  *slog.Logger
	cluster *cluster
	pg      *pgServer
	redis   *redisServer
	net     *network // nil without network faults
	client  *apiClient
	db      *sql.DB // the application's database, for the checks
	plan    plan
	load    *load
	faults  *faults
	found   *findings
	settle  settleResult
	lock    lockResult
	lost    lostResult

	dir      string // the run's temp dir
	creds    *harnessCredentials
	spawn    spawnFunc
	failover failoverResult
	soak     soakResult
}

// spawnFunc starts a cluster of processes of its own, logging in dir and
// reaching the harness's PostgreSQL (directly, without network faults) and
// the Redis of redisURL, with env added to each one's environment.
type spawnFunc func(dir, redisURL string, env ...string) (*cluster, error)

// scenario is one test run against the running cluster, after the ones
// before it: prepare adds its orders to the plan before any stock is set,
// run places them under its faults and checks what only it can see,
// recording each violation in h.found under the scenario's name. What
// holds for every order is checked once at the end, over all of them.
type scenario struct {
	name    string
	what    string
	prepare func(h *harness)
	run     func(ctx context.Context, h *harness) error
	// alone: run only when named in -scenarios, and with no other.
	alone bool
}

// scenarios run in this order; -scenarios selects among them. A new
// scenario is a function of its own and an entry here.
func scenarios() []*scenario {
	lock, graceful, lost, failover, soak := &lockScenario{}, &gracefulScenario{}, &lostScenario{}, &failoverScenario{}, &soakScenario{}
	var crash indices
	return []*scenario{
		{"crash", "SIGKILLed processes, Redis SIGKILLed and PostgreSQL stopped immediately, under load",
			func(h *harness) {
				crash = h.plan.addRandomOrders(rand.New(rand.NewPCG(h.opts.seed, 1)), "crash", h.opts.orders, skuCount)
			},
			func(ctx context.Context, h *harness) error { return runCrash(ctx, h, crash) }, false},
		{"lock", "a stock row locked for a while, then a session idle in a transaction",
			lock.prepare, lock.run, false},
		{"graceful", "processes stopped with SIGTERM under load and started again",
			graceful.prepare, graceful.run, false},
		{"lost", "Redis started on an older copy of its data, losing OrderPlaced entries it acknowledged",
			lost.prepare, lost.run, false},
		{"failover", "the Redis master SIGKILLed under load and its replica promoted by the Sentinels",
			failover.prepare, failover.run, false},
		{"soak", "a steady load for a long time, without faults, sampling memory, goroutines, table and stream sizes and latency",
			soak.prepare, soak.run, true},
	}
}

// exercise runs the selected scenarios against a running cluster, then the
// checks over every order (pooler is nil without -pgbouncer). Violations go into rep; an error means the run
// itself could not go on.
func exercise(ctx context.Context, logger *slog.Logger, opts options, cl *cluster, creds *harnessCredentials, pg *pgServer,
	pooler *pgBouncer, rd *redisServer, nw *network, f *faults, rep *report, dir string, spawn spawnFunc) error {
	h := &harness{
		opts: opts, logger: logger, cluster: cl, pg: pg, redis: rd, net: nw,
		dir: dir, creds: creds, spawn: spawn,
		client: newAPIClient(cl.apiURLs, opts.clients+4, creds),
		plan:   newPlan(),
		faults: f,
		found:  newFindings(),
	}
	var run []*scenario
	for _, s := range scenarios() {
		if slices.Contains(opts.scenarios, s.name) {
			run = append(run, s)
			s.prepare(h)
		}
	}
	if err := h.client.waitReady(ctx, 2*time.Minute); err != nil {
		return err
	}
	if err := h.client.setStock(ctx, h.plan); err != nil {
		return err
	}
	db, err := sql.Open("postgres", pg.url(dbName))
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer db.Close()
	h.db = db
	h.load = newLoad(h.client, h.plan, opts.orderTimeout, logger)

	for _, s := range run {
		logger.Info("chaos: scenario", "name", s.name, "what", s.what)
		began := time.Now()
		if err := s.run(ctx, h); err != nil {
			return fmt.Errorf("scenario %s: %w", s.name, err)
		}
		rep.scenarios = append(rep.scenarios, scenarioResult{name: s.name, took: time.Since(began), violations: h.found.of(s.name)})
		logger.Info("chaos: scenario done", "name", s.name, "took", time.Since(began).Round(time.Second), "violations", h.found.of(s.name))
	}
	before := h.found.total()

	// Every process back, then every order settled.
	if err := waitAllUp(ctx, cl, h.client); err != nil {
		h.found.add("processes", "not every process came back: %v", err)
	}
	began := time.Now()
	if err := waitSettled(ctx, db, nil, opts.settleTimeout); err != nil {
		logger.Warn("chaos: orders did not settle", "err", err)
	}
	rep.settleWait = time.Since(began)

	s, err := readSnapshot(ctx, db)
	if err != nil {
		return err
	}
	t := checkDatabase(s, h.plan, h.load.ids, h.load.cancels, h.found)
	rep.confirmed, rep.rejected, rep.cancelled, rep.pending = t.confirmed, t.rejected, t.cancelled, t.pending
	rep.overtaken = t.overtaken
	checkAPI(ctx, h.client, s, h.plan, h.load.ids, opts.apiSample, rand.New(rand.NewPCG(opts.seed, 3)), h.found)
	// A server that went away without the harness asking makes the run
	// say nothing about the application.
	if !pg.child.running() {
		h.found.add("servers", "postgres exited during the run without the harness asking; see %s", pg.logPath)
	}
	if !rd.child.running() {
		h.found.add("servers", "redis-server exited during the run without the harness asking; see %s", rd.logPath)
	}
	if pooler != nil && !pooler.child.running() {
		h.found.add("servers", "pgbouncer exited during the run without the harness asking; see %s", pooler.logPath)
	}
	rep.orders = len(h.plan.orders)
	rep.checks = h.found.total() - before
	rep.violations = h.found.lines()
	rep.faults = h.faults.String()
	rep.settle = h.settle
	rep.lock = h.lock
	rep.lost = h.lost
	rep.failover = h.failover.settledAfter
	rep.soak = h.soak
	if h.net != nil {
		rep.proxiesReplaced = h.net.replaced()
	}
	rep.retries, rep.replays, rep.accepted = h.load.retries.Load(), h.load.replays.Load(), h.load.accepted()
	rep.starts, rep.selfExits, rep.exitNotes = cl.counts()
	rep.streams = readStreams(ctx, rd)
	if h.failover.ran {
		// The failover scenario's processes and streams were its own.
		rep.starts += h.failover.starts
		rep.selfExits += h.failover.selfExits
		rep.exitNotes = append(rep.exitNotes, h.failover.exitNotes...)
		rep.streams.add(h.failover.streams)
	}
	return nil
}

// runCrash places the crash scenario's orders while every disrupter runs,
// then waits for every process to come back and every order to settle.
func runCrash(ctx context.Context, h *harness, idx indices) error {
	chaosCtx, stopChaos := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); h.disrupt(chaosCtx, h.load.progress) }()
	began := time.Now()
	err := h.load.run(ctx, idx, h.opts.clients, h.opts.rate, h.opts.seed)
	stopChaos()
	<-done
	if err != nil {
		return err
	}
	calm := time.Now() // every fault over: links clean, servers up, no more kills
	h.loadProblems("crash")
	h.quiet(ctx, "crash") // everything back, and every order settled
	h.checkSettleBound(ctx, "crash", calm)
	if n, want := h.faults.count(faultPostgres), h.opts.pgCrashes; n != want {
		h.found.add("crash", "PostgreSQL was crashed %d times, want %d", n, want)
	}
	if n, want := h.faults.count(faultRedis), h.opts.redisCrashes; n != want {
		h.found.add("crash", "Redis was crashed %d times, want %d", n, want)
	}
	h.logger.Info("chaos: crash load done", "orders", len(idx), "took", time.Since(began).Round(time.Millisecond),
		"faults", h.faults.String(), "retries", h.load.retries.Load())
	return nil
}

// checkSettleBound adds a violation when the orders of scenario left
// pending later than settleBound after calm, when the last fault ended,
// and notes how long they took for the summary. quiet has waited for them.
func (h *harness) checkSettleBound(ctx context.Context, scenario string, calm time.Time) {
	bound, why := settleBound(os.Getenv)
	took := time.Since(calm)
	if n, err := countPending(ctx, h.db, nil); err != nil || n > 0 {
		took = -1 // did not settle: quiet said so
	}
	h.settle = settleResult{took: took, bound: bound}
	if took > bound {
		h.found.add(scenario, "orders left pending %s after the faults ended; the bound is %s (%s)",
			took.Round(100*time.Millisecond), bound, why)
	}
}

// settleResult is how long the crash scenario's orders took to settle after
// its last fault, and the bound.
type settleResult struct{ took, bound time.Duration }

// loadProblems moves what the load ran into to the findings of scenario.
func (h *harness) loadProblems(scenario string) {
	h.load.mu.Lock()
	defer h.load.mu.Unlock()
	for _, pr := range h.load.problems {
		h.found.add(scenario, "%s", pr)
	}
	h.load.problems = nil
}

// quiet waits until every process is up and every order placed so far has
// settled, so that a scenario starts from a pipeline with nothing in it, or
// ends with nothing left in it.
func (h *harness) quiet(ctx context.Context, scenario string) {
	if err := waitAllUp(ctx, h.cluster, h.client); err != nil {
		h.found.add(scenario, "not every process came back: %v", err)
	}
	if err := waitSettled(ctx, h.db, nil, h.opts.settleTimeout); err != nil {
		h.found.add(scenario, "%v", err)
	}
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

// waitSettled polls until none of the orders ids (nil: of all orders) is
// pending, or limit passes.
func waitSettled(ctx context.Context, db *sql.DB, ids []string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	pending := -1
	for {
		n, err := countPending(ctx, db, ids)
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
