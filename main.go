// Command orderstream places orders over HTTP and reserves their stock
// through a transactional outbox, Redis Streams and a durable inbox.
//
//	orderstream [all|api|forwarder|worker|migrate]
//
// Configuration comes from the environment; see the README.
package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/logging"
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/migrations"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/router"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "orderstream:", err)
		os.Exit(1)
	}
}

const usage = `usage: orderstream [command]

commands:
  all        the API, the forwarder and the worker in one process (default)
  api        the HTTP API
  forwarder  moves events from the outbox to Redis Streams
  worker     the message handlers (inventory and orders)
  migrate    applies the database migrations and exits

  outbox status                    what the forwarder has not moved yet, and where
                                   each consumer group is in each stream
  outbox realign                   after a pg_dump/restore or logical copy into
                                   another cluster: makes the copied outbox
                                   readable by the forwarder again
  deadletters list                 the messages that could not be handled
  deadletters replay ID... | --all puts dead letters back on their stream (same
                                   UUID: the inbox still deduplicates)

Configuration comes from the environment (DATABASE_URL, REDIS_URL, HTTP_ADDR,
ADMIN_TOKEN, LOG_LEVEL, LOG_FORMAT, ...); see the README for the full list.`

// serveCommands run until stopped; the others do one thing and exit.
var (
	serveCommands = []string{"all", "api", "forwarder", "worker"}
	adminCommands = []string{"migrate", "outbox status", "outbox realign", "deadletters list", "deadletters replay"}
)

// parseCommand splits args into a command, such as "worker" or "outbox
// status", and its arguments; ok is false when they name no command. Only
// "deadletters replay" takes arguments.
func parseCommand(args []string) (cmd string, rest []string, ok bool) {
	if len(args) == 0 {
		return "all", nil, true
	}
	if slices.Contains(serveCommands, args[0]) || slices.Contains(adminCommands, args[0]) {
		return args[0], nil, len(args) == 1
	}
	if len(args) >= 2 && slices.Contains(adminCommands, args[0]+" "+args[1]) {
		cmd = args[0] + " " + args[1]
		return cmd, args[2:], len(args) == 2 || cmd == "deadletters replay"
	}
	return "", nil, false
}

// run is the whole program: it returns when ctx is done and every part has
// shut down, when a part fails, or when a one-off command is done.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 1 && slices.Contains([]string{"help", "-h", "--help"}, args[0]) {
		fmt.Fprintln(stdout, usage)
		return nil
	}
	cmd, rest, ok := parseCommand(args)
	if !ok {
		return fmt.Errorf("unknown command %q\n\n%s", strings.Join(args, " "), usage)
	}
	serve := slices.Contains(serveCommands, cmd)
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	logger, err := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	redisOpts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}

	db, err := openDatabase(ctx, cfg, logger,
		postgres.IdleInTransactionTimeout(cfg.DBIdleInTransactionTimeout), postgres.ApplicationName("orderstream "+cmd))
	if err != nil {
		return err
	}
	defer db.Close()
	// Schema before serving: the outbox table must exist before the first
	// order is placed, and a publisher on a transaction cannot create it.
	if err := migrations.Apply(ctx, db, logger); err != nil {
		return err
	}
	if cmd == "migrate" {
		return nil
	}

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
	rdb := redis.NewClient(redisOpts) // for reads: readiness, backlog, clean-up, dead letters
	defer rdb.Close()
	a := app{
		cfg:    cfg,
		logger: logger,
		db:     db,
		rdb:    rdb,
		streams: events.Streams{
			Redis:      redisOpts,
			Prefix:     cfg.StreamPrefix,
			ClaimIdle:  cfg.StreamClaimIdle,
			NackResend: cfg.HandlerTimeout / 10,
			Consumers:  cfg.WorkerConcurrency,
			Logger:     logging.Watermill(logger),
			// A stopping worker's handlers finish within it.
			StopTimeout: cfg.ShutdownTimeout,
		},
		metrics:   m,
		tracer:    tracer,
		live:      router.NewLive(),
		orders:    orders.NewService(db, orders.WithSettled(func(d time.Duration) { m.OrderSettle.Observe(d.Seconds()) })),
		inventory: inventory.NewService(db),
	}
	if !serve {
		return a.admin(ctx, cmd, rest, stdout)
	}
	events.WarnIfNotDurable(ctx, rdb, logger) // the forwarder's acks rely on Redis keeping what it acknowledged
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
	var notifier *events.CommitNotifier
	if cmd == "all" || cmd == "api" || cmd == "worker" {
		// Orders and handlers publish events: wake the forwarders once
		// they commit.
		notifier = events.NewCommitNotifier(db, a.streams.Logger)
		ctx = events.WithCommitNotifier(ctx, notifier)
	}
	if cmd == "all" || cmd == "api" {
		g.Go(commits(func() error { return a.serveHTTP(ctx) }))
		// The API process reports the backlog: it must be seen most when
		// the forwarder or the workers are down.
		g.Go(func() error { a.watch(ctx); return nil })
	}
	if cmd == "all" || cmd == "forwarder" {
		g.Go(func() error { return a.forward(ctx) })
		g.Go(func() error { a.cleanUp(ctx); return nil })
	}
	if cmd == "all" || cmd == "worker" {
		g.Go(commits(func() error { return a.handleMessages(ctx) }))
	}
	if (cmd == "forwarder" || cmd == "worker") && cfg.MetricsAddr != "" {
		g.Go(func() error { return a.serveMetrics(ctx) })
	}
	if notifier != nil {
		notifyCtx, stopNotifier := context.WithCancel(context.WithoutCancel(ctx))
		g.Go(func() error { notifier.Run(notifyCtx); return nil })
		g.Go(func() error { committing.Wait(); stopNotifier(); return nil })
	}
	logger.Info("orderstream started", "command", cmd, "http_addr", cfg.HTTPAddr)
	err = g.Wait()
	logger.Info("orderstream stopped", "command", cmd)
	return err
}

// openDatabase connects to the database, waiting up to cfg.StartupTimeout
// while it cannot be reached: under docker compose or an orchestrator, the
// database may come up after the process.
func openDatabase(ctx context.Context, cfg config, logger *slog.Logger, opts ...postgres.Option) (*sql.DB, error) {
	deadline := time.Now().Add(cfg.StartupTimeout)
	for {
		db, err := postgres.Open(ctx, cfg.DatabaseURL, cfg.DBMaxConns, opts...)
		if err == nil || !postgres.IsUnavailable(err) || time.Now().After(deadline) {
			return db, err
		}
		logger.Warn("waiting for the database", "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
