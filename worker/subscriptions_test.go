package worker_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/worker"
)

// offContract is an event that is not in events.Contract().
type offContract struct{}

func (offContract) Stream() string    { return events.StreamReservations }
func (offContract) EventType() string { return "OffContract" }

// TestNewMessages_refusesRegistrationsItCannotKeep: subscriptions that
// would share inbox rows, read nothing, or handle an event that never
// comes on their stream are refused at start, each with its reason.
func TestNewMessages_refusesRegistrationsItCannotKeep(t *testing.T) {
	t.Parallel()
	reserved := cqrs.NewGroupEventHandler(func(context.Context, *events.StockReserved) error { return nil })
	placed := cqrs.NewGroupEventHandler(func(context.Context, *events.OrderPlaced) error { return nil })
	unknown := cqrs.NewGroupEventHandler(func(context.Context, *offContract) error { return nil })
	notEvent := cqrs.NewGroupEventHandler(func(context.Context, *struct{ N int }) error { return nil })
	for name, tc := range map[string]struct {
		subs []worker.Subscription
		want string
	}{
		"a_name_taken_twice": {[]worker.Subscription{
			{Name: "h", Stream: events.StreamReservations, Group: "g1", Handlers: handlers(reserved)},
			{Name: "h", Stream: events.StreamReservations, Group: "g2", Handlers: handlers(reserved)},
		}, "subscription h: listed twice"},
		"a_group_of_a_stream_taken_twice": {[]worker.Subscription{
			{Name: "h1", Stream: events.StreamReservations, Group: "g", Handlers: handlers(reserved)},
			{Name: "h2", Stream: events.StreamReservations, Group: "g", Handlers: handlers(reserved)},
		}, "subscription h2: group g of inventory.reservations is h1's already"},
		"no_name": {[]worker.Subscription{
			{Stream: events.StreamReservations, Group: "g", Handlers: handlers(reserved)},
		}, "subscription 0: no name"},
		"no_group": {[]worker.Subscription{
			{Name: "h", Stream: events.StreamReservations, Handlers: handlers(reserved)},
		}, "both are needed"},
		"no_stream": {[]worker.Subscription{
			{Name: "h", Group: "g", Handlers: handlers(reserved)},
		}, "both are needed"},
		"no_event": {[]worker.Subscription{
			{Name: "h", Stream: events.StreamReservations, Group: "g"},
		}, "handles no event type"},
		"an_event_of_another_stream": {[]worker.Subscription{
			{Name: "h", Stream: events.StreamReservations, Group: "g", Handlers: handlers(reserved, placed)},
		}, "OrderPlaced travels on orders.placed, not on inventory.reservations"},
		"an_event_handled_twice": {[]worker.Subscription{
			{Name: "h", Stream: events.StreamReservations, Group: "g", Handlers: handlers(reserved, reserved)},
		}, "subscription h: StockReserved handled twice"},
		"an_event_the_contract_does_not_know": {[]worker.Subscription{
			{Name: "h", Stream: events.StreamReservations, Group: "g", Handlers: handlers(unknown)},
		}, "OffContract is not in events.Contract()"},
		"something_that_is_no_event": {[]worker.Subscription{
			{Name: "h", Stream: events.StreamReservations, Group: "g", Handlers: handlers(notEvent)},
		}, "is not an event of the contract"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := worker.NewMessages(worker.MessagesConfig{
				Streams: testenv.Streams(t), Subscriptions: tc.subs, Logger: testenv.Logger(t), Metrics: metrics.New(),
			})
			if err == nil || !strings.HasPrefix(err.Error(), "register message handlers: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewMessages() = %v, want an error saying %q", err, tc.want)
			}
			if err := worker.Check(tc.subs); err == nil {
				t.Error("Check() = nil, want the same refusal")
			}
		})
	}
}

// TestSubscription_dispatchesByEventType: a subscription's handlers get the
// events of the types they handle; an event of another type of the
// contract on its stream is acked untouched (the stream carries it for
// other groups), without an inbox row; one whose type the contract does
// not know on the stream, and an entry that cannot be read, are
// dead-lettered at once, without retries.
func TestSubscription_dispatchesByEventType(t *testing.T) {
	t.Parallel()
	const name = "test.reserved_only"
	got := make(chan string, 10)
	log, withLog := newJSONLog(t)
	w := startWorker(t, withLog, func(cfg *worker.MessagesConfig) {
		cfg.MaxRetries = 3
		cfg.Subscriptions = []worker.Subscription{{Name: name, Stream: events.StreamReservations, Group: "reserved-only",
			Handlers: handlers(inInbox(func(_ context.Context, _ *postgres.Tx, e *events.StockReserved) error {
				got <- e.OrderID
				return nil
			}))}}
	})
	var others []string // the UUIDs of the events for other groups
	for _, e := range []events.Event{
		events.StockRejected{OrderID: "o-1", Reason: events.ReasonUnknownSKU},
		events.StockReserved{OrderID: "o-2"},
		events.StockReleased{OrderID: "o-3"},
	} {
		msg, err := events.NewMessage(w.ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := e.(events.StockReserved); !ok {
			others = append(others, msg.UUID)
		}
		w.publish(events.StreamReservations, msg)
	}
	unknown := message.NewMessage(uuid.NewString(), []byte(`{"order_id":"o-4"}`))
	unknown.Metadata.Set(events.MetadataEventType, "StockShipped") // no such event
	w.publish(events.StreamReservations, unknown)
	elsewhere, err := events.NewMessage(w.ctx, events.OrderPlaced{OrderID: "o-5"}) // of orders.placed
	if err != nil {
		t.Fatal(err)
	}
	w.publish(events.StreamReservations, elsewhere)
	junk := &redis.XAddArgs{Stream: w.streams.Name(events.StreamReservations), Values: map[string]any{"junk": "1"}}
	if err := w.rdb.XAdd(w.ctx, junk).Err(); err != nil {
		t.Fatal(err)
	}
	w.drained(events.StreamReservations, "reserved-only")

	close(got)
	var handled []string
	for id := range got {
		handled = append(handled, id)
	}
	if len(handled) != 1 || handled[0] != "o-2" {
		t.Errorf("handled %v, want only the StockReserved of o-2", handled)
	}
	var inbox int
	if err := w.db.QueryRow(`SELECT count(*) FROM inbox WHERE handler = $1 AND message_uuid = ANY($2)`,
		name, "{"+strings.Join(others, ",")+"}").Scan(&inbox); err != nil {
		t.Fatal(err)
	}
	if inbox != 0 {
		t.Errorf("%d inbox rows for the events of other groups, want none: they are acked untouched", inbox)
	}
	if n := w.deadLetters(); n != 3 {
		t.Errorf("dead-letter stream holds %d entries, want 3: the unknown type, the event of another stream, the junk", n)
	}
	if n := len(log.lines(t, "message handling failed", "")); n != 3 {
		t.Errorf("%d failed attempts logged, want 3: each dead-lettered without a retry", n)
	}
	if n := w.failedAttempts(name); n != 3 {
		t.Errorf("%d failed attempts measured, want 3", n)
	}
}
