package orders_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/orders"
)

func TestCaller_Sees(t *testing.T) {
	t.Parallel()
	o := orders.Order{ID: uuid.NewString(), CustomerID: "c-1"}
	for _, c := range []struct {
		name   string
		caller orders.Caller
		want   bool
	}{
		{"its_customer", orders.Caller{Customer: "c-1"}, true},
		{"another_customer", orders.Caller{Customer: "c-2"}, false},
		{"a_customer_whose_id_differs_in_case", orders.Caller{Customer: "C-1"}, false},
		{"no_customer", orders.Caller{}, false},
		{"an_administrator", orders.Caller{Customer: "ops", Admin: true}, true},
		{"an_administrator_without_customer_id", orders.Caller{Admin: true}, true},
	} {
		if got := c.caller.Sees(o); got != c.want {
			t.Errorf("%s: %+v.Sees(order of c-1) = %v, want %v", c.name, c.caller, got, c.want)
		}
	}
	if (orders.Caller{}).Sees(orders.Order{}) {
		t.Error("a caller without customer id sees an order without one")
	}
}

// TestService_Cancel_caller: a customer cancels its own orders only, an
// administrator any; another customer's order is not found, as an
// unknown one is, and nothing is written for it.
func TestService_Cancel_caller(t *testing.T) {
	t.Parallel()

	t.Run("another_customers_order_is_not_found_and_stays_as_it_is", func(t *testing.T) {
		t.Parallel()
		db := testenv.DB(t)
		s, ctx := orders.NewService(db), t.Context()
		o := placed(t, db, s, "")
		key := testenv.Unique("stranger-key")
		unknown := uuid.NewString()
		_, _, unknownErr := s.Cancel(ctx, owner, unknown, "mine now", key)
		if !errors.Is(unknownErr, orders.ErrNotFound) {
			t.Fatalf("Cancel() of an unknown order = %v, want ErrNotFound", unknownErr)
		}
		for _, stranger := range []orders.Caller{{Customer: "c-stranger"}, {}} {
			got, cancelled, err := s.Cancel(ctx, stranger, o.ID, "mine now", key)
			if !errors.Is(err, orders.ErrNotFound) || cancelled || got.ID != "" {
				t.Errorf("Cancel() by %+v = %+v, %v, %v; want ErrNotFound", stranger, got, cancelled, err)
			}
			// Not a distinct error: the same as an unknown id's.
			if err != nil && strings.ReplaceAll(err.Error(), o.ID, unknown) != unknownErr.Error() {
				t.Errorf("Cancel() by %+v = %q, an unknown order's is %q", stranger, err, unknownErr)
			}
		}
		if got, _ := s.Get(ctx, o.ID); got.Status != orders.StatusPending {
			t.Errorf("the order is %s, want pending", got.Status)
		}
		if evs := cancelEvents(t, db, o.ID); len(evs) != 0 {
			t.Errorf("OrderCancelled events %+v, want none", evs)
		}
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM idempotency_keys WHERE key = $1`, key).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d rows (%v) for the key of the refused cancel, want none", n, err)
		}
		// Its customer cancels it, with the same key.
		if _, cancelled, err := s.Cancel(ctx, owner, o.ID, "mine", key); err != nil || !cancelled {
			t.Errorf("Cancel() by its customer = %v, %v; want it cancelled", cancelled, err)
		}
	})

	t.Run("an_administrator_cancels_any_order_under_its_customers_key", func(t *testing.T) {
		t.Parallel()
		db := testenv.DB(t)
		s, ctx := orders.NewService(db), t.Context()
		o := placed(t, db, s, orders.StatusConfirmed)
		admin := orders.Caller{Customer: "ops", Admin: true}
		key := testenv.Unique("admin-key")
		got, cancelled, err := s.Cancel(ctx, admin, o.ID, "fraud", key)
		if err != nil || !cancelled || got.Status != orders.StatusCancelling {
			t.Fatalf("Cancel() by an administrator = %+v, %v, %v; want it cancelling", got, cancelled, err)
		}
		var customer string
		if err := db.QueryRow(`SELECT customer_id FROM idempotency_keys WHERE key = $1`, key).Scan(&customer); err != nil || customer != owner.Customer {
			t.Errorf("the key is %q's (%v), want the order's customer %q's", customer, err, owner.Customer)
		}
		// The key is the customer's: the same request of the customer
		// replays it, another conflicts.
		if got, cancelled, err := s.Cancel(ctx, owner, o.ID, "fraud", key); err != nil || cancelled || got.ID != o.ID {
			t.Errorf("the customer's Cancel() with the key = %+v, %v, %v; want the replay", got, cancelled, err)
		}
		if _, _, err := s.Place(ctx, request(owner.Customer), key); !errors.Is(err, orders.ErrIdempotencyConflict) {
			t.Errorf("the customer's Place() with the key = %v, want ErrIdempotencyConflict", err)
		}
	})
}
