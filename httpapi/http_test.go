package httpapi_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/httpapi"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/postgres"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const adminToken = "test-admin-token"

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newAPI(t *testing.T, token string) http.Handler {
	t.Helper()
	return newAPIOn(t, testenv.DB(t), token)
}

func newAPIOn(t *testing.T, db *sql.DB, token string) http.Handler {
	t.Helper()
	logger := testenv.Logger(t)
	return httpapi.New(httpapi.Config{
		Orders:     orders.NewService(db),
		Inventory:  inventory.NewService(db),
		AdminToken: token,
		Checks: map[string]func(context.Context) error{
			"postgres": db.PingContext,
			"redis":    func(context.Context) error { return errors.New("connection refused") },
		},
		Metrics:        metrics.New(),
		Logger:         logger,
		RequestTimeout: 5 * time.Second,
	})
}

// handle runs the message handler fn on e in a transaction of its own, as
// the worker would in the message's inbox transaction.
func handle[E any](t *testing.T, db *sql.DB, fn func(context.Context, *postgres.Tx, *E) error, e *E) {
	t.Helper()
	err := postgres.InTx(context.Background(), db, func(ctx context.Context, tx *postgres.Tx) error { return fn(ctx, tx, e) })
	if err != nil {
		t.Fatal(err)
	}
}

type call struct {
	method, path, body string
	header             map[string]string
}

func do(t *testing.T, h http.Handler, c call) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func decode(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, rec.Body)
	}
	return m
}

func TestHTTP_orders(t *testing.T) {
	t.Parallel()
	api := newAPI(t, adminToken)
	body := `{"customer_id":"c-1","items":[{"sku":"SKU-1","quantity":2}]}`

	t.Run("places_an_order_and_reads_it_back", func(t *testing.T) {
		rec := do(t, api, call{method: "POST", path: "/orders", body: body, header: map[string]string{"X-Request-ID": "req-1"}})
		if rec.Code != http.StatusCreated {
			t.Fatalf("POST /orders = %d %s", rec.Code, rec.Body)
		}
		o := decode(t, rec)
		if o["status"] != "pending" || o["customer_id"] != "c-1" || rec.Header().Get("Location") != "/orders/"+o["id"].(string) {
			t.Errorf("order = %v, Location %q", o, rec.Header().Get("Location"))
		}
		if rec.Header().Get("X-Request-ID") != "req-1" {
			t.Errorf("X-Request-ID = %q, want the request's", rec.Header().Get("X-Request-ID"))
		}
		for _, field := range []string{"created_at", "updated_at"} {
			ts, _ := o[field].(string)
			if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || !strings.Contains(ts, ".") {
				t.Errorf("%s = %q, want RFC 3339 with fractional seconds", field, ts)
			}
		}
		got := do(t, api, call{method: "GET", path: "/orders/" + o["id"].(string)})
		if got.Code != http.StatusOK || decode(t, got)["id"] != o["id"] {
			t.Errorf("GET = %d %s", got.Code, got.Body)
		}
	})

	t.Run("generates_a_request_id_when_absent_or_unusable", func(t *testing.T) {
		for _, id := range []string{"", strings.Repeat("x", 200), "bad\x01id"} {
			rec := do(t, api, call{method: "GET", path: "/healthz", header: map[string]string{"X-Request-ID": id}})
			if got := rec.Header().Get("X-Request-ID"); got == "" || got == id {
				t.Errorf("X-Request-ID for %q = %q, want a generated one", id, got)
			}
		}
	})

	t.Run("replays_an_idempotent_request", func(t *testing.T) {
		key := map[string]string{"Idempotency-Key": testenv.Unique("k")}
		first := do(t, api, call{method: "POST", path: "/orders", body: body, header: key})
		again := do(t, api, call{method: "POST", path: "/orders", body: body, header: key})
		if first.Code != 201 || again.Code != 200 || decode(t, first)["id"] != decode(t, again)["id"] {
			t.Fatalf("first %d %s, replay %d %s", first.Code, first.Body, again.Code, again.Body)
		}
		other := do(t, api, call{method: "POST", path: "/orders", body: strings.Replace(body, "c-1", "c-2", 1), header: key})
		if other.Code != http.StatusConflict {
			t.Errorf("same key, other body = %d, want 409", other.Code)
		}
	})
}

func TestHTTP_hostileStrings(t *testing.T) {
	t.Parallel()
	api := newAPI(t, adminToken)
	sql := `'; DROP TABLE orders; --`
	header := map[string]string{
		"Idempotency-Key": sql + testenv.Unique(""), "X-Request-ID": sql,
		"Content-Type": "application/json; charset=utf-8",
	}
	body := `{"customer_id":"` + strings.ReplaceAll(sql, `"`, `\"`) + `","items":[{"sku":"SKU-1","quantity":1}]}`
	rec := do(t, api, call{method: "POST", path: "/orders", body: body, header: header})
	if rec.Code != http.StatusCreated {
		t.Fatalf("= %d %s, want 201: SQL in a string is just a string", rec.Code, rec.Body)
	}
	if rec.Header().Get("X-Request-ID") != sql {
		t.Errorf("X-Request-ID = %q", rec.Header().Get("X-Request-ID"))
	}
	got := decode(t, do(t, api, call{method: "GET", path: "/orders/" + decode(t, rec)["id"].(string)}))
	if got["customer_id"] != sql {
		t.Errorf("customer_id = %q, want it stored as sent", got["customer_id"])
	}
}

