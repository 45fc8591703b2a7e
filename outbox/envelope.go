package outbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/tracing"
)

// Envelope is an outbox row's payload as watermill's forwarder writes it:
// the event, with its UUID and metadata, and the stream it goes to.
type Envelope struct {
	DestinationTopic string            `json:"destination_topic"`
	UUID             string            `json:"uuid"`
	Payload          []byte            `json:"payload"`
	Metadata         map[string]string `json:"metadata"`
}

// errUnreadableEnvelope marks an outbox row that the forwarder cannot
// unwrap.
var errUnreadableEnvelope = errors.New("outbox row is not a forwarder envelope")

// envelopeMarshaler is the forwarder's JSON marshaler with every failure to
// unwrap marked errUnreadableEnvelope, an envelope without a destination
// included, so that inspectEnvelope can tell those rows from a failed
// publish however the forwarder wraps the error.
type envelopeMarshaler struct{ forwarder.DefaultMarshaler }

func (envelopeMarshaler) Unmarshal(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %w", errUnreadableEnvelope, err)
	}
	// v is the forwarder's own envelope type; it would refuse a missing
	// destination after this returns.
	dest := reflect.ValueOf(v).Elem().FieldByName("DestinationTopic")
	if dest.Kind() == reflect.String && dest.String() == "" {
		return fmt.Errorf("%w: no destination_topic", errUnreadableEnvelope)
	}
	return nil
}

// inspectEnvelope sends each outbox row that is not an envelope to the
// dead-letter stream, so that it never blocks the rows behind it.
//
// With tracing on, the hop also gets a span, a child of the span that
// wrote the event, whose context replaces the event's own (the handler's
// span will be the hop's child): that takes decoding the envelope before
// the forwarder does. Without tracing the forwarder's decoding is the only
// one, and its failure (envelopeMarshaler) is what dead-letters the row.
func inspectEnvelope(pub message.Publisher, tp trace.TracerProvider, shard int) message.HandlerMiddleware {
	if _, off := tp.(noop.TracerProvider); off {
		return func(next message.HandlerFunc) message.HandlerFunc {
			return func(msg *message.Message) ([]*message.Message, error) {
				produced, err := next(msg)
				if errors.Is(err, errUnreadableEnvelope) {
					return nil, deadLetterRow(pub, msg, shard, err)
				}
				return produced, err
			}
		}
	}
	tracer := tp.Tracer(tracing.TracerName)
	return func(next message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			var env Envelope
			if err := (envelopeMarshaler{}).Unmarshal(msg.Payload, &env); err != nil {
				return nil, deadLetterRow(pub, msg, shard, err)
			}
			ctx := tracing.Extract(msg.Context(), env.Metadata)
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
				tracing.Inject(ctx, env.Metadata)
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

func deadLetterRow(pub message.Publisher, msg *message.Message, shard int, cause error) error {
	msg.Metadata.Set(middleware.ReasonForPoisonedKey, cause.Error())
	msg.Metadata.Set(middleware.PoisonedTopicKey, postgres.OutboxTopic(shard))
	msg.Metadata.Set(middleware.PoisonedHandlerKey, forwarderHandler(shard))
	if err := pub.Publish(events.StreamDeadLetter, msg); err != nil {
		return fmt.Errorf("dead-letter outbox row %s: %w", msg.UUID, err)
	}
	return nil
}
