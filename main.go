// Command orderstream places orders over HTTP and reserves their stock
// through a transactional outbox, Redis Streams and a durable inbox.
//
//	orderstream [all|api|forwarder|worker|migrate] [--help]
//	orderstream migrate status | outbox status | deadletters list | version [--json]
//	orderstream outbox realign | deadletters replay ID... | --all
//	orderstream token SUBJECT [--admin] [--ttl DURATION]  (development only)
//
// Configuration comes from the environment; see docs/operating.md.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/orderstream/orderstream/auth"
	"github.com/orderstream/orderstream/internal/buildinfo"
	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/live"
	"github.com/orderstream/orderstream/logging"
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
	"github.com/orderstream/orderstream/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "orderstream:", err)
		stop()
		os.Exit(exitStatus(err))
	}
}

// run is the whole program: it returns when ctx is done and every part has
// shut down, when a part fails, or when a one-off command is done.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	inv, err := parseArgs(args)
	if err != nil {
		return err
	}
	switch {
	case inv.help && inv.cmd.name == "":
		fmt.Fprintln(stdout, usage())
		return nil
	case inv.help:
		fmt.Fprintln(stdout, inv.cmd.usage())
		return nil
	case inv.cmd.name == "version":
		// Before the configuration: the build is the same whatever the
		// environment says.
		return printVersion(stdout, buildinfo.Read(), inv.json)
	case inv.cmd.name == "handlers list":
		// The list is data: no environment, no services.
		return listHandlers(stdout, (&app{}).subscriptions(), inv.json)
	}
	cmd := inv.cmd.name
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	if cmd == "token" {
		return mintToken(stdout, cfg, inv)
	}
	logger, err := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	redisOpts, err := redisstreams.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	redis.SetLogger(logging.Redis(logger)) // go-redis has one logger per process

	if !inv.cmd.serve && cmd != "migrate" {
		return operate(ctx, inv, cfg, logger, redisOpts, stdout, stderr)
	}

	if inv.cmd.serve {
		if err := cfg.checkSecrets(cmd); err != nil {
			return err
		}
	}
	// Schema before serving: the outbox table must exist before the first
	// order is placed, and a publisher on a transaction cannot create it.
	if err := migrate(ctx, cfg, logger, cmd); err != nil {
		return err
	}
	if cmd == "migrate" {
		return nil
	}
	db, err := openPool(ctx, cfg, logger,
		postgres.IdleInTransactionTimeout(cfg.DBIdleInTransactionTimeout), postgres.ApplicationName("orderstream "+cmd))
	if err != nil {
		return err
	}
	defer db.Close()

	tracer, shutdownTracing, err := newTracerProvider(ctx, cfg.OTLPEndpoint, cfg.ServiceName)
	if err != nil {
		return err
	}
	defer func() {
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(flushCtx); err != nil {
			logger.Warn("flushing traces failed", "err", err)
		}
	}()
	m := metrics.New()
	a := app{
		cfg:     cfg,
		logger:  logger,
		db:      db,
		metrics: m,
		tracer:  tracer,
		live:    live.New(),
		orders: orders.NewService(db, orders.WithSettled(func(d time.Duration) { m.OrderSettle.Observe(d.Seconds()) }),
			orders.WithIdempotencyTTL(cfg.IdempotencyKeyTTL)),
		inventory: inventory.NewService(db),
	}
	a.streams = newStreams(cfg, redisOpts, logger, worker.ConsumedStreams(a.subscriptions()))
	a.rdb = a.streams.NewClient() // for reads (readiness, backlog, clean-up, dead letters) and replays
	defer a.rdb.Close()
	redisstreams.WarnIfNotDurable(ctx, a.rdb, logger) // the forwarder's acks rely on Redis keeping what it acknowledged
	g, ctx := errgroup.WithContext(ctx)
	// Everything starts to stop at once, when ctx is done, and has
	// SHUTDOWN_TIMEOUT to finish what it started: the HTTP requests in
	// flight, the messages in hand, the forwarder's batch. Only the commit
	// notifier stops later, once the parts that commit events have stopped
	// (the API taking orders, the handlers in flight), so that their last
	// commits still wake the forwarders. The database closes after all.
	var committing sync.WaitGroup
	commits := func(part func() error) func() error {
		committing.Add(1)
		return func() error { defer committing.Done(); return part() }
	}
	// Orders and handlers spread their events over the outbox's shards.
	ctx = postgres.WithOutboxShards(ctx, cfg.OutboxShards)
	var notifier *outbox.CommitNotifier
	if cmd == "all" || cmd == "api" || cmd == "worker" {
		// Orders and handlers publish events: wake the forwarders once
		// they commit.
		if notifier, err = outbox.NewCommitNotifier(db, a.streams.Logger, m.Registry); err != nil {
			return err
		}
		ctx = outbox.WithCommitNotifier(ctx, notifier)
	}
	if cmd == "all" || cmd == "api" {
		if a.auth, err = auth.New(ctx, cfg.authConfig()); err != nil {
			return err
		}
		g.Go(commits(func() error { return a.serveHTTP(ctx) }))
		// The API process reports the backlog: it must be seen most when
		// the forwarder or the workers are down.
		g.Go(func() error { a.watcher().Run(ctx); return nil })
	}
	if cmd == "all" || cmd == "forwarder" {
		g.Go(func() error { return a.forward(ctx, notifier) })
		g.Go(func() error { a.janitor().Run(ctx); return nil })
		g.Go(func() error { a.redriver().Run(ctx); return nil })
	}
	if cmd == "all" || cmd == "worker" {
		g.Go(commits(func() error { return a.handleMessages(ctx, a.subscriptions()) }))
	}
	if cfg.OpsAddr != "" {
		g.Go(func() error { return a.serveOps(ctx, cmd == "all" || cmd == "api") })
	}
	if notifier != nil {
		notifyCtx, stopNotifier := context.WithCancel(context.WithoutCancel(ctx))
		g.Go(func() error { notifier.Run(notifyCtx); return nil })
		g.Go(func() error { committing.Wait(); stopNotifier(); return nil })
	}
	logger.Info("orderstream started", "command", cmd, "http_addr", cfg.HTTPAddr, "ops_addr", cfg.OpsAddr)
	err = g.Wait()
	logger.Info("orderstream stopped", "command", cmd)
	return err
}

// newStreams describes the Redis streams as cfg configures them, consumed
// those that the handlers read.
func newStreams(cfg config, redisOpts *redis.UniversalOptions, logger *slog.Logger, consumed []string) redisstreams.Config {
	return redisstreams.Config{
		Redis:      redisOpts,
		Prefix:     cfg.StreamPrefix,
		Consumed:   consumed,
		ClaimIdle:  cfg.StreamClaimIdle,
		NackResend: cfg.HandlerTimeout / 10,
		Consumers:  cfg.WorkerConcurrency,
		Logger:     logging.Watermill(logger),
		// A stopping worker's handlers finish within it.
		StopTimeout:  cfg.ShutdownTimeout,
		WaitReplicas: cfg.RedisWaitReplicas,
		WaitTimeout:  cfg.RedisWaitTimeout,
	}
}
