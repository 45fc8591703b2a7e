package httpapi_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/httpapi"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/live"
	"github.com/orderstream/orderstream/redisstreams"
)

// send sends a request with headers given as name, value pairs, so that a
// header can be sent twice. Without an Authorization pair it is sent with
// an administrator's JWT; an Authorization of "" is not sent.
func send(t *testing.T, h http.Handler, method, path, body string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	authorized := false
	for i := 0; i+1 < len(headers); i += 2 {
		if http.CanonicalHeaderKey(headers[i]) == "Authorization" {
			authorized = true
			if headers[i+1] == "" {
				continue
			}
		}
		req.Header.Add(headers[i], headers[i+1])
	}
	if !authorized {
		req.Header.Set("Authorization", bearer(adminJWT(t)))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func wantProblem(t *testing.T, rec *httptest.ResponseRecorder, status int, detail string) {
	t.Helper()
	if rec.Code != status || rec.Header().Get("Content-Type") != "application/problem+json" || !strings.Contains(rec.Body.String(), detail) {
		t.Errorf("= %d %s %s, want %d problem details saying %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body, status, detail)
	}
}

const jsonType = "application/json"

func TestHTTP_idempotencyKeyHeader(t *testing.T) {
	t.Parallel()
	api := newAPI(t, adminToken)
	place := func(t *testing.T, keys ...string) *httptest.ResponseRecorder {
		headers := []string{"Content-Type", jsonType}
		for _, k := range keys {
			headers = append(headers, "Idempotency-Key", k)
		}
		return send(t, api, "POST", "/orders", `{"customer_id":"c","items":[{"sku":"A","quantity":1}]}`, headers...)
	}
	t.Run("accepts_255_printable_ASCII_characters", func(t *testing.T) {
		key := testenv.Unique(` ~!"'\`)
		if rec := place(t, key+strings.Repeat("k", 255-len(key))); rec.Code != http.StatusCreated {
			t.Errorf("= %d %s, want 201", rec.Code, rec.Body)
		}
	})
	for name, key := range map[string]string{
		"rejects_256_characters":      strings.Repeat("k", 256),
		"rejects_a_non_ASCII_byte":    testenv.Unique("k\xff"),
		"rejects_non_ASCII_text":      testenv.Unique("ключ"),
		"rejects_a_control_character": testenv.Unique("k\x01"),
	} {
		t.Run(name, func(t *testing.T) { wantProblem(t, place(t, key), 400, "Idempotency-Key must be") })
	}
	t.Run("rejects_a_key_sent_twice", func(t *testing.T) {
		wantProblem(t, place(t, testenv.Unique("a"), testenv.Unique("b")), 400, "Idempotency-Key header at most once")
	})
}

func TestHTTP_requestIDHeader(t *testing.T) {
	t.Parallel()
	db := testenv.DB(t)
	api := newAPIOn(t, db, adminToken)
	// The requests come through a trusted proxy (httptest's peer is in
	// trustedProxies), whose id is taken when usable; an untrusted peer's
	// never is (TestHTTP_trustedProxies). The id the answer echoes is the
	// correlation_id of the order's event.
	place := func(t *testing.T, ids ...string) (echoed, correlation string) {
		headers := []string{"Content-Type", jsonType}
		for _, id := range ids {
			headers = append(headers, "X-Request-ID", id)
		}
		rec := send(t, api, "POST", "/orders", `{"customer_id":"c","items":[{"sku":"A","quantity":1}]}`, headers...)
		if rec.Code != http.StatusCreated {
			t.Fatalf("= %d %s", rec.Code, rec.Body)
		}
		var o struct{ ID string }
		_ = json.Unmarshal(rec.Body.Bytes(), &o)
		evs := testenv.OutboxEvents(t, db, "order_id", o.ID)
		if len(evs) != 1 {
			t.Fatalf("%d events for order %s", len(evs), o.ID)
		}
		return rec.Header().Get("X-Request-ID"), evs[0].Metadata[events.MetadataCorrelationID]
	}
	t.Run("keeps_128_printable_ASCII_characters", func(t *testing.T) {
		id := testenv.Unique(`r ~"\`)
		id += strings.Repeat("r", 128-len(id))
		if echoed, corr := place(t, id); echoed != id || corr != id {
			t.Errorf("echoed %q, correlation_id %q, want %q", echoed, corr, id)
		}
	})
	for name, ids := range map[string][]string{
		"replaces_129_characters":   {strings.Repeat("r", 129)},
		"replaces_a_non_ASCII_byte": {"req\xff"},
		"replaces_non_ASCII_text":   {"запрос"},
		"replaces_a_control":        {"req\x7f"},
		"replaces_an_id_sent_twice": {"req-a", "req-b"},
	} {
		t.Run(name, func(t *testing.T) {
			echoed, corr := place(t, ids...)
			if echoed == "" || echoed != corr || strings.Contains(echoed, "req") || strings.Contains(echoed, "rrr") || strings.Contains(echoed, "запрос") {
				t.Errorf("echoed %q, correlation_id %q, want one generated id for both", echoed, corr)
			}
		})
	}
}

func TestHTTP_contentTypeHeader(t *testing.T) {
	t.Parallel()
	api := newAPI(t, adminToken)
	place := func(t *testing.T, types ...string) *httptest.ResponseRecorder {
		var headers []string
		for _, ct := range types {
			headers = append(headers, "Content-Type", ct)
		}
		return send(t, api, "POST", "/orders", `{"customer_id":"c","items":[{"sku":"A","quantity":1}]}`, headers...)
	}
	for _, ct := range []string{"application/json", "application/json; charset=UTF-8", "Application/JSON; charset=utf-8"} {
		if rec := place(t, ct); rec.Code != http.StatusCreated {
			t.Errorf("Content-Type %q = %d %s, want 201", ct, rec.Code, rec.Body)
		}
	}
	for _, ct := range []string{"", "text/plain", "application/jsonx", "application/json;;", "application/json; charset=latin1", "application/json; charset=utf-16"} {
		t.Run("refuses_"+ct, func(t *testing.T) { wantProblem(t, place(t, ct), 415, "application/json") })
	}
	t.Run("refuses_a_content_type_sent_twice", func(t *testing.T) {
		wantProblem(t, place(t, jsonType, jsonType), 400, "Content-Type header at most once")
	})
}

// TestHTTP_authorizationHeader: the admin routes, on both listeners, take
// the operators' ADMIN_TOKEN (the scheme in any case, the token exactly)
// or an administrator's JWT; anything else is 401 with WWW-Authenticate, a
// customer's JWT 403, and the header sent twice 400.
func TestHTTP_authorizationHeader(t *testing.T) {
	t.Parallel()
	db := testenv.DB(t)
	api := newAPIOn(t, db, adminToken)
	ops := httpapi.NewOps(testConfig(t, db, adminToken), httpapi.Ops{Live: live.New()})
	routes := map[string]func(t *testing.T, h http.Handler, auth ...string) *httptest.ResponseRecorder{
		"PUT_inventory": func(t *testing.T, h http.Handler, auth ...string) *httptest.ResponseRecorder {
			headers := []string{"Content-Type", jsonType}
			for _, a := range auth {
				headers = append(headers, "Authorization", a)
			}
			return send(t, h, "PUT", "/inventory/SKU-auth", `{"available":1}`, headers...)
		},
		"POST_replay": func(t *testing.T, _ http.Handler, auth ...string) *httptest.ResponseRecorder {
			var headers []string
			for _, a := range auth {
				headers = append(headers, "Authorization", a)
			}
			return send(t, ops, "POST", "/deadletters/1-1/replay", "", headers...)
		},
	}
	for route, call := range routes {
		t.Run(route, func(t *testing.T) {
			for _, auth := range []string{"Bearer " + adminToken, "bearer " + adminToken, "BEARER " + adminToken, bearer(adminJWT(t))} {
				if rec := call(t, api, auth); rec.Code == 401 || rec.Code == 403 || rec.Code >= 500 {
					t.Errorf("Authorization %q = %d %s, want past the check", auth, rec.Code, rec.Body)
				}
			}
			rec := call(t, api, "")
			wantProblem(t, rec, 401, "Authorization: Bearer")
			if rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("no Authorization: no WWW-Authenticate")
			}
			for _, auth := range []string{"Bearer", "Bearer ", "Bearer nope", "Bearer  " + adminToken, "Bearer " + adminToken + " ",
				"Bearer " + adminToken[:5], "Basic YWRtaW46YWRtaW4=", "Token " + adminToken, adminToken, "Bearer " + strings.ToUpper(adminToken)} {
				rec := call(t, api, auth)
				wantProblem(t, rec, 401, "bearer token is not valid")
				if got := rec.Header().Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
					t.Errorf("Authorization %q: WWW-Authenticate %q, want an invalid_token error", auth, got)
				}
			}
			wantProblem(t, call(t, api, bearer(customerJWT(t, "c-1"))), 403, "admin role")
			wantProblem(t, call(t, api, "Bearer "+adminToken, "Bearer nope"), 400, "Authorization header at most once")
		})
	}
}

// TestHTTP_redisAway: a replay while Redis cannot be reached, or hangs up,
// answers 503 problem details naming Redis.
func TestHTTP_redisAway(t *testing.T) {
	t.Parallel()
	closedAddr := testenv.FreeAddr(t) // nothing listens there
	hangsUp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hangsUp.Close()
	go func() {
		for {
			c, err := hangsUp.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	db := testenv.DB(t)
	for name, addr := range map[string]string{"closed_port": closedAddr, "hangs_up": hangsUp.Addr().String()} {
		t.Run(name, func(t *testing.T) {
			rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second})
			defer rdb.Close()
			streams := redisstreams.Config{Prefix: "test:away:"}
			cfg := testConfig(t, db, adminToken)
			cfg.Logger, cfg.RequestTimeout = discardLogger(), 10*time.Second
			ops := httpapi.NewOps(cfg, httpapi.Ops{
				Live:             live.New(),
				ReplayDeadLetter: func(ctx context.Context, id string) error { return streams.ReplayID(ctx, rdb, id) },
			})
			admin := []string{"Authorization", "Bearer " + adminToken}
			wantProblem(t, send(t, ops, "POST", "/deadletters/1700000000000-0/replay", "", admin...), 503, "Redis is unavailable")
			// A malformed id is the client's mistake, whatever Redis does.
			wantProblem(t, send(t, ops, "POST", "/deadletters/abc/replay", "", admin...), 404, "no dead letter")
		})
	}
}
