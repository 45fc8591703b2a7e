package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/httpapi"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/live"
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/redisstreams"
	"github.com/orderstream/orderstream/worker"
)

// request is one HTTP request as the route tests generate it. Header holds
// "Name: value" lines. Target is the path and query; {order}, {ORDER},
// {order-nodash}, {deadletter}, {undecodable}, {cursor}, {token}, {jwt},
// {customer} and {other} stand for an existing order's id (as is, upper
// case, without dashes), a fresh replayable dead letter, an undecodable
// one, the next cursor of customer c-1's first page of one order, the
// admin token, an administrator's JWT, the JWT of c-1 (whose order it is)
// and of c-2.
type request struct {
	Method, Target, Header string
	Body                   []byte
}

const orderBody = `{"customer_id":"c-1","items":[{"sku":"SKU-1","quantity":2},{"sku":"SKU-2","quantity":1}]}`

// The Authorization headers of the seeds.
const (
	asAdmin    = "Authorization: Bearer {jwt}"
	asCustomer = "Authorization: Bearer {customer}"
	asOther    = "Authorization: Bearer {other}"
	asToken    = "Authorization: Bearer {token}"
)

// routeSeeds reach every route of both listeners, each with a
// well-formed request and a few of the malformed ones that once answered
// 500.
var routeSeeds = []request{
	{"POST", "/orders", "Content-Type: application/json\nIdempotency-Key: k-1\nX-Request-ID: req-1\n" + asAdmin, []byte(orderBody)},
	{"POST", "/orders", "Content-Type: application/json\n" + asCustomer, []byte(`{"items":[{"sku":"SKU-1","quantity":1}]}`)},
	{"POST", "/orders", "Content-Type: application/json\n" + asOther, []byte(orderBody)},
	{"POST", "/orders", "Content-Type: application/json\n" + asAdmin, []byte(`{"customer_id":"a\u0000b","items":[{"sku":"SKU-1","quantity":1}]}`)},
	{"POST", "/orders", "Content-Type: application/json\nIdempotency-Key: k\xff\n" + asCustomer, []byte(orderBody)},
	{"POST", "/orders", "Content-Type: application/json; charset=utf-8\nIdempotency-Key: a\nIdempotency-Key: b\n" + asAdmin, []byte(orderBody)},
	{"POST", "/orders", "Content-Type: text/plain\n" + asAdmin, []byte(`{}`)},
	{"POST", "/orders", "Content-Type: application/json", []byte(orderBody)},
	{"GET", "/orders", asCustomer, nil},
	{"GET", "/orders", asToken, nil},
	{"GET", "/orders", "", nil},
	{"GET", "/orders?customer_id=c-1&limit=1&after={cursor}", asCustomer, nil},
	{"GET", "/orders?customer_id=c-1&limit=1&after={cursor}", asOther, nil},
	{"GET", "/orders?status=confirmed&customer_id=c-1&limit=100", asAdmin, nil},
	{"GET", "/orders?customer_id=%00&status=%ff&limit=1e400&after=AQAA", asAdmin, nil},
	{"GET", "/orders?after={cursor}&after={cursor}&limit=-1", asCustomer, nil},
	{"GET", "/orders/{order}", asCustomer, nil},
	{"GET", "/orders/{order}", asOther, nil},
	{"GET", "/orders/{{order}}", asAdmin, nil},
	{"GET", "/orders/urn:uuid:{order}", asAdmin, nil},
	{"GET", "/orders/{ORDER}", asAdmin, nil},
	{"GET", "/orders/{order-nodash}", asCustomer, nil},
	{"GET", "/orders/%00", asAdmin, nil},
	{"POST", "/orders/{order}/cancel", "Content-Type: application/json\nIdempotency-Key: c-1\n" + asCustomer, []byte(`{"reason":"r"}`)},
	{"POST", "/orders/{order}/cancel", asOther, nil},
	{"POST", "/orders/{order}/cancel", asAdmin, nil},
	{"POST", "/orders/{order}/cancel", "Content-Type: application/json\n" + asAdmin, []byte(`{"reason":"a\u0000b"}`)},
	{"POST", "/orders/{order}/cancel", "Content-Type: text/plain\n" + asCustomer, []byte(`{"reason":1}`)},
	{"POST", "/orders/%00/cancel", asAdmin, nil},
	{"PUT", "/inventory/SKU-1", "Content-Type: application/json\n" + asToken, []byte(`{"available":1000000}`)},
	{"PUT", "/inventory/SKU-1", "Content-Type: application/json\n" + asAdmin, []byte(`{"available":1000000}`)},
	{"PUT", "/inventory/SKU-1", "Content-Type: application/json\n" + asCustomer, []byte(`{"available":1}`)},
	{"PUT", "/inventory/SKU-1", "Content-Type: application/json\n" + asToken + "\nAuthorization: Bearer x", []byte(`{"available":1}`)},
	{"PUT", "/inventory/SKU%00", "Content-Type: application/json\n" + asToken, []byte(`{"available":1e400}`)},
	{"GET", "/inventory/SKU-1", asCustomer, nil},
	{"GET", "/inventory/%ff", asAdmin, nil},
	{"POST", "/deadletters/{deadletter}/replay", asToken, nil},
	{"POST", "/deadletters/{undecodable}/replay", asAdmin, nil},
	{"POST", "/deadletters/abc/replay", asToken, nil},
	{"POST", "/deadletters/99999999999999999999-1/replay", asToken, nil},
	{"POST", "/deadletters/-/replay", asToken, nil},
	{"POST", "/deadletters/1-1/replay", asCustomer, nil},
	{"POST", "/deadletters/1-1/replay", "", nil},
	{"GET", "/", "", nil},
	{"GET", "/ui/app.js", "", nil},
	{"GET", "/ui/style.css?v=1", "", nil},
	{"GET", "/events", "", nil},
	{"GET", "/healthz", "X-Request-ID: " + strings.Repeat("r", 129), nil},
	{"GET", "/readyz", "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", nil},
	{"GET", "/metrics", "", nil},
	{"GET", "/debug/pprof/", "", nil},
	{"GET", "/debug/pprof/cmdline", "", nil},
	{"GET", "/openapi.json", "X-Forwarded-For: 203.0.113.7", nil},
	{"GET", "/nowhere?q=%zz", "", nil},
	{"DELETE", "/orders/{order}", asAdmin, nil},
	{"HEAD", "/healthz", "", nil},
	{"OPTIONS", "/orders", "", nil},
}

