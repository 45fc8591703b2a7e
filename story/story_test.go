package story_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/notifications"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
	"github.com/orderstream/orderstream/story"
	"github.com/orderstream/orderstream/worker"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// flow is the application's flow on a database and streams of the test's
// own: the forwarder, and with workers the handlers as handlers.go lists
// them.
type flow struct {
	t         *testing.T
	ctx       context.Context
	db        *sql.DB
	rdb       redis.UniversalClient
	streams   redisstreams.Config
	orders    *orders.Service
	inventory *inventory.Service
	src       story.Sources
}

func subscriptions(o *orders.Service, inv *inventory.Service) []worker.Subscription {
	return []worker.Subscription{
		{Name: "inventory.reserve_stock", Stream: events.StreamOrdersPlaced, Group: "inventory",
			Handlers: []cqrs.GroupEventHandler{
				cqrs.NewGroupEventHandler(postgres.InInbox(inv.OnOrderPlaced)),
				cqrs.NewGroupEventHandler(postgres.InInbox(inv.OnOrderCancelled)),
			}},
		{Name: "orders.settle", Stream: events.StreamReservations, Group: "orders",
			Handlers: []cqrs.GroupEventHandler{
				cqrs.NewGroupEventHandler(postgres.InInbox(o.OnStockReserved)),
				cqrs.NewGroupEventHandler(postgres.InInbox(o.OnStockRejected)),
				cqrs.NewGroupEventHandler(postgres.InInbox(o.OnStockReleased)),
			}},
		{Name: "notifications.order_confirmed", Stream: events.StreamOrderOutcomes, Group: "notifications",
			Handlers: []cqrs.GroupEventHandler{
				cqrs.NewGroupEventHandler(postgres.InInbox(notifications.Service{}.OnOrderConfirmed)),
			}},
	}
}

// startFlow runs the forwarder until the test ends, and the workers too
// when withWorkers. The events spread over four outbox shards.
func startFlow(t *testing.T, withWorkers bool) *flow {
	t.Helper()
	db := testenv.OwnDB(t) // the forwarder takes every row of its database
	f := &flow{t: t, ctx: postgres.WithOutboxShards(context.Background(), 4), db: db, streams: testenv.Streams(t),
		orders: orders.NewService(db), inventory: inventory.NewService(db)}
	subs := subscriptions(f.orders, f.inventory)
	f.streams.Consumed = worker.ConsumedStreams(subs)
	f.rdb = f.streams.NewClient()
	t.Cleanup(func() { f.rdb.Close() })
	f.src = story.Sources{DB: db, Redis: f.rdb, Streams: f.streams,
		SettleTimeout: time.Minute, OutboxRetention: 24 * time.Hour, StreamRetention: 24 * time.Hour}
	for _, s := range subs {
		f.src.Handlers = append(f.src.Handlers, story.Handler{Name: s.Name, Stream: s.Stream, Group: s.Group, EventTypes: s.EventTypes()})
	}

	fwd, err := outbox.NewForwarder(db, f.streams, outbox.ForwarderConfig{PollInterval: 20 * time.Millisecond, BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	runs := []func(context.Context) error{fwd.Run}
	if withWorkers {
		m, err := worker.NewMessages(worker.MessagesConfig{DB: db, Streams: f.streams, Subscriptions: subs,
			Logger: testenv.Logger(t), Metrics: metrics.New(), HandlerTimeout: 5 * time.Second, MaxRetries: 2})
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, m.Run)
	}
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, len(runs))
	for _, run := range runs {
		go func() { done <- run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for range runs {
			if err := <-done; err != nil {
				t.Errorf("flow: %v", err)
			}
		}
	})
	return f
}

// place places an order of one unit of a SKU with stock, with a
// correlation id, and returns its id.
func (f *flow) place(correlation string) string {
	f.t.Helper()
	sku := testenv.Unique("SKU")
	if _, err := f.inventory.Set(f.ctx, sku, 5); err != nil {
		f.t.Fatal(err)
	}
	o, _, err := f.orders.Place(events.WithCorrelationID(f.ctx, correlation),
		orders.PlaceRequest{CustomerID: "c-1", Items: []orders.Item{{SKU: sku, Quantity: 1}}}, "")
	if err != nil {
		f.t.Fatal(err)
	}
	return o.ID
}

