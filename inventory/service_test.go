package inventory_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/validate"
	"github.com/orderstream/orderstream/worker/handlertest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type fixture struct {
	t   *testing.T
	ctx context.Context
	db  *sql.DB // one pool per fixture: each testenv.DB is a pool of its own
	s   *inventory.Service
	// kit, when set, delivers the events to the handlers as the worker
	// does (kitFor); without it they are called in a transaction of InTx.
	kit *handlertest.Kit
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	db := testenv.DB(t)
	return fixture{t: t, ctx: context.Background(), db: db, s: inventory.NewService(db)}
}

// ownFixture is a fixture on a database of t's own, for the subtests that
// deliver through the kit (kitFor). The kit compares the whole database
// around each delivery, so those subtests run one after another.
func ownFixture(t *testing.T) fixture {
	t.Helper()
	db := testenv.OwnDB(t)
	return fixture{t: t, ctx: context.Background(), db: db, s: inventory.NewService(db)}
}

// kitFor is f in the subtest t, delivering the events through a kit of t's.
func (f fixture) kitFor(t *testing.T) fixture {
	t.Helper()
	f.t, f.kit = t, handlertest.New(t, f.db, reserveStock(f.s))
	return f
}

// sku sets up a new SKU with available units and returns its name.
func (f fixture) sku(available int) string {
	f.t.Helper()
	sku := testenv.Unique("SKU")
	if _, err := f.s.Set(f.ctx, sku, available); err != nil {
		f.t.Fatalf("Set(%s) = %v", sku, err)
	}
	return sku
}

func (f fixture) want(sku string, available, reserved int) {
	f.t.Helper()
	st, err := f.s.Get(f.ctx, sku)
	if err != nil {
		f.t.Fatalf("Get(%s) = %v", sku, err)
	}
	if st.Available != available || st.Reserved != reserved {
		f.t.Errorf("%s: available %d reserved %d, want %d and %d", sku, st.Available, st.Reserved, available, reserved)
	}
}

// place handles the OrderPlaced of a new order of items and returns the
// order id.
func (f fixture) place(items ...events.Item) string {
	f.t.Helper()
	id := uuid.NewString()
	f.placeOrder(id, items...)
	return id
}

// placeOrder handles the OrderPlaced of order id, of items: through the
// kit when f has one.
func (f fixture) placeOrder(id string, items ...events.Item) {
	f.t.Helper()
	e := events.OrderPlaced{OrderID: id, CustomerID: "c", Items: items}
	if f.kit != nil {
		f.kit.Deliver(e)
		return
	}
	if err := handle(f.ctx, f.db, f.s.OnOrderPlaced, e); err != nil {
		f.t.Fatalf("OnOrderPlaced() = %v", err)
	}
}

// outcome returns the event type and reason the outbox holds for order id.
func (f fixture) outcome(id string) (eventType, reason string) {
	f.t.Helper()
	evs := testenv.OutboxEvents(f.t, f.db, "order_id", id)
	if len(evs) != 1 {
		f.t.Fatalf("outbox holds %d events for order %s, want 1", len(evs), id)
	}
	var p struct{ Reason string }
	testenv.DecodePayload(f.t, evs[0], &p)
	if evs[0].DestinationTopic != events.StreamReservations {
		f.t.Errorf("event goes to %q, want %q", evs[0].DestinationTopic, events.StreamReservations)
	}
	return evs[0].Metadata[events.MetadataEventType], p.Reason
}

func TestService_Set(t *testing.T) {
	t.Parallel()
	f := newFixture(t)

	t.Run("sets_available_and_keeps_reserved", func(t *testing.T) {
		f := f
		f.t = t
		sku := f.sku(5)
		f.place(events.Item{SKU: sku, Quantity: 2})
		if _, err := f.s.Set(f.ctx, sku, 7); err != nil {
			t.Fatal(err)
		}
		f.want(sku, 7, 2)
	})

	t.Run("rejects_invalid_input", func(t *testing.T) {
		for _, c := range []struct {
			sku       string
			available int
		}{{"", 1}, {"A B", 1}, {"A", -1}, {"A", inventory.MaxAvailable + 1}} {
			var errs validate.Errors
			if _, err := f.s.Set(f.ctx, c.sku, c.available); !errors.As(err, &errs) {
				t.Errorf("Set(%q, %d) = %v, want validate.Errors", c.sku, c.available, err)
			}
		}
	})

	t.Run("get_unknown_sku_is_not_found", func(t *testing.T) {
		for _, sku := range []string{testenv.Unique("none"), "", "a b", "'; --"} {
			if _, err := f.s.Get(f.ctx, sku); !errors.Is(err, inventory.ErrNotFound) {
				t.Errorf("Get(%q) = %v, want ErrNotFound", sku, err)
			}
		}
	})
}

