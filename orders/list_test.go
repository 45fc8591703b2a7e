package orders_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/lib/pq"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/validate"
)

// placeN places n orders for customer, the i-th with quantity i+1 of
// SKU-L, and returns them in the order placed.
func placeN(t *testing.T, s *orders.Service, customer string, n int) []orders.Order {
	t.Helper()
	out := make([]orders.Order, n)
	for i := range out {
		o, _, err := s.Place(context.Background(), request(customer, orders.Item{SKU: "SKU-L", Quantity: i + 1}), "")
		if err != nil {
			t.Fatal(err)
		}
		out[i] = o
	}
	return out
}

// listAll follows the pages of req from the first to the last.
func listAll(t *testing.T, s *orders.Service, req orders.ListRequest) (all []orders.Order, pages int) {
	t.Helper()
	for {
		page, err := s.List(context.Background(), req)
		if err != nil {
			t.Fatalf("List(%+v) = %v", req, err)
		}
		pages++
		all = append(all, page.Orders...)
		if page.Next == "" {
			return all, pages
		}
		if len(page.Orders) != req.Limit || pages > 100 {
			t.Fatalf("page %d holds %d orders and a next cursor, want %d", pages, len(page.Orders), req.Limit)
		}
		req.After = page.Next
	}
}

// newestFirst reports whether os are sorted by created_at, then id, both
// descending, without repeats.
func newestFirst(os []orders.Order) bool {
	for i := 1; i < len(os); i++ {
		a, b := os[i-1], os[i]
		if !(a.CreatedAt.After(b.CreatedAt) || a.CreatedAt.Equal(b.CreatedAt) && a.ID > b.ID) {
			return false
		}
	}
	return true
}

func fieldErrors(err error) []string {
	var verrs validate.Errors
	if !errors.As(err, &verrs) {
		return nil
	}
	var fields []string
	for _, f := range verrs {
		fields = append(fields, f.Field)
	}
	return fields
}

