package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/auth"
	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/redisstreams"
)

func TestMain(m *testing.M) {
	// A test can run this binary as an orderstream process of its own,
	// through main, to kill it with SIGKILL (see fault_test.go) or to see
	// its exit status (exit_test.go).
	if cmd := os.Getenv(asProcessEnv); cmd != "" {
		os.Args = append(os.Args[:1], strings.Fields(cmd)...)
		main()
		os.Exit(0)
	}
	testenv.Main(m)
}

// env is the environment of one run of the program.
func env(t *testing.T, addr string) func(string) string {
	t.Helper()
	vars := map[string]string{
		"DATABASE_URL":         testenv.OwnDatabaseURL(t),
		"REDIS_URL":            testenv.RedisURL(t),
		"STREAM_PREFIX":        testenv.StreamPrefix(t),
		"HTTP_ADDR":            addr,
		"ADMIN_TOKEN":          testAdminToken,
		"AUTH_JWT_SECRET":      testJWTSecret,
		"LOG_LEVEL":            "debug",
		"OUTBOX_POLL_INTERVAL": "20ms",
		// Tests start several processes from one environment: the ones
		// that read the operations listener give each its own address.
		"OPS_ADDR":         "off",
		"RATE_LIMIT_PER_S": "0",
	}
	return func(k string) string { return vars[k] }
}

// The secrets of the tests' processes: as long as outside development.
const (
	testAdminToken = "component-admin-token-of-at-least-32-bytes"
	testJWTSecret  = "component-jwt-secret-of-at-least-32-bytes"
)

// mint is a JWT for customer, signed as the tests' processes verify.
func mint(t testing.TB, customer string, admin bool) string {
	t.Helper()
	tok, err := auth.Config{Secret: []byte(testJWTSecret)}.Mint(auth.Principal{Subject: customer, Admin: admin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// with is getenv with vars set over it.
func with(getenv func(string) string, vars map[string]string) func(string) string {
	return func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		return getenv(k)
	}
}

// start runs the program with args until the test ends, and checks that it
// then shuts down cleanly. It returns the program's log.
func start(t *testing.T, getenv func(string) string, args ...string) *testenv.Buffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testenv.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, getenv, io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run(%v) = %v", args, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("run(%v) did not stop", args)
		}
		if t.Failed() {
			t.Logf("logs of %v:\n%s", args, logs.String())
		}
	})
	return logs
}

// client calls the API as an administrator, who places orders for any
// customer and sees them all.
type client struct {
	t    *testing.T
	base string
}

func (c client) do(method, path, body string, out any) int {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+mint(c.t, "component-admin", true))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode
}

