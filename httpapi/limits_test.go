package httpapi_test

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/httpapi"
	"github.com/orderstream/orderstream/internal/testenv"
)

// limitedAPI is the public listener with limits on the test Redis, under
// a prefix of the test's own, and its operations listener.
func limitedAPI(t *testing.T, perSecond, burst int) (api, ops http.Handler) {
	t.Helper()
	streams := testenv.Streams(t)
	rdb := streams.NewClient()
	t.Cleanup(func() { rdb.Close() })
	cfg := testConfig(t, testenv.DB(t), adminToken)
	cfg.Limits = httpapi.Limits{Redis: rdb, Prefix: streams.Prefix, PerSecond: perSecond, Burst: burst}
	return httpapi.New(cfg), httpapi.NewOps(cfg, httpapi.Ops{})
}

// untilLimited sends c until it is answered 429, and returns that answer;
// at most n tries.
func untilLimited(t *testing.T, h http.Handler, c call, n int) *httptest.ResponseRecorder {
	t.Helper()
	for range n {
		if rec := do(t, h, c); rec.Code == http.StatusTooManyRequests {
			return rec
		}
	}
	t.Fatalf("%s %s: %d requests, none answered 429", c.method, c.path, n)
	return nil
}

func wantRetryAfter(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if s, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After = %q, want whole seconds, at least one", rec.Header().Get("Retry-After"))
	}
}

// TestHTTP_rateLimit: a client over its rate is answered 429 with
// Retry-After, each client counted apart; /healthz and the operations
// listener are not limited.
func TestHTTP_rateLimit(t *testing.T) {
	t.Parallel()
	api, ops := limitedAPI(t, 1, 2)
	alice := as(bearer(customerJWT(t, testenv.Unique("alice"))))
	read := call{method: "GET", path: "/inventory/SKU-limit", header: alice}

	// The burst passes whatever the clock says.
	for i := range 2 {
		if rec := do(t, api, read); rec.Code == http.StatusTooManyRequests {
			t.Fatalf("request %d of a burst of 2 = 429", i+1)
		}
	}
	rec := untilLimited(t, api, read, 50)
	wantProblem(t, rec, http.StatusTooManyRequests, "too many requests")
	wantRetryAfter(t, rec)

	t.Run("counts_each_client_apart", func(t *testing.T) {
		bob := as(bearer(customerJWT(t, testenv.Unique("bob"))))
		if rec := do(t, api, call{method: "GET", path: "/inventory/SKU-limit", header: bob}); rec.Code == http.StatusTooManyRequests {
			t.Error("another customer's first request = 429")
		}
		if rec := do(t, api, call{method: "GET", path: "/openapi.json", header: as("")}); rec.Code != http.StatusOK {
			t.Errorf("the address's first request without a token = %d", rec.Code)
		}
	})
	t.Run("exempts_healthz", func(t *testing.T) {
		untilLimited(t, api, call{method: "GET", path: "/openapi.json", header: as("")}, 50)
		for range 5 {
			if rec := do(t, api, call{method: "GET", path: "/healthz", header: as("")}); rec.Code != http.StatusOK {
				t.Fatalf("GET /healthz of a limited address = %d %s", rec.Code, rec.Body)
			}
		}
	})
	t.Run("leaves_the_operations_listener_alone", func(t *testing.T) {
		for range 5 {
			if rec := do(t, ops, read); rec.Code == http.StatusTooManyRequests {
				t.Fatalf("the operations listener = 429 %s", rec.Body)
			}
		}
	})
}

// TestHTTP_rateLimitFailsOpen: with Redis unreachable the limits are not
// applied: the API serves on PostgreSQL alone.
func TestHTTP_rateLimitFailsOpen(t *testing.T) {
	t.Parallel()
	addr := testenv.FreeAddr(t) // nothing listens there
	// One dial a call: how long failing open takes is not this test's.
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, DialerRetries: 1, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	cfg := testConfig(t, testenv.DB(t), adminToken)
	cfg.Limits = httpapi.Limits{Redis: rdb, Prefix: testenv.Unique("away") + ":", PerSecond: 1, Burst: 1}
	api := httpapi.New(cfg)
	for i := range 5 {
		if rec := do(t, api, call{method: "GET", path: "/openapi.json", header: as("")}); rec.Code != http.StatusOK {
			t.Fatalf("request %d = %d %s, want 200", i+1, rec.Code, rec.Body)
		}
	}
	for i := range 12 {
		if rec := do(t, api, call{method: "GET", path: "/orders", header: as("Bearer nope")}); rec.Code != http.StatusUnauthorized {
			t.Fatalf("failed authentication %d = %d, want 401: no budget without Redis", i+1, rec.Code)
		}
	}
}

