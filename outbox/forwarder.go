package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/components/metrics"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
)

// ForwarderConfig tunes how the forwarder reads the outbox.
type ForwarderConfig struct {
	// DatabaseURL, when set, is used to listen for the notification that
	// events were committed, so the forwarder moves them at once. Without
	// it, only Wake (a CommitNotifier of the same process) does. LISTEN
	// needs a session of its own: not a pooler in transaction mode.
	DatabaseURL string
	// PollInterval is how long the forwarder waits before looking again at
	// an outbox it found empty (and was not woken).
	PollInterval time.Duration
	// BatchSize is how many outbox rows one poll reads.
	BatchSize int
	// Metrics, when set, receives Watermill's handler, subscriber and
	// publisher metrics of the forwarder.
	Metrics prometheus.Registerer
	// Tracer, when set, traces each hop from the outbox to a stream.
	Tracer trace.TracerProvider
	// StopTimeout is how long a graceful stop may take (SHUTDOWN_TIMEOUT;
	// 30 s when zero): the batch in hand is finished within most of it
	// (redisstreams.DrainTimeout), then abandoned.
	StopTimeout time.Duration
}

// Forwarder moves events from the outbox tables to their Redis streams,
// each at least once: a row's offset is acked only after Redis accepted it.
//
// Every shard of the outbox (postgres.MaxOutboxShards of them, whatever
// OUTBOX_SHARDS the writers use) is read by a loop of its own as the
// consumer group "forwarder" of its topic, so the shards are forwarded in
// parallel, each in order. Forwarders of several processes share them: a
// poll locks its shard's offsets row and skips a shard whose row another
// forwarder holds (skipLockedOffsets), so no shard is forwarded by two at
// once, and a shard whose forwarder stopped is taken by the next that
// looks.
type Forwarder struct {
	router *message.Router
	db     *sql.DB
	out    message.Publisher
	logger watermill.LoggerAdapter
	dsn    string
	// idle is how often the shards are checked for rows that no wake-up
	// announced (PollInterval).
	idle  time.Duration
	wakes [postgres.MaxOutboxShards]chan struct{}
	// commits fires at every wake-up: a commit was announced, which may
	// have moved the horizon that hides the rows of other shards.
	commits signal
	done    chan struct{}
	// ownNotifications is the origin of the notifications of this
	// process's CommitNotifier, which wakes the loops itself (WakesLocally).
	ownNotifications atomic.Pointer[string]
}

// NewForwarder reads every outbox shard as the consumer group "forwarder".
func NewForwarder(db *sql.DB, streams redisstreams.Config, cfg ForwarderConfig) (*Forwarder, error) {
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider()
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = redisstreams.DefaultStopTimeout
	}
	f := &Forwarder{db: db, logger: streams.Logger, dsn: cfg.DatabaseURL, idle: cfg.PollInterval, done: make(chan struct{})}
	var polls *prometheus.CounterVec
	if cfg.Metrics != nil {
		polls = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "orderstream", Name: "outbox_polls_total",
			Help: "Outbox polls (one transaction each) by shard and outcome: rows found, none found, or failed.",
		}, []string{"outcome", "shard"})
		if err := cfg.Metrics.Register(polls); err != nil {
			return nil, fmt.Errorf("register forwarder metrics: %w", err)
		}
	}
	out, err := streams.Publisher()
	if err != nil {
		return nil, err
	}
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.StopTimeout}, streams.Logger)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("create forwarder router: %w", err), out.Close())
	}
	if cfg.Metrics != nil {
		// The router's own metrics cover the handlers and the subscribers;
		// the Redis publisher is not the router's, so it is decorated here
		// to show the publish time.
		b := metrics.NewPrometheusMetricsBuilder(cfg.Metrics, "orderstream", "watermill")
		b.AddPrometheusRouterMetrics(r)
		if out, err = b.DecoratePublisher(out); err != nil {
			return nil, fmt.Errorf("measure forwarder publisher: %w", err)
		}
	}
	var subs []message.Subscriber
	fail := func(err error) (*Forwarder, error) {
		for _, s := range subs {
			err = errors.Join(err, s.Close())
		}
		return nil, errors.Join(err, out.Close())
	}
	for shard := range f.wakes {
		f.wakes[shard] = make(chan struct{}, 1)
		var backoff wsql.BackoffManager = &outboxWaker{wake: f.wakes[shard], done: f.done, fallback: cfg.PollInterval, spacing: pollSpacing, commits: &f.commits, beyond: f.beyond(shard),
			errors: wsql.NewDefaultBackoffManager(cfg.PollInterval, time.Second)}
		if polls != nil {
			backoff = countPolls{backoff, polls, strconv.Itoa(shard)}
		}
		sub, err := newFinishingOutbox(db, cfg, backoff, streams.Logger)
		if err != nil {
			return fail(err)
		}
		subs = append(subs, sub)
		_, err = forwarder.NewForwarder(sub, out, streams.Logger, forwarder.Config{
			Router:         r,
			ForwarderTopic: postgres.OutboxTopic(shard),
			HandlerName:    forwarderHandler(shard),
			Middlewares:    []message.HandlerMiddleware{inspectEnvelope(out, cfg.Tracer, shard)},
			// What cannot be unwrapped fails, to be dead-lettered by
			// inspectEnvelope.
			Marshaler: envelopeMarshaler{},
		})
		if err != nil {
			return fail(fmt.Errorf("create forwarder: %w", err))
		}
	}
	f.router, f.out = r, out
	return f, nil
}

