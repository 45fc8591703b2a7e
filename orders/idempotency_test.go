package orders_test

import (
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/orders"
)

// age sets customer's key back by ago, as if it had been stored that long
// ago.
func age(t *testing.T, db *sql.DB, customer, key string, ago time.Duration) {
	t.Helper()
	res, err := db.Exec(`UPDATE idempotency_keys SET created_at = now() - $3::bigint * interval '1 millisecond'
		WHERE customer_id = $1 AND key = $2`, customer, key, ago.Milliseconds())
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("aged %d keys %q of %q, want 1", n, key, customer)
	}
}

// keyNames returns the order that customer's key names.
func keyNames(t *testing.T, db *sql.DB, customer, key string) (id string) {
	t.Helper()
	if err := db.QueryRow(`SELECT order_id FROM idempotency_keys WHERE customer_id = $1 AND key = $2`,
		customer, key).Scan(&id); err != nil {
		t.Fatalf("read the key %q of %q: %v", key, customer, err)
	}
	return id
}

func TestService_Place_idempotencyScope(t *testing.T) {
	t.Parallel()

	t.Run("the_same_key_from_two_customers_places_two_orders", func(t *testing.T) {
		t.Parallel()
		s, ctx := newService(t)
		key := testenv.Unique("key")
		a, created, err := s.Place(ctx, request("c-scope-a"), key)
		if err != nil || !created {
			t.Fatalf("Place() of customer a = %v, %v", created, err)
		}
		b, created, err := s.Place(ctx, request("c-scope-b"), key)
		if err != nil || !created || b.ID == a.ID || b.CustomerID != "c-scope-b" {
			t.Fatalf("Place() of customer b with a's key = %+v, %v, %v; want an order of b's own", b, created, err)
		}
		// Each replays its own.
		for _, o := range []orders.Order{a, b} {
			if again, created, err := s.Place(ctx, request(o.CustomerID), key); err != nil || created || again.ID != o.ID {
				t.Errorf("replay of %s = %s, %v, %v; want %s", o.CustomerID, again.ID, created, err, o.ID)
			}
		}
	})

	t.Run("an_expired_key_is_taken_over_by_a_new_request", func(t *testing.T) {
		t.Parallel()
		db := testenv.DB(t)
		s, ctx := orders.NewService(db, orders.WithIdempotencyTTL(time.Hour)), t.Context()
		customer, key := testenv.Unique("c-expired"), testenv.Unique("key")
		first, _, err := s.Place(ctx, request(customer), key)
		if err != nil {
			t.Fatal(err)
		}
		other := request(customer, orders.Item{SKU: "SKU-9", Quantity: 1})

		// Younger than the TTL, it counts.
		age(t, db, customer, key, 30*time.Minute)
		if _, _, err := s.Place(ctx, other, key); !errors.Is(err, orders.ErrIdempotencyConflict) {
			t.Fatalf("Place() of another body with an unexpired key = %v, want ErrIdempotencyConflict", err)
		}

		// Older, it does not.
		age(t, db, customer, key, 2*time.Hour)
		second, created, err := s.Place(ctx, other, key)
		if err != nil || !created || second.ID == first.ID {
			t.Fatalf("Place() of another body with an expired key = %+v, %v, %v; want a new order", second, created, err)
		}
		if id := keyNames(t, db, customer, key); id != second.ID {
			t.Errorf("the key names %s, want the new order %s", id, second.ID)
		}
		// The key is the new request's now, and counts again.
		if again, created, err := s.Place(ctx, other, key); err != nil || created || again.ID != second.ID {
			t.Errorf("replay of the new request = %s, %v, %v; want %s", again.ID, created, err, second.ID)
		}
		if _, _, err := s.Place(ctx, request(customer), key); !errors.Is(err, orders.ErrIdempotencyConflict) {
			t.Errorf("Place() of the first body = %v, want ErrIdempotencyConflict", err)
		}
		if got, err := s.Get(ctx, first.ID); err != nil || got.Status != orders.StatusPending {
			t.Errorf("the first order = %+v, %v; want it still there", got, err)
		}
	})

	t.Run("concurrent_requests_with_an_expired_key_place_one_order", func(t *testing.T) {
		t.Parallel()
		db := testenv.DB(t)
		s, ctx := orders.NewService(db), t.Context()
		customer, key := testenv.Unique("c-race"), testenv.Unique("key")
		first, _, err := s.Place(ctx, request(customer), key)
		if err != nil {
			t.Fatal(err)
		}
		age(t, db, customer, key, orders.DefaultIdempotencyTTL+time.Hour)
		const n = 10
		ids := make([]string, n)
		created := make([]bool, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				o, c, err := s.Place(ctx, request(customer, orders.Item{SKU: "SKU-9", Quantity: 1}), key)
				if err != nil {
					t.Errorf("Place() = %v", err)
				}
				ids[i], created[i] = o.ID, c
			})
		}
		wg.Wait()
		var nCreated int
		for i := range n {
			if ids[i] != ids[0] || ids[i] == first.ID {
				t.Errorf("request %d got order %s, request 0 got %s; the expired key named %s", i, ids[i], ids[0], first.ID)
			}
			if created[i] {
				nCreated++
			}
		}
		if nCreated != 1 {
			t.Errorf("%d requests created an order, want 1", nCreated)
		}
	})

	t.Run("a_cancel_takes_over_an_expired_key", func(t *testing.T) {
		t.Parallel()
		db := testenv.DB(t)
		s, ctx := orders.NewService(db), t.Context()
		o := placed(t, db, s, "")
		key := testenv.Unique("key")
		if _, _, err := s.Place(ctx, request(owner.Customer), key); err != nil {
			t.Fatal(err)
		}
		age(t, db, owner.Customer, key, orders.DefaultIdempotencyTTL+time.Hour)
		if _, cancelled, err := s.Cancel(ctx, owner, o.ID, "", key); err != nil || !cancelled {
			t.Fatalf("Cancel() with an expired key = %v, %v; want it cancelled", cancelled, err)
		}
		if id := keyNames(t, db, owner.Customer, key); id != o.ID {
			t.Errorf("the key names %s, want the cancelled order %s", id, o.ID)
		}
	})

	t.Run("an_expired_key_refuses_no_cancel_that_changes_nothing", func(t *testing.T) {
		t.Parallel()
		db := testenv.DB(t)
		s, ctx := orders.NewService(db), t.Context()
		o := placed(t, db, s, "")
		if _, _, err := s.Cancel(ctx, owner, o.ID, "", ""); err != nil {
			t.Fatal(err)
		}
		key := testenv.Unique("key")
		if _, _, err := s.Place(ctx, request(owner.Customer), key); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Cancel(ctx, owner, o.ID, "", key); !errors.Is(err, orders.ErrIdempotencyConflict) {
			t.Fatalf("Cancel() with a place's unexpired key = %v, want ErrIdempotencyConflict", err)
		}
		age(t, db, owner.Customer, key, orders.DefaultIdempotencyTTL+time.Hour)
		if _, cancelled, err := s.Cancel(ctx, owner, o.ID, "", key); err != nil || cancelled {
			t.Errorf("Cancel() with a place's expired key = %v, %v; want the order unchanged", cancelled, err)
		}
	})
}