// TestHTTP_everyRoute sends the seed requests and random mutations of them
// to both real listeners on the real database and Redis: none may answer a
// 5xx, every error must be problem details, and every answer of the public
// listener must be one the OpenAPI document describes. The seed is fixed,
// so a failure repeats; `make fuzz` explores further (FuzzHTTP).
func TestHTTP_everyRoute(t *testing.T) {
	t.Parallel()
	env := newRouteEnv(t)
	for _, r := range routeSeeds {
		env.check(t, r)
	}
	rng := rand.New(rand.NewPCG(20261201, 4))
	for range 300 {
		env.check(t, mutate(rng, routeSeeds[rng.IntN(len(routeSeeds))]))
	}
}

// FuzzHTTP is TestHTTP_everyRoute under Go's fuzzer: `go test` runs the
// seeds and testdata/fuzz/FuzzHTTP, `make fuzz` mutates them.
func FuzzHTTP(f *testing.F) {
	env := newRouteEnv(f)
	for _, r := range routeSeeds {
		f.Add(r.Method, r.Target, r.Header, r.Body)
	}
	f.Fuzz(func(t *testing.T, method, target, header string, body []byte) {
		env.check(t, request{method, target, header, body})
	})
}

// routeEnv is the public listener and the operations listener on the
// package's database and the test Redis, with an order and dead letters to
// aim at.
type routeEnv struct {
	url, opsURL string
	client      *http.Client
	rdb         redis.UniversalClient
	streams     redisstreams.Config
	orderID     string
	cursor      string
	undecod     string
	tokens      *strings.Replacer // {token}, {jwt}, {customer}, {other}
	logs        *testenv.Buffer
	api         *contract
}

