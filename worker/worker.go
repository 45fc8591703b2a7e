// Package worker runs the message handlers: the one Watermill router, on
// which every handler group of the list (Subscription) is a Watermill cqrs
// EventGroupProcessor group reading its stream as its consumer group, and
// the middleware around them: the inbox transaction, retries, parking,
// dead letters, the timeout, tracing, the log line of each attempt and its
// entry in the consumers' activity feed (package activity). The
// Runner delivers the messages handed to it through the same cqrs groups
// and attempt middleware (not the retries, parking or dead letters), each
// as it comes, for the handler test kit (worker/handlertest) and backfill.
package worker

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	wmetrics "github.com/ThreeDotsLabs/watermill/components/metrics"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/orderstream/orderstream/activity"
	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/logging"
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/parked"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
)

// MessagesConfig is what the message router needs.
type MessagesConfig struct {
	DB      *sql.DB
	Streams redisstreams.Config
	// Subscriptions are the handler groups, the one list (handlers.go).
	Subscriptions []Subscription
	Logger        *slog.Logger
	Metrics       *metrics.Metrics
	Tracer        trace.TracerProvider // nil: no tracing
	// HandlerTimeout bounds one attempt of a handler.
	HandlerTimeout time.Duration
	// MaxRetries is how often a failing handler is retried, with
	// exponential backoff, before its message is dead-lettered, or parked
	// when it failed for a passing reason.
	MaxRetries int
	// RetryInitial is the wait before the first retry (default 100 ms);
	// each retry waits twice as long as the one before, up to 5 s.
	RetryInitial time.Duration
	// ParkBackoff is how long a parked message waits before it is tried
	// again (default 1 s, doubling to 1 min); SurfaceAfter is how long it
	// may keep failing for a passing reason before each further failure is
	// logged as an error and counted (default 5 min).
	ParkBackoff  parked.Backoff
	SurfaceAfter time.Duration
	// CloseTimeout is how long a graceful stop may take (SHUTDOWN_TIMEOUT;
	// 30 s when zero): the handlers in flight finish within it.
	CloseTimeout time.Duration
	// Activity, when not nil, records each attempt at a message to the
	// consumers' activity feed; Run runs it, and stops it after the
	// handlers.
	Activity *activity.Recorder
}

// withDefaults fills in what cfg leaves zero (or, for the park backoff's
// Max, below Initial).
func (cfg MessagesConfig) withDefaults() MessagesConfig {
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider()
	}
	if cfg.RetryInitial <= 0 {
		cfg.RetryInitial = defaultRetryInitial
	}
	if cfg.ParkBackoff.Initial <= 0 {
		cfg.ParkBackoff.Initial = defaultParkInitial
	}
	if cfg.ParkBackoff.Max < cfg.ParkBackoff.Initial {
		cfg.ParkBackoff.Max = max(defaultParkMax, cfg.ParkBackoff.Initial)
	}
	if cfg.SurfaceAfter <= 0 {
		cfg.SurfaceAfter = defaultSurfaceAfter
	}
	return cfg
}

// Messages is the one Watermill router: every handler group, through
// Watermill's cqrs EventGroupProcessor, and the middleware around them.
type Messages struct {
	router      *message.Router
	deadLetter  message.Publisher
	parked      *parked.Store
	parkedRedis redis.UniversalClient
	streams     []string // the Redis keys of the streams handled
	activity    *activity.Recorder
	logger      *slog.Logger
}