// TestHTTP_failedAuthentications: an address gets ten failed
// authentications a minute; past them, a token from it, valid or not, is
// 429 before it is looked at. Requests without a token, and other
// addresses, go on.
func TestHTTP_failedAuthentications(t *testing.T) {
	t.Parallel()
	api, _ := limitedAPI(t, 1000, 1000)
	guesser := map[string]string{"X-Forwarded-For": "203.0.113.50", "Authorization": "Bearer guess"}
	for i := range 10 {
		if rec := do(t, api, call{method: "GET", path: "/orders", header: guesser}); rec.Code != http.StatusUnauthorized {
			t.Fatalf("failed authentication %d = %d %s, want 401", i+1, rec.Code, rec.Body)
		}
	}
	rec := do(t, api, call{method: "GET", path: "/orders", header: guesser})
	wantProblem(t, rec, http.StatusTooManyRequests, "failed authentications")
	wantRetryAfter(t, rec)

	valid := map[string]string{"X-Forwarded-For": "203.0.113.50", "Authorization": bearer(adminJWT(t))}
	wantProblem(t, do(t, api, call{method: "GET", path: "/orders", header: valid}), http.StatusTooManyRequests, "failed authentications")
	if rec := do(t, api, call{method: "GET", path: "/healthz", header: map[string]string{"X-Forwarded-For": "203.0.113.50", "Authorization": ""}}); rec.Code != http.StatusOK {
		t.Errorf("the address without a token = %d, want 200", rec.Code)
	}
	valid["X-Forwarded-For"] = "203.0.113.51"
	if rec := do(t, api, call{method: "GET", path: "/orders", header: valid}); rec.Code != http.StatusOK {
		t.Errorf("another address with a valid token = %d %s, want 200", rec.Code, rec.Body)
	}
}

// TestHTTP_listingsPerClient: a client runs at most two listings at once;
// a third is 429 at once, while another client's goes on. The listings are
// held by a lock on the orders table, in a database of the test's own.
func TestHTTP_listingsPerClient(t *testing.T) {
	t.Parallel()
	db := testenv.OwnDB(t)
	cfg := testConfig(t, db, adminToken)
	cfg.RequestTimeout = time.Minute
	api := httpapi.New(cfg)
	alice, bob := as(bearer(customerJWT(t, "alice"))), as(bearer(customerJWT(t, "bob")))

	ctx := context.Background()
	lock, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()
	if _, err := lock.ExecContext(ctx, `LOCK TABLE orders IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	codes := make(chan int, 3)
	list := func(header map[string]string) {
		wg.Go(func() { codes <- do(t, api, call{method: "GET", path: "/orders", header: header}).Code })
	}
	list(alice)
	list(alice)
	waitForLockWaiters(t, db, 2)

	rec := do(t, api, call{method: "GET", path: "/orders", header: alice})
	wantProblem(t, rec, http.StatusTooManyRequests, "listings at once")
	wantRetryAfter(t, rec)
	list(bob)
	waitForLockWaiters(t, db, 3)

	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != http.StatusOK {
			t.Errorf("a held listing = %d, want 200 once the lock is gone", code)
		}
	}
	if rec := do(t, api, call{method: "GET", path: "/orders", header: alice}); rec.Code != http.StatusOK {
		t.Errorf("a listing after the others ended = %d %s, want 200", rec.Code, rec.Body)
	}
}

// waitForLockWaiters waits until n queries of db's database wait on a
// lock.
func waitForLockWaiters(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int
		err := db.QueryRowContext(context.Background(), `
			SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d queries wait on the lock, want %d", waiting, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
