package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

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
	orders    *orders.Service
	inventory *inventory.Service
}

func (a *app) serveHTTP(ctx context.Context) error {
	return a.serve(ctx, a.cfg.HTTPAddr, httpapi.New(httpapi.Config{
		Orders:     a.orders,
		Inventory:  a.inventory,
		AdminToken: a.cfg.AdminToken,
		Checks: map[string]func(context.Context) error{
			"postgres": a.db.PingContext,
			"redis":    func(ctx context.Context) error { return a.rdb.Ping(ctx).Err() },
		},
		Metrics:          a.metrics,
		Logger:           a.logger,
		RequestTimeout:   a.cfg.RequestTimeout,
		Live:             a.live,
		ReplayDeadLetter: func(ctx context.Context, id string) error { return a.streams.ReplayID(ctx, a.rdb, id) },
	}), a.live.Close)
}

// serveMetrics serves /metrics (and /healthz) for a process without the API.
func (a *app) serveMetrics(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	return a.serve(ctx, a.cfg.MetricsAddr, mux, nil)
}

// serveProfiles serves Go's runtime profiles (net/http/pprof) on
// PPROF_ADDR. A profile of the last N seconds must be shorter than the
// server's write timeout, HTTP_REQUEST_TIMEOUT + 5 s.
func (a *app) serveProfiles(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return a.serve(ctx, a.cfg.PprofAddr, mux, nil)
}

// serve serves h on addr until ctx is done, then stops accepting and lets
// the requests in flight finish, within the shutdown timeout. onShutdown,
// when not nil, is called as the shutdown begins, to end the requests that
// would not end by themselves (the live page's event streams).
func (a *app) serve(ctx context.Context, addr string, h http.Handler, onShutdown func()) error {
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
	if onShutdown != nil {
		srv.RegisterOnShutdown(onShutdown)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
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

// janitor is the clean-up of the outbox, the inbox and the streams, as the
// configuration sets it.
func (a *app) janitor() outbox.Janitor {
	return outbox.Janitor{
		DB: a.db, Redis: a.rdb, Streams: a.streams, Logger: a.logger, Interval: a.cfg.CleanupInterval,
		OutboxRetention: a.cfg.OutboxRetention, InboxRetention: a.cfg.InboxRetention, StreamRetention: a.cfg.StreamRetention,
	}
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
	})
	if err != nil {
		return err
	}
	if err := m.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("handle messages: %w", err)
	}
	return nil
}
