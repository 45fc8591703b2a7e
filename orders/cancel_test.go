package orders_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/validate"
	"github.com/orderstream/orderstream/worker/handlertest"
)

// owner is the customer of the orders of placed.
var owner = orders.Caller{Customer: "c-cancel"}

// placed places an order of owner with s, which keeps orders in db, moved
// to status by the inventory's answer ("" leaves it pending).
func placed(t *testing.T, db *sql.DB, s *orders.Service, status string) orders.Order {
	t.Helper()
	ctx := context.Background()
	o, _, err := s.Place(ctx, request(owner.Customer), "")
	if err != nil {
		t.Fatal(err)
	}
	switch status {
	case orders.StatusConfirmed:
		err = handle(ctx, db, s.OnStockReserved, events.StockReserved{OrderID: o.ID, Items: eventItems(o.Items)})
	case orders.StatusRejected:
		err = handle(ctx, db, s.OnStockRejected, events.StockRejected{OrderID: o.ID, Items: eventItems(o.Items), Reason: events.ReasonInsufficientStock})
	}
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// cancelEvents returns the OrderCancelled events the outbox holds for id.
func cancelEvents(t *testing.T, db *sql.DB, id string) []events.OrderCancelled {
	t.Helper()
	var out []events.OrderCancelled
	for _, e := range testenv.OutboxEvents(t, db, "order_id", id) {
		if e.Metadata[events.MetadataEventType] == "OrderCancelled" {
			var c events.OrderCancelled
			testenv.DecodePayload(t, e, &c)
			out = append(out, c)
		}
	}
	return out
}

func TestService_Cancel(t *testing.T) {
	t.Parallel()
	// The subtests that deliver the inventory's answers through the kit
	// share a database of the test's own, one after another; the others
	// run in parallel on the package's.
	own := testenv.OwnDB(t)

	for _, status := range []string{"", orders.StatusConfirmed} {
		name := "a_" + status + "_order"
		if status == "" {
			name = "a_pending_order"
		}
		t.Run(name+"_becomes_cancelling_with_its_event", func(t *testing.T) {
			db := own
			s, ctx := orders.NewService(db), context.Background()
			kit := handlertest.New(t, db, settleOrders(s))
			o := placed(t, db, s, status)
			got, cancelled, err := s.Cancel(ctx, owner, o.ID, "changed my mind", "")
			if err != nil || !cancelled || got.Status != orders.StatusCancelling || !got.CancelledAt.IsZero() {
				t.Fatalf("Cancel() = %+v, %v, %v; want it cancelling", got, cancelled, err)
			}
			evs := cancelEvents(t, db, o.ID)
			if len(evs) != 1 || evs[0].Reason != "changed my mind" || evs[0].CancelledAt.IsZero() {
				t.Fatalf("OrderCancelled events = %+v, want one with the reason and time", evs)
			}

			// The inventory's answer makes it cancelled, and announces it,
			// once: another StockReleased of it changes nothing.
			published := kit.Deliver(events.StockReleased{OrderID: o.ID})
			if len(published) != 1 || published[0].EventType() != "OrderCancellationCompleted" {
				t.Errorf("StockReleased published %v, want one OrderCancellationCompleted", published)
			}
			got, _ = s.Get(ctx, o.ID)
			if got.Status != orders.StatusCancelled || got.CancelledAt.IsZero() {
				t.Errorf("after StockReleased: %+v, want cancelled with cancelled_at", got)
			}
			if published := kit.Deliver(events.StockReleased{OrderID: o.ID}); len(published) != 0 {
				t.Errorf("a second StockReleased published %v, want nothing", published)
			}
			// Cancelled already: unchanged, no second event.
			again, cancelled, err := s.Cancel(ctx, owner, o.ID, "", "")
			if err != nil || cancelled || again.Status != orders.StatusCancelled || !again.CancelledAt.Equal(got.CancelledAt) {
				t.Errorf("Cancel() again = %+v, %v, %v; want the cancelled order unchanged", again, cancelled, err)
			}
			if n := len(cancelEvents(t, db, o.ID)); n != 1 {
				t.Errorf("%d OrderCancelled events, want 1", n)
			}
		})
	}

	t.Run("a_cancelling_order_is_left_as_it_is", func(t *testing.T) {
		t.Parallel()
		db := testenv.DB(t)
		s, ctx := orders.NewService(db), context.Background()
		o := placed(t, db, s, "")
		if _, _, err := s.Cancel(ctx, owner, o.ID, "", ""); err != nil {
			t.Fatal(err)
		}
		got, cancelled, err := s.Cancel(ctx, owner, o.ID, "other", "")
		if err != nil || cancelled || got.Status != orders.StatusCancelling {
			t.Errorf("Cancel() of a cancelling order = %+v, %v, %v; want it unchanged", got, cancelled, err)
		}
		if n := len(cancelEvents(t, db, o.ID)); n != 1 {
			t.Errorf("%d OrderCancelled events, want 1", n)
		}
	})

	t.Run("a_rejected_order_cannot_be_cancelled", func(t *testing.T) {
		t.Parallel()
		db := testenv.DB(t)
		s, ctx := orders.NewService(db), context.Background()
		o := placed(t, db, s, orders.StatusRejected)
		if _, _, err := s.Cancel(ctx, owner, o.ID, "", ""); !errors.Is(err, orders.ErrNotCancellable) {
			t.Errorf("Cancel() of a rejected order = %v, want ErrNotCancellable", err)
		}
		if got, _ := s.Get(ctx, o.ID); got.Status != orders.StatusRejected || len(cancelEvents(t, db, o.ID)) != 0 {
			t.Errorf("after the refused cancel: %s, want rejected and no OrderCancelled", got.Status)
		}
	})

	t.Run("an_unknown_order_is_not_found", func(t *testing.T) {
		t.Parallel()
		s, ctx := newService(t)
		for _, id := range []string{uuid.NewString(), "not-a-uuid", ""} {
			if _, _, err := s.Cancel(ctx, owner, id, "", ""); !errors.Is(err, orders.ErrNotFound) {
				t.Errorf("Cancel(%q) = %v, want ErrNotFound", id, err)
			}
		}
	})

	t.Run("refuses_a_reason_too_long_or_not_text", func(t *testing.T) {
		t.Parallel()
		db := testenv.DB(t)
		s, ctx := orders.NewService(db), context.Background()
		o := placed(t, db, s, "")
		var errs validate.Errors
		if _, _, err := s.Cancel(ctx, owner, o.ID, strings.Repeat("é", orders.MaxCancelReasonLen+1), ""); !errors.As(err, &errs) {
			t.Errorf("Cancel() = %v, want validate.Errors", err)
		}
		if _, _, err := s.Cancel(ctx, owner, o.ID, "a\x00b", ""); !errors.As(err, &errs) {
			t.Errorf("Cancel() with a NUL in the reason = %v, want validate.Errors", err)
		}
		if _, _, err := s.Cancel(ctx, owner, o.ID, strings.Repeat("é", orders.MaxCancelReasonLen), ""); err != nil {
			t.Errorf("Cancel() with a reason of the longest length = %v", err)
		}
	})

	t.Run("a_settlement_after_the_cancel_changes_nothing", func(t *testing.T) {
		db := own
		s, ctx := orders.NewService(db), context.Background()
		kit := handlertest.New(t, db, settleOrders(s))
		for _, answer := range []string{orders.StatusConfirmed, orders.StatusRejected} {
			o := placed(t, db, s, "")
			if _, _, err := s.Cancel(ctx, owner, o.ID, "", ""); err != nil {
				t.Fatal(err)
			}
			var e events.Event = events.StockReserved{OrderID: o.ID, Items: eventItems(o.Items)}
			if answer == orders.StatusRejected {
				e = events.StockRejected{OrderID: o.ID, Items: eventItems(o.Items), Reason: events.ReasonUnknownSKU}
			}
			if published := kit.Deliver(e); len(published) != 0 {
				t.Errorf("a %s answer after the cancel published %v, want nothing", answer, published)
			}
			if got, _ := s.Get(ctx, o.ID); got.Status != orders.StatusCancelling {
				t.Errorf("a %s answer after the cancel made it %s, want it still cancelling", answer, got.Status)
			}
		}
	})

	t.Run("an_idempotency_key_replays_and_refuses_another_request", func(t *testing.T) {
		t.Parallel()
		db := testenv.DB(t)
		s, ctx := orders.NewService(db), context.Background()
		o, other := placed(t, db, s, ""), placed(t, db, s, "")
		key := testenv.Unique("cancel-key")
		if _, cancelled, err := s.Cancel(ctx, owner, o.ID, "r", key); err != nil || !cancelled {
			t.Fatalf("Cancel() = %v, %v", cancelled, err)
		}
		if got, cancelled, err := s.Cancel(ctx, owner, o.ID, "r", key); err != nil || cancelled || got.ID != o.ID {
			t.Errorf("replay = %+v, %v, %v; want the order, not cancelled again", got, cancelled, err)
		}
		for _, c := range []struct{ id, reason string }{{o.ID, "another reason"}, {other.ID, "r"}} {
			if _, _, err := s.Cancel(ctx, owner, c.id, c.reason, key); !errors.Is(err, orders.ErrIdempotencyConflict) {
				t.Errorf("Cancel(%s, %q) with the key = %v, want ErrIdempotencyConflict", c.id, c.reason, err)
			}
		}
		if _, _, err := s.Place(ctx, request(owner.Customer), key); !errors.Is(err, orders.ErrIdempotencyConflict) {
			t.Errorf("Place() with a cancel's key = %v, want ErrIdempotencyConflict", err)
		}
		if got, _ := s.Get(ctx, other.ID); got.Status != orders.StatusPending {
			t.Errorf("the other order is %s, want pending", got.Status)
		}
	})

	t.Run("a_cancel_that_changes_nothing_stores_no_key", func(t *testing.T) {
		t.Parallel()
		db := testenv.DB(t)
		s, ctx := orders.NewService(db), context.Background()
		o := placed(t, db, s, "")
		if _, cancelled, err := s.Cancel(ctx, owner, o.ID, "", ""); err != nil || !cancelled {
			t.Fatalf("Cancel() = %v, %v", cancelled, err)
		}
		key := testenv.Unique("noop-key")
		if _, cancelled, err := s.Cancel(ctx, owner, o.ID, "again", key); err != nil || cancelled {
			t.Fatalf("a second Cancel() = %v, %v; want the order unchanged", cancelled, err)
		}
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM idempotency_keys WHERE key = $1`, key).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d rows (%v) for the key of a cancel that changed nothing, want none", n, err)
		}
		if _, created, err := s.Place(ctx, request(owner.Customer), key); err != nil || !created {
			t.Errorf("Place() with the key of a cancel that changed nothing = %v, %v; want a new order", created, err)
		}
	})

	t.Run("concurrent_cancels_write_one_event", func(t *testing.T) {
		t.Parallel()
		db := testenv.DB(t)
		s, ctx := orders.NewService(db), context.Background()
		o := placed(t, db, s, "")
		var wg sync.WaitGroup
		var mu sync.Mutex
		cancelledBy := 0
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, cancelled, err := s.Cancel(ctx, owner, o.ID, "", "")
				if err != nil {
					t.Error(err)
				}
				if cancelled {
					mu.Lock()
					cancelledBy++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if n := len(cancelEvents(t, db, o.ID)); cancelledBy != 1 || n != 1 {
			t.Errorf("%d calls cancelled, %d OrderCancelled events; want 1 and 1", cancelledBy, n)
		}
	})
}

// TestService_OnStockReleased delivers the inventory's release as the
// worker does, through the kit. The subtests share a database of the
// test's own, one after another.
func TestService_OnStockReleased(t *testing.T) {
	t.Parallel()
	db := testenv.OwnDB(t)
	s, ctx := orders.NewService(db), context.Background()

	t.Run("makes_the_cancelling_order_cancelled_and_announces_it", func(t *testing.T) {
		kit := handlertest.New(t, db, settleOrders(s))
		o := placed(t, db, s, "")
		if _, _, err := s.Cancel(ctx, owner, o.ID, "", ""); err != nil {
			t.Fatal(err)
		}
		published := kit.Deliver(events.StockReleased{OrderID: o.ID, Items: eventItems(o.Items)})
		got, _ := s.Get(ctx, o.ID)
		if got.Status != orders.StatusCancelled {
			t.Errorf("order is %s, want cancelled", got.Status)
		}
		if len(published) != 1 {
			t.Fatalf("published %v, want one OrderCancellationCompleted", published)
		}
		if c, ok := published[0].(events.OrderCancellationCompleted); !ok || c.OrderID != o.ID || c.CustomerID != o.CustomerID ||
			!c.CancelledAt.Equal(got.CancelledAt) {
			t.Errorf("published %#v, want the OrderCancellationCompleted of %s for %s at its cancelled_at %v",
				published[0], o.ID, o.CustomerID, got.CancelledAt)
		}
	})

	t.Run("refuses_what_names_no_order", func(t *testing.T) {
		kit := handlertest.New(t, db, settleOrders(s))
		for _, id := range []string{"not-a-uuid", uuid.NewString()} {
			if published, err := kit.Attempt(events.StockReleased{OrderID: id}); !errors.Is(err, events.ErrMalformed) || len(published) != 0 {
				t.Errorf("OnStockReleased(%q) = %v, published %v; want ErrMalformed and nothing", id, err, published)
			}
		}
	})
}