// dbWithoutListingIndexes returns a fresh database for t alone, without
// the indexes migration 00005 adds.
func dbWithoutListingIndexes(t testing.TB) *sql.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), testenv.OwnDatabaseURL(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`DROP INDEX orders_created_at_id, orders_customer_id_created_at_id,
		orders_status_created_at_id, orders_customer_id_status_created_at_id`); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestService_List(t *testing.T) {
	t.Parallel()

	// Once more on a database without the listing's indexes, where the
	// order of orders of one microsecond is the query's alone, not that of
	// an index the plan happens to read.
	for name, db := range map[string]func(t testing.TB) *sql.DB{
		"":                     testenv.DB,
		"_without_the_indexes": dbWithoutListingIndexes,
	} {
		t.Run("pages_through_a_customers_orders_newest_first_each_once_ties_included"+name, func(t *testing.T) {
			t.Parallel()
			db := db(t)
			s, ctx := orders.NewService(db), context.Background()
			customer := testenv.Unique("c-list")
			placed := placeN(t, s, customer, 9)
			// Five orders of one microsecond, so that pages of two end
			// between orders with the same created_at.
			var tied []string
			for _, o := range placed[2:7] {
				tied = append(tied, o.ID)
			}
			if _, err := db.ExecContext(ctx,
				`UPDATE orders SET created_at = now() - interval '1 hour' WHERE id = ANY($1::uuid[])`, pq.Array(tied)); err != nil {
				t.Fatal(err)
			}

			all, pages := listAll(t, s, orders.ListRequest{CustomerID: customer, Limit: 2})
			if pages != 5 || len(all) != 9 {
				t.Fatalf("%d orders on %d pages, want 9 on 5", len(all), pages)
			}
			if !newestFirst(all) {
				t.Errorf("orders are not newest first by (created_at, id): %v", all)
			}
			for _, p := range placed {
				i := slices.IndexFunc(all, func(o orders.Order) bool { return o.ID == p.ID })
				if i < 0 {
					t.Fatalf("order %s is missing from the pages", p.ID)
				}
				if o := all[i]; o.CustomerID != customer || o.Status != orders.StatusPending ||
					len(o.Items) != 1 || o.Items[0] != p.Items[0] {
					t.Errorf("listed %+v, placed %+v", o, p)
				}
			}
		})
	}

	t.Run("filters_by_status", func(t *testing.T) {
		t.Parallel()
		db := testenv.DB(t)
		s, ctx := orders.NewService(db), context.Background()
		customer := testenv.Unique("c-status")
		placed := placeN(t, s, customer, 4)
		if err := handle(ctx, db, s.OnStockRejected, events.StockRejected{OrderID: placed[0].ID, Reason: events.ReasonUnknownSKU}); err != nil {
			t.Fatal(err)
		}
		for _, o := range placed[1:3] {
			if err := handle(ctx, db, s.OnStockReserved, events.StockReserved{OrderID: o.ID, Items: eventItems(o.Items)}); err != nil {
				t.Fatal(err)
			}
		}
		for status, want := range map[string][]string{
			orders.StatusRejected:  {placed[0].ID},
			orders.StatusConfirmed: {placed[2].ID, placed[1].ID},
			orders.StatusPending:   {placed[3].ID},
		} {
			page, err := s.List(ctx, orders.ListRequest{CustomerID: customer, Status: status, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range page.Orders {
				got = append(got, o.ID)
			}
			if !slices.Equal(got, want) || page.Next != "" {
				t.Errorf("%s: %v (next %q), want %v", status, got, page.Next, want)
			}
			if status == orders.StatusRejected && page.Orders[0].Reason != events.ReasonUnknownSKU {
				t.Errorf("rejected order's reason = %q", page.Orders[0].Reason)
			}
		}
		// Without the customer: every customer's rejected orders only.
		page, err := s.List(ctx, orders.ListRequest{Status: orders.StatusRejected, Limit: 100})
		if err != nil || len(page.Orders) == 0 {
			t.Fatalf("List(rejected) = %d orders, %v", len(page.Orders), err)
		}
		for _, o := range page.Orders {
			if o.Status != orders.StatusRejected {
				t.Errorf("status filter let through %+v", o)
			}
		}
	})

	t.Run("says_no_next_on_a_full_last_page", func(t *testing.T) {
		t.Parallel()
		s, ctx := newService(t)
		customer := testenv.Unique("c-full")
		placeN(t, s, customer, 3)
		page, err := s.List(ctx, orders.ListRequest{CustomerID: customer, Limit: 3})
		if err != nil || len(page.Orders) != 3 || page.Next != "" {
			t.Errorf("List(limit 3 of 3) = %d orders, next %q, %v; want 3 and no next", len(page.Orders), page.Next, err)
		}
		page, err = s.List(ctx, orders.ListRequest{CustomerID: customer, Limit: 2})
		if err != nil || len(page.Orders) != 2 || page.Next == "" {
			t.Errorf("List(limit 2 of 3) = %d orders, next %q, %v; want 2 and a next", len(page.Orders), page.Next, err)
		}
	})

	t.Run("lists_every_customer_newest_first_without_filters", func(t *testing.T) {
		t.Parallel()
		s, ctx := newService(t)
		placeN(t, s, testenv.Unique("c-any"), 2)
		page, err := s.List(ctx, orders.ListRequest{Limit: 50})
		if err != nil || len(page.Orders) < 2 || !newestFirst(page.Orders) {
			t.Errorf("List() = %d orders (newest first: %v), %v", len(page.Orders), newestFirst(page.Orders), err)
		}
	})

	t.Run("ties_a_cursor_to_its_filters", func(t *testing.T) {
		t.Parallel()
		s, ctx := newService(t)
		customer := testenv.Unique("c-tied")
		placeN(t, s, customer, 2)
		page, err := s.List(ctx, orders.ListRequest{CustomerID: customer, Limit: 1})
		if err != nil || page.Next == "" {
			t.Fatalf("List() = next %q, %v", page.Next, err)
		}
		for _, req := range []orders.ListRequest{
			{CustomerID: customer + "x", Limit: 1, After: page.Next},
			{CustomerID: customer, Status: orders.StatusPending, Limit: 1, After: page.Next},
			{Limit: 1, After: page.Next},
		} {
			if _, err := s.List(ctx, req); !slices.Equal(fieldErrors(err), []string{"after"}) {
				t.Errorf("List(%+v) = %v, want an error on after", req, err)
			}
		}
		if next, err := s.List(ctx, orders.ListRequest{CustomerID: customer, Limit: 5, After: page.Next}); err != nil || len(next.Orders) != 1 {
			t.Errorf("the cursor with its filters and another limit = %d orders, %v; want the last one", len(next.Orders), err)
		}
	})

	t.Run("refuses_what_breaks_the_rules_field_by_field", func(t *testing.T) {
		t.Parallel()
		s, ctx := newService(t)
		for _, c := range []struct {
			req    orders.ListRequest
			fields []string
		}{
			{orders.ListRequest{Limit: 0}, []string{"limit"}},
			{orders.ListRequest{Limit: orders.MaxListLimit + 1}, []string{"limit"}},
			{orders.ListRequest{Limit: 1, Status: "shipped"}, []string{"status"}},
			{orders.ListRequest{Limit: 1, Status: "Pending"}, []string{"status"}},
			{orders.ListRequest{Limit: 1, CustomerID: strings.Repeat("é", orders.MaxCustomerIDLen+1)}, []string{"customer_id"}},
			{orders.ListRequest{Limit: 1, CustomerID: "a\x00b"}, []string{"customer_id"}},
			{orders.ListRequest{Limit: 1, CustomerID: "\xff"}, []string{"customer_id"}},
			{orders.ListRequest{Limit: 1, After: "not a cursor"}, []string{"after"}},
			{orders.ListRequest{Limit: 1, After: strings.Repeat("A", 44)}, []string{"after"}},
			{orders.ListRequest{Limit: -1, Status: "x", After: "x"}, []string{"status", "limit", "after"}},
		} {
			if _, err := s.List(ctx, c.req); !slices.Equal(fieldErrors(err), c.fields) {
				t.Errorf("List(%+v) = %v, want errors on %v", c.req, err, c.fields)
			}
		}
	})
}
