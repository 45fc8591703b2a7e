package worker_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
	"github.com/orderstream/orderstream/worker"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// harness is a running worker with the test's database and streams.
type harness struct {
	t         *testing.T
	ctx       context.Context
	streams   redisstreams.Config
	rdb       redis.UniversalClient
	db        *sql.DB
	pub       message.Publisher
	orders    *orders.Service
	inventory *inventory.Service
	metrics   *metrics.Metrics
}

// flowSubscriptions are the order flow's subscriptions, as handlers.go
// lists them.
func flowSubscriptions(o *orders.Service, inv *inventory.Service) []worker.Subscription {
	return []worker.Subscription{
		{Name: "inventory.reserve_stock", Stream: events.StreamOrdersPlaced, Group: "inventory",
			Handlers: handlers(inInbox(inv.OnOrderPlaced), inInbox(inv.OnOrderCancelled))},
		{Name: "orders.settle", Stream: events.StreamReservations, Group: "orders",
			Handlers: handlers(inInbox(o.OnStockReserved), inInbox(o.OnStockRejected), inInbox(o.OnStockReleased))},
	}
}

func handlers(hs ...cqrs.GroupEventHandler) []cqrs.GroupEventHandler { return hs }

// eventItems is an order's items as the inventory's events carry them.
func eventItems(items []orders.Item) []events.Item {
	out := make([]events.Item, len(items))
	for i, it := range items {
		out[i] = events.Item{SKU: it.SKU, Quantity: it.Quantity}
	}
	return out
}

// inInbox is a cqrs event handler of fn, run in its inbox's transaction.
func inInbox[E any](fn func(context.Context, *postgres.Tx, *E) error) cqrs.GroupEventHandler {
	return cqrs.NewGroupEventHandler(postgres.InInbox(fn))
}

// startWorker runs the message router on the test database and streams of
// the test's own; configure, when given, changes its configuration.
func startWorker(t *testing.T, configure ...func(*worker.MessagesConfig)) harness {
	t.Helper()
	return startWorkerOn(t, testenv.DB(t), configure...)
}

// startWorkerOn is startWorker on db: a database of the test's own
// (testenv.OwnDB) for a test that changes the schema, whose locks would
// otherwise queue the other tests' statements behind theirs.
func startWorkerOn(t *testing.T, db *sql.DB, configure ...func(*worker.MessagesConfig)) harness {
	t.Helper()
	logger := testenv.Logger(t)
	w := harness{
		t:   t,
		ctx: context.Background(),
		db:  db,
		streams: func() redisstreams.Config {
			s := testenv.Streams(t)
			s.Logger = watermill.NewSlogLogger(logger)
			return s
		}(),
		orders:    orders.NewService(db),
		inventory: inventory.NewService(db),
		metrics:   metrics.New(),
	}
	w.rdb = w.streams.NewClient()
	t.Cleanup(func() { w.rdb.Close() })
	pub, err := w.streams.Publisher()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	w.pub = pub

	cfg := worker.MessagesConfig{
		DB: db, Streams: w.streams, Subscriptions: flowSubscriptions(w.orders, w.inventory), Logger: logger, Metrics: w.metrics,
		HandlerTimeout: 5 * time.Second, MaxRetries: 2,
	}
	for _, c := range configure {
		c(&cfg)
	}
	m, err := worker.NewMessages(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("message router: %v", err)
		}
	})
	<-m.Running()
	return w
}

func (w harness) publish(stream string, msg *message.Message) {
	w.t.Helper()
	if err := w.pub.Publish(stream, msg); err != nil {
		w.t.Fatal(err)
	}
}

// drained waits until the consumer group has been handed every entry of
// stream and has acked each one.
func (w harness) drained(stream, group string) {
	w.t.Helper()
	key := w.streams.Name(stream)
	eventually(w.t, func() bool {
		groups, err := w.rdb.XInfoGroups(w.ctx, key).Result()
		if err != nil {
			return false
		}
		for _, g := range groups {
			if g.Name == group {
				return g.Lag == 0 && g.Pending == 0
			}
		}
		return false
	}, "group %s to drain %s", group, stream)
}

