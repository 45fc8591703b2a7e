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

	"github.com/orderstream/orderstream/auth"
	"github.com/orderstream/orderstream/httpapi"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/postgres"
)

// The tests' setup: the API on the package's database, with the tests' JWT
// verifier and trusted proxies, and requests to it that carry an
// administrator's JWT unless they say otherwise.

func TestMain(m *testing.M) { testenv.Main(m) }

// adminToken is the operators' ADMIN_TOKEN in the tests.
const adminToken = "test-admin-token"

// testAuth signs and verifies the tests' JWTs.
var testAuth = auth.Config{Secret: []byte("httpapi-tests-secret-of-at-least-32-bytes")}

// adminSubject is the sub of the administrator's JWT the tests send by
// default.
const adminSubject = "admin-1"

// jwtFor returns a JWT for p, valid for an hour.
func jwtFor(t testing.TB, p auth.Principal) string {
	t.Helper()
	tok, err := testAuth.Mint(p, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// customerJWT is the JWT of customer sub; adminJWT an administrator's.
func customerJWT(t testing.TB, sub string) string { return jwtFor(t, auth.Principal{Subject: sub}) }
func adminJWT(t testing.TB) string {
	return jwtFor(t, auth.Principal{Subject: adminSubject, Admin: true})
}

func bearer(token string) string { return "Bearer " + token }

// trustedProxies hold httptest.NewRequest's peer, 192.0.2.1, so that a
// request the tests send in process comes through a trusted proxy: its
// X-Request-ID and X-Forwarded-For count. A test of an untrusted peer sets
// its own RemoteAddr (call.remote).
var trustedProxies = []*net.IPNet{{IP: net.IPv4(192, 0, 2, 0).To4(), Mask: net.CIDRMask(24, 32)}}

func newVerifier(t testing.TB) *auth.Verifier {
	t.Helper()
	v, err := auth.New(context.Background(), testAuth)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testConfig is the API on db with the tests' verifier, ADMIN_TOKEN token
// (none when empty), the trusted proxies and a Redis that is never ready;
// no rate limits.
func testConfig(t testing.TB, db *sql.DB, token string) httpapi.Config {
	t.Helper()
	return httpapi.Config{
		Orders:         orders.NewService(db),
		Inventory:      inventory.NewService(db),
		Auth:           newVerifier(t),
		AdminToken:     token,
		TrustedProxies: trustedProxies,
		Checks: map[string]func(context.Context) error{
			"postgres": db.PingContext,
			"redis":    func(context.Context) error { return errors.New("connection refused") },
		},
		Metrics:        metrics.New(),
		Logger:         testenv.Logger(t),
		RequestTimeout: 5 * time.Second,
	}
}

func newAPI(t *testing.T, token string) http.Handler {
	t.Helper()
	return newAPIOn(t, testenv.DB(t), token)
}

func newAPIOn(t *testing.T, db *sql.DB, token string) http.Handler {
	t.Helper()
	return httpapi.New(testConfig(t, db, token))
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

// call is one request of do. Without an Authorization header it is sent
// with an administrator's JWT; an Authorization of "" sends none. remote,
// when set, is the peer's address (httptest's is 192.0.2.1:1234, a
// trusted proxy).
type call struct {
	method, path, body string
	header             map[string]string
	remote             string
}

func do(t *testing.T, h http.Handler, c call) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.remote != "" {
		req.RemoteAddr = c.remote
	}
	if _, ok := c.header["Authorization"]; !ok {
		req.Header.Set("Authorization", bearer(adminJWT(t)))
	}
	for k, v := range c.header {
		if k == "Authorization" && v == "" {
			continue
		}
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// as is a header of one Authorization, "" for none.
func as(authorization string) map[string]string {
	return map[string]string{"Authorization": authorization}
}

func decode(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, rec.Body)
	}
	return m
}
