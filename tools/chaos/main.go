// Command chaos checks orderstream's guarantees under faults. It starts its
// own PostgreSQL and Redis, runs two apis, two forwarders and three workers
// as separate processes of the binary given with -bin (the events spread
// over four outbox shards that the forwarders share; the clients send to
// the two apis in turn), and runs scenarios
// against them one after another, each placing orders from concurrent
// clients that retry with the same Idempotency-Key, each order with its
// customer's token (a JWT signed with the run's own AUTH_JWT_SECRET; the
// rate limits are off):
//
//   - crash: while the orders go in, a random process is SIGKILLed every few
//     seconds, Redis is SIGKILLed and PostgreSQL stopped with pg_ctl stop -m
//     immediate (crash recovery at the next start) several times each, and
//     network faults (latency, connections reset, a link dark, a bandwidth
//     limit) strike one process's link to PostgreSQL or Redis at a time;
//   - lock: one SKU's stock row is held FOR UPDATE for a minute, then a
//     session sits idle in a transaction; the orders already on their
//     stream must not wait for the lock (but for the locked SKU's), the
//     ones placed meanwhile only until it ends;
//   - graceful: processes are stopped with SIGTERM and started again; a
//     graceful stop must leave nothing pending and redeliver nothing;
//   - lost: with the workers paused, Redis is SIGKILLed and started on a
//     copy of its data taken before orders whose OrderPlaced it had
//     acknowledged; those orders must still settle, re-driven once pending
//     for ORDER_SETTLE_TIMEOUT (1 min unless the environment sets it);
//   - failover: processes of the scenario's own run against a Redis master,
//     its replica and three Sentinels (REDIS_URL redis-sentinel://…,
//     REDIS_WAIT_REPLICAS=1); under load the master is SIGKILLed and the
//     Sentinels promote the replica; every order must settle through it;
//   - soak (only when named, and alone: make soak): one api, one forwarder
//     and one worker take -soak-rate orders a second for -soak-for with no
//     fault, PostgreSQL syncing its commits; every -soak-every each
//     process's memory and goroutines, the sizes of the tables and streams
//     that grow, and the settle p50/p99 are sampled, and the tables written
//     into -soak-out.
//
// Then it checks, through the database and the API, that every order
// settled exactly once, that stock adds up, and that an order is shown to
// its customer and to no other.
//
// With -pgbouncer the processes reach PostgreSQL through a PgBouncer of the
// harness's own in transaction pooling mode (DATABASE_URL, with
// DATABASE_POOLER=pgbouncer) and PostgreSQL itself for what needs a session
// of its own (DATABASE_SESSION_URL), under the same scenarios and faults;
// the checks read PostgreSQL directly.
//
// It prints one summary line, PASS or FAIL with the count of each fault and
// the verdict of each scenario, followed by each violation, and exits
// non-zero on any violation.
//
// make chaos builds it into bin/chaos and runs it from the repository root:
//
//	bin/chaos -bin bin/orderstream [-scenarios crash,lock,graceful,lost,failover] [-orders 5000] [-clients 16] [-rate 60]
//	    [-kill-every 3s] [-pg-crashes 3] [-redis-crashes 3] [-net-every 4s] [-lock-hold 1m] [-idle-hold 20s]
//	    [-graceful-orders 1500] [-term-every 4s] [-lost-orders 100] [-failover-orders 500] [-pgbouncer] [-keep] [-seed N]
//	bin/chaos -bin bin/orderstream -scenarios soak [-soak-for 1h] [-soak-rate 120] [-soak-every 1m] [-soak-out BENCHMARKS.md]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		if code == 0 {
			code = 2
		}
	}
	os.Exit(code)
}

// options are the command-line flags.
type options struct {
	bin            string
	scenarios      []string
	orders         int
	clients        int
	rate           float64
	killEvery      time.Duration
	pgCrashes      int
	redisCrashes   int
	netEvery       time.Duration
	lockHold       time.Duration
	idleHold       time.Duration
	gracefulOrders int
	termEvery      time.Duration
	lostOrders     int
	failoverOrders int
	soakFor        time.Duration
	soakRate       float64
	soakEvery      time.Duration
	soakOut        string
	pgbouncer      bool
	keep           bool
	seed           uint64
	orderTimeout   time.Duration
	settleTimeout  time.Duration
	apiSample      int

	// workerConcurrency is the processes' WORKER_CONCURRENCY (it passes
	// through to them): the consumers each worker runs.
	workerConcurrency int
}

func scenarioNames() []string {
	var names []string
	for _, s := range scenarios() {
		names = append(names, s.name)
	}
	return names
}

// defaultScenarios are those run unless -scenarios says otherwise: all but
// those that run alone.
func defaultScenarios() []string {
	var names []string
	for _, s := range scenarios() {
		if !s.alone {
			names = append(names, s.name)
		}
	}
	return names
}

