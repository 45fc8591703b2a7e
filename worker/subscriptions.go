package worker

import (
	"errors"
	"fmt"
	"slices"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/logging"
)

// Subscription is one group of Watermill cqrs event handlers that read one
// stream as one consumer group: a handler group of cqrs's
// EventGroupProcessor. The composition root keeps the one list of them;
// the worker subscribes each, and whatever needs the streams that somebody
// consumes (trimming, outbox status, the lag and pending gauges, the live
// page, dead-letter replay, backfill) takes them from that list, so a
// stream is handled everywhere the moment a subscription of it is listed.
type Subscription struct {
	// Name is the group's key in the inbox and its name in logs and
	// metrics (the cqrs group name, the router's handler name). Renaming
	// it makes every event of its stream new to it.
	Name string
	// Stream is the stream it reads (events.Stream…); Group is the
	// consumer group it reads it as. Each group sees every event of its
	// stream once; the consumers of one group share its events.
	Stream, Group string
	// Handlers handle the event types of the stream that the group
	// handles, one each: cqrs.NewGroupEventHandler(postgres.InInbox(service.OnX)).
	// An event of another type of the contract is acked untouched; one
	// whose type the contract does not know is dead-lettered.
	Handlers []cqrs.GroupEventHandler
}

// ConsumedStreams are the streams the subscriptions read, each once, in
// the order of their first subscription.
func ConsumedStreams(subs []Subscription) []string {
	var streams []string
	for _, s := range subs {
		if !slices.Contains(streams, s.Stream) {
			streams = append(streams, s.Stream)
		}
	}
	return streams
}

// Lookup returns the subscription named name.
func Lookup(subs []Subscription, name string) (Subscription, bool) {
	i := slices.IndexFunc(subs, func(s Subscription) bool { return s.Name == name })
	if i < 0 {
		return Subscription{}, false
	}
	return subs[i], true
}

// EventTypes are the event types s handles, in the order of its handlers.
func (s Subscription) EventTypes() []string {
	var types []string
	for _, h := range s.Handlers {
		if e, ok := h.NewEvent().(events.Event); ok {
			types = append(types, e.EventType())
		}
	}
	return types
}

// Check reports what makes subs impossible to register: a name missing or
// taken twice (two groups would share inbox rows), a stream or group
// missing, a consumer group of a stream taken twice, no handler, a handler of something that is not an event of the
// contract, an event handled twice in a group, or one that does not travel
// on the stream.
func Check(subs []Subscription) error {
	var errs []error
	names := map[string]bool{}
	groups := map[[2]string]string{} // stream and group → the subscription reading them
	for i, s := range subs {
		switch {
		case s.Name == "":
			errs = append(errs, fmt.Errorf("subscription %d: no name", i))
		case names[s.Name]:
			errs = append(errs, fmt.Errorf("subscription %s: listed twice", s.Name))
		}
		names[s.Name] = true
		if s.Stream == "" || s.Group == "" {
			errs = append(errs, fmt.Errorf("subscription %s: stream %q, group %q: both are needed", s.Name, s.Stream, s.Group))
		} else if other, taken := groups[[2]string{s.Stream, s.Group}]; taken {
			// Consumers of one group share its entries: each would see
			// only some, and ack the others' as none of its business.
			errs = append(errs, fmt.Errorf("subscription %s: group %s of %s is %s's already: give it a group of its own",
				s.Name, s.Group, s.Stream, other))
		} else {
			groups[[2]string{s.Stream, s.Group}] = s.Name
		}
		if len(s.Handlers) == 0 {
			errs = append(errs, fmt.Errorf("subscription %s: handles no event type", s.Name))
		}
		handled := map[string]bool{}
		for _, h := range s.Handlers {
			e, ok := h.NewEvent().(events.Event)
			if !ok {
				errs = append(errs, fmt.Errorf("subscription %s: %T is not an event of the contract", s.Name, h.NewEvent()))
				continue
			}
			if _, known := events.Lookup(e.EventType()); !known {
				errs = append(errs, fmt.Errorf("subscription %s: %s is not in events.Contract()", s.Name, e.EventType()))
			}
			if handled[e.EventType()] {
				errs = append(errs, fmt.Errorf("subscription %s: %s handled twice", s.Name, e.EventType()))
			}
			handled[e.EventType()] = true
			if e.Stream() != s.Stream {
				errs = append(errs, fmt.Errorf("subscription %s: %s travels on %s, not on %s",
					s.Name, e.EventType(), e.Stream(), s.Stream))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("register message handlers: %w", err)
	}
	return nil
}

// contractOnly is the router middleware in front of the cqrs handler
// groups that tells the three kinds of message apart, which cqrs alone
// cannot (its AckOnUnknownEvent acks every type its group lacks, or none):
//
//   - one that could not be read, or whose type the contract does not know
//     on this stream: ErrMalformed, dead-lettered at once;
//   - an event of the contract on this stream that this group does not
//     handle (it travels there for another group): acked untouched, without
//     an inbox transaction, its outcome noted as not_handled (and left
//     out of the consumers' activity);
//   - one the group handles: passed on, to the inbox and cqrs.
func contractOnly(subs []Subscription) message.HandlerMiddleware {
	handles := map[string][]string{}
	streams := map[string]string{}
	for _, s := range subs {
		handles[s.Name] = s.EventTypes()
		streams[s.Name] = s.Stream
	}
	return func(next message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			if reason := msg.Metadata.Get(events.MetadataUndecodable); reason != "" {
				return nil, fmt.Errorf("%w: %s", events.ErrMalformed, reason)
			}
			name := message.HandlerNameFromCtx(msg.Context())
			eventType := events.Marshaler{}.NameFromMessage(msg)
			if e, ok := events.Lookup(eventType); !ok || e.Stream() != streams[name] {
				return nil, fmt.Errorf("%w: unknown event_type %q", events.ErrMalformed, eventType)
			}
			if !slices.Contains(handles[name], eventType) {
				logging.Note(msg.Context(), "outcome", outcomeNotHandled)
				return nil, nil // another group's business
			}
			return next(msg)
		}
	}
}