func newRouteEnv(t testing.TB) *routeEnv {
	t.Helper()
	ctx := context.Background()
	db := testenv.DB(t)
	streams := testenv.Streams(t)
	inv, ord := inventory.NewService(db), orders.NewService(db)
	streams.Consumed = worker.ConsumedStreams(flowSubscriptions(ord, inv))
	rdb := streams.NewClient()
	t.Cleanup(func() { rdb.Close() })
	for _, sku := range []string{"SKU-1", "SKU-2"} {
		if _, err := inv.Set(ctx, sku, 1_000_000); err != nil {
			t.Fatal(err)
		}
	}
	var o orders.Order
	for range 2 {
		var err error
		o, _, err = ord.Place(ctx, orders.PlaceRequest{CustomerID: "c-1", Items: []orders.Item{{SKU: "SKU-1", Quantity: 1}}}, "")
		if err != nil {
			t.Fatal(err)
		}
	}
	page, err := ord.List(ctx, orders.ListRequest{CustomerID: "c-1", Limit: 1})
	if err != nil || page.Next == "" {
		t.Fatalf("List() = next %q, %v", page.Next, err)
	}
	undecodable, err := rdb.XAdd(ctx, &redis.XAddArgs{
		Stream: streams.Name(events.StreamDeadLetter), Values: map[string]any{"not": "a message"},
	}).Result()
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	cfg := httpapi.Config{
		Orders: ord, Inventory: inv, Auth: newVerifier(t), AdminToken: adminToken, TrustedProxies: trustedProxies,
		Checks: map[string]func(context.Context) error{
			"postgres": db.PingContext,
			"redis":    func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
		},
		Metrics: metrics.New(), Logger: slog.New(slog.NewTextHandler(logs, nil)), RequestTimeout: 10 * time.Second,
	}
	srv := httptest.NewServer(httpapi.New(cfg))
	t.Cleanup(srv.Close)
	ops := httptest.NewServer(httpapi.NewOps(cfg, httpapi.Ops{
		Live:             live.New(),
		ReplayDeadLetter: func(ctx context.Context, id string) error { return streams.ReplayID(ctx, rdb, id) },
	}))
	t.Cleanup(ops.Close)
	client := &http.Client{
		Timeout:       time.Minute, // a hang is a failure too, but load is no hang
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(client.CloseIdleConnections)
	tokens := strings.NewReplacer("{token}", adminToken, "{jwt}", adminJWT(t),
		"{customer}", customerJWT(t, "c-1"), "{other}", customerJWT(t, "c-2"))
	return &routeEnv{
		url: srv.URL, opsURL: ops.URL, client: client, rdb: rdb, streams: streams,
		orderID: o.ID, cursor: page.Next, undecod: undecodable, tokens: tokens, logs: logs, api: newContract(t),
	}
}

// deadLetter adds a replayable dead letter and returns its id.
func (e *routeEnv) deadLetter(t *testing.T) string {
	msg := message.NewMessage(uuid.NewString(), []byte(`{"order_id":"`+uuid.NewString()+`","items":[{"sku":"SKU-1","quantity":1}]}`))
	msg.Metadata.Set(events.MetadataEventType, "OrderPlaced")
	msg.Metadata.Set(middleware.PoisonedTopicKey, e.streams.Name(events.StreamOrdersPlaced))
	msg.Metadata.Set(middleware.ReasonForPoisonedKey, "a test")
	values, _ := redisstream.DefaultMarshallerUnmarshaller{}.Marshal("", msg)
	id, err := e.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: e.streams.Name(events.StreamDeadLetter), Values: values}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// check sends r, when HTTP can carry it, to both listeners, and fails t
// on a 5xx, on an error that is not problem details, on an unusable
// X-Request-ID, or on an answer of the public listener the OpenAPI
// document does not describe.
func (e *routeEnv) check(t *testing.T, r request) {
	t.Helper()
	e.checkOn(t, e.url, r)
	e.checkOn(t, e.opsURL, r)
}

func (e *routeEnv) checkOn(t *testing.T, server string, r request) {
	t.Helper()
	req := e.build(t, server, r)
	if req == nil {
		return // not a request a client can send
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", describe(r), err)
	}
	defer resp.Body.Close()
	var body []byte
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") { // endless
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	}
	public := server == e.url
	fail := func(why string) {
		t.Helper()
		listener := "the operations listener"
		if public {
			listener = "the public listener"
		}
		t.Fatalf("%s to %s: %s\n= %d %s %s\nlog:\n%s", describe(r), listener, why, resp.StatusCode, resp.Header.Get("Content-Type"), body, lastLines(e.logs.String(), 5))
	}
	if resp.StatusCode >= 500 &&
		!(resp.StatusCode == 503 && strings.Contains(string(body), "too many live pages")) { // a bound, not a failure
		fail("a 5xx")
	}
	if id := resp.Header.Get("X-Request-ID"); id == "" || len(id) > 128 || strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
		fail(fmt.Sprintf("X-Request-ID %q", id))
	}
	if public {
		if errs := e.api.responseErrors(req, resp, body); len(errs) > 0 {
			fail("an answer the OpenAPI document does not describe:\n" + strings.Join(errs, "\n"))
		}
	}
	if resp.StatusCode < 400 {
		return
	}
	// Go's profiles and file server answer their own errors in plain
	// text: an unknown profile, a Range beyond an asset.
	if !public && (strings.HasPrefix(req.URL.Path, "/debug/pprof/") || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable) {
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		fail("an error that is not problem details")
	}
	if req.Method == http.MethodHead {
		return
	}
	var p struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Status != resp.StatusCode || p.Title == "" {
		fail(fmt.Sprintf("problem details do not decode or disagree (%v)", err))
	}
}

