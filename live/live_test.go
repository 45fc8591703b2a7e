package live_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/orderstream/orderstream/live"
)

// routes are l's routes as the HTTP API serves them.
func routes(l *live.Live) *echo.Echo {
	e := echo.New()
	e.GET("/", l.ServePage)
	e.GET("/ui/*", l.ServeAsset)
	e.GET("/events", l.ServeEvents)
	return e
}

// TestLive_events: an open page is signalled and counted, gets the
// snapshots published while it watches, and is let go on Close.
func TestLive_events(t *testing.T) {
	t.Parallel()
	l := live.New()
	srv := httptest.NewServer(routes(l))
	defer srv.Close()
	if l.Watching() {
		t.Fatal("watching before any page opened")
	}

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
	if !l.Watching() {
		t.Fatal("not watching with a page open")
	}
	l.Publish(live.Snapshot{Outbox: live.OutboxFigures{Pending: 7}, Stock: []live.Stock{{SKU: "SKU-1", Available: 3}}})

	body := bufio.NewReader(resp.Body)
	line, err := body.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var snap live.Snapshot
	if err := json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(line), "data: ")), &snap); err != nil ||
		snap.Outbox.Pending != 7 || len(snap.Stock) != 1 || snap.Stock[0].Available != 3 {
		t.Fatalf("event %q: %v", line, err)
	}

	l.Close()
	for {
		if _, err := body.ReadString('\n'); err != nil {
			break // the stream ended
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the stream did not end on Close")
	}
}

// TestLive_page: the page and its assets are served with their content
// security policy; an asset it does not have is echo's not-found error,
// for the API to answer.
func TestLive_page(t *testing.T) {
	t.Parallel()
	l := live.New()
	e := routes(l)
	for _, path := range []string{"/", "/ui/app.js", "/ui/style.css"} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Header().Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s = %d, CSP %q", path, rec.Code, rec.Header().Get("Content-Security-Policy"))
		}
	}
	c := e.NewContext(httptest.NewRequest("GET", "/ui/nope.js", nil), httptest.NewRecorder())
	c.SetParamNames("*")
	c.SetParamValues("nope.js")
	if err := l.ServeAsset(c); !errors.Is(err, echo.ErrNotFound) {
		t.Errorf("ServeAsset(nope.js) = %v, want echo.ErrNotFound", err)
	}
}