// storyUntil reads the order's story until done says it is complete.
func (f *flow) storyUntil(id, what string, done func(story.Story) bool) story.Story {
	f.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := story.Read(f.ctx, f.src, id)
		if err != nil {
			f.t.Fatal(err)
		}
		if done(st) {
			return st
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("the story of %s never had %s:\n%s", id, what, show(st))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// has reports whether st has a step of kind and name.
func has(kind, name string) func(story.Story) bool {
	return func(st story.Story) bool {
		return slices.ContainsFunc(st.Steps, func(s story.Step) bool { return s.Kind == kind && s.Name == name })
	}
}

func show(st story.Story) string {
	var b strings.Builder
	for _, s := range st.Steps {
		b.WriteString(s.At.Format(time.RFC3339Nano) + " +" + s.Delay.String() + " " + s.Kind + " " + s.Name + ": " + s.Detail + "\n")
	}
	for _, m := range st.Missing {
		b.WriteString("missing: " + m + "\n")
	}
	return b.String()
}

// kindsAndNames are the steps of st as "kind name".
func kindsAndNames(st story.Story) []string {
	out := make([]string, len(st.Steps))
	for i, s := range st.Steps {
		out[i] = s.Kind + " " + s.Name
	}
	return out
}

// inTime checks that the steps are in time order, each delay the time
// since the step before.
func inTime(t *testing.T, st story.Story) {
	t.Helper()
	for i, s := range st.Steps {
		if s.Delay < 0 || i > 0 && s.Delay != s.At.Sub(st.Steps[i-1].At) || i == 0 && s.Delay != 0 {
			t.Errorf("step %d (%s %s) has delay %s after %v:\n%s", i, s.Kind, s.Name, s.Delay, st.Steps[max(i-1, 0)].At, show(st))
		}
	}
}

// TestRead_confirmedOrder: the story of a confirmed order has every step
// from its placement to its last handler, in order, and its correlation id.
func TestRead_confirmedOrder(t *testing.T) {
	t.Parallel()
	f := startFlow(t, true)
	id := f.place("corr-confirmed")
	st := f.storyUntil(id, "its notification", has(story.KindHandled, "notifications.order_confirmed"))

	want := []string{
		"placed order placed",
		"written OrderPlaced", "on_stream OrderPlaced", "handled inventory.reserve_stock",
		"reserved stock reserved", "written StockReserved", "on_stream StockReserved", "handled orders.settle",
		"written OrderConfirmed", "settled confirmed", "on_stream OrderConfirmed", "handled notifications.order_confirmed",
	}
	if got := kindsAndNames(st); !slices.Equal(got, want) {
		t.Errorf("steps =\n%s\nwant %q", show(st), want)
	}
	inTime(t, st)
	if !st.Settled || len(st.Missing) != 0 || st.CorrelationID != "corr-confirmed" || st.Order.ID != id ||
		st.Order.Status != "confirmed" || st.Order.CustomerID != "c-1" || !st.Order.CreatedAt.Equal(st.Steps[0].At) {
		t.Errorf("story = %+v, want order %s confirmed for c-1, settled, nothing missing, correlation id corr-confirmed", st, id)
	}
	for _, s := range st.Steps {
		switch s.Kind {
		case story.KindWritten:
			if s.Shard == nil || s.Forwarded == nil || !*s.Forwarded || s.EventUUID == "" {
				t.Errorf("written step %+v: want its shard, forwarded and UUID", s)
			}
		case story.KindOnStream:
			if s.StreamID == "" || s.Stream == "" {
				t.Errorf("on_stream step %+v: want its stream and entry id", s)
			}
		case story.KindHandled:
			if s.Handler != s.Name || s.EventUUID == "" {
				t.Errorf("handled step %+v: want its handler and UUID", s)
			}
		}
	}

	// The JSON: every field present, snake_case, the delay in milliseconds.
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"order", "correlation_id", "settled", "steps", "missing"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("the story's JSON lacks %q: %s", k, b)
		}
	}
	step := doc["steps"].([]any)[1].(map[string]any)
	for _, k := range []string{"kind", "name", "at", "delay_ms", "detail", "event_type", "event_uuid", "handler",
		"stream", "stream_id", "shard", "forwarded"} {
		if _, ok := step[k]; !ok {
			t.Errorf("a step's JSON lacks %q: %v", k, step)
		}
	}
	order := doc["order"].(map[string]any)
	for _, k := range []string{"id", "customer_id", "status", "reason", "created_at", "updated_at", "cancelled_at"} {
		if _, ok := order[k]; !ok {
			t.Errorf("the order's JSON lacks %q: %v", k, order)
		}
	}
}

