package orders_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/postgres"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newService(t *testing.T) (*orders.Service, context.Context) {
	t.Helper()
	db := testenv.DB(t)
	return orders.NewService(db), context.Background()
}

func request(customer string, items ...orders.Item) orders.PlaceRequest {
	if len(items) == 0 {
		items = []orders.Item{{SKU: "SKU-1", Quantity: 2}, {SKU: "SKU-0", Quantity: 1}}
	}
	return orders.PlaceRequest{CustomerID: customer, Items: items}
}

// eventItems is an order's items as the inventory's events carry them.
func eventItems(items []orders.Item) []events.Item {
	out := make([]events.Item, len(items))
	for i, it := range items {
		out[i] = events.Item{SKU: it.SKU, Quantity: it.Quantity}
	}
	return out
}

func TestService_Place(t *testing.T) {
	t.Parallel()

	t.Run("stores_a_pending_order_and_its_event", func(t *testing.T) {
		t.Parallel()
		s, ctx := newService(t)
		db := testenv.DB(t)
		ctx = events.WithCorrelationID(ctx, "req-42")

		o, created, err := s.Place(ctx, request("c-1"), "")
		if err != nil || !created {
			t.Fatalf("Place() = %v, %v, want created", created, err)
		}
		got, err := s.Get(ctx, o.ID)
		if err != nil {
			t.Fatalf("Get() = %v", err)
		}
		if got.Status != orders.StatusPending || got.CustomerID != "c-1" || len(got.Items) != 2 ||
			got.Items[0].SKU != "SKU-1" || got.Items[1].SKU != "SKU-0" {
			t.Errorf("Get() = %+v, want the pending order with its items in order", got)
		}
		if !got.CreatedAt.Equal(o.CreatedAt) {
			t.Errorf("created_at = %v, Place said %v", got.CreatedAt, o.CreatedAt)
		}

		evs := testenv.OutboxEvents(t, db, "order_id", o.ID)
		if len(evs) != 1 {
			t.Fatalf("outbox holds %d events for the order, want 1", len(evs))
		}
		e := evs[0]
		if e.DestinationTopic != events.StreamOrdersPlaced || e.Metadata[events.MetadataEventType] != "OrderPlaced" ||
			e.Metadata[events.MetadataCorrelationID] != "req-42" || e.UUID == "" {
			t.Errorf("outbox event = %+v", e)
		}
		var placed events.OrderPlaced
		testenv.DecodePayload(t, e, &placed)
		if placed.CustomerID != "c-1" || !slices.Equal(placed.Items, eventItems(o.Items)) || !placed.PlacedAt.Equal(o.CreatedAt) {
			t.Errorf("OrderPlaced = %+v, want the order's items %+v", placed, o.Items)
		}
	})

	t.Run("leaves_neither_order_nor_event_when_the_outbox_write_fails", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		db := testenv.DB(t)
		// One connection, on which a temporary table shadows the outbox
		// table with columns the publisher's insert does not fit: the
		// order insert succeeds, then the event write fails.
		one, err := postgres.Open(ctx, testenv.DatabaseURL(t), 1)
		if err != nil {
			t.Fatal(err)
		}
		defer one.Close()
		if _, err := one.Exec(`CREATE TEMP TABLE watermill_outbox (broken int)`); err != nil {
			t.Fatal(err)
		}
		s := orders.NewService(one)

		customer, key := testenv.Unique("c-atomic"), testenv.Unique("key")
		_, _, err = s.Place(ctx, request(customer), key)
		if err == nil || !strings.Contains(err.Error(), "outbox") {
			t.Fatalf("Place() = %v, want the outbox write to fail", err)
		}
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM orders WHERE customer_id = $1`, customer).Scan(&n); err != nil || n != 0 {
			t.Errorf("orders left behind: %d (%v), want 0", n, err)
		}
		if err := db.QueryRow(`SELECT count(*) FROM idempotency_keys WHERE key = $1`, key).Scan(&n); err != nil || n != 0 {
			t.Errorf("idempotency keys left behind: %d (%v), want 0", n, err)
		}
		if evs := testenv.OutboxEvents(t, db, "customer_id", customer); len(evs) != 0 {
			t.Errorf("outbox events left behind: %d, want 0", len(evs))
		}
	})

	t.Run("rejects_an_invalid_request_before_writing", func(t *testing.T) {
		t.Parallel()
		s, ctx := newService(t)
		_, _, err := s.Place(ctx, request("", orders.Item{SKU: "A", Quantity: 0}), "")
		if err == nil {
			t.Fatal("Place() accepted an invalid request")
		}
	})
}

func TestService_Place_idempotency(t *testing.T) {
	t.Parallel()

	t.Run("same_key_and_body_returns_the_same_order", func(t *testing.T) {
		t.Parallel()
		s, ctx := newService(t)
		db := testenv.DB(t)
		keySame := testenv.Unique("key")
		first, created, err := s.Place(ctx, request("c-idem"), keySame)
		if err != nil || !created {
			t.Fatalf("first Place() = %v, %v", created, err)
		}
		again, created, err := s.Place(ctx, request("c-idem"), keySame)
		if err != nil || created {
			t.Fatalf("replayed Place() = %v, %v, want not created", created, err)
		}
		if again.ID != first.ID || !again.CreatedAt.Equal(first.CreatedAt) {
			t.Errorf("replay returned %s, first was %s", again.ID, first.ID)
		}
		if n := len(testenv.OutboxEvents(t, db, "order_id", first.ID)); n != 1 {
			t.Errorf("outbox holds %d events, want 1", n)
		}
	})

	t.Run("same_key_with_another_body_conflicts", func(t *testing.T) {
		t.Parallel()
		s, ctx := newService(t)
		keyConflict := testenv.Unique("key")
		if _, _, err := s.Place(ctx, request("c-a"), keyConflict); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.Place(ctx, request("c-a", orders.Item{SKU: "SKU-9", Quantity: 1}), keyConflict)
		if !errors.Is(err, orders.ErrIdempotencyConflict) {
			t.Fatalf("Place() = %v, want ErrIdempotencyConflict", err)
		}
	})

	t.Run("concurrent_requests_with_one_key_place_one_order", func(t *testing.T) {
		t.Parallel()
		s, ctx := newService(t)
		const n = 10
		keyRace := testenv.Unique("key")
		ids := make([]string, n)
		created := make([]bool, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				o, c, err := s.Place(ctx, request("c-race"), keyRace)
				if err != nil {
					t.Errorf("Place() = %v", err)
				}
				ids[i], created[i] = o.ID, c
			})
		}
		wg.Wait()
		var nCreated int
		for i := range n {
			if ids[i] != ids[0] {
				t.Errorf("request %d got order %s, request 0 got %s", i, ids[i], ids[0])
			}
			if created[i] {
				nCreated++
			}
		}
		if nCreated != 1 {
			t.Errorf("%d requests created an order, want 1", nCreated)
		}
	})
}

func TestService_Get(t *testing.T) {
	t.Parallel()
	s, ctx := newService(t)
	for _, id := range []string{"01a2085e-97ee-76b5-b6c7-24fcde6bbcdb", "not-a-uuid", "", "'; DROP TABLE orders; --"} {
		if _, err := s.Get(ctx, id); !errors.Is(err, orders.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
		}
	}

	t.Run("finds_an_order_by_its_36_character_id_only", func(t *testing.T) {
		o, _, err := s.Place(ctx, request("c-get"), "")
		if err != nil {
			t.Fatal(err)
		}
		// Forms uuid.Parse accepts: PostgreSQL refuses the urn, and takes
		// braces and no dashes, which are no id of this API.
		for _, id := range []string{"urn:uuid:" + o.ID, "{" + o.ID + "}", strings.ReplaceAll(o.ID, "-", "")} {
			if _, err := s.Get(ctx, id); !errors.Is(err, orders.ErrNotFound) {
				t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
			}
		}
		got, err := s.Get(ctx, strings.ToUpper(o.ID))
		if err != nil || got.ID != o.ID {
			t.Errorf("Get(upper case) = %q, %v; want %q", got.ID, err, o.ID)
		}
	})
}