func TestHTTP_stock(t *testing.T) {
	t.Parallel()
	api := newAPI(t, adminToken)
	auth := map[string]string{"Authorization": "Bearer " + adminToken}
	sku := testenv.Unique("SKU")

	rec := do(t, api, call{method: "PUT", path: "/inventory/" + sku, body: `{"available":100}`, header: auth})
	if rec.Code != 200 {
		t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
	}
	got := decode(t, do(t, api, call{method: "GET", path: "/inventory/" + sku}))
	if got["sku"] != sku || got["available"] != 100.0 || got["reserved"] != 0.0 {
		t.Errorf("GET = %v", got)
	}

	t.Run("is_forbidden_without_an_admin_token_configured", func(t *testing.T) {
		rec := do(t, newAPI(t, ""), call{method: "PUT", path: "/inventory/" + sku, body: `{"available":1}`, header: auth})
		if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "ADMIN_TOKEN") {
			t.Errorf("= %d %s, want 403 explaining ADMIN_TOKEN", rec.Code, rec.Body)
		}
	})
}

// TestHTTP_errors sends malformed and hostile requests: each gets its 4xx
// problem details, never a 5xx.
func TestHTTP_errors(t *testing.T) {
	t.Parallel()
	api := newAPI(t, adminToken)
	auth := map[string]string{"Authorization": "Bearer " + adminToken}
	order := func(s string) call { return call{method: "POST", path: "/orders", body: s} }
	tests := []struct {
		name   string
		call   call
		status int
		field  string // a field the problem must list
	}{
		{"broken_json", order(`{"customer_id":`), 400, ""},
		{"not_an_object", order(`[1,2]`), 400, ""},
		{"two_values", order(`{"customer_id":"c","items":[{"sku":"A","quantity":1}]} {}`), 400, ""},
		{"empty_body", call{method: "POST", path: "/orders", header: map[string]string{"Content-Type": "application/json"}}, 400, ""},
		{"unknown_field", order(`{"customer_id":"c","items":[{"sku":"A","quantity":1}],"admin":true}`), 422, "admin"},
		{"wrong_type", order(`{"customer_id":"c","items":[{"sku":"A","quantity":"2"}]}`), 422, "items.quantity"},
		{"fractional_quantity", order(`{"customer_id":"c","items":[{"sku":"A","quantity":1.5}]}`), 422, "items.quantity"},
		{"huge_quantity", order(`{"customer_id":"c","items":[{"sku":"A","quantity":1e30}]}`), 422, "items.quantity"},
		{"zero_quantity", order(`{"customer_id":"c","items":[{"sku":"A","quantity":0}]}`), 422, "items[0].quantity"},
		{"missing_items", order(`{"customer_id":"c"}`), 422, "items"},
		{"sql_in_sku", order(`{"customer_id":"c","items":[{"sku":"A'; DROP TABLE stock; --","quantity":1}]}`), 422, "items[0].sku"},
		{"deep_nesting", order(strings.Repeat("[", 20000) + strings.Repeat("]", 20000)), 400, ""},
		{"oversized", order(`{"customer_id":"` + strings.Repeat("x", 70<<10) + `"}`), 413, ""},
		{"wrong_content_type", call{method: "POST", path: "/orders", body: `{}`, header: map[string]string{"Content-Type": "text/plain"}}, 415, ""},
		{"long_idempotency_key", call{method: "POST", path: "/orders", body: `{}`, header: map[string]string{"Idempotency-Key": strings.Repeat("k", 300)}}, 400, ""},
		{"unknown_order", call{method: "GET", path: "/orders/01a2085e-97ee-76b5-b6c7-24fcde6bbcdb"}, 404, ""},
		{"malformed_order_id", call{method: "GET", path: "/orders/%27%3B--"}, 404, ""},
		{"unknown_sku", call{method: "GET", path: "/inventory/" + testenv.Unique("none")}, 404, ""},
		{"stock_without_token", call{method: "PUT", path: "/inventory/A", body: `{"available":1}`}, 401, ""},
		{"stock_with_wrong_token", call{method: "PUT", path: "/inventory/A", body: `{"available":1}`, header: map[string]string{"Authorization": "Bearer nope"}}, 401, ""},
		{"stock_negative", call{method: "PUT", path: "/inventory/A", body: `{"available":-1}`, header: auth}, 422, "available"},
		{"stock_missing_field", call{method: "PUT", path: "/inventory/A", body: `{}`, header: auth}, 422, "available"},
		{"stock_bad_sku", call{method: "PUT", path: "/inventory/a%20b", body: `{"available":1}`, header: auth}, 422, "sku"},
		{"invalid_utf8", order("{\"customer_id\":\"\xff\xfe\",\"items\":[{\"sku\":\"A\",\"quantity\":1}]}"), 400, ""},
		{"null_body", order(`null`), 422, "customer_id"},
		{"null_quantity", order(`{"customer_id":"c","items":[{"sku":"A","quantity":null}]}`), 422, "items[0].quantity"},
		{"quantity_beyond_int64", order(`{"customer_id":"c","items":[{"sku":"A","quantity":99999999999999999999}]}`), 422, "items.quantity"},
		{"nested_field", order(`{"customer_id":{"a":[[[1]]]},"items":[]}`), 422, "customer_id"},
		{"long_customer_id", order(`{"customer_id":"` + strings.Repeat("c", 65) + `","items":[{"sku":"A","quantity":1}]}`), 422, "customer_id"},
		{"long_order_id", call{method: "GET", path: "/orders/" + strings.Repeat("9", 5000)}, 404, ""},
		{"long_sku_path", call{method: "GET", path: "/inventory/" + strings.Repeat("S", 5000)}, 404, ""},
		{"stock_long_sku", call{method: "PUT", path: "/inventory/" + strings.Repeat("S", 65), body: `{"available":1}`, header: auth}, 422, "sku"},
		{"stock_basic_auth", call{method: "PUT", path: "/inventory/A", body: `{"available":1}`, header: map[string]string{"Authorization": "Basic YWRtaW46YWRtaW4="}}, 401, ""},
		{"stock_empty_bearer", call{method: "PUT", path: "/inventory/A", body: `{"available":1}`, header: map[string]string{"Authorization": "Bearer "}}, 401, ""},
		{"stock_token_prefix", call{method: "PUT", path: "/inventory/A", body: `{"available":1}`, header: map[string]string{"Authorization": "Bearer " + adminToken[:5]}}, 401, ""},
		{"stock_fractional", call{method: "PUT", path: "/inventory/A", body: `{"available":2.5}`, header: auth}, 422, "available"},
		{"stock_too_many", call{method: "PUT", path: "/inventory/A", body: `{"available":1000000001}`, header: auth}, 422, "available"},
		{"unknown_route", call{method: "GET", path: "/nope"}, 404, ""},
		{"patch_orders", call{method: "PATCH", path: "/orders"}, 405, ""},
		{"post_inventory", call{method: "POST", path: "/inventory/A", body: `{}`}, 405, ""},
		{"wrong_method", call{method: "DELETE", path: "/orders/x"}, 405, ""},
		{"not_ready", call{method: "GET", path: "/readyz"}, 503, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := do(t, api, tt.call)
			if rec.Code != tt.status {
				t.Fatalf("= %d %s, want %d", rec.Code, rec.Body, tt.status)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q, want application/problem+json", ct)
			}
			p := decode(t, rec)
			if p["status"] != float64(tt.status) || p["title"] == "" || p["type"] == "" {
				t.Errorf("problem = %v", p)
			}
			if tt.field != "" && !strings.Contains(rec.Body.String(), `"field":"`+tt.field+`"`) {
				t.Errorf("problem does not list field %q: %s", tt.field, rec.Body)
			}
		})
	}
}

