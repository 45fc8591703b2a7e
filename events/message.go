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

// Marshaler is the contract's cqrs marshaler (Watermill's
// cqrs.CommandEventMarshaler): a JSON payload, the event's type in the
// event_type metadata. It reads the type from cqrs's own key, "name", when
// event_type is absent, so that a producer using cqrs.JSONMarshaler with
// GenerateName: cqrs.StructName is understood too.
type Marshaler struct{}

// MetadataCQRSName is the metadata key of cqrs.JSONMarshaler's event name.
const MetadataCQRSName = "name"

// Marshal encodes v, an Event, as a message with a new UUID.
func (m Marshaler) Marshal(v any) (*message.Message, error) {
	e, ok := v.(Event)
	if !ok {
		return nil, fmt.Errorf("encode %T: not an event of the contract", v)
	}
	payload, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", e.EventType(), err)
	}
	msg := message.NewMessage(watermill.NewUUID(), payload)
	msg.Metadata.Set(MetadataEventType, e.EventType())
	return msg, nil
}

// Unmarshal decodes msg's payload into v; a payload that does not decode is
// ErrMalformed.
func (Marshaler) Unmarshal(msg *message.Message, v any) error {
	if err := json.Unmarshal(msg.Payload, v); err != nil {
		return fmt.Errorf("%w: decode %s: %v", ErrMalformed, Marshaler{}.NameFromMessage(msg), err)
	}
	return nil
}

// Name is v's event type, or "" when v is not an Event.
func (Marshaler) Name(v any) string {
	if e, ok := v.(Event); ok {
		return e.EventType()
	}
	return ""
}

// NameFromMessage is the event type msg carries.
func (Marshaler) NameFromMessage(msg *message.Message) string {
	if t := msg.Metadata.Get(MetadataEventType); t != "" {
		return t
	}
	return msg.Metadata.Get(MetadataCQRSName)
}

// NewMessage encodes e as a Watermill message with a new UUID, its event
// type, and the correlation id from ctx. (The outbox write adds the trace
// context.)
func NewMessage(ctx context.Context, e Event) (*message.Message, error) {
	msg, err := Marshaler{}.Marshal(e)
	if err != nil {
		return nil, err
	}
	if id := CorrelationID(ctx); id != "" {
		msg.Metadata.Set(MetadataCorrelationID, id)
	}
	return msg, nil
}

// Decode reads msg as an event of type E. A message of another type, or one
// that is not valid JSON, is ErrMalformed.
func Decode[E Event](msg *message.Message) (E, error) {
	var e E
	if got := (Marshaler{}).NameFromMessage(msg); got != e.EventType() {
		return e, fmt.Errorf("%w: event_type %q, want %q", ErrMalformed, got, e.EventType())
	}
	err := Marshaler{}.Unmarshal(msg, &e)
	return e, err
}

// Lookup returns the contract's event of type eventType, as its zero value.
func Lookup(eventType string) (Event, bool) {
	for _, e := range Contract() {
		if e.EventType() == eventType {
			return e, true
		}
	}
	return nil, false
}