// soaking says whether the run is the soak, which runs alone: a
// PostgreSQL that syncs its commits, and no network proxies.
func (o options) soaking() bool { return slices.Contains(o.scenarios, "soak") }

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var only string
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.bin, "bin", "bin/orderstream", "the orderstream binary to run")
	fs.StringVar(&only, "scenarios", strings.Join(defaultScenarios(), ","),
		"scenarios to run, comma-separated, in their fixed order; soak runs alone, and only when named")
	fs.IntVar(&o.orders, "orders", 5000, "orders the crash scenario places")
	fs.IntVar(&o.clients, "clients", 16, "concurrent HTTP clients")
	fs.Float64Var(&o.rate, "rate", 60,
		"orders started per second, so that the load lasts long enough for the chaos to hit it; 0: as fast as the clients go")
	fs.DurationVar(&o.killEvery, "kill-every", 3*time.Second,
		"mean time between SIGKILLs of a random process (each gap is drawn from ±1/3 of it); 0 kills nothing")
	fs.IntVar(&o.pgCrashes, "pg-crashes", 3, "times the crash scenario stops PostgreSQL with pg_ctl stop -m immediate")
	fs.IntVar(&o.redisCrashes, "redis-crashes", 3, "times the crash scenario kills Redis with SIGKILL")
	fs.DurationVar(&o.netEvery, "net-every", 4*time.Second,
		"mean time between the crash scenario's network faults (latency, reset, blackhole, bandwidth) on a random process's link to PostgreSQL, Redis or, with -pgbouncer, PgBouncer; 0: none")
	fs.DurationVar(&o.lockHold, "lock-hold", time.Minute, "how long the lock scenario holds a stock row FOR UPDATE")
	fs.DurationVar(&o.idleHold, "idle-hold", 20*time.Second, "how long the lock scenario's session sits idle in a transaction")
	fs.IntVar(&o.gracefulOrders, "graceful-orders", 1500, "orders the graceful scenario places")
	fs.DurationVar(&o.termEvery, "term-every", 4*time.Second,
		"mean time between SIGTERMs of the graceful scenario (each gap is drawn from ±1/3 of it); 0 stops nothing")
	fs.IntVar(&o.lostOrders, "lost-orders", 100, "orders whose OrderPlaced the lost scenario has Redis lose")
	fs.IntVar(&o.failoverOrders, "failover-orders", 500, "orders the failover scenario places, the Redis master killed when 30% of them are done")
	fs.DurationVar(&o.soakFor, "soak-for", time.Hour, "how long the soak places orders")
	fs.Float64Var(&o.soakRate, "soak-rate", 120,
		"orders a second the soak places: 25% of the raw pipeline that make bench measures (487 orders/s on a 2-core machine)")
	fs.DurationVar(&o.soakEvery, "soak-every", time.Minute, "how often the soak takes a sample")
	fs.StringVar(&o.soakOut, "soak-out", "", "a file to write the soak's tables into (between its markers, or at its end); \"\": none")
	fs.BoolVar(&o.pgbouncer, "pgbouncer", false,
		"run the processes through a PgBouncer in transaction pooling mode in front of PostgreSQL (DATABASE_URL, DATABASE_POOLER=pgbouncer), "+
			"PostgreSQL itself on DATABASE_SESSION_URL; it stays up across PostgreSQL's crashes")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, data) even when the run passes")
	fs.Uint64Var(&o.seed, "seed", 0, "random seed for orders, stock and chaos (0: from the clock)")
	fs.DurationVar(&o.orderTimeout, "order-timeout", 2*time.Minute, "the most one order may take to be accepted, retries included")
	fs.DurationVar(&o.settleTimeout, "settle-timeout", 3*time.Minute, "the most to wait after the load for every order to leave pending")
	fs.IntVar(&o.apiSample, "api-sample", 200, "orders checked through GET /orders/{id}")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	for _, name := range strings.Split(only, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		if !slices.Contains(scenarioNames(), name) {
			return o, fmt.Errorf("-scenarios: unknown scenario %q (known: %s)", name, strings.Join(scenarioNames(), ", "))
		}
		o.scenarios = append(o.scenarios, name)
	}
	o.workerConcurrency = 8 // the application's default
	if v := os.Getenv("WORKER_CONCURRENCY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return o, fmt.Errorf("WORKER_CONCURRENCY=%q: want a positive number", v)
		}
		o.workerConcurrency = n
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	case len(o.scenarios) == 0:
		return o, errors.New("-scenarios names none")
	case o.orders < 1 || o.clients < 1 || o.gracefulOrders < 1 || o.lostOrders < 1 || o.failoverOrders < 1:
		return o, errors.New("-orders, -graceful-orders, -lost-orders, -failover-orders and -clients must be at least 1")
	case o.killEvery < 0 || o.termEvery < 0 || o.netEvery < 0 || o.rate < 0 || o.pgCrashes < 0 || o.redisCrashes < 0:
		return o, errors.New("-kill-every, -term-every, -net-every, -rate, -pg-crashes and -redis-crashes must not be negative")
	case o.lockHold <= 0 || o.idleHold <= 0:
		return o, errors.New("-lock-hold and -idle-hold must be positive")
	case o.soaking() && len(o.scenarios) > 1:
		return o, errors.New("-scenarios: soak runs alone")
	case o.soaking() && (o.soakFor <= 0 || o.soakRate <= 0 || o.soakEvery <= 0):
		return o, errors.New("-soak-for, -soak-rate and -soak-every must be positive")
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	return o, nil
}

