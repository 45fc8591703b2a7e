package httpapi_test

import (
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/orders"
)

// placeOrders places n orders for customer through the API and returns
// their ids in the order placed.
func placeOrders(t *testing.T, api http.Handler, customer string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		rec := do(t, api, call{method: "POST", path: "/orders",
			body: `{"customer_id":"` + customer + `","items":[{"sku":"SKU-1","quantity":1},{"sku":"SKU-2","quantity":3}]}`})
		if rec.Code != http.StatusCreated {
			t.Fatalf("POST /orders = %d %s", rec.Code, rec.Body)
		}
		ids[i] = decode(t, rec)["id"].(string)
	}
	return ids
}

// listPage gets one page and returns its orders and next cursor (nil on
// the last page); the body must hold exactly "orders" and "next".
func listPage(t *testing.T, api http.Handler, query string) (orders []map[string]any, next any) {
	t.Helper()
	rec := do(t, api, call{method: "GET", path: "/orders?" + query})
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /orders?%s = %d %s %s", query, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	m := decode(t, rec)
	list, ok := m["orders"].([]any)
	if _, hasNext := m["next"]; !ok || !hasNext || len(m) != 2 {
		t.Fatalf("GET /orders?%s = %s, want {\"orders\":[…],\"next\":…}", query, rec.Body)
	}
	for _, o := range list {
		orders = append(orders, o.(map[string]any))
	}
	return orders, m["next"]
}

func TestHTTP_listOrders(t *testing.T) {
	t.Parallel()
	db := testenv.DB(t)
	api := newAPIOn(t, db, adminToken)

	t.Run("shows_each_order_as_GET_orders_id_does", func(t *testing.T) {
		t.Parallel()
		customer := testenv.Unique("c-shape")
		ids := placeOrders(t, api, customer, 2)
		handle(t, db, orders.NewService(db).OnStockRejected, &events.StockRejected{OrderID: ids[0], Reason: events.ReasonInsufficientStock})
		list, next := listPage(t, api, "customer_id="+customer)
		if len(list) != 2 || next != nil {
			t.Fatalf("%d orders, next %v; want 2 and null", len(list), next)
		}
		for i, o := range list {
			one := decode(t, do(t, api, call{method: "GET", path: "/orders/" + ids[1-i]}))
			if !reflect.DeepEqual(o, one) {
				t.Errorf("listed %v\nGET /orders/{id} %v", o, one)
			}
		}
		if list[1]["reason"] != events.ReasonInsufficientStock {
			t.Errorf("rejected order listed as %v", list[1])
		}
	})

	t.Run("pages_with_next_until_it_is_null", func(t *testing.T) {
		t.Parallel()
		customer := testenv.Unique("c-pages")
		ids := placeOrders(t, api, customer, 5)
		var got []string
		query := "limit=2&customer_id=" + customer
		for pages := 1; ; pages++ {
			list, next := listPage(t, api, query)
			for _, o := range list {
				got = append(got, o["id"].(string))
			}
			if next == nil {
				if pages != 3 {
					t.Errorf("%d pages of 2 for 5 orders, want 3", pages)
				}
				break
			}
			if pages > 5 {
				t.Fatal("the pages do not end")
			}
			query = "limit=2&customer_id=" + customer + "&after=" + url.QueryEscape(next.(string))
		}
		want := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("listed %v, want newest first %v", got, want)
		}
	})

	t.Run("pages_20_orders_unless_limit_says_1_to_100", func(t *testing.T) {
		t.Parallel()
		customer := testenv.Unique("c-limit")
		placeOrders(t, api, customer, 21)
		for query, want := range map[string]int{"": 20, "&limit=1": 1, "&limit=100": 21} {
			list, next := listPage(t, api, "customer_id="+customer+query)
			if len(list) != want || (next == nil) != (want == 21) {
				t.Errorf("customer_id=…%s: %d orders, next %v; want %d", query, len(list), next, want)
			}
		}
	})

	t.Run("filters_by_status", func(t *testing.T) {
		t.Parallel()
		customer := testenv.Unique("c-filter")
		ids := placeOrders(t, api, customer, 3)
		handle(t, db, orders.NewService(db).OnStockReserved, &events.StockReserved{OrderID: ids[1]})
		list, _ := listPage(t, api, "status=confirmed&customer_id="+customer)
		if len(list) != 1 || list[0]["id"] != ids[1] {
			t.Errorf("confirmed orders = %v, want only %s", list, ids[1])
		}
	})
}

