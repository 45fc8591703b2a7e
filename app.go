package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderstream/orderstream/activity"
	"github.com/orderstream/orderstream/auth"
	"github.com/orderstream/orderstream/httpapi"
	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/live"
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/parked"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
	"github.com/orderstream/orderstream/worker"
)

// app holds what the parts of the program share.
type app struct {
	cfg       config
	logger    *slog.Logger
	db        *sql.DB
	rdb       redis.UniversalClient
	streams   redisstreams.Config
	metrics   *metrics.Metrics
	tracer    trace.TracerProvider
	live      *live.Live
	auth      *auth.Verifier // nil: a process without the API
	orders    *orders.Service
	inventory *inventory.Service
}

// serveHTTP serves the public API on HTTP_ADDR, its connections bounded
// in all and per client.
func (a *app) serveHTTP(ctx context.Context) error {
	return a.serve(ctx, a.cfg.HTTPAddr, httpapi.New(a.httpConfig()), func(l net.Listener) net.Listener {
		return httpapi.LimitConnections(l, a.cfg.HTTPMaxConns, a.cfg.HTTPMaxConnsPerClient, a.cfg.TrustedProxies)
	})
}

// serveOps serves the operations listener on OPS_ADDR: metrics, detailed
// readiness and profiles, and in a process with the API the live page and
// dead-letter replay.
func (a *app) serveOps(ctx context.Context, withAPI bool) error {
	var ops httpapi.Ops
	if withAPI {
		ops = httpapi.Ops{
			Live:             a.live,
			ReplayDeadLetter: func(ctx context.Context, id string) error { return a.streams.ReplayID(ctx, a.rdb, id) },
			Story:            a.readStory,
		}
	}
	return a.serve(ctx, a.cfg.OpsAddr, httpapi.NewOps(a.httpConfig(), ops), nil)
}

// httpConfig is what both listeners share.
func (a *app) httpConfig() httpapi.Config {
	return httpapi.Config{
		Orders:     a.orders,
		Inventory:  a.inventory,
		Auth:       a.auth,
		AdminToken: a.cfg.AdminToken,
		Limits: httpapi.Limits{
			Redis: a.rdb, Prefix: a.cfg.StreamPrefix,
			PerSecond: a.cfg.RateLimitPerS, Burst: a.cfg.RateLimitBurst,
			// Half the pool at most for listings: placements and reads
			// keep the rest.
			Listings: max(2, a.cfg.DBMaxConns/2),
		},
		TrustedProxies: a.cfg.TrustedProxies,
		Checks: map[string]func(context.Context) error{
			"postgres": a.db.PingContext,
			"redis":    func(ctx context.Context) error { return a.rdb.Ping(ctx).Err() },
		},
		Metrics:        a.metrics,
		Tracer:         a.tracer,
		Logger:         a.logger,
		RequestTimeout: a.cfg.RequestTimeout,
	}
}

// serve serves h on addr until ctx is done, then stops accepting and lets
// the requests in flight finish, within the shutdown timeout; the live
// page's event streams, which would not end by themselves, are ended.
// limit, when not nil, wraps the listener.
func (a *app) serve(ctx context.Context, addr string, h http.Handler, limit func(net.Listener) net.Listener) error {
	srv := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		// Far more than any request of the API needs (its largest headers
		// are a bearer token, an Idempotency-Key of 255 and an
		// X-Request-ID of 128 bytes), far less than net/http's 1 MiB.
		MaxHeaderBytes: maxHeaderBytes,
		ReadTimeout:    15 * time.Second,
		WriteTimeout:   a.cfg.RequestTimeout + 5*time.Second,
		IdleTimeout:    60 * time.Second,
		ErrorLog:       slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
		// Requests see ctx's values (the commit notifier), not its end: a
		// request in flight at shutdown finishes.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	srv.RegisterOnShutdown(a.live.Close)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("serve http on %s: %w", addr, err)
	}
	if limit != nil {
		l = limit(l)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http on %s: %w", addr, err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down http: %w", err)
	}
	return nil
}

// watcher reads the backlog for the metrics and the live page.
func (a *app) watcher() live.Watcher {
	return live.Watcher{
		DB: a.db, Redis: a.rdb, Streams: a.streams, Orders: a.orders, Inventory: a.inventory,
		Metrics: a.metrics, Live: a.live, Logger: a.logger, Interval: a.cfg.MetricsInterval,
	}
}

// janitor is the clean-up of the outbox, the inbox, the streams and the
// expired idempotency keys, as the configuration sets it.
func (a *app) janitor() outbox.Janitor {
	return outbox.Janitor{
		DB: a.db, Redis: a.rdb, Streams: a.streams, Logger: a.logger, Interval: a.cfg.CleanupInterval,
		OutboxRetention: a.cfg.OutboxRetention, InboxRetention: a.cfg.InboxRetention, StreamRetention: a.cfg.StreamRetention,
		Also: []outbox.Cleanup{
			{What: "idempotency keys", Delete: a.orders.ForgetExpiredKeys},
			// A release guards against an OrderPlaced or OrderCancelled
			// handled late; an event older than the inbox's retention may
			// take effect again anyway.
			{What: "stock releases", Delete: func(ctx context.Context) (int64, error) {
				return a.inventory.ForgetReleases(ctx, a.cfg.InboxRetention)
			}},
		},
	}
}

