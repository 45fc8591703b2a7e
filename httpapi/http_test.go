package httpapi_test

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/httpapi"
	"github.com/orderstream/orderstream/internal/testenv"
)

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
			t.Errorf("X-Request-ID = %q, want the trusted proxy's", rec.Header().Get("X-Request-ID"))
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
		other := do(t, api, call{method: "POST", path: "/orders", body: strings.Replace(body, `"quantity":2`, `"quantity":3`, 1), header: key})
		if other.Code != http.StatusConflict {
			t.Errorf("same key, other body = %d, want 409", other.Code)
		}
		// A key is its customer's: another customer's same key is another.
		another := do(t, api, call{method: "POST", path: "/orders", body: strings.Replace(body, "c-1", "c-2", 1), header: key})
		if another.Code != http.StatusCreated {
			t.Errorf("same key, another customer = %d %s, want 201", another.Code, another.Body)
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
	// A customer whose sub is SQL places and reads their own order.
	mine := as(bearer(customerJWT(t, sql)))
	rec = do(t, api, call{method: "POST", path: "/orders", body: `{"items":[{"sku":"SKU-1","quantity":1}]}`, header: mine})
	if rec.Code != http.StatusCreated || decode(t, rec)["customer_id"] != sql {
		t.Fatalf("placed by a customer whose sub is SQL = %d %s", rec.Code, rec.Body)
	}
	if got := do(t, api, call{method: "GET", path: "/orders/" + decode(t, rec)["id"].(string), header: mine}); got.Code != http.StatusOK {
		t.Errorf("their own order = %d %s", got.Code, got.Body)
	}
}

func TestHTTP_stock(t *testing.T) {
	t.Parallel()
	api := newAPI(t, adminToken)
	sku := testenv.Unique("SKU")
	setStock := func(t *testing.T, h http.Handler, authorization string, n int) *httptest.ResponseRecorder {
		t.Helper()
		return do(t, h, call{method: "PUT", path: "/inventory/" + sku, body: `{"available":` + strconv.Itoa(n) + `}`, header: as(authorization)})
	}

	if rec := setStock(t, api, bearer(adminToken), 100); rec.Code != 200 {
		t.Fatalf("PUT with ADMIN_TOKEN = %d %s", rec.Code, rec.Body)
	}
	got := decode(t, do(t, api, call{method: "GET", path: "/inventory/" + sku, header: as(bearer(customerJWT(t, "c-1")))}))
	if got["sku"] != sku || got["available"] != 100.0 || got["reserved"] != 0.0 {
		t.Errorf("GET by a customer = %v", got)
	}

	t.Run("an_administrators_JWT_sets_it_too", func(t *testing.T) {
		if rec := setStock(t, api, bearer(adminJWT(t)), 90); rec.Code != 200 || decode(t, rec)["available"] != 90.0 {
			t.Errorf("PUT with an admin JWT = %d %s", rec.Code, rec.Body)
		}
	})

	t.Run("a_customer_may_not_set_it", func(t *testing.T) {
		wantProblem(t, setStock(t, api, bearer(customerJWT(t, "c-1")), 1), 403, "admin role")
	})

	// Without ADMIN_TOKEN configured there is no break-glass token: the
	// former one is just a bearer that is no JWT (401), and only an
	// administrator's JWT sets stock.
	t.Run("takes_no_admin_token_without_one_configured", func(t *testing.T) {
		none := newAPI(t, "")
		rec := setStock(t, none, bearer(adminToken), 1)
		wantProblem(t, rec, 401, "bearer token is not valid")
		if rec.Header().Get("WWW-Authenticate") == "" {
			t.Error("401 without WWW-Authenticate")
		}
		if rec := setStock(t, none, bearer(""), 1); rec.Code != 401 {
			t.Errorf("an empty token, none configured = %d, want 401", rec.Code)
		}
		if rec := setStock(t, none, bearer(adminJWT(t)), 80); rec.Code != 200 {
			t.Errorf("an admin JWT, no ADMIN_TOKEN configured = %d %s", rec.Code, rec.Body)
		}
	})
}

