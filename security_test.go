package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/orderstream/orderstream/internal/testenv"
)

// The attacks on a public orderstream: each runs against the real program
// and must be refused.

// attacker sends requests as it likes: any method, headers and token.
type attacker struct {
	t    *testing.T
	base string
}

type answer struct {
	code   int
	header http.Header
	body   []byte
}

// send sends one request with the header lines given as name, value pairs.
func (a attacker) send(method, path, body string, header ...string) answer {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, b}
}

// as is send with a bearer token and a JSON body.
func (a attacker) as(tok, method, path, body string, header ...string) answer {
	a.t.Helper()
	return a.send(method, path, body, append([]string{"Authorization", "Bearer " + tok, "Content-Type", "application/json"}, header...)...)
}

// wantProblem fails unless the answer is code as problem details.
func wantProblem(t *testing.T, what string, got answer, code int) {
	t.Helper()
	if got.code != code || got.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("%s = %d %s (%s), want a %d problem", what, got.code, got.body, got.header.Get("Content-Type"), code)
	}
}

func TestAttack_ordersOfAnotherCustomer(t *testing.T) {
	t.Parallel()
	addr := testenv.FreeAddr(t)
	start(t, env(t, addr))
	c := client{t, "http://" + addr}
	c.waitHealthy()
	a := attacker{t, "http://" + addr}
	alice, mallory := testenv.Unique("alice"), testenv.Unique("mallory")
	aliceTok, malloryTok := mint(t, alice, false), mint(t, mallory, false)
	sku := testenv.Unique("SKU")
	c.do("PUT", "/inventory/"+sku, `{"available":10}`, nil)

	placed := a.as(aliceTok, "POST", "/orders", `{"items":[{"sku":"`+sku+`","quantity":1}]}`)
	var o struct {
		ID         string
		CustomerID string `json:"customer_id"`
	}
	if err := json.Unmarshal(placed.body, &o); err != nil || placed.code != http.StatusCreated {
		t.Fatalf("alice's order = %d %s", placed.code, placed.body)
	}
	if o.CustomerID != alice {
		t.Errorf("the order is %q's, want the token's customer %q", o.CustomerID, alice)
	}

	t.Run("placing_for_another_customer_is_refused", func(t *testing.T) {
		got := a.as(malloryTok, "POST", "/orders", `{"customer_id":"`+alice+`","items":[{"sku":"`+sku+`","quantity":1}]}`)
		wantProblem(t, "mallory placing for alice", got, http.StatusForbidden)
	})
	t.Run("reading_it_is_not_found", func(t *testing.T) {
		wantProblem(t, "mallory reading alice's order", a.as(malloryTok, "GET", "/orders/"+o.ID, ""), http.StatusNotFound)
		// The same answer as an order that does not exist: ids cannot be probed.
		missing := a.as(malloryTok, "GET", "/orders/01890000-0000-7000-8000-000000000000", "")
		wantProblem(t, "an order that does not exist", missing, http.StatusNotFound)
	})
	t.Run("listing_shows_none_of_it", func(t *testing.T) {
		got := a.as(malloryTok, "GET", "/orders?customer_id="+alice, "")
		if got.code != http.StatusOK && got.code != http.StatusForbidden {
			t.Fatalf("mallory listing alice's orders = %d %s", got.code, got.body)
		}
		if strings.Contains(string(got.body), o.ID) {
			t.Errorf("mallory's listing shows alice's order: %s", got.body)
		}
		mine := a.as(aliceTok, "GET", "/orders", "")
		if !strings.Contains(string(mine.body), o.ID) {
			t.Errorf("alice's listing = %d %s, want her order", mine.code, mine.body)
		}
	})
	t.Run("cancelling_it_is_not_found_and_changes_nothing", func(t *testing.T) {
		key := testenv.Unique("key")
		got := a.as(malloryTok, "POST", "/orders/"+o.ID+"/cancel", `{"reason":"mine now"}`, "Idempotency-Key", key)
		wantProblem(t, "mallory cancelling alice's order", got, http.StatusNotFound)
		var now order
		c.do("GET", "/orders/"+o.ID, "", &now)
		if now.Status == "cancelling" || now.Status == "cancelled" {
			t.Errorf("alice's order is %s after mallory's cancel", now.Status)
		}
	})
	t.Run("a_cross_site_empty_body_cancel_is_refused", func(t *testing.T) {
		// What a browser sends cross-site without a preflight: no
		// Authorization, a form's content type, an empty body.
		got := a.send("POST", "/orders/"+o.ID+"/cancel", "",
			"Origin", "https://evil.example", "Content-Type", "application/x-www-form-urlencoded")
		wantProblem(t, "the cross-site cancel", got, http.StatusUnauthorized)
		if got.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("the answer allows origin %q", got.header.Get("Access-Control-Allow-Origin"))
		}
		var now order
		c.do("GET", "/orders/"+o.ID, "", &now)
		if now.Status == "cancelling" || now.Status == "cancelled" {
			t.Errorf("alice's order is %s after the cross-site cancel", now.Status)
		}
	})
	t.Run("an_idempotency_key_is_the_customers_own", func(t *testing.T) {
		key := testenv.Unique("predictable")
		first := a.as(aliceTok, "POST", "/orders", `{"items":[{"sku":"`+sku+`","quantity":1}]}`, "Idempotency-Key", key)
		second := a.as(malloryTok, "POST", "/orders", `{"items":[{"sku":"`+sku+`","quantity":2}]}`, "Idempotency-Key", key)
		if first.code != http.StatusCreated || second.code != http.StatusCreated {
			t.Fatalf("the same key from two customers = %d %s, %d %s, want two orders", first.code, first.body, second.code, second.body)
		}
		if string(first.body) == string(second.body) || strings.Contains(string(second.body), alice) {
			t.Errorf("mallory's request replayed alice's order: %s", second.body)
		}
	})
	t.Run("stock_is_the_administrators", func(t *testing.T) {
		got := a.as(malloryTok, "PUT", "/inventory/"+sku, `{"available":1000000}`)
		wantProblem(t, "a customer setting stock", got, http.StatusForbidden)
	})
	t.Run("an_administrator_sees_everything", func(t *testing.T) {
		got := a.as(mint(t, "ops", true), "GET", "/orders/"+o.ID, "")
		if got.code != http.StatusOK {
			t.Errorf("an administrator reading alice's order = %d %s", got.code, got.body)
		}
	})
}

