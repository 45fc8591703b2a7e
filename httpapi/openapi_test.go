package httpapi_test

import (
	"bytes"
	"cmp"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/pb33f/libopenapi"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/httpapi"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/live"
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/orders"
)

// TestOpenAPI_listsEveryRoute: every route the public listener serves is
// an operation of the document, and every operation of the document is
// one of its routes, so that a route cannot be added, removed or moved
// without the document. The operations listener's own routes are in no
// public document: they are not the public's.
func TestOpenAPI_listsEveryRoute(t *testing.T) {
	t.Parallel()
	cfg := httpapi.Config{Metrics: metrics.New(), Logger: discardLogger()}
	public := routesOf(t, httpapi.New(cfg))
	documented := newContract(t).operations()
	for _, r := range public {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in httpapi/openapi.json", r)
		}
	}
	for _, op := range documented {
		if !slices.Contains(public, op) {
			t.Errorf("httpapi/openapi.json documents %s, which is no route of the public listener", op)
		}
	}

	ops := routesOf(t, httpapi.NewOps(cfg, httpapi.Ops{Live: live.New()}))
	for _, r := range ops {
		if !slices.Contains(public, r) && slices.Contains(documented, r) {
			t.Errorf("httpapi/openapi.json documents %s, a route of the operations listener alone", r)
		}
	}
	// The live page's buttons call the customer routes on the operations
	// listener: it serves every route of the public listener but the
	// document.
	for _, r := range public {
		if !slices.Contains(ops, r) && r != "GET /openapi.json" {
			t.Errorf("the operations listener lacks %s", r)
		}
	}
	for _, r := range []string{"GET /metrics", "GET /debug/pprof/", "GET /", "GET /events", "POST /deadletters/{}/replay"} {
		if !slices.Contains(ops, r) {
			t.Errorf("the operations listener lacks %s", r)
		}
		if slices.Contains(public, r) {
			t.Errorf("the public listener serves %s", r)
		}
	}
}

// routesOf are the routes of h, an *echo.Echo, as "METHOD path" with each
// path parameter written {}.
func routesOf(t *testing.T, h http.Handler) []string {
	t.Helper()
	e, ok := h.(*echo.Echo)
	if !ok {
		t.Fatalf("%T is not an *echo.Echo", h)
	}
	var routes []string
	for _, r := range e.Routes() {
		routes = append(routes, r.Method+" "+anyParams(r.Path))
	}
	slices.Sort(routes)
	return routes
}