// run returns the exit code: 0 when every guarantee held, 1 on a violation,
// 2 when the run itself could not be carried out.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return 2, err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	bin, err := checkBinary(opts.bin)
	if err != nil {
		return 2, err
	}
	dir, err := os.MkdirTemp("", "orderstream-chaos-")
	if err != nil {
		return 2, fmt.Errorf("create temp dir: %w", err)
	}
	// The servers run as another user when we are root; they must reach
	// their directories inside this one.
	if err := os.Chmod(dir, 0o755); err != nil {
		return 2, fmt.Errorf("open temp dir: %w", err)
	}
	logger.Info("chaos: starting", "dir", dir, "seed", opts.seed, "orders", opts.orders, "clients", opts.clients)

	rep, err := runScenario(ctx, logger, opts, bin, dir)
	if err != nil {
		// What the processes and servers logged says why.
		fmt.Fprintf(stdout, "chaos: logs and data kept in %s\n", dir)
		return 2, err
	}
	rep.print(stdout)
	if opts.keep || !rep.passed() {
		fmt.Fprintf(stdout, "chaos: logs and data kept in %s\n", dir)
	} else if err := os.RemoveAll(dir); err != nil {
		logger.Warn("chaos: remove temp dir", "dir", dir, "err", err)
	}
	if !rep.passed() {
		return 1, nil
	}
	return 0, nil
}

// checkBinary returns the absolute path of the orderstream binary, so that
// it runs the same from any directory.
func checkBinary(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("locate -bin %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case err != nil:
		return "", fmt.Errorf("-bin %s: %w (build it with: go build -o bin/orderstream .)", path, err)
	case fi.IsDir() || fi.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("-bin %s is not an executable file", path)
	}
	return abs, nil
}

// runScenario brings everything up, runs the load under chaos, tears the
// processes and servers down (also when it fails or is interrupted), and
// returns what it saw.
func runScenario(ctx context.Context, logger *slog.Logger, opts options, bin, dir string) (*report, error) {
	start := time.Now()
	pg, err := startPostgres(ctx, logger, dir, opts.soaking())
	if err != nil {
		return nil, err
	}
	defer pg.stop(logger)
	rd, err := startRedis(ctx, logger, dir)
	if err != nil {
		return nil, err
	}
	defer rd.stop(logger)
	at := servers{databaseURL: pg.url(dbName), redisURL: rd.url()}
	var pooler *pgBouncer
	if opts.pgbouncer {
		if pooler, err = startPgBouncer(ctx, logger, dir, pg); err != nil {
			return nil, err
		}
		defer pooler.stop(logger)
		at.databaseURL, at.sessionURL = pooler.url(dbName), pg.url(dbName)
	}

	// Every process reaches each server through a proxy of its own, for
	// the network faults (with -net-every 0 they reach the servers
	// directly).
	f := newFaults(faultKinds...)
	var nw *network
	route := func(string) (servers, error) { return at, nil }
	if opts.netEvery > 0 && !opts.soaking() {
		nw = newNetwork(logger, at, opts.netEvery, f)
		defer nw.close()
		route = nw.route
	}
	creds := newCredentials()
	// Every client of the harness connects from 127.0.0.1: the bound on
	// one address's connections must hold all of them.
	conns := fmt.Sprintf("HTTP_MAX_CONNS_PER_CLIENT=%d", max(64, 4*(opts.clients+4)))
	// The failover scenario's processes reach a Redis of its own, and
	// PostgreSQL without the proxies.
	spawn := func(dir, redisURL string, env ...string) (*cluster, error) {
		own := at
		own.redisURL = redisURL
		return startCluster(logger, bin, dir, chaosShape, func(string) (servers, error) { return own, nil },
			append(append(creds.env(), conns), env...)...)
	}
	sh := chaosShape
	if opts.soaking() {
		sh = soakShape
	}
	cluster, err := startCluster(logger, bin, dir, sh, route, append(creds.env(), conns)...)
	if err != nil {
		return nil, err
	}
	defer cluster.stop()

	rep := &report{seed: opts.seed}
	if pooler != nil {
		rep.pooler = "pgbouncer"
	}
	if err := exercise(ctx, logger, opts, cluster, creds, pg, pooler, rd, nw, f, rep, dir, spawn); err != nil {
		return nil, err
	}
	rep.duration = time.Since(start)
	return rep, nil
}