func TestAttack_tokens(t *testing.T) {
	t.Parallel()
	addr := testenv.FreeAddr(t)
	start(t, env(t, addr))
	client{t, "http://" + addr}.waitHealthy()
	a := attacker{t, "http://" + addr}

	claims := func(exp time.Time) jwt.MapClaims {
		return jwt.MapClaims{"sub": "mallory", "roles": []string{"admin"}, "exp": exp.Unix(), "iat": time.Now().Unix()}
	}
	sign := func(secret string, c jwt.MapClaims) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	valid := sign(testJWTSecret, claims(time.Now().Add(time.Hour)))
	for name, tok := range map[string]string{
		"forged with another secret": sign("another-secret-of-at-least-32-bytes!!", claims(time.Now().Add(time.Hour))),
		"expired":                    sign(testJWTSecret, claims(time.Now().Add(-time.Hour))),
		"alg none": b64(`{"alg":"none","typ":"JWT"}`) + "." +
			b64(fmt.Sprintf(`{"sub":"mallory","roles":["admin"],"exp":%d}`, time.Now().Add(time.Hour).Unix())) + ".",
		"tampered":  valid[:strings.LastIndex(valid, ".")] + "." + b64("not the signature"),
		"no expiry": sign(testJWTSecret, jwt.MapClaims{"sub": "mallory", "roles": []string{"admin"}}),
		"garbage":   "not.a.jwt",
	} {
		got := a.as(tok, "GET", "/orders", "")
		wantProblem(t, name+" token", got, http.StatusUnauthorized)
		if !strings.HasPrefix(got.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s token: WWW-Authenticate %q", name, got.header.Get("WWW-Authenticate"))
		}
	}
	if got := a.as(valid, "GET", "/orders", ""); got.code != http.StatusOK {
		t.Errorf("the valid token = %d %s", got.code, got.body)
	}
	wantProblem(t, "no token", a.send("GET", "/orders", ""), http.StatusUnauthorized)
	wantProblem(t, "the admin token on a customer route", a.as(testAdminToken, "GET", "/orders", ""), http.StatusForbidden)
}