// redriver is the process manager that re-drives the orders left
// unsettled past ORDER_SETTLE_TIMEOUT, with the outbox's events.
func (a *app) redriver() *orders.Redriver {
	for _, o := range orders.RedriveOutcomes {
		a.metrics.OrdersRedriven.WithLabelValues(o)
	}
	return &orders.Redriver{
		DB: a.db, After: a.cfg.OrderSettleTimeout, Logger: a.logger,
		Resend: func(ctx context.Context, tx *postgres.Tx, ids []string) ([]orders.Redriven, error) {
			found, err := outbox.Resend(ctx, tx, ids)
			out := make([]orders.Redriven, len(found))
			for i, f := range found {
				out[i] = orders.Redriven{OrderID: f.Key, Events: f.Rows, InFlight: f.InFlight}
			}
			return out, err
		},
		Counted: func(outcome string) { a.metrics.OrdersRedriven.WithLabelValues(outcome).Inc() },
		Behind:  a.consumersBehind,
	}
}

// consumersBehind names a consumer group that has not been handed an
// entry older than half of ORDER_SETTLE_TIMEOUT (its workers are down or
// slow), or says "" when none has.
func (a *app) consumersBehind(ctx context.Context) (string, error) {
	for _, s := range a.subscriptions() {
		age, err := a.streams.OldestUndelivered(ctx, a.rdb, s.Stream, s.Group)
		if err != nil {
			return "", err
		}
		if age > a.cfg.OrderSettleTimeout/2 {
			return fmt.Sprintf("group %s has not been handed an entry of %s added %s ago", s.Group, s.Stream, age.Round(time.Millisecond)), nil
		}
	}
	return "", nil
}

// forward runs the outbox forwarder until ctx is done. A notifier of the
// same process, when not nil, wakes it directly.
func (a *app) forward(ctx context.Context, notifier *outbox.CommitNotifier) error {
	listen, _ := a.cfg.sessionURL()
	f, err := outbox.NewForwarder(a.db, a.streams, outbox.ForwarderConfig{
		DatabaseURL:  listen,
		PollInterval: a.cfg.OutboxPollInterval,
		BatchSize:    a.cfg.OutboxBatchSize,
		Metrics:      a.metrics.Registry,
		Tracer:       a.tracer,
		StopTimeout:  a.cfg.ShutdownTimeout,
	})
	if err != nil {
		return err
	}
	if notifier != nil {
		notifier.WakesLocally(f)
	}
	return f.Run(ctx)
}

// maxHeaderBytes bounds a request's header lines, on every listener.
const maxHeaderBytes = 16 << 10

// handlersPool opens the pool the handlers write in, named name. The
// handlers get a pool of their own, whose lock waits and statements the
// server bounds too: a stock row held elsewhere fails an attempt in
// DB_LOCK_TIMEOUT. The rest of the process must not have those limits
// (migrations and the outbox's realignment may take long).
func (a *app) handlersPool(ctx context.Context, name string) (*sql.DB, error) {
	return openPool(ctx, a.cfg, a.logger, postgres.IdleInTransactionTimeout(a.cfg.DBIdleInTransactionTimeout),
		postgres.LockTimeout(a.cfg.DBLockTimeout), postgres.StatementTimeout(a.cfg.HandlerTimeout),
		postgres.ApplicationName(name))
}

// handleMessages runs the message router with subs until ctx is done.
func (a *app) handleMessages(ctx context.Context, subs []worker.Subscription) error {
	db, err := a.handlersPool(ctx, "orderstream worker")
	if err != nil {
		return err
	}
	defer db.Close()
	m, err := worker.NewMessages(worker.MessagesConfig{
		DB:             db,
		Streams:        a.streams,
		Subscriptions:  subs,
		Logger:         a.logger,
		Metrics:        a.metrics,
		Tracer:         a.tracer,
		HandlerTimeout: a.cfg.HandlerTimeout,
		MaxRetries:     a.cfg.HandlerMaxRetries,
		ParkBackoff:    parked.Backoff{Initial: a.cfg.ParkBackoffInitial, Max: a.cfg.ParkBackoffMax},
		SurfaceAfter:   a.cfg.ParkSurfaceAfter,
		CloseTimeout:   a.cfg.ShutdownTimeout,
		Activity:       activity.NewRecorder(a.streams, activity.RecorderConfig{Logger: a.logger, Dropped: a.metrics.ActivityDropped}),
	})
	if err != nil {
		return err
	}
	if err := m.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("handle messages: %w", err)
	}
	return nil
}
