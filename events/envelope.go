package events

import (
	"encoding/json"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Envelope is an outbox row's payload as watermill's forwarder writes it:
// the event, with its UUID and metadata, and the stream it goes to.
type Envelope struct {
	DestinationTopic string            `json:"destination_topic"`
	UUID             string            `json:"uuid"`
	Payload          []byte            `json:"payload"`
	Metadata         map[string]string `json:"metadata"`
}

// inspectEnvelope looks into each outbox row before the forwarder moves it.
// A row that is not an envelope goes to the dead-letter stream, so that it
// never blocks the rows behind it. Otherwise the hop gets a span, a child
// of the span that wrote the event, whose context replaces the event's own:
// the handler's span will be the hop's child.
func inspectEnvelope(pub message.Publisher, tp trace.TracerProvider) message.HandlerMiddleware {
	tracer := tp.Tracer(TracerName)
	return func(next message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			var env Envelope
			err := json.Unmarshal(msg.Payload, &env)
			if err != nil || env.DestinationTopic == "" {
				return nil, deadLetterRow(pub, msg, err)
			}
			ctx := ExtractTrace(msg.Context(), env.Metadata)
			ctx, span := tracer.Start(ctx, "forward "+env.DestinationTopic,
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(
					attribute.String("messaging.message.id", env.UUID),
					attribute.String("messaging.destination.name", env.DestinationTopic)))
			defer span.End()
			if span.SpanContext().IsValid() {
				if env.Metadata == nil {
					env.Metadata = map[string]string{}
				}
				InjectTrace(ctx, env.Metadata)
				if payload, err := json.Marshal(env); err == nil {
					msg.Payload = payload
				}
			}
			produced, err := next(msg)
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
			return produced, err
		}
	}
}

func deadLetterRow(pub message.Publisher, msg *message.Message, cause error) error {
	reason := "outbox row is not a forwarder envelope"
	if cause != nil {
		reason += ": " + cause.Error()
	}
	msg.Metadata.Set(middleware.ReasonForPoisonedKey, reason)
	msg.Metadata.Set(middleware.PoisonedTopicKey, OutboxTopic)
	msg.Metadata.Set(middleware.PoisonedHandlerKey, forwarderHandler)
	if err := pub.Publish(StreamDeadLetter, msg); err != nil {
		return fmt.Errorf("dead-letter outbox row %s: %w", msg.UUID, err)
	}
	return nil
}
