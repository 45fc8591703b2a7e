package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/httpapi"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/live"
	"github.com/orderstream/orderstream/metrics"
)

// TestHTTP_liveEvents: the operations listener serves the live page's
// event stream, which outlives the request timeout: a page's stream lasts
// as long as the page.
func TestHTTP_liveEvents(t *testing.T) {
	t.Parallel()
	l := live.New()
	srv := httptest.NewServer(httpapi.NewOps(httpapi.Config{
		Metrics: metrics.New(), Logger: discardLogger(), RequestTimeout: 50 * time.Millisecond,
	}, httpapi.Ops{Live: l}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	select {
	case <-l.Joined():
	case <-ctx.Done():
		t.Fatal("the page's arrival was not signalled")
	}
	time.Sleep(100 * time.Millisecond) // twice the request timeout
	l.Publish(live.Snapshot{Outbox: live.OutboxFigures{Pending: 7}})

	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var snap live.Snapshot
	if err := json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(line), "data: ")), &snap); err != nil || snap.Outbox.Pending != 7 {
		t.Fatalf("event %q: %v", line, err)
	}
}

// TestHTTP_livePage: the operations listener serves the page and its
// assets with their policy; replaying a dead letter needs an administrator,
// and a process that cannot replay says so.
func TestHTTP_livePage(t *testing.T) {
	t.Parallel()
	ops := httpapi.NewOps(testConfig(t, testenv.DB(t), adminToken), httpapi.Ops{Live: live.New()})
	for _, path := range []string{"/", "/ui/app.js", "/ui/style.css"} {
		rec := do(t, ops, call{method: "GET", path: path, header: as("")})
		if rec.Code != http.StatusOK || !strings.Contains(rec.Header().Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s = %d, CSP %q", path, rec.Code, rec.Header().Get("Content-Security-Policy"))
		}
	}
	if rec := do(t, ops, call{method: "GET", path: "/ui/nope.js"}); rec.Code != http.StatusNotFound ||
		rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("GET /ui/nope.js = %d, want 404", rec.Code)
	}
	if rec := do(t, ops, call{method: "POST", path: "/deadletters/1-0/replay", header: as("")}); rec.Code != http.StatusUnauthorized {
		t.Errorf("replay without a token = %d, want 401", rec.Code)
	}
	if rec := do(t, ops, call{method: "POST", path: "/deadletters/1-0/replay", header: as(bearer(customerJWT(t, "c-1")))}); rec.Code != http.StatusForbidden {
		t.Errorf("replay by a customer = %d, want 403", rec.Code)
	}
	wantProblem(t, do(t, ops, call{method: "POST", path: "/deadletters/1-0/replay"}), 404, "cannot be replayed from this process")
}