// TestAttack_operationsAreNotPublic: the public listener serves none of
// the operators' routes, and its readiness names nothing internal.
func TestAttack_operationsAreNotPublic(t *testing.T) {
	t.Parallel()
	addr, opsAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	start(t, with(env(t, addr), map[string]string{"OPS_ADDR": opsAddr}))
	client{t, "http://" + addr}.waitHealthy()
	public, ops := attacker{t, "http://" + addr}, attacker{t, "http://" + opsAddr}
	admin := mint(t, "ops", true)
	for _, path := range []string{"/metrics", "/events", "/", "/ui/app.js", "/debug/pprof/", "/debug/pprof/heap"} {
		if got := public.as(admin, "GET", path, ""); got.code != http.StatusNotFound {
			t.Errorf("public GET %s = %d, want 404", path, got.code)
		}
		if path != "/events" { // a stream: read by the live-page test
			if got := ops.send("GET", path, ""); got.code != http.StatusOK {
				t.Errorf("ops GET %s = %d, want 200", path, got.code)
			}
		}
	}
	if got := public.as(admin, "POST", "/deadletters/1700000000000-0/replay", ""); got.code != http.StatusNotFound {
		t.Errorf("public dead-letter replay = %d, want 404", got.code)
	}
	ready := public.send("GET", "/readyz", "")
	for _, internal := range []string{"postgres", "redis", "127.0.0.1"} {
		if strings.Contains(strings.ToLower(string(ready.body)), internal) {
			t.Errorf("public /readyz names %q: %s", internal, ready.body)
		}
	}
	if detailed := ops.send("GET", "/readyz", ""); !strings.Contains(string(detailed.body), "postgres") {
		t.Errorf("ops /readyz = %s, want the dependencies named", detailed.body)
	}
}

// TestAttack_inventedMethods: invented methods are one metrics label and
// are logged cut short, however many and however long.
func TestAttack_inventedMethods(t *testing.T) {
	t.Parallel()
	addr, opsAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	logs := start(t, with(env(t, addr), map[string]string{"OPS_ADDR": opsAddr}))
	client{t, "http://" + addr}.waitHealthy()
	a := attacker{t, "http://" + addr}
	for i := range 20 {
		method := fmt.Sprintf("INVENTED%02d%s", i, strings.Repeat("X", 8<<10))
		a.send(method, "/orders", "")
	}
	metrics := attacker{t, "http://" + opsAddr}.send("GET", "/metrics", "")
	if strings.Contains(string(metrics.body), "INVENTED") {
		t.Errorf("an invented method is a metrics label")
	}
	if !strings.Contains(string(metrics.body), `method="other"`) {
		t.Errorf("no method=\"other\" series in /metrics")
	}
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "INVENTED") && len(line) > 2<<10 {
			t.Errorf("a log line of %d bytes holds an invented method", len(line))
		}
	}
}

// TestAttack_oneClientsStreams: one client cannot take every live-page
// stream; another client, behind the same trusted proxy, still gets one.
func TestAttack_oneClientsStreams(t *testing.T) {
	t.Parallel()
	addr, opsAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	start(t, with(env(t, addr), map[string]string{"OPS_ADDR": opsAddr, "TRUSTED_PROXIES": "127.0.0.1"}))
	client{t, "http://" + addr}.waitHealthy()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := func(from string) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+opsAddr+"/events", nil)
		req.Header.Set("X-Forwarded-For", from)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	refused := 0
	for range 10 {
		if resp := stream("203.0.113.7"); resp.StatusCode == http.StatusTooManyRequests {
			refused++
		} else if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /events = %d", resp.StatusCode)
		}
	}
	if refused == 0 {
		t.Errorf("one client opened 10 live-page streams, want some refused")
	}
	other := stream("203.0.113.8")
	if other.StatusCode != http.StatusOK {
		t.Fatalf("another client's stream = %d, want 200", other.StatusCode)
	}
	if _, err := bufio.NewReader(other.Body).ReadString('\n'); err != nil {
		t.Errorf("another client's stream: %v", err)
	}
}

