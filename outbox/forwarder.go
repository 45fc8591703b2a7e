package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/components/metrics"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
)

// ForwarderConfig tunes how the forwarder reads the outbox.
type ForwarderConfig struct {
	// DatabaseURL, when set, is used to listen for the notification that
	// events were committed, so the forwarder moves them at once. Without
	// it, only Wake (a CommitNotifier of the same process) does.
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

// Forwarder moves events from the outbox table to their Redis streams, each
// at least once: a row's offset is acked only after Redis accepted it.
type Forwarder struct {
	fwd    *forwarder.Forwarder
	db     *sql.DB
	out    message.Publisher
	logger watermill.LoggerAdapter
	dsn    string
	wake   chan struct{}
	done   chan struct{}
}

// NewForwarder reads the outbox as the consumer group "forwarder".
// Forwarders running at once take turns: each poll locks the group's offsets
// row, so a second one is a hot standby.
func NewForwarder(db *sql.DB, streams redisstreams.Config, cfg ForwarderConfig) (*Forwarder, error) {
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider()
	}
	f := &Forwarder{logger: streams.Logger, dsn: cfg.DatabaseURL, wake: make(chan struct{}, 1), done: make(chan struct{})}
	var backoff wsql.BackoffManager = &outboxWaker{wake: f.wake, done: f.done, fallback: cfg.PollInterval,
		errors: wsql.NewDefaultBackoffManager(cfg.PollInterval, time.Second)}
	if cfg.Metrics != nil {
		polls := prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "orderstream", Name: "outbox_polls_total",
			Help: "Outbox polls (one transaction each) by outcome: rows found, none found, or failed.",
		}, []string{"outcome"})
		if err := cfg.Metrics.Register(polls); err != nil {
			return nil, fmt.Errorf("register forwarder metrics: %w", err)
		}
		backoff = countPolls{backoff, polls}
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = redisstreams.DefaultStopTimeout
	}
	sub, err := newFinishingOutbox(db, cfg, backoff, streams.Logger)
	if err != nil {
		return nil, err
	}
	out, err := streams.Publisher()
	if err != nil {
		return nil, errors.Join(err, sub.Close())
	}
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.StopTimeout}, streams.Logger)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("create forwarder router: %w", err), sub.Close(), out.Close())
	}
	if cfg.Metrics != nil {
		// The router's own metrics cover the handler and the subscriber;
		// the Redis publisher is not the router's, so it is decorated here
		// to show the publish time.
		b := metrics.NewPrometheusMetricsBuilder(cfg.Metrics, "orderstream", "watermill")
		b.AddPrometheusRouterMetrics(r)
		if out, err = b.DecoratePublisher(out); err != nil {
			return nil, errors.Join(fmt.Errorf("measure forwarder publisher: %w", err), sub.Close())
		}
	}
	fwd, err := forwarder.NewForwarder(sub, out, streams.Logger, forwarder.Config{
		Router:         r,
		ForwarderTopic: events.OutboxTopic,
		HandlerName:    forwarderHandler,
		Middlewares:    []message.HandlerMiddleware{inspectEnvelope(out, cfg.Tracer)},
		// What cannot be unwrapped fails, to be dead-lettered by
		// inspectEnvelope.
		Marshaler: envelopeMarshaler{},
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("create forwarder: %w", err), sub.Close(), out.Close())
	}
	f.fwd, f.out = fwd, out
	f.db = db
	return f, nil
}

const (
	forwarderGroup   = "forwarder"
	forwarderHandler = "outbox_forwarder"
)

// Run forwards until ctx is done, then finishes the batch in hand.
func (f *Forwarder) Run(ctx context.Context) error {
	// Not on an outbox copied from another cluster: it would skip what is
	// written here (see Misalignment).
	if err := f.checkAlignment(ctx); err != nil && ctx.Err() == nil {
		return errors.Join(fmt.Errorf("start forwarder: %w", err), f.out.Close())
	}
	if f.dsn != "" {
		listenOutbox(ctx, f.dsn, f.wake, f.logger)
	}
	go func() { <-ctx.Done(); close(f.done) }()
	err := f.fwd.Run(ctx)
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

// Wake makes the forwarder look at the outbox now, if it is waiting for
// events to be committed; it never blocks.
func (f *Forwarder) Wake() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// countPolls counts the polls of the backoff manager it wraps, which
// watermill-sql calls once after each.
type countPolls struct {
	wsql.BackoffManager
	polls *prometheus.CounterVec
}

func (c countPolls) HandleError(logger watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	outcome := "rows"
	switch {
	case err != nil:
		outcome = "error"
	case noMsg:
		outcome = "empty"
	}
	c.polls.WithLabelValues(outcome).Inc()
	return c.BackoffManager.HandleError(logger, noMsg, err)
}

// Running is closed once the forwarder has subscribed to the outbox.
func (f *Forwarder) Running() chan struct{} { return f.fwd.Running() }