// TestRead_cancelledOrder: a confirmed order then cancelled has its
// confirmation, the cancellation, the release and the end of it.
func TestRead_cancelledOrder(t *testing.T) {
	t.Parallel()
	f := startFlow(t, true)
	id := f.place("corr-cancelled")
	f.storyUntil(id, "its confirmation", has(story.KindSettled, "confirmed"))
	if _, _, err := f.orders.Cancel(f.ctx, orders.Caller{Customer: "c-1"}, id, "changed my mind", ""); err != nil {
		t.Fatal(err)
	}
	st := f.storyUntil(id, "its cancellation", has(story.KindCancelled, "cancelled"))

	got := kindsAndNames(st)
	order := []string{"settled confirmed", "written OrderCancelled", "cancelling cancelling", "handled inventory.reserve_stock",
		"released stock released", "written StockReleased", "handled orders.settle", "written OrderCancellationCompleted",
		"cancelled cancelled"}
	last := -1
	for _, w := range order {
		i := slices.Index(got[last+1:], w)
		if i < 0 {
			t.Fatalf("steps =\n%s\nwant %q in this order", show(st), order)
		}
		last += 1 + i
	}
	if slices.Contains(got, "reserved stock reserved") {
		t.Errorf("steps =\n%s\nthe released reservation is still shown", show(st))
	}
	inTime(t, st)
	if !st.Settled || st.Order.Status != "cancelled" || st.Order.CancelledAt == nil || len(st.Missing) != 0 {
		t.Errorf("story = %+v, want the order cancelled, settled, nothing missing", st)
	}
	for _, s := range st.Steps {
		if s.Kind == story.KindCancelling && !strings.Contains(s.Detail, "changed my mind") {
			t.Errorf("cancelling step %+v: want its reason", s)
		}
	}
}

// TestRead_lostPlacement: an OrderPlaced the forwarder passed but that is
// gone from its stream is missing, and the story says so plainly.
func TestRead_lostPlacement(t *testing.T) {
	t.Parallel()
	f := startFlow(t, false) // no worker: nothing handles it meanwhile
	id := f.place("corr-lost")
	st := f.storyUntil(id, "OrderPlaced on its stream", has(story.KindOnStream, "OrderPlaced"))
	if st.Settled || len(st.Missing) == 0 || !strings.Contains(strings.Join(st.Missing, "\n"), "consumer group inventory does not exist") {
		t.Errorf("before the loss:\n%s\nwant the inventory's group named as missing", show(st))
	}
	var entry string
	for _, s := range st.Steps {
		if s.Kind == story.KindOnStream {
			entry = s.StreamID
		}
	}
	if err := f.rdb.XDel(f.ctx, f.streams.Name(events.StreamOrdersPlaced), entry).Err(); err != nil {
		t.Fatal(err)
	}

	st, err := story.Read(f.ctx, f.src, id)
	if err != nil {
		t.Fatal(err)
	}
	if has(story.KindOnStream, "OrderPlaced")(st) {
		t.Errorf("steps =\n%s\nthe deleted entry is still shown", show(st))
	}
	if len(st.Missing) != 2 ||
		!strings.HasPrefix(st.Missing[0], "OrderPlaced (") ||
		!strings.Contains(st.Missing[0], "was forwarded (the forwarder's offset passed it) but is not on orders.placed: Redis lost it; "+
			"the re-drive will resend it after ORDER_SETTLE_TIMEOUT (1m0s)") ||
		!strings.HasPrefix(st.Missing[1], "no inbox row for handler inventory.reserve_stock: it cannot handle OrderPlaced until") {
		t.Errorf("missing =\n%s\nwant the lost OrderPlaced and the inventory's inbox row", strings.Join(st.Missing, "\n"))
	}
}

// TestRead_unknownOrder: an id no order has is ErrNotFound; one that is
// not a UUID, ErrBadID.
func TestRead_unknownOrder(t *testing.T) {
	t.Parallel()
	src := story.Sources{DB: testenv.DB(t), Streams: testenv.Streams(t)}
	src.Redis = src.Streams.NewClient()
	defer src.Redis.Close()
	if _, err := story.Read(context.Background(), src, uuid.NewString()); !errors.Is(err, story.ErrNotFound) {
		t.Errorf("an unknown order = %v, want ErrNotFound", err)
	}
	for _, id := range []string{"", "nope", "{" + uuid.NewString() + "}", strings.ReplaceAll(uuid.NewString(), "-", "")} {
		if _, err := story.Read(context.Background(), src, id); !errors.Is(err, story.ErrBadID) {
			t.Errorf("id %q = %v, want ErrBadID", id, err)
		}
	}
}
