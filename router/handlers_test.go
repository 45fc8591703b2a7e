package router_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/router"
)

// TestNewMessages_refusesRegistrationsItCannotKeep: registrations that
// would share inbox rows, read nothing, or handle an event that never
// comes on their stream are refused at start, each with its reason.
func TestNewMessages_refusesRegistrationsItCannotKeep(t *testing.T) {
	t.Parallel()
	reserved := router.On(func(context.Context, events.StockReserved) error { return nil })
	placed := router.On(func(context.Context, events.OrderPlaced) error { return nil })
	for name, tc := range map[string]struct {
		handlers []router.Handler
		want     string
	}{
		"a_name_taken_twice": {[]router.Handler{
			{Name: "h", Stream: events.StreamReservations, Group: "g1", On: []router.EventHandler{reserved}},
			{Name: "h", Stream: events.StreamReservations, Group: "g2", On: []router.EventHandler{reserved}},
		}, "handler h: registered twice"},
		"no_name": {[]router.Handler{
			{Stream: events.StreamReservations, Group: "g", On: []router.EventHandler{reserved}},
		}, "handler 0: no name"},
		"no_group": {[]router.Handler{
			{Name: "h", Stream: events.StreamReservations, On: []router.EventHandler{reserved}},
		}, "both are needed"},
		"no_stream": {[]router.Handler{
			{Name: "h", Group: "g", On: []router.EventHandler{reserved}},
		}, "both are needed"},
		"no_event": {[]router.Handler{
			{Name: "h", Stream: events.StreamReservations, Group: "g"},
		}, "handles no event type"},
		"an_event_of_another_stream": {[]router.Handler{
			{Name: "h", Stream: events.StreamReservations, Group: "g", On: []router.EventHandler{reserved, placed}},
		}, "OrderPlaced travels on orders.placed, not on inventory.reservations"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := router.NewMessages(router.MessagesConfig{
				Streams: testenv.Streams(t), Handlers: tc.handlers, Logger: testenv.Logger(t), Metrics: metrics.New(),
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewMessages() = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestHandler_routesByEventType: a handler gets the events of the types it
// registered; an event of another type of the contract on its stream is
// acked untouched (the stream carries it for other handlers), and one of a
// type the contract does not know is dead-lettered.
func TestHandler_routesByEventType(t *testing.T) {
	t.Parallel()
	got := make(chan string, 10)
	w := startWorker(t, func(cfg *router.MessagesConfig) {
		cfg.Handlers = []router.Handler{{Name: "test.reserved_only", Stream: events.StreamReservations, Group: "reserved-only",
			On: []router.EventHandler{router.On(func(_ context.Context, e events.StockReserved) error {
				got <- e.OrderID
				return nil
			})}}}
	})
	unknown := message.NewMessage(uuid.NewString(), []byte(`{"order_id":"o-3"}`))
	unknown.Metadata.Set(events.MetadataEventType, "StockShipped") // no such event
	for _, e := range []events.Event{
		events.StockRejected{OrderID: "o-1", Reason: events.ReasonUnknownSKU},
		events.StockReserved{OrderID: "o-2"},
	} {
		msg, err := events.NewMessage(w.ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		w.publish(events.StreamReservations, msg)
	}
	w.publish(events.StreamReservations, unknown)
	w.drained(events.StreamReservations, "reserved-only")

	close(got)
	var handled []string
	for id := range got {
		handled = append(handled, id)
	}
	if len(handled) != 1 || handled[0] != "o-2" {
		t.Errorf("handled %v, want only the StockReserved of o-2", handled)
	}
	if n := w.deadLetters(); n != 1 {
		t.Errorf("dead-letter stream holds %d entries, want the one of the unknown type", n)
	}
}