func TestService_OnOrderPlaced(t *testing.T) {
	t.Parallel()
	// Delivered through the kit, one subtest after another, on a database
	// of the test's own.
	own := ownFixture(t)

	t.Run("reserves_every_item_and_announces_it", func(t *testing.T) {
		f := own.kitFor(t)
		a, b := f.sku(5), f.sku(5)
		id := f.place(events.Item{SKU: a, Quantity: 2}, events.Item{SKU: b, Quantity: 5})
		f.want(a, 3, 2)
		f.want(b, 0, 5)
		if typ, reason := f.outcome(id); typ != "StockReserved" || reason != "" {
			t.Errorf("outcome = %s %q, want StockReserved", typ, reason)
		}
	})

	t.Run("reserves_nothing_when_one_item_is_short", func(t *testing.T) {
		f := own.kitFor(t)
		a, b := f.sku(5), f.sku(1)
		id := f.place(events.Item{SKU: a, Quantity: 2}, events.Item{SKU: b, Quantity: 2})
		f.want(a, 5, 0)
		f.want(b, 1, 0)
		if typ, reason := f.outcome(id); typ != "StockRejected" || reason != events.ReasonInsufficientStock {
			t.Errorf("outcome = %s %q, want StockRejected insufficient_stock", typ, reason)
		}
	})

	t.Run("rejects_an_unknown_sku", func(t *testing.T) {
		f := own.kitFor(t)
		a := f.sku(5)
		id := f.place(events.Item{SKU: a, Quantity: 1}, events.Item{SKU: testenv.Unique("ghost"), Quantity: 1})
		f.want(a, 5, 0)
		if typ, reason := f.outcome(id); typ != "StockRejected" || reason != events.ReasonUnknownSKU {
			t.Errorf("outcome = %s %q, want StockRejected unknown_sku", typ, reason)
		}
	})

	t.Run("refuses_malformed_orders", func(t *testing.T) {
		f := own.kitFor(t)
		published, err := f.kit.Attempt(events.OrderPlaced{OrderID: uuid.NewString()})
		if !errors.Is(err, events.ErrMalformed) || len(published) != 0 {
			t.Errorf("OnOrderPlaced(no items) = %v, published %v; want ErrMalformed and nothing", err, published)
		}
	})

	// Orders that race each other for the stock: on the package's
	// database, each handled in a transaction of its own.
	t.Run("never_oversells_under_concurrent_orders", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		sku, other := f.sku(10), f.sku(100)
		const orders = 50
		ids := make([]string, orders)
		var wg sync.WaitGroup
		for i := range orders {
			wg.Go(func() {
				// Half the orders also take another SKU, in the other
				// order, to show that row locks cannot deadlock.
				items := []events.Item{{SKU: sku, Quantity: 1}}
				if i%2 == 0 {
					items = []events.Item{{SKU: other, Quantity: 1}, {SKU: sku, Quantity: 1}}
				}
				ids[i] = uuid.NewString()
				if err := handle(f.ctx, f.db, f.s.OnOrderPlaced, events.OrderPlaced{OrderID: ids[i], Items: items}); err != nil {
					t.Errorf("OnOrderPlaced() = %v", err)
				}
			})
		}
		wg.Wait()
		f.want(sku, 0, 10)
		var reserved, rejected, otherReserved int
		for i, id := range ids {
			switch typ, reason := f.outcome(id); {
			case typ == "StockReserved":
				reserved++
				if i%2 == 0 {
					otherReserved++
				}
			case typ == "StockRejected" && reason == events.ReasonInsufficientStock:
				rejected++
			default:
				t.Errorf("order %d: outcome %s %q", i, typ, reason)
			}
		}
		if reserved != 10 || rejected != 40 {
			t.Errorf("%d reserved and %d rejected, want 10 and 40", reserved, rejected)
		}
		f.want(other, 100-otherReserved, otherReserved)
	})
}
