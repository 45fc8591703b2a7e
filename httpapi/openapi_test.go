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
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/orders"
)

// TestOpenAPI_listsEveryRoute: every route Echo serves is an operation of
// the document, and every operation of the document is a route, so that a
// route cannot be added, removed or moved without the document.
func TestOpenAPI_listsEveryRoute(t *testing.T) {
	t.Parallel()
	e, ok := httpapi.New(httpapi.Config{Metrics: metrics.New(), Logger: discardLogger()}).(*echo.Echo)
	if !ok {
		t.Fatal("New does not return an *echo.Echo")
	}
	var routes []string
	for _, r := range e.Routes() {
		routes = append(routes, r.Method+" "+anyParams(r.Path))
	}
	slices.Sort(routes)
	documented := newContract(t).operations()
	for _, r := range routes {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in httpapi/openapi.json", r)
		}
	}
	for _, op := range documented {
		if !slices.Contains(routes, op) {
			t.Errorf("httpapi/openapi.json documents %s, which is no route", op)
		}
	}
}

// TestOpenAPI_servesTheDocument: GET /openapi.json answers the embedded
// document as it is, and it is a valid OpenAPI 3.1 document.
func TestOpenAPI_servesTheDocument(t *testing.T) {
	t.Parallel()
	api := httpapi.New(httpapi.Config{Metrics: metrics.New(), Logger: discardLogger()})
	rec := do(t, api, call{method: "GET", path: "/openapi.json"})
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
// real server, on the real database and Redis, and validates each request
// and each answer against the document: every status a route answers here
// must be documented for it, with its headers and its body's schema, and
// a request the server refuses for its fields is one the document refuses.
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
	jsonKey := func(k string) string { return "Content-Type: application/json\nIdempotency-Key: " + k }
	const asJSON = "Content-Type: application/json"
	const auth = "Authorization: Bearer {token}"
	sku := testenv.Unique("SKU")
	cancel := cancelTargets(t)
	cancelKey := testenv.Unique("openapi-cancel")
	tests := []exchange{
		{"places_an_order", "", request{"POST", "/orders", jsonKey(key) + "\nX-Request-ID: openapi-1", []byte(order)}, 201, allowed},
		{"replays_an_order", "", request{"POST", "/orders", jsonKey(key), []byte(order)}, 200, allowed},
		{"refuses_a_key_reused_on_another_body", "", request{"POST", "/orders", jsonKey(key), []byte(strings.Replace(order, "c-1", "c-2", 1))}, 409, unchecked},
		{"refuses_broken_json", "", request{"POST", "/orders", asJSON, []byte(`{"customer_id":`)}, 400, refused},
		{"refuses_a_long_idempotency_key", "", request{"POST", "/orders", jsonKey(strings.Repeat("k", 256)), []byte(order)}, 400, refused},
		{"refuses_a_key_sent_twice", "", request{"POST", "/orders", jsonKey("a") + "\nIdempotency-Key: b", []byte(order)}, 400, unchecked},
		{"refuses_an_oversized_body", "", request{"POST", "/orders", asJSON, []byte(`{"customer_id":"` + strings.Repeat("x", 70<<10) + `"}`)}, 413, refused},
		{"refuses_text", "", request{"POST", "/orders", "Content-Type: text/plain", []byte(order)}, 415, refused},
		{"refuses_zero_quantity", "", request{"POST", "/orders", asJSON, []byte(`{"customer_id":"c","items":[{"sku":"A","quantity":0}]}`)}, 422, refused},
		{"refuses_an_unknown_field", "", request{"POST", "/orders", asJSON, []byte(`{"customer_id":"c","items":[{"sku":"A","quantity":1}],"admin":true}`)}, 422, refused},
		{"refuses_a_bad_sku", "", request{"POST", "/orders", asJSON, []byte(`{"customer_id":"c","items":[{"sku":"A B","quantity":1}]}`)}, 422, refused},
		{"refuses_a_place_while_the_database_is_away", "away", request{"POST", "/orders", asJSON, []byte(order)}, 503, allowed},

		{"lists_orders", "", request{"GET", "/orders", "", nil}, 200, allowed},
		{"lists_a_page_with_a_next_cursor", "", request{"GET", "/orders?customer_id=c-1&limit=1", "", nil}, 200, allowed},
		{"lists_the_page_after_a_cursor", "", request{"GET", "/orders?customer_id=c-1&limit=1&after={cursor}", "", nil}, 200, allowed},
		{"lists_by_status", "", request{"GET", "/orders?status=pending&limit=100", "", nil}, 200, allowed},
		{"refuses_limit_zero", "", request{"GET", "/orders?limit=0", "", nil}, 422, refused},
		{"refuses_an_unknown_status", "", request{"GET", "/orders?status=shipped", "", nil}, 422, refused},
		{"refuses_a_cursor_that_is_not_one", "", request{"GET", "/orders?after=!!", "", nil}, 422, refused},
		{"refuses_a_query_that_does_not_parse", "", request{"GET", "/orders?limit=%zz", "", nil}, 400, unchecked},
		{"refuses_a_list_while_the_database_is_away", "away", request{"GET", "/orders", "", nil}, 503, allowed},

		{"reads_an_order", "", request{"GET", "/orders/{order}", "", nil}, 200, allowed},
		{"knows_no_unknown_order", "", request{"GET", "/orders/01a2085e-97ee-76b5-b6c7-24fcde6bbcdb", "", nil}, 404, allowed},
		{"knows_no_order_by_another_id_form", "", request{"GET", "/orders/{order-nodash}", "", nil}, 404, allowed},
		{"refuses_an_order_read_while_the_database_is_away", "away", request{"GET", "/orders/01a2085e-97ee-76b5-b6c7-24fcde6bbcdb", "", nil}, 503, allowed},

		{"cancels_an_order", "", request{"POST", cancel.pending, jsonKey(cancelKey), []byte(`{"reason":"ordered twice"}`)}, 202, allowed},
		{"replays_a_cancel", "", request{"POST", cancel.pending, jsonKey(cancelKey), []byte(`{"reason":"ordered twice"}`)}, 200, allowed},
		{"refuses_a_cancel_key_reused_with_another_reason", "", request{"POST", cancel.pending, jsonKey(cancelKey), []byte(`{"reason":"other"}`)}, 409, unchecked},
		{"refuses_a_placing_key_for_a_cancel", "", request{"POST", cancel.pending, jsonKey(key), nil}, 409, unchecked},
		{"answers_a_cancelling_order_as_it_is", "", request{"POST", cancel.pending, "", nil}, 200, allowed},
		{"takes_an_empty_body_as_none_whatever_its_type", "", request{"POST", cancel.pending, "Content-Type: text/plain", nil}, 200, unchecked}, // the document cannot say "an empty body, whatever its type"
		{"cancels_a_confirmed_order_without_a_reason", "", request{"POST", cancel.confirmed, asJSON, []byte(`{}`)}, 202, allowed},
		{"answers_a_cancelled_order_as_it_is", "", request{"POST", cancel.cancelled, asJSON, []byte(`{"reason":"again"}`)}, 200, allowed},
		{"reads_a_cancelled_order", "", request{"GET", strings.TrimSuffix(cancel.cancelled, "/cancel"), "", nil}, 200, allowed},
		{"lists_cancelled_orders", "", request{"GET", "/orders?status=cancelled&limit=100", "", nil}, 200, allowed},
		{"lists_cancelling_orders", "", request{"GET", "/orders?status=cancelling&limit=100", "", nil}, 200, allowed},
		{"refuses_to_cancel_a_rejected_order", "", request{"POST", cancel.rejected, "", nil}, 409, allowed},
		{"knows_no_unknown_order_to_cancel", "", request{"POST", "/orders/01a2085e-97ee-76b5-b6c7-24fcde6bbcdb/cancel", "", nil}, 404, allowed},
		{"knows_no_order_to_cancel_by_another_id_form", "", request{"POST", "/orders/{order-nodash}/cancel", "", nil}, 404, allowed},
		{"refuses_a_long_reason", "", request{"POST", cancel.pending, asJSON, []byte(`{"reason":"` + strings.Repeat("é", 201) + `"}`)}, 422, refused},
		{"refuses_a_reason_that_is_no_string", "", request{"POST", cancel.pending, asJSON, []byte(`{"reason":5}`)}, 422, refused},
		{"refuses_an_unknown_cancel_field", "", request{"POST", cancel.pending, asJSON, []byte(`{"why":"x"}`)}, 422, refused},
		{"refuses_a_cancel_as_text", "", request{"POST", cancel.pending, "Content-Type: text/plain", []byte(`{}`)}, 415, refused},
		{"refuses_a_cancel_in_broken_json", "", request{"POST", cancel.pending, asJSON, []byte(`{"reason"`)}, 400, refused},
		{"refuses_an_oversized_cancel", "", request{"POST", cancel.pending, asJSON, []byte(`{"reason":"` + strings.Repeat("x", 70<<10) + `"}`)}, 413, refused},
		{"refuses_a_long_cancel_key", "", request{"POST", cancel.pending, "Idempotency-Key: " + strings.Repeat("k", 256), nil}, 400, refused},
		{"refuses_a_cancel_while_the_database_is_away", "away", request{"POST", "/orders/01a2085e-97ee-76b5-b6c7-24fcde6bbcdb/cancel", "", nil}, 503, allowed},

		{"sets_stock", "", request{"PUT", "/inventory/" + sku, asJSON + "\n" + auth, []byte(`{"available":5}`)}, 200, allowed},
		{"refuses_stock_without_a_token", "", request{"PUT", "/inventory/" + sku, asJSON, []byte(`{"available":5}`)}, 401, refused},
		{"refuses_stock_with_a_wrong_token", "", request{"PUT", "/inventory/" + sku, asJSON + "\nAuthorization: Bearer nope", []byte(`{"available":5}`)}, 401, unchecked},
		{"refuses_stock_while_disabled", "disabled", request{"PUT", "/inventory/" + sku, asJSON + "\n" + auth, []byte(`{"available":5}`)}, 403, allowed},
		{"refuses_negative_stock", "", request{"PUT", "/inventory/" + sku, asJSON + "\n" + auth, []byte(`{"available":-1}`)}, 422, refused},
		{"refuses_stock_without_available", "", request{"PUT", "/inventory/" + sku, asJSON + "\n" + auth, []byte(`{}`)}, 422, refused},
		{"refuses_stock_of_a_bad_sku", "", request{"PUT", "/inventory/a%20b", asJSON + "\n" + auth, []byte(`{"available":1}`)}, 422, refused},
		{"refuses_stock_as_text", "", request{"PUT", "/inventory/" + sku, "Content-Type: text/plain\n" + auth, []byte(`{"available":1}`)}, 415, refused},
		{"refuses_stock_in_broken_json", "", request{"PUT", "/inventory/" + sku, asJSON + "\n" + auth, []byte(`{"available"`)}, 400, refused},
		{"refuses_an_oversized_stock_body", "", request{"PUT", "/inventory/" + sku, asJSON + "\n" + auth, []byte(`{"available":1` + strings.Repeat(" ", 70<<10) + `}`)}, 413, unchecked},
		{"refuses_stock_while_the_database_is_away", "away", request{"PUT", "/inventory/A", asJSON + "\n" + auth, []byte(`{"available":1}`)}, 503, allowed},
		{"reads_stock", "", request{"GET", "/inventory/SKU-1", "", nil}, 200, allowed},
		{"knows_no_unknown_sku", "", request{"GET", "/inventory/" + testenv.Unique("none"), "", nil}, 404, allowed},
		{"refuses_a_stock_read_while_the_database_is_away", "away", request{"GET", "/inventory/A", "", nil}, 503, allowed},

		{"replays_a_dead_letter", "", request{"POST", "/deadletters/{deadletter}/replay", auth, nil}, 200, allowed},
		{"refuses_to_replay_an_undecodable_one", "", request{"POST", "/deadletters/{undecodable}/replay", auth, nil}, 409, allowed},
		{"knows_no_unknown_dead_letter", "", request{"POST", "/deadletters/1-1/replay", auth, nil}, 404, allowed},
		{"refuses_a_replay_without_a_token", "", request{"POST", "/deadletters/1-1/replay", "", nil}, 401, refused},
		{"refuses_a_replay_while_disabled", "disabled", request{"POST", "/deadletters/1-1/replay", auth, nil}, 403, allowed},
		{"refuses_a_token_sent_twice", "", request{"POST", "/deadletters/1-1/replay", auth + "\n" + auth, nil}, 400, unchecked},

		{"serves_the_live_page", "", request{"GET", "/", "", nil}, 200, allowed},
		{"serves_its_script", "", request{"GET", "/ui/app.js", "", nil}, 200, allowed},
		{"serves_its_style", "", request{"GET", "/ui/style.css", "", nil}, 200, allowed},
		{"serves_a_range_of_an_asset", "", request{"GET", "/ui/app.js", "Range: bytes=0-3", nil}, 206, allowed},
		{"refuses_a_range_beyond_an_asset", "", request{"GET", "/ui/app.js", "Range: bytes=999999-", nil}, 416, allowed},
		{"sends_index_html_to_its_directory", "", request{"GET", "/ui/index.html", "", nil}, 301, allowed},
		{"knows_no_other_asset", "", request{"GET", "/ui/nope.js", "", nil}, 404, allowed},
		{"streams_events", "", request{"GET", "/events", "", nil}, 200, allowed},
		{"is_alive", "", request{"GET", "/healthz", "", nil}, 200, allowed},
		{"is_ready", "", request{"GET", "/readyz", "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", nil}, 200, allowed},
		{"is_not_ready_without_redis", "disabled", request{"GET", "/readyz", "", nil}, 503, allowed},
		{"serves_metrics", "", request{"GET", "/metrics", "", nil}, 200, allowed},
		{"serves_this_document", "", request{"GET", "/openapi.json", "", nil}, 200, allowed},

		{"knows_no_unknown_route", "", request{"GET", "/nowhere", "", nil}, 404, refused},
		{"refuses_a_method_a_route_lacks", "", request{"DELETE", "/orders/{order}", "", nil}, 405, refused},
	}
	c := newContract(t)
	for _, tt := range tests { // in order: a replay follows its placing
		t.Run(tt.name, func(t *testing.T) {
			server := servers[cmp.Or(tt.server, "api")]
			req := env.build(t, tt.req)
			req.URL.Host = strings.TrimPrefix(server, "http://")
			resp, body := roundTrip(t, env.client, req)
			if resp.StatusCode != tt.status {
				t.Fatalf("= %d %s, want %d", resp.StatusCode, body, tt.status)
			}
			if errs := c.responseErrors(req, resp, body); len(errs) > 0 {
				t.Errorf("the answer %d breaks the document:\n%s\nbody: %.300s", resp.StatusCode, strings.Join(errs, "\n"), body)
			}
			switch errs := c.requestErrors(req, tt.req.Body); {
			case tt.request == allowed && len(errs) > 0:
				t.Errorf("the document refuses the request:\n%s", strings.Join(errs, "\n"))
			case tt.request == refused && len(errs) == 0:
				t.Errorf("the server refuses the request (%d), the document allows it", resp.StatusCode)
			}
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
	if _, _, err := ord.Cancel(ctx, cancelled.ID, "", ""); err != nil {
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