// TestAttack_rateLimitsHoldAcrossProcesses: a client's requests count
// together on two API processes, and guessing tokens is cut short.
func TestAttack_rateLimitsHoldAcrossProcesses(t *testing.T) {
	t.Parallel()
	addrs := []string{testenv.FreeAddr(t), testenv.FreeAddr(t)}
	base := with(env(t, addrs[0]), map[string]string{"RATE_LIMIT_PER_S": "1", "RATE_LIMIT_BURST": "3"})
	for _, addr := range addrs {
		start(t, with(base, map[string]string{"HTTP_ADDR": addr}), "api")
		client{t, "http://" + addr}.waitHealthy()
	}
	one, two := attacker{t, "http://" + addrs[0]}, attacker{t, "http://" + addrs[1]}

	t.Run("a_customer_over_its_rate_on_one_process_is_refused_on_the_other", func(t *testing.T) {
		// The burst spent on one, the next request on the other: refused,
		// unless a second passed meanwhile and the rate gave one back
		// (then the try says nothing, and runs again).
		for try := 0; ; try++ {
			tok := mint(t, testenv.Unique("greedy"), false)
			began := time.Now()
			for range 3 {
				if got := one.as(tok, "GET", "/orders", ""); got.code != http.StatusOK {
					t.Fatalf("a request within the burst = %d %s", got.code, got.body)
				}
			}
			got := two.as(tok, "GET", "/orders", "")
			if got.code == http.StatusTooManyRequests {
				wantProblem(t, "the request over the rate", got, http.StatusTooManyRequests)
				if got.header.Get("Retry-After") == "" {
					t.Errorf("429 without Retry-After")
				}
				return
			}
			if time.Since(began) < 900*time.Millisecond || try == 4 {
				t.Fatalf("the 4th request within %s, on the other process = %d %s, want 429", time.Since(began), got.code, got.body)
			}
		}
	})
	t.Run("guessing_tokens_is_cut_short", func(t *testing.T) {
		codes := map[int]int{}
		for i := range 15 {
			got := one.send("GET", "/orders", "", "Authorization", fmt.Sprintf("Bearer guess-%d", i))
			codes[got.code]++
			if got.code == http.StatusTooManyRequests && got.header.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After")
			}
		}
		if codes[http.StatusTooManyRequests] == 0 {
			t.Errorf("15 wrong tokens in a row answered %v, want 429 past the budget", codes)
		}
		// The budget is the address's, in Redis: the other process
		// refuses too, once it has seen the address fail (it asks Redis
		// only about the addresses it saw fail, so the first guess there
		// is read).
		two.send("GET", "/orders", "", "Authorization", "Bearer guess-on-two")
		if got := two.send("GET", "/orders", "", "Authorization", "Bearer guess-again-on-two"); got.code != http.StatusTooManyRequests {
			t.Errorf("a second wrong token on the other process = %d, want 429", got.code)
		}
	})
}

// TestAttack_connections: one address's idle connections past
// HTTP_MAX_CONNS_PER_CLIENT are closed at once.
func TestAttack_connections(t *testing.T) {
	t.Parallel()
	addr := testenv.FreeAddr(t)
	start(t, with(env(t, addr), map[string]string{"HTTP_MAX_CONNS_PER_CLIENT": "4"}))
	client{t, "http://" + addr}.waitHealthy()
	// From an address of its own: the other requests' keep-alive
	// connections are 127.0.0.1's.
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	served := 0
	for range 8 {
		conn, err := dialer.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err == nil && resp.StatusCode == http.StatusOK {
			served++
		}
	}
	if served != 4 {
		t.Errorf("%d of 8 connections kept open from one address served, want 4", served)
	}
}

// TestRun_refusesDevelopmentSecrets: a serving process outside
// development refuses the repository's secrets and short ones.
func TestRun_refusesDevelopmentSecrets(t *testing.T) {
	t.Parallel()
	base := env(t, testenv.FreeAddr(t))
	for name, tt := range map[string]struct {
		vars map[string]string
		want string // in the error
	}{
		"the development admin token": {map[string]string{"ADMIN_TOKEN": devAdminToken}, "ADMIN_TOKEN is the development secret"},
		"the development JWT secret":  {map[string]string{"AUTH_JWT_SECRET": devJWTSecret}, "AUTH_JWT_SECRET is the development secret"},
		"a short secret":              {map[string]string{"AUTH_JWT_SECRET": "short"}, "AUTH_JWT_SECRET is 5 bytes"},
		"no keys for tokens":          {map[string]string{"AUTH_JWT_SECRET": ""}, "AUTH_JWKS_URL"},
	} {
		// Refused before it opens anything: the run returns.
		err := run(context.Background(), []string{"api"}, with(base, tt.vars), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: the api = %v, want it refused (%q)", name, err, tt.want)
		}
	}
	dev := with(base, map[string]string{"ADMIN_TOKEN": devAdminToken, "AUTH_JWT_SECRET": devJWTSecret, "ORDERSTREAM_DEV": "true"})
	cfg, err := loadConfig(dev)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.checkSecrets("api"); err != nil {
		t.Errorf("with ORDERSTREAM_DEV=true: %v", err)
	}
}