// TestHTTP_errors sends malformed and hostile requests: each gets its 4xx
// problem details, never a 5xx.
func TestHTTP_errors(t *testing.T) {
	t.Parallel()
	api := newAPI(t, adminToken)
	admin := as(bearer(adminToken))
	none := as("")
	order := func(s string) call { return call{method: "POST", path: "/orders", body: s} }
	stock := func(header map[string]string) call {
		return call{method: "PUT", path: "/inventory/A", body: `{"available":1}`, header: header}
	}
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
		{"order_without_token", call{method: "POST", path: "/orders", body: `{"items":[{"sku":"A","quantity":1}]}`, header: none}, 401, ""},
		{"order_with_the_admin_token", call{method: "GET", path: "/orders", header: admin}, 403, ""},
		{"order_for_another_customer", call{method: "POST", path: "/orders", body: `{"customer_id":"c-2","items":[{"sku":"A","quantity":1}]}`,
			header: as(bearer(customerJWT(t, "c-1")))}, 403, ""},
		{"stock_without_token", stock(none), 401, ""},
		{"stock_with_wrong_token", stock(as("Bearer nope")), 401, ""},
		{"stock_with_a_customer_token", stock(as(bearer(customerJWT(t, "c-1")))), 403, ""},
		{"stock_negative", call{method: "PUT", path: "/inventory/A", body: `{"available":-1}`, header: admin}, 422, "available"},
		{"stock_missing_field", call{method: "PUT", path: "/inventory/A", body: `{}`, header: admin}, 422, "available"},
		{"stock_bad_sku", call{method: "PUT", path: "/inventory/a%20b", body: `{"available":1}`, header: admin}, 422, "sku"},
		{"invalid_utf8", order("{\"customer_id\":\"\xff\xfe\",\"items\":[{\"sku\":\"A\",\"quantity\":1}]}"), 400, ""},
		// No customer_id is the token's sub; nothing else was sent.
		{"null_body", order(`null`), 422, "items"},
		{"null_quantity", order(`{"customer_id":"c","items":[{"sku":"A","quantity":null}]}`), 422, "items[0].quantity"},
		{"quantity_beyond_int64", order(`{"customer_id":"c","items":[{"sku":"A","quantity":99999999999999999999}]}`), 422, "items.quantity"},
		{"nested_field", order(`{"customer_id":{"a":[[[1]]]},"items":[]}`), 422, "customer_id"},
		{"long_customer_id", order(`{"customer_id":"` + strings.Repeat("c", 65) + `","items":[{"sku":"A","quantity":1}]}`), 422, "customer_id"},
		{"long_order_id", call{method: "GET", path: "/orders/" + strings.Repeat("9", 5000)}, 404, ""},
		{"long_sku_path", call{method: "GET", path: "/inventory/" + strings.Repeat("S", 5000)}, 404, ""},
		{"stock_long_sku", call{method: "PUT", path: "/inventory/" + strings.Repeat("S", 65), body: `{"available":1}`, header: admin}, 422, "sku"},
		{"stock_basic_auth", stock(as("Basic YWRtaW46YWRtaW4=")), 401, ""},
		{"stock_empty_bearer", stock(as("Bearer ")), 401, ""},
		{"stock_token_prefix", stock(as(bearer(adminToken[:5]))), 401, ""},
		{"stock_fractional", call{method: "PUT", path: "/inventory/A", body: `{"available":2.5}`, header: admin}, 422, "available"},
		{"stock_too_many", call{method: "PUT", path: "/inventory/A", body: `{"available":1000000001}`, header: admin}, 422, "available"},
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
			if tt.status == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

// TestHTTP_databaseAway: with the database unreachable the API answers 503
// problem details at once; the public /readyz says only "not ready", the
// operations listener's names what is missing.
func TestHTTP_databaseAway(t *testing.T) {
	t.Parallel()
	cfg := databaseAwayConfig(t)
	api, ops := httpapi.New(cfg), httpapi.NewOps(cfg, httpapi.Ops{})
	for _, c := range []call{
		{method: "POST", path: "/orders", body: `{"customer_id":"c","items":[{"sku":"A","quantity":1}]}`},
		{method: "GET", path: "/orders"},
		{method: "GET", path: "/orders/01a2085e-97ee-76b5-b6c7-24fcde6bbcdb"},
		{method: "GET", path: "/inventory/A"},
		{method: "GET", path: "/readyz"},
	} {
		rec := do(t, api, c)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s = %d %s, want 503 problem details", c.method, c.path, rec.Code, rec.Body)
		}
	}
	public := do(t, api, call{method: "GET", path: "/readyz", header: as("")})
	if p := decode(t, public); p["detail"] != "not ready" || p["checks"] != nil || strings.Contains(public.Body.String(), "postgres") {
		t.Errorf("the public /readyz = %s, want \"not ready\" naming nothing", public.Body)
	}
	detailed := do(t, ops, call{method: "GET", path: "/readyz", header: as("")})
	if detailed.Code != http.StatusServiceUnavailable || !strings.Contains(detailed.Body.String(), `"postgres":"unavailable"`) {
		t.Errorf("the operations /readyz = %d %s, want 503 naming postgres", detailed.Code, detailed.Body)
	}
	if strings.Contains(detailed.Body.String(), "127.0.0.1") {
		t.Errorf("/readyz gives the database's address away: %s", detailed.Body)
	}
}

// databaseAwayConfig is the API on a database nothing listens for.
func databaseAwayConfig(t *testing.T) httpapi.Config {
	t.Helper()
	addr := testenv.FreeAddr(t) // nothing listens there
	db, err := sql.Open("postgres", "postgres://postgres@"+addr+"/x?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := testConfig(t, db, adminToken)
	cfg.Checks = map[string]func(context.Context) error{"postgres": db.PingContext}
	cfg.Logger = discardLogger()
	return cfg
}

func databaseAwayAPI(t *testing.T) http.Handler {
	t.Helper()
	return httpapi.New(databaseAwayConfig(t))
}
