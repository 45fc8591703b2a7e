package worker

import (
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/postgres"
)

// attemptConfig is what one attempt at a message needs.
type attemptConfig struct {
	DB            *sql.DB
	Subscriptions []Subscription
	Logger        *slog.Logger
	Tracer        trace.TracerProvider // nil: no tracing
	Timeout       time.Duration        // of one attempt
	// OnDuplicate, when not nil, is called with the handler name of each
	// message the inbox finds handled already.
	OnDuplicate func(handler string)
	// Measure, when not nil, measures each attempt (Watermill's handler
	// metrics): inside the recovery from a panic, around everything that
	// can fail the attempt.
	Measure message.HandlerMiddleware
	// Inner, when not nil, runs inside the inbox's transaction, around the
	// handler (the test kit's probe).
	Inner message.HandlerMiddleware
}

// attempt is the middleware of one attempt at a message, outermost first,
// the same wherever a message is handled (the worker, the handler test
// kit, backfill): bounded by the timeout; logged in one line with its
// span, correlation id and outcome; a panic turned into an error; a
// message of no concern to the group acked and one the contract does not
// know refused (contractOnly); and the handler run in its inbox
// transaction, once per message UUID.
func attempt(cfg attemptConfig) []message.HandlerMiddleware {
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider()
	}
	mw := []message.HandlerMiddleware{
		middleware.Timeout(cfg.Timeout),
		observe(cfg.Logger, cfg.Tracer),
		middleware.Recoverer,
	}
	if cfg.Measure != nil {
		mw = append(mw, cfg.Measure)
	}
	mw = append(mw, contractOnly(cfg.Subscriptions), postgres.Inbox(cfg.DB, cfg.OnDuplicate))
	if cfg.Inner != nil {
		mw = append(mw, cfg.Inner)
	}
	return mw
}

// register adds each subscription to r as a handler group of a Watermill
// cqrs EventGroupProcessor, reading topic with the subscriber that
// subscriber makes for it.
func register(r *message.Router, logger watermill.LoggerAdapter, subs []Subscription,
	topic func(Subscription) string, subscriber func(Subscription) (message.Subscriber, error)) error {
	byName := map[string]Subscription{}
	for _, s := range subs {
		byName[s.Name] = s
	}
	proc, err := cqrs.NewEventGroupProcessorWithConfig(r, cqrs.EventGroupProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.EventGroupProcessorGenerateSubscribeTopicParams) (string, error) {
			return topic(byName[p.EventGroupName]), nil
		},
		SubscriberConstructor: func(p cqrs.EventGroupProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return subscriber(byName[p.EventGroupName])
		},
		// contractOnly has refused what the contract does not know and
		// acked what the group does not handle before cqrs sees it.
		AckOnUnknownEvent: true,
		Marshaler:         events.Marshaler{},
		Logger:            logger,
	})
	if err != nil {
		return fmt.Errorf("create event processor: %w", err)
	}
	for _, s := range subs {
		if err := proc.AddHandlersGroup(s.Name, s.Handlers...); err != nil {
			return fmt.Errorf("register %s: %w", s.Name, err)
		}
	}
	return nil
}