// TestOpenAPI_servesTheDocument: GET /openapi.json answers the embedded
// document as it is, and it is a valid OpenAPI 3.1 document.
func TestOpenAPI_servesTheDocument(t *testing.T) {
	t.Parallel()
	api := httpapi.New(httpapi.Config{Metrics: metrics.New(), Logger: discardLogger()})
	rec := do(t, api, call{method: "GET", path: "/openapi.json", header: as("")})
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json = %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if !bytes.Equal(rec.Body.Bytes(), httpapi.OpenAPIDocument()) {
		t.Error("GET /openapi.json does not answer the embedded document")
	}
	doc, err := libopenapi.NewDocument(rec.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if v := doc.GetVersion(); !strings.HasPrefix(v, "3.1.") {
		t.Errorf("openapi = %q, want 3.1.x", v)
	}
	c := newContract(t)
	if ok, errs := c.v.ValidateDocument(); !ok {
		t.Errorf("the document breaks the OpenAPI 3.1 schema:\n%s", strings.Join(describeErrors(errs), "\n"))
	}
}

// exchange is a request to one of the test servers, what it must answer,
// and whether the document allows the request.
type exchange struct {
	name    string
	server  string // "api" (the default), "disabled" or "away"
	req     request
	status  int
	request verdict
}

// verdict is what the document says of a request.
type verdict int

const (
	allowed   verdict = iota // it conforms
	refused                  // it breaks the document, as the server says too
	unchecked                // the document cannot tell (a key reused, a header sent twice, a wrong token)
)

// TestOpenAPI_describesRealAnswers sends requests to every route of the
// real public listener, on the real database and Redis, and validates each
// request and each answer against the document: every status a route
// answers here must be documented for it, with its headers and its body's
// schema, and a request the server refuses for its fields is one the
// document refuses.
func TestOpenAPI_describesRealAnswers(t *testing.T) {
	t.Parallel()
	env := newRouteEnv(t)
	servers := map[string]string{
		"api":      env.url,
		"disabled": serve(t, newAPI(t, "")), // no ADMIN_TOKEN; Redis "refuses connections"
		"away":     serve(t, databaseAwayAPI(t)),
	}
	key := testenv.Unique("openapi")
	order := `{"customer_id":"c-1","items":[{"sku":"SKU-1","quantity":1}]}`
	const asJSON = "Content-Type: application/json\n" + asAdmin
	jsonKey := func(k string) string { return asJSON + "\nIdempotency-Key: " + k }
	const asCustomerJSON = "Content-Type: application/json\n" + asCustomer
	const admin = "Content-Type: application/json\n" + asToken
	sku := testenv.Unique("SKU")
	cancel := cancelTargets(t)
	cancelKey, cancelPlaceKey := testenv.Unique("openapi-cancel"), testenv.Unique("openapi-place")
	tests := []exchange{
		{"places_an_order", "", request{"POST", "/orders", jsonKey(key) + "\nX-Request-ID: openapi-1", []byte(order)}, 201, allowed},
		{"replays_an_order", "", request{"POST", "/orders", jsonKey(key), []byte(order)}, 200, allowed},
		{"refuses_a_key_reused_on_another_body", "", request{"POST", "/orders", jsonKey(key), []byte(strings.Replace(order, `"quantity":1`, `"quantity":2`, 1))}, 409, unchecked},
		{"places_anew_with_another_customers_key", "", request{"POST", "/orders", jsonKey(key), []byte(strings.Replace(order, "c-1", "c-2", 1))}, 201, allowed},
		{"places_an_order_for_the_tokens_customer", "", request{"POST", "/orders", asCustomerJSON, []byte(`{"items":[{"sku":"SKU-1","quantity":1}]}`)}, 201, allowed},
		{"places_a_customers_order_naming_them", "", request{"POST", "/orders", asCustomerJSON, []byte(order)}, 201, allowed},
		{"refuses_an_order_for_another_customer", "", request{"POST", "/orders", asCustomerJSON, []byte(strings.Replace(order, "c-1", "c-2", 1))}, 403, allowed},
		{"refuses_an_order_without_a_token", "", request{"POST", "/orders", "Content-Type: application/json", []byte(order)}, 401, refused},
		{"refuses_an_order_with_a_token_that_is_none", "", request{"POST", "/orders", "Content-Type: application/json\nAuthorization: Bearer nope", []byte(order)}, 401, unchecked},
		{"refuses_an_order_with_the_admin_token", "", request{"POST", "/orders", admin, []byte(order)}, 403, allowed},
		{"refuses_broken_json", "", request{"POST", "/orders", asJSON, []byte(`{"customer_id":`)}, 400, refused},
		{"refuses_a_long_idempotency_key", "", request{"POST", "/orders", jsonKey(strings.Repeat("k", 256)), []byte(order)}, 400, refused},
		{"refuses_a_key_sent_twice", "", request{"POST", "/orders", jsonKey("a") + "\nIdempotency-Key: b", []byte(order)}, 400, unchecked},
		{"refuses_a_token_sent_twice", "", request{"POST", "/orders", asJSON + "\n" + asCustomer, []byte(order)}, 400, unchecked},
		{"refuses_an_oversized_body", "", request{"POST", "/orders", asJSON, []byte(`{"customer_id":"` + strings.Repeat("x", 70<<10) + `"}`)}, 413, refused},
		{"refuses_text", "", request{"POST", "/orders", "Content-Type: text/plain\n" + asAdmin, []byte(order)}, 415, refused},
		{"refuses_zero_quantity", "", request{"POST", "/orders", asJSON, []byte(`{"customer_id":"c","items":[{"sku":"A","quantity":0}]}`)}, 422, refused},
		{"refuses_an_unknown_field", "", request{"POST", "/orders", asJSON, []byte(`{"customer_id":"c","items":[{"sku":"A","quantity":1}],"admin":true}`)}, 422, refused},
		{"refuses_a_bad_sku", "", request{"POST", "/orders", asJSON, []byte(`{"customer_id":"c","items":[{"sku":"A B","quantity":1}]}`)}, 422, refused},
		{"refuses_a_place_while_the_database_is_away", "away", request{"POST", "/orders", asJSON, []byte(order)}, 503, allowed},

		{"lists_orders", "", request{"GET", "/orders", asAdmin, nil}, 200, allowed},
		{"lists_the_customers_own_orders", "", request{"GET", "/orders", asCustomer, nil}, 200, allowed},
		{"lists_a_page_with_a_next_cursor", "", request{"GET", "/orders?customer_id=c-1&limit=1", asCustomer, nil}, 200, allowed},
		{"lists_the_page_after_a_cursor", "", request{"GET", "/orders?customer_id=c-1&limit=1&after={cursor}", asAdmin, nil}, 200, allowed},
		{"lists_by_status", "", request{"GET", "/orders?status=pending&limit=100", asAdmin, nil}, 200, allowed},
		{"refuses_a_list_of_another_customer", "", request{"GET", "/orders?customer_id=c-1", asOther, nil}, 403, allowed},
		{"refuses_a_list_without_a_token", "", request{"GET", "/orders", "", nil}, 401, refused},
		{"refuses_a_list_with_the_admin_token", "", request{"GET", "/orders", asToken, nil}, 403, allowed},
		{"refuses_limit_zero", "", request{"GET", "/orders?limit=0", asAdmin, nil}, 422, refused},
		{"refuses_an_unknown_status", "", request{"GET", "/orders?status=shipped", asAdmin, nil}, 422, refused},
		{"refuses_a_cursor_that_is_not_one", "", request{"GET", "/orders?after=!!", asAdmin, nil}, 422, refused},
		{"refuses_a_query_that_does_not_parse", "", request{"GET", "/orders?limit=%zz", asAdmin, nil}, 400, unchecked},
		{"refuses_a_list_while_the_database_is_away", "away", request{"GET", "/orders", asAdmin, nil}, 503, allowed},

		{"reads_an_order", "", request{"GET", "/orders/{order}", asAdmin, nil}, 200, allowed},
		{"reads_a_customers_own_order", "", request{"GET", "/orders/{order}", asCustomer, nil}, 200, allowed},
		{"knows_no_order_of_another_customer", "", request{"GET", "/orders/{order}", asOther, nil}, 404, allowed},
		{"knows_no_unknown_order", "", request{"GET", "/orders/01a2085e-97ee-76b5-b6c7-24fcde6bbcdb", asAdmin, nil}, 404, allowed},
		{"knows_no_order_by_another_id_form", "", request{"GET", "/orders/{order-nodash}", asAdmin, nil}, 404, allowed},
		{"refuses_an_order_read_without_a_token", "", request{"GET", "/orders/{order}", "", nil}, 401, refused},
		{"refuses_an_order_read_with_the_admin_token", "", request{"GET", "/orders/{order}", asToken, nil}, 403, allowed},
		{"refuses_an_order_read_while_the_database_is_away", "away", request{"GET", "/orders/01a2085e-97ee-76b5-b6c7-24fcde6bbcdb", asAdmin, nil}, 503, allowed},

		{"cancels_an_order", "", request{"POST", cancel.pending, jsonKey(cancelKey), []byte(`{"reason":"ordered twice"}`)}, 202, allowed},
		{"replays_a_cancel", "", request{"POST", cancel.pending, jsonKey(cancelKey), []byte(`{"reason":"ordered twice"}`)}, 200, allowed},
		{"refuses_a_cancel_key_reused_with_another_reason", "", request{"POST", cancel.pending, jsonKey(cancelKey), []byte(`{"reason":"other"}`)}, 409, unchecked},
		{"places_an_order_for_the_cancelling_customer", "", request{"POST", "/orders", jsonKey(cancelPlaceKey), []byte(strings.Replace(order, "c-1", "c-cancel", 1))}, 201, allowed},
		{"refuses_a_placing_key_for_a_cancel", "", request{"POST", cancel.pending, jsonKey(cancelPlaceKey), nil}, 409, unchecked},
		{"answers_a_cancelling_order_as_it_is", "", request{"POST", cancel.pending, asAdmin, nil}, 200, allowed},
		{"takes_an_empty_body_as_none_whatever_its_type", "", request{"POST", cancel.pending, "Content-Type: text/plain\n" + asAdmin, nil}, 200, unchecked}, // the document cannot say "an empty body, whatever its type"
		{"cancels_a_confirmed_order_without_a_reason", "", request{"POST", cancel.confirmed, asJSON, []byte(`{}`)}, 202, allowed},
		{"answers_a_cancelled_order_as_it_is", "", request{"POST", cancel.cancelled, asJSON, []byte(`{"reason":"again"}`)}, 200, allowed},
		{"reads_a_cancelled_order", "", request{"GET", strings.TrimSuffix(cancel.cancelled, "/cancel"), asAdmin, nil}, 200, allowed},
		{"lists_cancelled_orders", "", request{"GET", "/orders?status=cancelled&limit=100", asAdmin, nil}, 200, allowed},
		{"lists_cancelling_orders", "", request{"GET", "/orders?status=cancelling&limit=100", asAdmin, nil}, 200, allowed},
		{"refuses_to_cancel_a_rejected_order", "", request{"POST", cancel.rejected, asAdmin, nil}, 409, allowed},
		{"knows_no_order_of_another_customer_to_cancel", "", request{"POST", "/orders/{order}/cancel", asOther, nil}, 404, allowed},
		{"knows_no_unknown_order_to_cancel", "", request{"POST", "/orders/01a2085e-97ee-76b5-b6c7-24fcde6bbcdb/cancel", asAdmin, nil}, 404, allowed},
		{"knows_no_order_to_cancel_by_another_id_form", "", request{"POST", "/orders/{order-nodash}/cancel", asAdmin, nil}, 404, allowed},
		{"refuses_a_cancel_without_a_token", "", request{"POST", "/orders/{order}/cancel", "", nil}, 401, refused},
		{"refuses_a_cancel_with_the_admin_token", "", request{"POST", "/orders/{order}/cancel", asToken, nil}, 403, allowed},
		{"refuses_a_long_reason", "", request{"POST", cancel.pending, asJSON, []byte(`{"reason":"` + strings.Repeat("é", 201) + `"}`)}, 422, refused},
		{"refuses_a_reason_that_is_no_string", "", request{"POST", cancel.pending, asJSON, []byte(`{"reason":5}`)}, 422, refused},
		{"refuses_an_unknown_cancel_field", "", request{"POST", cancel.pending, asJSON, []byte(`{"why":"x"}`)}, 422, refused},
		{"refuses_a_cancel_as_text", "", request{"POST", cancel.pending, "Content-Type: text/plain\n" + asAdmin, []byte(`{}`)}, 415, refused},
		{"refuses_a_cancel_in_broken_json", "", request{"POST", cancel.pending, asJSON, []byte(`{"reason"`)}, 400, refused},
		{"refuses_an_oversized_cancel", "", request{"POST", cancel.pending, asJSON, []byte(`{"reason":"` + strings.Repeat("x", 70<<10) + `"}`)}, 413, refused},
		{"refuses_a_long_cancel_key", "", request{"POST", cancel.pending, asAdmin + "\nIdempotency-Key: " + strings.Repeat("k", 256), nil}, 400, refused},
		{"refuses_a_cancel_while_the_database_is_away", "away", request{"POST", "/orders/01a2085e-97ee-76b5-b6c7-24fcde6bbcdb/cancel", asAdmin, nil}, 503, allowed},

		{"sets_stock", "", request{"PUT", "/inventory/" + sku, admin, []byte(`{"available":5}`)}, 200, allowed},
		{"sets_stock_with_an_administrators_JWT", "", request{"PUT", "/inventory/" + sku, asJSON, []byte(`{"available":6}`)}, 200, allowed},
		{"refuses_stock_without_a_token", "", request{"PUT", "/inventory/" + sku, "Content-Type: application/json", []byte(`{"available":5}`)}, 401, refused},
		{"refuses_stock_with_a_wrong_token", "", request{"PUT", "/inventory/" + sku, "Content-Type: application/json\nAuthorization: Bearer nope", []byte(`{"available":5}`)}, 401, unchecked},
		{"refuses_stock_to_a_customer", "", request{"PUT", "/inventory/" + sku, asCustomerJSON, []byte(`{"available":5}`)}, 403, allowed},
		{"refuses_the_admin_token_when_none_is_configured", "disabled", request{"PUT", "/inventory/" + sku, admin, []byte(`{"available":5}`)}, 401, unchecked},
		{"sets_stock_with_a_JWT_when_no_admin_token_is_configured", "disabled", request{"PUT", "/inventory/" + sku, asJSON, []byte(`{"available":5}`)}, 200, allowed},
		{"refuses_negative_stock", "", request{"PUT", "/inventory/" + sku, admin, []byte(`{"available":-1}`)}, 422, refused},
		{"refuses_stock_without_available", "", request{"PUT", "/inventory/" + sku, admin, []byte(`{}`)}, 422, refused},
		{"refuses_stock_of_a_bad_sku", "", request{"PUT", "/inventory/a%20b", admin, []byte(`{"available":1}`)}, 422, refused},
		{"refuses_stock_as_text", "", request{"PUT", "/inventory/" + sku, "Content-Type: text/plain\n" + asToken, []byte(`{"available":1}`)}, 415, refused},
		{"refuses_stock_in_broken_json", "", request{"PUT", "/inventory/" + sku, admin, []byte(`{"available"`)}, 400, refused},
		{"refuses_an_oversized_stock_body", "", request{"PUT", "/inventory/" + sku, admin, []byte(`{"available":1` + strings.Repeat(" ", 70<<10) + `}`)}, 413, unchecked},
		{"refuses_stock_while_the_database_is_away", "away", request{"PUT", "/inventory/A", admin, []byte(`{"available":1}`)}, 503, allowed},
		{"reads_stock", "", request{"GET", "/inventory/SKU-1", asCustomer, nil}, 200, allowed},
		{"knows_no_unknown_sku", "", request{"GET", "/inventory/" + testenv.Unique("none"), asAdmin, nil}, 404, allowed},
		{"refuses_a_stock_read_without_a_token", "", request{"GET", "/inventory/SKU-1", "", nil}, 401, refused},
		{"refuses_a_stock_read_with_the_admin_token", "", request{"GET", "/inventory/SKU-1", asToken, nil}, 403, allowed},
		{"refuses_a_stock_read_while_the_database_is_away", "away", request{"GET", "/inventory/A", asAdmin, nil}, 503, allowed},

		{"is_alive", "", request{"GET", "/healthz", "", nil}, 200, allowed},
		{"is_alive_whoever_asks", "", request{"GET", "/healthz", asCustomer, nil}, 200, allowed},
		{"refuses_a_token_that_is_none_even_for_health", "", request{"GET", "/healthz", "Authorization: Bearer nope", nil}, 401, allowed},
		{"is_ready", "", request{"GET", "/readyz", "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", nil}, 200, allowed},
		{"is_not_ready_without_redis", "disabled", request{"GET", "/readyz", "", nil}, 503, allowed},
		{"is_not_ready_without_the_database", "away", request{"GET", "/readyz", "", nil}, 503, allowed},
		{"serves_this_document", "", request{"GET", "/openapi.json", "", nil}, 200, allowed},

		{"knows_no_unknown_route", "", request{"GET", "/nowhere", "", nil}, 404, refused},
		{"knows_no_operations_route", "", request{"GET", "/metrics", "", nil}, 404, refused},
		{"refuses_a_method_a_route_lacks", "", request{"DELETE", "/orders/{order}", asAdmin, nil}, 405, refused},
	}
	c := newContract(t)
	for _, tt := range tests { // in order: a replay follows its placing
		t.Run(tt.name, func(t *testing.T) {
			server := servers[cmp.Or(tt.server, "api")]
			req := env.build(t, server, tt.req)
			resp, body := roundTrip(t, env.client, req)
			if resp.StatusCode != tt.status {
				t.Fatalf("= %d %s, want %d", resp.StatusCode, body, tt.status)
			}
			c.check(t, req, tt.req.Body, resp, body, tt.request)
		})
	}
}

// check validates the exchange against the document: the answer must be
// one it describes, and the request as it says (v).
func (c *contract) check(t *testing.T, req *http.Request, reqBody []byte, resp *http.Response, body []byte, v verdict) {
	t.Helper()
	if errs := c.responseErrors(req, resp, body); len(errs) > 0 {
		t.Errorf("the answer %d breaks the document:\n%s\nbody: %.300s", resp.StatusCode, strings.Join(errs, "\n"), body)
	}
	switch errs := c.requestErrors(req, reqBody); {
	case v == allowed && len(errs) > 0:
		t.Errorf("the document refuses the request:\n%s", strings.Join(errs, "\n"))
	case v == refused && len(errs) == 0:
		t.Errorf("the server refuses the request (%d), the document allows it", resp.StatusCode)
	}
}

// TestOpenAPI_describesTooManyRequests: the 429s of the public listener's
// limits, a client over its rate and an address over its failed
// authentications, are answers the document describes, with Retry-After.
func TestOpenAPI_describesTooManyRequests(t *testing.T) {
	t.Parallel()
	env := newRouteEnv(t)
	cfg := testConfig(t, testenv.DB(t), adminToken)
	cfg.Limits = httpapi.Limits{Redis: env.rdb, Prefix: testenv.StreamPrefix(t), PerSecond: 1, Burst: 1}
	limited := serve(t, httpapi.New(cfg))
	c := newContract(t)
	for name, r := range map[string]request{
		"over_its_rate":                      {"GET", "/orders", asCustomer, nil},
		"over_its_rate_reading_the_document": {"GET", "/openapi.json", "", nil},
		"over_its_failed_authentications":    {"GET", "/inventory/SKU-1", "Authorization: Bearer nope", nil},
	} {
		t.Run(name, func(t *testing.T) {
			// Within a second, one request of a burst of one passes; a
			// failed authentication passes ten a minute.
			for range 30 {
				req := env.build(t, limited, r)
				resp, body := roundTrip(t, env.client, req)
				if resp.StatusCode != http.StatusTooManyRequests {
					continue
				}
				if resp.Header.Get("Retry-After") == "" {
					t.Error("429 without Retry-After")
				}
				c.check(t, req, r.Body, resp, body, unchecked)
				return
			}
			t.Fatal("30 requests, none answered 429")
		})
	}
}

// cancelTargets are the cancel URLs of fresh orders: one pending, one
// confirmed, one rejected and one cancelled, settled by calling the orders
// service's handlers as the worker would.
func cancelTargets(t *testing.T) (targets struct{ pending, confirmed, rejected, cancelled string }) {
	t.Helper()
	ctx := context.Background()
	db := testenv.DB(t)
	ord := orders.NewService(db)
	place := func() orders.Order {
		t.Helper()
		o, _, err := ord.Place(ctx, orders.PlaceRequest{CustomerID: "c-cancel", Items: []orders.Item{{SKU: "SKU-1", Quantity: 1}}}, "")
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	target := func(o orders.Order) string { return "/orders/" + o.ID + "/cancel" }
	pending, confirmed, rejected, cancelled := place(), place(), place(), place()
	handle(t, db, ord.OnStockReserved, &events.StockReserved{OrderID: confirmed.ID, Items: eventItems(confirmed.Items)})
	handle(t, db, ord.OnStockRejected, &events.StockRejected{OrderID: rejected.ID, Items: eventItems(rejected.Items), Reason: events.ReasonUnknownSKU})
	if _, _, err := ord.Cancel(ctx, orders.Caller{Admin: true}, cancelled.ID, "", ""); err != nil {
		t.Fatal(err)
	}
	handle(t, db, ord.OnStockReleased, &events.StockReleased{OrderID: cancelled.ID, Items: eventItems(cancelled.Items)})
	targets.pending, targets.confirmed, targets.rejected, targets.cancelled = target(pending), target(confirmed), target(rejected), target(cancelled)
	return targets
}

// roundTrip sends req and returns the answer with its body read, but for an
// event stream's, which never ends: of that, nothing is read.
func roundTrip(t *testing.T, client *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp, nil
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// eventItems is an order's items as the inventory's events carry them.
func eventItems(items []orders.Item) []events.Item {
	out := make([]events.Item, len(items))
	for i, it := range items {
		out[i] = events.Item{SKU: it.SKU, Quantity: it.Quantity}
	}
	return out
}
