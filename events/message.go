package events

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

type correlationKey struct{}

// WithCorrelationID returns a context whose events carry id as their
// correlation_id metadata. The HTTP edge sets it from X-Request-ID; a message
// handler sets it from the message it handles, so the id follows an order
// through every hop.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

// CorrelationID returns the correlation id ctx carries, or "".
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)
	return id
}

// NewMessage encodes e as a Watermill message with a new UUID, its event
// type, and the correlation id and trace context from ctx.
func NewMessage(ctx context.Context, e Event) (*message.Message, error) {
	payload, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", e.EventType(), err)
	}
	msg := message.NewMessage(watermill.NewUUID(), payload)
	msg.Metadata.Set(MetadataEventType, e.EventType())
	if id := CorrelationID(ctx); id != "" {
		msg.Metadata.Set(MetadataCorrelationID, id)
	}
	InjectTrace(ctx, msg.Metadata)
	return msg, nil
}

// Decode reads msg as an event of type E. A message of another type, or one
// that is not valid JSON, is ErrMalformed.
func Decode[E Event](msg *message.Message) (E, error) {
	var e E
	if got := msg.Metadata.Get(MetadataEventType); got != e.EventType() {
		return e, fmt.Errorf("%w: event_type %q, want %q", ErrMalformed, got, e.EventType())
	}
	if err := json.Unmarshal(msg.Payload, &e); err != nil {
		return e, fmt.Errorf("%w: decode %s: %v", ErrMalformed, e.EventType(), err)
	}
	return e, nil
}