// failedAttempts is how many attempts of handler have failed so far.
func (w harness) failedAttempts(handler string) uint64 {
	w.t.Helper()
	families, err := w.metrics.Registry.Gather()
	if err != nil {
		w.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != metrics.Namespace+"_watermill_handler_execution_time_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["handler_name"] == handler && labels["success"] == "false" {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

// deadLetters is how many entries the dead-letter stream holds.
func (w harness) deadLetters() int64 {
	w.t.Helper()
	n, err := w.rdb.XLen(w.ctx, w.streams.Name(events.StreamDeadLetter)).Result()
	if err != nil {
		w.t.Fatal(err)
	}
	return n
}

func eventually(t *testing.T, ok func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for "+format, args...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMessages_reserveStock(t *testing.T) {
	t.Parallel()

	t.Run("reserves_once_however_often_the_event_arrives", func(t *testing.T) {
		t.Parallel()
		w := startWorker(t)
		sku := testenv.Unique("SKU")
		if _, err := w.inventory.Set(w.ctx, sku, 5); err != nil {
			t.Fatal(err)
		}
		orderID := uuid.NewString()
		msg, err := events.NewMessage(events.WithCorrelationID(w.ctx, "corr-1"), events.OrderPlaced{
			OrderID: orderID, CustomerID: "c", Items: []events.Item{{SKU: sku, Quantity: 2}},
		})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			w.publish(events.StreamOrdersPlaced, msg.Copy()) // same UUID each time
		}
		w.drained(events.StreamOrdersPlaced, "inventory")

		st, _ := w.inventory.Get(w.ctx, sku)
		if st.Available != 3 || st.Reserved != 2 {
			t.Errorf("stock = %+v, want 3 available and 2 reserved", st)
		}
		evs := testenv.OutboxEvents(t, testenv.DB(t), "order_id", orderID)
		if len(evs) != 1 || evs[0].Metadata[events.MetadataEventType] != "StockReserved" {
			t.Fatalf("outbox events = %+v, want one StockReserved", evs)
		}
		if got := evs[0].Metadata[events.MetadataCorrelationID]; got != "corr-1" {
			t.Errorf("StockReserved correlation_id = %q, want the OrderPlaced's", got)
		}
	})

	t.Run("dead_letters_what_it_cannot_handle_and_carries_on", func(t *testing.T) {
		t.Parallel()
		w := startWorker(t)
		stream := w.streams.Name(events.StreamOrdersPlaced)

		// An entry that is no Watermill message at all.
		if err := w.rdb.XAdd(w.ctx, &redis.XAddArgs{Stream: stream, Values: map[string]any{"junk": "1"}}).Err(); err != nil {
			t.Fatal(err)
		}
		bad := []*message.Message{
			message.NewMessage(uuid.NewString(), []byte("not json")),
			message.NewMessage(uuid.NewString(), []byte(`{}`)),
			message.NewMessage(uuid.NewString(), []byte(`{"order_id":"x","items":[]}`)),
		}
		bad[0].Metadata.Set(events.MetadataEventType, "OrderPlaced")
		bad[1].Metadata.Set(events.MetadataEventType, "OrderShipped") // no such event
		bad[2].Metadata.Set(events.MetadataEventType, "OrderPlaced")
		for _, msg := range bad {
			w.publish(events.StreamOrdersPlaced, msg)
		}
		sku := testenv.Unique("SKU")
		if _, err := w.inventory.Set(w.ctx, sku, 1); err != nil {
			t.Fatal(err)
		}
		good, _ := events.NewMessage(w.ctx, events.OrderPlaced{OrderID: uuid.NewString(), Items: []events.Item{{SKU: sku, Quantity: 1}}})
		w.publish(events.StreamOrdersPlaced, good)
		w.drained(events.StreamOrdersPlaced, "inventory")

		if st, _ := w.inventory.Get(w.ctx, sku); st.Reserved != 1 {
			t.Errorf("the good order after the bad ones was not reserved: %+v", st)
		}
		entries, err := w.rdb.XRange(w.ctx, w.streams.Name(events.StreamDeadLetter), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 4 {
			t.Fatalf("dead-letter stream holds %d entries, want 4", len(entries))
		}
		for i, e := range entries {
			msg, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(e.Values)
			if err != nil {
				t.Fatalf("dead letter %d: %v", i, err)
			}
			if msg.Metadata.Get("reason_poisoned") == "" || msg.Metadata.Get("handler_poisoned") != "inventory.reserve_stock" {
				t.Errorf("dead letter %d metadata = %v", i, msg.Metadata)
			}
			if i > 0 && msg.UUID != bad[i-1].UUID {
				t.Errorf("dead letter %d has UUID %s, want the original %s", i, msg.UUID, bad[i-1].UUID)
			}
		}
	})
}

func TestMessages_settle(t *testing.T) {
	t.Parallel()
	w := startWorker(t)
	place := func() orders.Order {
		o, _, err := w.orders.Place(w.ctx, orders.PlaceRequest{CustomerID: "c", Items: []orders.Item{{SKU: "A", Quantity: 1}}}, "")
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	confirmed, rejected := place(), place()
	for _, e := range []events.Event{
		events.StockReserved{OrderID: confirmed.ID, Items: eventItems(confirmed.Items)},
		events.StockRejected{OrderID: rejected.ID, Items: eventItems(rejected.Items), Reason: events.ReasonUnknownSKU},
	} {
		msg, err := events.NewMessage(w.ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		w.publish(events.StreamReservations, msg)
	}
	w.drained(events.StreamReservations, "orders")

	if o, _ := w.orders.Get(w.ctx, confirmed.ID); o.Status != orders.StatusConfirmed {
		t.Errorf("order %s is %s, want confirmed", o.ID, o.Status)
	}
	if o, _ := w.orders.Get(w.ctx, rejected.ID); o.Status != orders.StatusRejected || o.Reason != events.ReasonUnknownSKU {
		t.Errorf("order %s is %s (%s), want rejected for unknown_sku", o.ID, o.Status, o.Reason)
	}
}

// TestMessages_cancel: an OrderCancelled delivered three times releases
// once and announces it once, whether it arrives after its OrderPlaced or
// before it; a StockReleased delivered three times makes the order
// cancelled once.
func TestMessages_cancel(t *testing.T) {
	t.Parallel()
	w := startWorker(t)
	sku := testenv.Unique("SKU")
	if _, err := w.inventory.Set(w.ctx, sku, 5); err != nil {
		t.Fatal(err)
	}
	publish := func(stream string, e events.Event) {
		t.Helper()
		msg, err := events.NewMessage(w.ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			w.publish(stream, msg.Copy()) // same UUID each time
		}
	}
	o, _, err := w.orders.Place(w.ctx, orders.PlaceRequest{CustomerID: "c", Items: []orders.Item{{SKU: sku, Quantity: 2}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	overtaken := uuid.NewString() // its cancel comes first
	publish(events.StreamOrdersPlaced, events.OrderPlaced{OrderID: o.ID, Items: eventItems(o.Items)})
	publish(events.StreamOrdersPlaced, events.OrderCancelled{OrderID: o.ID})
	publish(events.StreamOrdersPlaced, events.OrderCancelled{OrderID: overtaken})
	publish(events.StreamOrdersPlaced, events.OrderPlaced{OrderID: overtaken, Items: []events.Item{{SKU: sku, Quantity: 1}}})
	w.drained(events.StreamOrdersPlaced, "inventory")

	if st, _ := w.inventory.Get(w.ctx, sku); st.Available != 5 || st.Reserved != 0 {
		t.Errorf("stock = %+v, want all 5 available again", st)
	}
	released := func(id string) int {
		n := 0
		for _, e := range testenv.OutboxEvents(t, w.db, "order_id", id) {
			if e.Metadata[events.MetadataEventType] == "StockReleased" {
				n++
			}
		}
		return n
	}
	if a, b := released(o.ID), released(overtaken); a != 1 || b != 1 {
		t.Errorf("StockReleased events: %d and %d, want one each", a, b)
	}

	if _, _, err := w.orders.Cancel(w.ctx, orders.Caller{Admin: true}, o.ID, "", ""); err != nil {
		t.Fatal(err)
	}
	publish(events.StreamReservations, events.StockReleased{OrderID: o.ID, Items: eventItems(o.Items)})
	w.drained(events.StreamReservations, "orders")
	if got, _ := w.orders.Get(w.ctx, o.ID); got.Status != orders.StatusCancelled {
		t.Errorf("order is %s, want cancelled", got.Status)
	}
	if n := w.deadLetters(); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
}