// TestHTTP_listOrders_refuses sends malformed queries to GET /orders:
// each gets a 4xx problem details listing what is wrong.
func TestHTTP_listOrders_refuses(t *testing.T) {
	t.Parallel()
	api := newAPI(t, adminToken)
	customer := testenv.Unique("c-refuse")
	placeOrders(t, api, customer, 2)
	_, next := listPage(t, api, "limit=1&customer_id="+customer)
	cursor := url.QueryEscape(next.(string))
	edited := cursor[:10] + "A" + cursor[11:]
	if cursor[10] == 'A' {
		edited = cursor[:10] + "B" + cursor[11:]
	}

	tests := []struct {
		name, query string
		status      int
		fields      []string // what the problem must list
	}{
		{"limit_zero", "limit=0", 422, []string{"limit"}},
		{"limit_over_100", "limit=101", 422, []string{"limit"}},
		{"limit_not_a_number", "limit=ten", 422, []string{"limit"}},
		{"limit_fractional", "limit=1.5", 422, []string{"limit"}},
		{"limit_beyond_int64", "limit=99999999999999999999", 422, []string{"limit"}},
		{"unknown_status", "status=shipped", 422, []string{"status"}},
		{"status_in_capitals", "status=PENDING", 422, []string{"status"}},
		{"long_customer_id", "customer_id=" + strings.Repeat("c", 65), 422, []string{"customer_id"}},
		{"nul_in_customer_id", "customer_id=a%00b", 422, []string{"customer_id"}},
		{"invalid_utf8_customer_id", "customer_id=%ff", 422, []string{"customer_id"}},
		{"garbage_cursor", "after=abc", 422, []string{"after"}},
		{"cursor_of_another_customer", "customer_id=" + customer + "x&after=" + cursor, 422, []string{"after"}},
		{"cursor_without_its_filter", "after=" + cursor, 422, []string{"after"}},
		{"edited_cursor", "customer_id=" + customer + "&after=" + edited, 422, []string{"after"}},
		{"unknown_parameter", "sort=asc", 422, []string{"sort"}},
		{"repeated_parameter", "status=pending&status=confirmed", 422, []string{"status"}},
		{"empty_parameter", "customer_id=", 422, []string{"customer_id"}},
		{"every_problem_at_once", "limit=0&status=x&page=2&after=y", 422, []string{"after", "limit", "page", "status"}},
		{"bad_escape", "customer_id=%zz", 400, nil},
		{"semicolon", "customer_id=a;status=pending", 400, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := do(t, api, call{method: "GET", path: "/orders?" + tt.query})
			if rec.Code != tt.status || rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("= %d %s %s, want %d problem details", rec.Code, rec.Header().Get("Content-Type"), rec.Body, tt.status)
			}
			p := decode(t, rec)
			if p["status"] != float64(tt.status) || p["title"] == "" || p["type"] == "" {
				t.Errorf("problem = %v", p)
			}
			var fields []string
			errs, _ := p["errors"].([]any)
			for _, e := range errs {
				fields = append(fields, e.(map[string]any)["field"].(string))
			}
			if tt.fields != nil && !sameSet(fields, tt.fields) {
				t.Errorf("problem lists %v, want %v: %s", fields, tt.fields, rec.Body)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	count := map[string]int{}
	for _, s := range a {
		count[s]++
	}
	for _, s := range b {
		count[s]--
	}
	for _, n := range count {
		if n != 0 {
			return false
		}
	}
	return true
}