const forwarderGroup = "forwarder"

// forwarderHandler names the router handler that forwards shard: Watermill
// labels its metrics and log lines with it.
func forwarderHandler(shard int) string {
	if shard == 0 {
		return "outbox_forwarder"
	}
	return fmt.Sprintf("outbox_forwarder_%d", shard)
}

// Run forwards until ctx is done, then finishes the batch in hand.
func (f *Forwarder) Run(ctx context.Context) error {
	// Not on an outbox copied from another cluster: it would skip what is
	// written here (see Misalignment).
	if err := f.checkAlignment(ctx); err != nil && ctx.Err() == nil {
		return errors.Join(fmt.Errorf("start forwarder: %w", err), f.out.Close())
	}
	if f.dsn != "" {
		listenOutbox(ctx, f.dsn, f, f.logger)
	}
	go func() { <-ctx.Done(); close(f.done) }()
	go f.watchIdle(ctx)
	err := f.router.Run(ctx)
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil // told to stop while still subscribing
	}
	return errors.Join(err, f.out.Close())
}

// checkAlignment checks the outbox's alignment, waiting while the database
// cannot answer, until ctx is done.
func (f *Forwarder) checkAlignment(ctx context.Context) error {
	return retryTransient(ctx, f.logger, "check the outbox's alignment", func() error {
		return CheckOutboxAlignment(ctx, f.db)
	})
}

// retryTransient calls fn until it succeeds, fails for a reason that does
// not pass (postgres.IsTransient), or ctx is done, waiting from 100 ms
// doubling to 5 s between two calls. A forwarder starting during an outage
// waits for the database, as its polls would, instead of exiting.
func retryTransient(ctx context.Context, logger watermill.LoggerAdapter, what string, fn func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil || !postgres.IsTransient(err) || ctx.Err() != nil {
			return err
		}
		logger.Error("Cannot "+what+" yet; retrying", err, watermill.LogFields{"retry_in": wait})
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// Wake makes the forwarder look at outbox shard now, if it is waiting for
// events to be committed there; it never blocks.
func (f *Forwarder) Wake(shard int) {
	if shard < 0 || shard >= len(f.wakes) {
		return
	}
	f.wakeShard(shard)
	f.commits.fire()
}

func (f *Forwarder) wakeShard(shard int) {
	select {
	case f.wakes[shard] <- struct{}{}:
	default:
	}
}

// WakeAll makes the forwarder look at every shard now.
func (f *Forwarder) WakeAll() {
	for shard := range f.wakes {
		f.wakeShard(shard)
	}
	f.commits.fire()
}

// countPolls counts the polls of the backoff manager it wraps, which
// watermill-sql calls once after each.
type countPolls struct {
	wsql.BackoffManager
	polls *prometheus.CounterVec
	shard string
}

func (c countPolls) HandleError(logger watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	outcome := "rows"
	switch {
	case err != nil:
		outcome = "error"
	case noMsg:
		outcome = "empty"
	}
	c.polls.WithLabelValues(outcome, c.shard).Inc()
	return c.BackoffManager.HandleError(logger, noMsg, err)
}

// Running is closed once the forwarder has subscribed to the outbox.
func (f *Forwarder) Running() chan struct{} { return f.router.Running() }
