package worker

import (
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/logging"
	"github.com/orderstream/orderstream/tracing"
)

// keepContext gives a message back the context it arrived with once the
// middleware inside returns: middleware.Timeout leaves it cancelled, and the
// dead-letter publish that may follow needs a live one.
func keepContext(next message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		ctx := msg.Context()
		defer msg.SetContext(ctx)
		return next(msg)
	}
}

// observe runs one attempt of a handler in a span (a child of the span
// that forwarded the message) with the message's correlation id and log
// attributes in its context, and writes one line for it: handler, message
// UUID, correlation id, what the handler noted (order_id, outcome) and the
// duration; the same facts go to the consumers' activity (track).
func observe(logger *slog.Logger, tp trace.TracerProvider) message.HandlerMiddleware {
	tracer := tp.Tracer("github.com/orderstream/orderstream/worker")
	return func(next message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			start := time.Now()
			outer := msg.Context()
			handler := message.HandlerNameFromCtx(outer)
			correlationID := msg.Metadata.Get(events.MetadataCorrelationID)

			ctx := tracing.Extract(outer, msg.Metadata)
			ctx, span := tracer.Start(ctx, "handle "+handler,
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(attribute.String("messaging.message.id", msg.UUID)))
			defer span.End()
			ctx = events.WithCorrelationID(ctx, correlationID)
			ctx = logging.With(ctx, "handler", handler, "message_uuid", msg.UUID, "correlation_id", correlationID)
			ctx, notes := logging.WithNotes(ctx)
			msg.SetContext(ctx)
			produced, err := next(msg)
			msg.SetContext(outer)

			noted, took := notes(), time.Since(start)
			attempted(outer, msg, handler, noted, took, err)
			args := append(noted, "duration", took)
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
				logger.WarnContext(ctx, "message handling failed", append(args, "err", err)...)
			} else {
				logger.InfoContext(ctx, "message handled", args...)
			}
			return produced, err
		}
	}
}

// logDeadLetter logs, once, a message that failed for good and is about to
// go to the dead-letter stream: one whose error is deadLetterable.
func logDeadLetter(logger *slog.Logger) message.HandlerMiddleware {
	return func(next message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			produced, err := next(msg)
			if err != nil && deadLetterable(err) {
				logger.ErrorContext(msg.Context(), "message dead-lettered",
					"handler", message.HandlerNameFromCtx(msg.Context()),
					"message_uuid", msg.UUID,
					"correlation_id", msg.Metadata.Get(events.MetadataCorrelationID),
					"err", err)
			}
			return produced, err
		}
	}
}