// NewMessages registers the subscriptions of cfg, each reading its stream
// as a consumer of its group.
func NewMessages(cfg MessagesConfig) (*Messages, error) {
	cfg = cfg.withDefaults()
	if err := Check(cfg.Subscriptions); err != nil {
		return nil, err
	}
	wlog := logging.Watermill(cfg.Logger)
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout}, wlog)
	if err != nil {
		return nil, fmt.Errorf("create message router: %w", err)
	}
	deadLetter, err := cfg.Streams.Publisher()
	if err != nil {
		return nil, err
	}
	// Watermill's handler and subscriber metrics come with the router; the
	// dead-letter publisher is not the router's, so it is decorated to show
	// its publish time.
	measure := wmetrics.NewPrometheusMetricsBuilder(cfg.Metrics.Registry, metrics.Namespace, "watermill")
	if deadLetter, err = measure.DecoratePublisher(deadLetter); err != nil {
		return nil, fmt.Errorf("measure dead-letter publisher: %w", err)
	}
	poison, err := middleware.PoisonQueueWithFilter(deadLetter, events.StreamDeadLetter, deadLetterable)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("create dead-letter middleware: %w", err), deadLetter.Close())
	}

	store := parked.NewStore(cfg.DB, cfg.ParkBackoff, cfg.SurfaceAfter)

	// Outermost first: the delivery policy, then one attempt. A message put
	// back for another handler is acked at once. A message that still fails
	// after its retries, or that no retry can help, goes to the dead-letter
	// stream and is acked, so it never blocks its stream; one that failed
	// for a passing reason is parked and acked, to be put back on its
	// stream after a growing backoff, so it holds no consumer meanwhile
	// (nacked and delivered again only when it cannot be parked). Each
	// attempt goes to the activity feed once what came of it is known.
	r.AddMiddleware(
		skipParkedForOthers,
		poison,
		track(cfg.Activity),
		park(store, cfg.HandlerTimeout, cfg.Logger, cfg.Metrics),
		logDeadLetter(cfg.Logger),
		keepContext,
		middleware.Retry{
			MaxRetries:          cfg.MaxRetries,
			InitialInterval:     cfg.RetryInitial,
			MaxInterval:         5 * time.Second,
			Multiplier:          2,
			RandomizationFactor: 0.2,
			ResetContextOnRetry: true,
			ShouldRetry:         retryInProcess,
		}.Middleware,
	)
	// Watermill's handler and subscriber metrics: the handler's per
	// attempt, a refused one included.
	r.AddPublisherDecorators(measure.DecoratePublisher)
	r.AddSubscriberDecorators(measure.DecorateSubscriber)
	r.AddMiddleware(attempt(attemptConfig{
		DB: cfg.DB, Subscriptions: cfg.Subscriptions, Logger: cfg.Logger, Tracer: cfg.Tracer, Timeout: cfg.HandlerTimeout,
		OnDuplicate: func(handler string) { cfg.Metrics.InboxDuplicates.WithLabelValues(handler).Inc() },
		Measure:     measure.NewRouterMiddleware().Middleware,
	})...)

	m := &Messages{router: r, deadLetter: deadLetter, parked: store, parkedRedis: cfg.Streams.NewClient(),
		activity: cfg.Activity, logger: cfg.Logger}
	err = register(r, wlog, cfg.Subscriptions,
		func(s Subscription) string { return cfg.Streams.Name(s.Stream) },
		func(s Subscription) (message.Subscriber, error) { return cfg.Streams.Subscriber(s.Group) })
	if err != nil {
		return nil, errors.Join(err, deadLetter.Close(), m.parkedRedis.Close())
	}
	for _, stream := range ConsumedStreams(cfg.Subscriptions) {
		m.streams = append(m.streams, cfg.Streams.Name(stream))
	}
	for _, s := range cfg.Subscriptions {
		// Shown from the start, at 0.
		cfg.Metrics.InboxDuplicates.WithLabelValues(s.Name)
		cfg.Metrics.MessagesParked.WithLabelValues(s.Name)
		cfg.Metrics.MessagesParkedOverdue.WithLabelValues(s.Name)
	}
	return m, nil
}

// Run handles messages, and puts parked messages of its streams back once
// due, until ctx is done, then lets the handlers in flight finish, and
// writes their last activity.
func (m *Messages) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	republished := make(chan struct{})
	go func() {
		defer close(republished)
		m.parked.Republisher(m.parkedRedis, m.streams, m.logger).Run(ctx)
	}()
	recordCtx, stopRecording := context.WithCancel(context.WithoutCancel(ctx))
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		m.activity.Run(recordCtx)
	}()
	err := m.router.Run(ctx)
	cancel()
	stopRecording()
	<-republished
	<-recorded
	return errors.Join(err, m.deadLetter.Close(), m.parkedRedis.Close())
}

// Running is closed once every handler has subscribed.
func (m *Messages) Running() chan struct{} { return m.router.Running() }

// retryInProcess reports whether a failed attempt is worth retrying at
// once, holding its consumer: not a malformed message (no retry helps), nor
// a lock wait that ran out (the lock is held elsewhere, and a retry would
// wait for the same holder): that one is parked at once, and tried again
// when the lock frees.
func retryInProcess(p middleware.RetryParams) bool {
	return !errors.Is(p.Err, events.ErrMalformed) && !postgres.IsLockTimeout(p.Err)
}

// deadLetterable reports whether a handler's error is the message's own
// doing, so that the message goes to the dead-letter stream once its
// retries are spent. An error that passes with time (the database away, a
// timeout, a lock held elsewhere, a lost lock conflict, the worker shutting
// down) is not: the message is parked and tried again with a growing
// backoff until it is handled, so an outage never leaves an order pending.
func deadLetterable(err error) bool { return !Passing(err) }

// Passing reports whether a handler's error passes with time (the database
// away, a timeout, a lock held elsewhere, a lost lock conflict, the worker
// shutting down): the message is worth trying again.
func Passing(err error) bool {
	return postgres.IsTransient(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
