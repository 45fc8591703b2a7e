package live

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/parked"
	"github.com/orderstream/orderstream/redisstreams"
)

// TestHistory keeps the points of the last historySpan, oldest first, and
// serves them at GET /history.
func TestHistory(t *testing.T) {
	l := New()
	start := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for i := range 40 { // one a minute for 40 minutes
		l.history.add(Point{At: start.Add(time.Duration(i) * time.Minute), OutboxPending: int64(i)})
	}
	e := echo.New()
	e.GET("/history", l.ServeHistory)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/history", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /history: %d", rec.Code)
	}
	var got []Point
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	// 39 minutes is the newest: from 24 (15 minutes before) on.
	if len(got) != 16 || got[0].OutboxPending != 24 || got[15].OutboxPending != 39 {
		t.Fatalf("kept %d points, from %d to %d; want 16, from 24 to 39", len(got), got[0].OutboxPending, got[len(got)-1].OutboxPending)
	}

	empty := httptest.NewRecorder()
	e2 := echo.New()
	e2.GET("/history", New().ServeHistory)
	e2.ServeHTTP(empty, httptest.NewRequest(http.MethodGet, "/history", nil))
	if body := empty.Body.String(); body != "[]\n" {
		t.Errorf("no history: %q, want an empty list", body)
	}
}

// TestPointOf makes the rates per second of the flow's window, the
// percentiles only when something settled, and a group point per group.
func TestPointOf(t *testing.T) {
	since := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	flow := orders.Flow{Since: since, Until: since.Add(4 * time.Second), Placed: 10, Settled: 6,
		SettleP50: 12 * time.Millisecond, SettleP99: 40 * time.Millisecond, HasSettleFigures: true}
	streams := []redisstreams.StreamStatus{
		{Stream: "orders.placed", Groups: []redisstreams.GroupStatus{{Name: "inventory", Lag: 3, Pending: 2}}},
		{Stream: "deadletter", Length: 7},
	}
	p := pointOf(since, flow, 5, streams, 7, parked.Status{Messages: 1})
	if p.PlacedPerSecond != 2.5 || p.SettledPerSecond != 1.5 {
		t.Errorf("rates %v and %v, want 2.5 and 1.5", p.PlacedPerSecond, p.SettledPerSecond)
	}
	if p.SettleP50Millis == nil || *p.SettleP50Millis != 12 || *p.SettleP99Millis != 40 {
		t.Errorf("percentiles %v, %v; want 12 and 40 ms", p.SettleP50Millis, p.SettleP99Millis)
	}
	if len(p.Groups) != 1 || p.Groups[0] != (GroupPoint{Stream: "orders.placed", Group: "inventory", Lag: 3, Pending: 2}) {
		t.Errorf("groups %+v", p.Groups)
	}
	if p.DeadLetters != 7 || p.Parked != 1 || p.OutboxPending != 5 {
		t.Errorf("dead letters %d, parked %d, outbox %d", p.DeadLetters, p.Parked, p.OutboxPending)
	}
	quiet := pointOf(since, orders.Flow{Since: since, Until: since.Add(time.Second)}, 0, nil, 0, parked.Status{})
	if quiet.SettleP50Millis != nil || quiet.SettleP99Millis != nil || quiet.Groups == nil {
		t.Errorf("nothing settled: %+v, want no percentiles and an empty list of groups", quiet)
	}
}
