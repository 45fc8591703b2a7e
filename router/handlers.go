package router

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderstream/orderstream/events"
)

// Handler is the registration of one message handler. The composition root
// keeps the one list of them; the worker subscribes each, and whatever
// needs the streams that somebody consumes (trimming, outbox status, the
// lag and pending gauges, the live page, dead-letter replay) takes them
// from that list (ConsumedStreams), so a stream is handled everywhere the
// moment a handler of it is registered.
type Handler struct {
	// Name is the handler's key in the inbox and its name in logs and
	// metrics. Renaming it makes every event of its stream new to it.
	Name string
	// Stream is the stream it reads (events.Stream…); Group is the
	// consumer group it reads it as. Each group sees every event of its
	// stream once; the consumers of one group share its events.
	Stream, Group string
	// On handles the event types of the stream that it handles, one each
	// (router.On(service.OnX)). An event of another type of the contract
	// is acked untouched; one whose type the contract does not know is
	// dead-lettered.
	On []EventHandler
}

// EventHandler handles one event type.
type EventHandler struct {
	event  events.Event
	handle func(ctx context.Context, msg *message.Message) error
}

// On adapts a service method that handles the event type E.
func On[E events.Event](fn func(context.Context, E) error) EventHandler {
	var zero E
	return EventHandler{
		event: zero,
		handle: func(ctx context.Context, msg *message.Message) error {
			e, err := events.Decode[E](msg)
			if err != nil {
				return err
			}
			return fn(ctx, e)
		},
	}
}

// ConsumedStreams are the streams the handlers read, each once, in the
// order of their first handler.
func ConsumedStreams(handlers []Handler) []string {
	var streams []string
	for _, h := range handlers {
		if !slices.Contains(streams, h.Stream) {
			streams = append(streams, h.Stream)
		}
	}
	return streams
}

// check reports what makes handlers impossible to register: a name missing
// or taken twice (two handlers would share inbox rows), a stream or group
// missing, or an event handled that does not travel on the stream.
func check(handlers []Handler) error {
	var errs []error
	names := map[string]bool{}
	for i, h := range handlers {
		switch {
		case h.Name == "":
			errs = append(errs, fmt.Errorf("handler %d: no name", i))
		case names[h.Name]:
			errs = append(errs, fmt.Errorf("handler %s: registered twice", h.Name))
		}
		names[h.Name] = true
		if h.Stream == "" || h.Group == "" {
			errs = append(errs, fmt.Errorf("handler %s: stream %q, group %q: both are needed", h.Name, h.Stream, h.Group))
		}
		if len(h.On) == 0 {
			errs = append(errs, fmt.Errorf("handler %s: handles no event type", h.Name))
		}
		for _, on := range h.On {
			if on.event.Stream() != h.Stream {
				errs = append(errs, fmt.Errorf("handler %s: %s travels on %s, not on %s",
					h.Name, on.event.EventType(), on.event.Stream(), h.Stream))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("register message handlers: %w", err)
	}
	return nil
}

// handle routes a message to the method for its event_type.
func (h Handler) handle(msg *message.Message) error {
	if reason := msg.Metadata.Get(events.MetadataUndecodable); reason != "" {
		return fmt.Errorf("%w: %s", events.ErrMalformed, reason)
	}
	eventType := msg.Metadata.Get(events.MetadataEventType)
	for _, on := range h.On {
		if on.event.EventType() == eventType {
			return on.handle(msg.Context(), msg)
		}
	}
	if slices.ContainsFunc(events.Contract(), func(e events.Event) bool {
		return e.EventType() == eventType && e.Stream() == h.Stream
	}) {
		return nil // another handler's business
	}
	return fmt.Errorf("%w: unknown event_type %q", events.ErrMalformed, eventType)
}
