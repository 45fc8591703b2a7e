package orders_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/logging"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/postgres"
)

// The idempotency key remembers the whole request: the same key with the
// same customer but other items is another request, not a replay.
func TestService_Place_sameKeyWithOtherItemsConflicts(t *testing.T) {
	t.Parallel()
	s, ctx := newService(t)
	key := testenv.Unique("key")
	if _, _, err := s.Place(ctx, request("c-items", orders.Item{SKU: "A", Quantity: 1}), key); err != nil {
		t.Fatal(err)
	}
	for _, other := range []orders.PlaceRequest{
		request("c-items", orders.Item{SKU: "A", Quantity: 2}),
		request("c-items", orders.Item{SKU: "B", Quantity: 1}),
		request("c-items", orders.Item{SKU: "A", Quantity: 1}, orders.Item{SKU: "B", Quantity: 1}),
	} {
		if _, _, err := s.Place(ctx, other, key); !errors.Is(err, orders.ErrIdempotencyConflict) {
			t.Errorf("Place(%+v) with the key of another request = %v, want ErrIdempotencyConflict", other.Items, err)
		}
	}
}

// Settling reports the time from the order's commit to its settlement by
// the database clock, and notes the outcome and the rejection reason for
// the handler's log line.
func TestService_settle_reportsWhatItDid(t *testing.T) {
	t.Parallel()
	db := testenv.DB(t)
	var took []time.Duration
	s := orders.NewService(db, orders.WithSettled(func(d time.Duration) { took = append(took, d) }))
	ctx, notes := logging.WithNotes(t.Context())
	o, _, err := s.Place(t.Context(), request("c-took"), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := handle(ctx, db, s.OnStockRejected, events.StockRejected{OrderID: o.ID, Reason: events.ReasonUnknownSKU}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(t.Context(), o.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := got.UpdatedAt.Sub(got.CreatedAt)
	if len(took) != 1 || (took[0]-want).Abs() > time.Microsecond {
		t.Errorf("settled reported %v, want once the order's updated_at - created_at, %v", took, want)
	}
	n := notes()
	if !slices.Contains(n, any("reason")) || !slices.Contains(n, any(events.ReasonUnknownSKU)) ||
		!slices.Contains(n, any(orders.StatusRejected)) {
		t.Errorf("notes = %v, want the outcome rejected and the reason unknown_sku", n)
	}

	// Settling again changes nothing and reports no latency.
	if err := handle(ctx, db, s.OnStockReserved, events.StockReserved{OrderID: o.ID}); err != nil {
		t.Fatal(err)
	}
	if len(took) != 1 {
		t.Errorf("settled reported %v after a second outcome, want one report", took)
	}
}

// The settle metric is observed once the settlement has committed: a
// settlement whose transaction rolls back (the inbox's, when something
// after the handler fails) reports nothing, and the order stays pending.
func TestService_settle_reportsNothingOfARolledBackSettlement(t *testing.T) {
	t.Parallel()
	db := testenv.DB(t)
	var took []time.Duration
	s := orders.NewService(db, orders.WithSettled(func(d time.Duration) { took = append(took, d) }))
	o, _, err := s.Place(t.Context(), request("c-rollback"), "")
	if err != nil {
		t.Fatal(err)
	}
	failed := errors.New("failed after the handler")
	err = postgres.InTx(t.Context(), db, func(ctx context.Context, tx *postgres.Tx) error {
		if err := s.OnStockReserved(ctx, tx, &events.StockReserved{OrderID: o.ID, Items: eventItems(o.Items)}); err != nil {
			return err
		}
		return failed
	})
	if !errors.Is(err, failed) {
		t.Fatalf("InTx() = %v, want the failure after the handler", err)
	}
	if len(took) != 0 {
		t.Errorf("settled reported %v for a settlement rolled back, want nothing", took)
	}
	if got, _ := s.Get(t.Context(), o.ID); got.Status != orders.StatusPending {
		t.Errorf("order is %s after the rollback, want pending", got.Status)
	}
}
