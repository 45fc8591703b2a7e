package orders_test

import (
	"context"
	"errors"
	"testing"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/worker/handlertest"
)

// TestService_settle delivers the inventory's answers as the worker does,
// through the kit: each settles a pending order once and announces its
// outcome in the same transaction. The subtests share a database of the
// test's own, one after another.
func TestService_settle(t *testing.T) {
	t.Parallel()
	db := testenv.OwnDB(t)
	s, ctx := orders.NewService(db), context.Background()
	place := func(t *testing.T, customer string) orders.Order {
		t.Helper()
		o, _, err := s.Place(ctx, request(customer), "")
		if err != nil {
			t.Fatal(err)
		}
		return o
	}

	t.Run("confirms_a_reserved_order_and_announces_it_once", func(t *testing.T) {
		kit := handlertest.New(t, db, settleOrders(s))
		customer := testenv.Unique("c-confirm")
		o := place(t, customer)
		published := kit.Deliver(events.StockReserved{OrderID: o.ID, Items: eventItems(o.Items)})
		got, _ := s.Get(ctx, o.ID)
		if got.Status != orders.StatusConfirmed || got.Reason != "" || !got.UpdatedAt.After(got.CreatedAt) {
			t.Errorf("order = %+v, want confirmed with updated_at after created_at", got)
		}
		if len(published) != 1 {
			t.Fatalf("published %v, want one OrderConfirmed", published)
		}
		if c, ok := published[0].(events.OrderConfirmed); !ok || c.OrderID != o.ID || c.CustomerID != customer ||
			!c.ConfirmedAt.Equal(got.UpdatedAt) {
			t.Errorf("published %#v, want the OrderConfirmed of %s for %s at its updated_at %v", published[0], o.ID, customer, got.UpdatedAt)
		}
	})

	t.Run("rejects_with_the_reason_and_announces_it", func(t *testing.T) {
		kit := handlertest.New(t, db, settleOrders(s))
		customer := testenv.Unique("c-reject")
		o := place(t, customer)
		published := kit.Deliver(events.StockRejected{OrderID: o.ID, Items: eventItems(o.Items), Reason: events.ReasonInsufficientStock})
		got, _ := s.Get(ctx, o.ID)
		if got.Status != orders.StatusRejected || got.Reason != events.ReasonInsufficientStock {
			t.Errorf("order = %+v, want rejected for insufficient_stock", got)
		}
		if len(published) != 1 {
			t.Fatalf("published %v, want one OrderRejected", published)
		}
		if r, ok := published[0].(events.OrderRejected); !ok || r.OrderID != o.ID || r.CustomerID != customer ||
			r.Reason != events.ReasonInsufficientStock || !r.RejectedAt.Equal(got.UpdatedAt) {
			t.Errorf("published %#v, want the OrderRejected of %s for %s, insufficient_stock, at its updated_at %v",
				published[0], o.ID, customer, got.UpdatedAt)
		}
	})

	// A later answer, contradicting or not, does not change a settled
	// order, and announces nothing.
	t.Run("a_settled_order_settles_and_announces_nothing_again", func(t *testing.T) {
		kit := handlertest.New(t, db, settleOrders(s))
		answers := func(o orders.Order) []events.Event {
			return []events.Event{
				events.StockReserved{OrderID: o.ID, Items: eventItems(o.Items)},
				events.StockRejected{OrderID: o.ID, Items: eventItems(o.Items), Reason: events.ReasonUnknownSKU},
			}
		}
		for i, status := range []string{orders.StatusConfirmed, orders.StatusRejected} {
			o := place(t, "c-again")
			if published := kit.Deliver(answers(o)[i]); len(published) != 1 {
				t.Fatalf("the first answer published %v, want its outcome", published)
			}
			for _, again := range answers(o) {
				if published := kit.Deliver(again); len(published) != 0 {
					t.Errorf("%s after the order was %s published %v, want nothing", again.EventType(), status, published)
				}
			}
			if got, _ := s.Get(ctx, o.ID); got.Status != status {
				t.Errorf("the later answers made a %s order %s", status, got.Status)
			}
		}
	})

	t.Run("refuses_an_unknown_rejection_reason", func(t *testing.T) {
		kit := handlertest.New(t, db, settleOrders(s))
		o := place(t, "c-meh")
		published, err := kit.Attempt(events.StockRejected{OrderID: o.ID, Items: eventItems(o.Items), Reason: "meh"})
		if !errors.Is(err, events.ErrMalformed) || len(published) != 0 {
			t.Errorf("StockRejected for %q = %v, published %v; want ErrMalformed and nothing", "meh", err, published)
		}
		if got, _ := s.Get(ctx, o.ID); got.Status != orders.StatusPending {
			t.Errorf("order is %s after the refused answer, want pending", got.Status)
		}
	})

	t.Run("refuses_unknown_orders_and_reasons_as_malformed", func(t *testing.T) {
		kit := handlertest.New(t, db, settleOrders(s))
		for name, e := range map[string]events.Event{
			"unknown order": events.StockReserved{OrderID: "01a2085e-97ee-76b5-b6c7-24fcde6bbcdb"},
			"bad order id":  events.StockReserved{OrderID: "x"},
			"urn order id":  events.StockReserved{OrderID: "urn:uuid:01a2085e-97ee-76b5-b6c7-24fcde6bbcdb"},
			"bad reason":    events.StockRejected{OrderID: "01a2085e-97ee-76b5-b6c7-24fcde6bbcdb", Reason: "meh"},
		} {
			if _, err := kit.Attempt(e); !errors.Is(err, events.ErrMalformed) {
				t.Errorf("%s: %v, want ErrMalformed", name, err)
			}
		}
	})
}