func (c client) waitHealthy() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(c.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the API did not become ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type order struct {
	ID, Status, Reason string
	CancelledAt        string `json:"cancelled_at"`
}

func (c client) place(body string) order {
	c.t.Helper()
	var o order
	if code := c.do("POST", "/orders", body, &o); code != http.StatusCreated || o.Status != "pending" {
		c.t.Fatalf("POST /orders = %d %+v", code, o)
	}
	return o
}

// settled polls the order until it leaves pending.
func (c client) settled(id string) order {
	c.t.Helper()
	return c.poll(id, "settled", func(o order) bool { return o.Status != "pending" })
}

// cancelled polls the order until it is cancelled.
func (c client) cancelled(id string) order {
	c.t.Helper()
	return c.poll(id, "cancelled", func(o order) bool { return o.Status == "cancelled" })
}

// poll gets the order until done says it is what the test waits for.
func (c client) poll(id, what string, done func(order) bool) order {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var o order
		c.do("GET", "/orders/"+id, "", &o)
		if done(o) {
			return o
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("order %s is %s, want it %s", id, o.Status, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// flow sets stock, places orders and checks their outcomes end to end.
func flow(t *testing.T, c client) {
	sku := testenv.Unique("SKU")
	if code := c.do("PUT", "/inventory/"+sku, `{"available":3}`, nil); code != http.StatusOK {
		t.Fatalf("PUT /inventory = %d", code)
	}
	item := func(sku string, q int) string {
		return fmt.Sprintf(`{"customer_id":"c-1","items":[{"sku":%q,"quantity":%d}]}`, sku, q)
	}
	first := c.place(item(sku, 2))
	second := c.place(item(sku, 2))
	unknown := c.place(item(testenv.Unique("ghost"), 1))

	// Two orders compete for three units: one gets them, the other is
	// rejected, whichever the workers handle first.
	a, b := c.settled(first.ID), c.settled(second.ID)
	if a.Status == "rejected" {
		a, b = b, a
	}
	if a.Status != "confirmed" || b.Status != "rejected" || b.Reason != "insufficient_stock" {
		t.Errorf("orders = %+v and %+v, want one confirmed and one rejected for insufficient_stock", a, b)
	}
	if o := c.settled(unknown.ID); o.Status != "rejected" || o.Reason != "unknown_sku" {
		t.Errorf("unknown-SKU order = %+v, want rejected for unknown_sku", o)
	}
	var st struct{ Available, Reserved int }
	c.do("GET", "/inventory/"+sku, "", &st)
	if st.Available != 1 || st.Reserved != 2 {
		t.Errorf("stock = %+v, want 1 available and 2 reserved", st)
	}

	// Cancelled once confirmed, and while pending: each ends cancelled,
	// and the stock is all available again.
	pending := c.place(item(sku, 1))
	for _, o := range []order{a, pending} {
		var got order
		if code := c.do("POST", "/orders/"+o.ID+"/cancel", `{"reason":"changed my mind"}`, &got); code != http.StatusAccepted || got.Status != "cancelling" {
			t.Errorf("POST /orders/%s/cancel = %d %+v, want 202 cancelling", o.ID, code, got)
		}
	}
	for _, o := range []order{a, pending} {
		if got := c.cancelled(o.ID); got.CancelledAt == "" {
			t.Errorf("cancelled order %+v has no cancelled_at", got)
		}
		if code := c.do("POST", "/orders/"+o.ID+"/cancel", "", nil); code != http.StatusOK {
			t.Errorf("POST /orders/%s/cancel again = %d, want 200", o.ID, code)
		}
	}
	c.do("GET", "/inventory/"+sku, "", &st)
	if st.Available != 3 || st.Reserved != 0 {
		t.Errorf("stock after the cancellations = %+v, want 3 available and none reserved", st)
	}
	if code := c.do("POST", "/orders/"+b.ID+"/cancel", "", nil); code != http.StatusConflict {
		t.Errorf("POST /orders/{rejected}/cancel = %d, want 409", code)
	}
}

func TestRun_all(t *testing.T) {
	t.Parallel()
	addr := testenv.FreeAddr(t)
	start(t, env(t, addr)) // no command: all
	c := client{t, "http://" + addr}
	c.waitHealthy()
	flow(t, c)

	// Header lines past maxHeaderBytes are refused before any handler.
	req, err := http.NewRequest("GET", "http://"+addr+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Padding", strings.Repeat("x", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("GET /healthz with 64 KiB of headers = %d, want 431", resp.StatusCode)
	}
}

// The parts as separate processes, each twice but the api, with the
// events spread over four outbox shards that the two forwarders share.
func TestRun_separateProcesses(t *testing.T) {
	t.Parallel()
	addr := testenv.FreeAddr(t)
	base := env(t, addr)
	getenv := with(base, map[string]string{"OUTBOX_SHARDS": "4"})
	for _, cmd := range []string{"api", "forwarder", "forwarder", "worker", "worker"} {
		start(t, getenv, cmd)
	}
	c := client{t, "http://" + addr}
	c.waitHealthy()
	flow(t, c)
}

func TestRun_commandLine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	getenv := env(t, testenv.FreeAddr(t))
	if err := run(ctx, []string{"migrate"}, getenv, io.Discard, io.Discard); err != nil {
		t.Errorf("migrate = %v", err)
	}
	if err := run(ctx, []string{"launch"}, getenv, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("unknown command = %v, want the usage", err)
	}
	var help bytes.Buffer
	if err := run(ctx, []string{"help"}, getenv, &help, io.Discard); err != nil || !strings.Contains(help.String(), "forwarder") {
		t.Errorf("help = %v, %q", err, help.String())
	}
	bad := func(k string) string {
		if k == "OUTBOX_POLL_INTERVAL" {
			return "soon"
		}
		return getenv(k)
	}
	if err := run(ctx, nil, bad, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "OUTBOX_POLL_INTERVAL") {
		t.Errorf("bad config = %v, want it named", err)
	}
}

func TestRun_operatorCommands(t *testing.T) {
	t.Parallel()
	addr := testenv.FreeAddr(t)
	getenv := env(t, addr)
	start(t, getenv)
	c := client{t, "http://" + addr}
	c.waitHealthy()
	operatorCommands(t, getenv)
}

// operatorCommands runs the operator commands against the running parts
// of getenv: a message dead-lettered, listed, replayed and dead-lettered
// again, and the status naming the groups and streams.
func operatorCommands(t *testing.T, getenv func(string) string) {
	t.Helper()
	cli := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), args, getenv, &out, io.Discard)
		return out.String(), err
	}

	// An OrderPlaced without items can never be handled: it is dead-lettered.
	opts, err := redisstreams.ParseURL(getenv("REDIS_URL"))
	if err != nil {
		t.Fatal(err)
	}
	streams := testenv.StreamsOn(t, opts, getenv("STREAM_PREFIX"))
	pub, err := streams.Publisher()
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	rdb := streams.NewClient()
	defer rdb.Close()
	msg, _ := events.NewMessage(context.Background(), events.OrderPlaced{OrderID: "o-poison"})
	if err := pub.Publish(events.StreamOrdersPlaced, msg); err != nil {
		t.Fatal(err)
	}
	deadLetterID := func() string {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			letters, err := streams.DeadLetters(context.Background(), rdb)
			if err == nil && len(letters) == 1 {
				if letters[0].Message.UUID != msg.UUID || letters[0].Stream != events.StreamOrdersPlaced {
					t.Fatalf("dead letter = %+v, want the poison message from %s", letters[0], events.StreamOrdersPlaced)
				}
				return letters[0].ID
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("the poison message was not dead-lettered")
		return ""
	}
	first := deadLetterID()

	out, err := cli("deadletters", "list")
	if err != nil || !strings.Contains(out, msg.UUID) || !strings.Contains(out, "1 dead letters") {
		t.Errorf("deadletters list = %v\n%s", err, out)
	}
	if _, err := cli("deadletters", "replay", "0-1"); err == nil {
		t.Error("replaying an unknown id succeeded")
	}
	out, err = cli("deadletters", "replay", first)
	if err != nil || !strings.Contains(out, "1 replayed") {
		t.Fatalf("deadletters replay = %v\n%s", err, out)
	}
	// Back on its stream with its UUID, it fails again and comes back.
	if again := deadLetterID(); again == first {
		t.Errorf("the dead letter was not replayed: still %s", again)
	}

	out, err = cli("outbox", "status")
	if err != nil || !strings.Contains(out, "group inventory") || !strings.Contains(out, "stream deadletter") {
		t.Errorf("outbox status = %v\n%s", err, out)
	}
}

// TestRun_keepsSecrets: neither the admin token nor a database password
// shows in any answer or log line, whatever the requests.
func TestRun_keepsSecrets(t *testing.T) {
	t.Parallel()
	addr := testenv.FreeAddr(t)
	base := env(t, addr)
	token := testenv.Unique("secret-admin-token-of-32-bytes-or-more")
	u, err := url.Parse(base("DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	const password = "db-secret-password" // trust auth ignores it; it must still not leak
	u.User = url.UserPassword(u.User.Username(), password)
	getenv := func(k string) string {
		switch k {
		case "ADMIN_TOKEN":
			return token
		case "DATABASE_URL":
			return u.String()
		}
		return base(k)
	}
	logs := start(t, getenv)
	c := client{t, "http://" + addr}
	c.waitHealthy()

	var answers strings.Builder
	for _, r := range []struct{ method, path, body, auth string }{
		{"PUT", "/inventory/A", `{"available":1}`, "Bearer " + token + "x"},
		{"PUT", "/inventory/A", `{"available":1}`, "Bearer " + token[:8]},
		{"PUT", "/inventory/A", `{"available":1}`, "Bearer " + token},
		{"PUT", "/inventory/A", `{"available":"x"}`, "Bearer " + token},
		{"POST", "/orders", `{"customer_id":`, ""},
		{"GET", "/readyz", "", ""},
		{"GET", "/nope", "", ""},
	} {
		req, _ := http.NewRequest(r.method, "http://"+addr+r.path, strings.NewReader(r.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", r.auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintf(&answers, "%v %s\n", resp.Header, b)
	}
	for _, secret := range []string{token, password, testJWTSecret} {
		if strings.Contains(answers.String(), secret) {
			t.Errorf("an answer shows %q:\n%s", secret, answers.String())
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log shows %q", secret)
		}
	}
	if !strings.Contains(logs.String(), "route=/inventory/:sku status=401") {
		t.Errorf("the log has no line for the refused requests:\n%s", logs.String())
	}
}