// TestService_ForgetExpiredKeys runs on a database of its own: it deletes
// every expired key there is.
func TestService_ForgetExpiredKeys(t *testing.T) {
	t.Parallel()
	db := testenv.OwnDB(t)
	s, ctx := orders.NewService(db, orders.WithIdempotencyTTL(time.Hour)), t.Context()
	customer := testenv.Unique("c-forget")
	keys := []string{"fresh", "young", "old", "older"}
	for _, key := range keys {
		if _, _, err := s.Place(ctx, request(customer), key); err != nil {
			t.Fatal(err)
		}
	}
	age(t, db, customer, "young", 30*time.Minute)
	age(t, db, customer, "old", 2*time.Hour)
	age(t, db, customer, "older", 48*time.Hour)

	n, err := s.ForgetExpiredKeys(ctx)
	if err != nil || n != 2 {
		t.Fatalf("ForgetExpiredKeys() = %d, %v; want the 2 expired keys", n, err)
	}
	var left []string
	rows, err := db.Query(`SELECT key FROM idempotency_keys ORDER BY key`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		left = append(left, k)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(left) != 2 || left[0] != "fresh" || left[1] != "young" {
		t.Errorf("keys left %v, want [fresh young]", left)
	}
	var orderCount int
	if err := db.QueryRow(`SELECT count(*) FROM orders WHERE customer_id = $1`, customer).Scan(&orderCount); err != nil || orderCount != len(keys) {
		t.Errorf("%d orders (%v), want all %d: a key goes, its order stays", orderCount, err, len(keys))
	}
	if n, err := s.ForgetExpiredKeys(ctx); err != nil || n != 0 {
		t.Errorf("ForgetExpiredKeys() again = %d, %v; want 0", n, err)
	}
}