// TestHTTP_databaseAway: with the database unreachable the API answers 503
// problem details at once, and /readyz names what is missing.
func TestHTTP_databaseAway(t *testing.T) {
	t.Parallel()
	api := databaseAwayAPI(t)
	for _, c := range []call{
		{method: "POST", path: "/orders", body: `{"customer_id":"c","items":[{"sku":"A","quantity":1}]}`},
		{method: "GET", path: "/orders/01a2085e-97ee-76b5-b6c7-24fcde6bbcdb"},
		{method: "GET", path: "/inventory/A"},
		{method: "GET", path: "/readyz"},
	} {
		rec := do(t, api, c)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s = %d %s, want 503 problem details", c.method, c.path, rec.Code, rec.Body)
		}
		if c.path == "/readyz" && !strings.Contains(rec.Body.String(), `"postgres":"unavailable"`) {
			t.Errorf("/readyz does not name postgres: %s", rec.Body)
		}
		if c.path == "/readyz" && strings.Contains(rec.Body.String(), "127.0.0.1") {
			t.Errorf("/readyz gives the database's address away: %s", rec.Body)
		}
	}
}

// databaseAwayAPI is the API on a database nothing listens for.
func databaseAwayAPI(t *testing.T) http.Handler {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	db, err := sql.Open("postgres", "postgres://postgres@"+addr+"/x?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return httpapi.New(httpapi.Config{
		Orders: orders.NewService(db), Inventory: inventory.NewService(db), AdminToken: adminToken,
		Checks:  map[string]func(context.Context) error{"postgres": db.PingContext},
		Metrics: metrics.New(), Logger: discardLogger(), RequestTimeout: 5 * time.Second,
	})
}