// build turns r into an *http.Request, or nil when no HTTP/1.1 client can
// send it (a method or header name that is not a token, a control
// character in a header value), or when net/http, not the API, would
// answer it (hop-by-hop and framing headers).
func (e *routeEnv) build(t *testing.T, server string, r request) *http.Request {
	t.Helper()
	if len(r.Target)+len(r.Header) > 32<<10 {
		return nil
	}
	target := strings.NewReplacer(
		"{order}", e.orderID, "{ORDER}", strings.ToUpper(e.orderID),
		"{order-nodash}", strings.ReplaceAll(e.orderID, "-", ""),
		"{undecodable}", e.undecod, "{cursor}", e.cursor,
	).Replace(e.tokens.Replace(r.Target))
	if strings.Contains(target, "{deadletter}") {
		target = strings.ReplaceAll(target, "{deadletter}", e.deadLetter(t))
	}
	if !strings.HasPrefix(target, "/") {
		target = "/" + target
	}
	host := strings.TrimPrefix(server, "http://")
	u, err := url.Parse(server + target)
	if err != nil || u.Host != host {
		// Sent as given where it is a valid request target, escaped where not.
		path, query, _ := strings.Cut(target, "?")
		u = &url.URL{Scheme: "http", Host: host, Path: path, RawQuery: query}
	}
	u.RawQuery = escapeQuery(u.RawQuery)
	u.Fragment, u.RawFragment = "", ""
	if !isToken(r.Method) {
		return nil
	}
	req, err := http.NewRequest(r.Method, u.String(), strings.NewReader(string(r.Body)))
	if err != nil {
		return nil
	}
	for line := range strings.SplitSeq(r.Header, "\n") {
		name, value, ok := strings.Cut(line, ":")
		value = e.tokens.Replace(strings.TrimSpace(value))
		if !ok || !isToken(name) || strings.ContainsFunc(value, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
			continue
		}
		switch http.CanonicalHeaderKey(name) {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Expect", "Upgrade", "Te", "Trailer", "Keep-Alive", "Proxy-Connection":
			continue
		}
		req.Header.Add(name, value)
	}
	return req
}

func isToken(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
	})
}

// escapeQuery percent-encodes what may not appear in a query as sent
// (a stray "%" stays: the query is the application's to read).
func escapeQuery(q string) string {
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		c := q[i]
		if c > ' ' && c < 0x7f && c != '#' && c != '"' && c != '<' && c != '>' && c != '\\' && c != '^' && c != '`' && c != '{' && c != '|' && c != '}' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func describe(r request) string {
	return fmt.Sprintf("request{%q, %q, %q, []byte(%q)}", r.Method, r.Target, r.Header, r.Body)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
