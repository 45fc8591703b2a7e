package live

import (
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/parked"
	"github.com/orderstream/orderstream/redisstreams"
)

// historySpan is how far back the page's charts go.
const historySpan = 15 * time.Minute

// Point is one reading of what the page charts: the collector takes one
// at each of its readings (every second while a page is open, every
// METRICS_INTERVAL otherwise), from the figures it reads anyway.
type Point struct {
	At time.Time `json:"at"`
	// Orders placed and settled (confirmed or rejected) per second, and
	// the commit-to-settled p50 and p99 of those settled, in the window
	// since the reading before; the percentiles are absent when none
	// settled.
	PlacedPerSecond  float64  `json:"placed_per_s"`
	SettledPerSecond float64  `json:"settled_per_s"`
	SettleP50Millis  *float64 `json:"settle_p50_ms,omitempty"`
	SettleP99Millis  *float64 `json:"settle_p99_ms,omitempty"`
	OutboxPending    int64    `json:"outbox_pending"`
	// Groups are each consumer group's lag and pending entries.
	Groups      []GroupPoint `json:"groups"`
	DeadLetters int64        `json:"dead_letters"`
	Parked      int          `json:"parked"`
}

// GroupPoint is a consumer group's figures in a Point.
type GroupPoint struct {
	Stream  string `json:"stream"`
	Group   string `json:"group"`
	Lag     int64  `json:"lag"`
	Pending int64  `json:"pending"`
}

// pointOf is the Point of one reading.
func pointOf(at time.Time, flow orders.Flow, outboxPending int64, streams []redisstreams.StreamStatus, deadLetters int64, p parked.Status) Point {
	pt := Point{At: at, OutboxPending: outboxPending, DeadLetters: deadLetters, Parked: p.Messages, Groups: []GroupPoint{}}
	if s := flow.Seconds(); s > 0 {
		pt.PlacedPerSecond = float64(flow.Placed) / s
		pt.SettledPerSecond = float64(flow.Settled) / s
	}
	if flow.HasSettleFigures {
		p50, p99 := millis(flow.SettleP50), millis(flow.SettleP99)
		pt.SettleP50Millis, pt.SettleP99Millis = &p50, &p99
	}
	for _, st := range streams {
		for _, g := range st.Groups {
			pt.Groups = append(pt.Groups, GroupPoint{Stream: st.Stream, Group: g.Name, Lag: g.Lag, Pending: g.Pending})
		}
	}
	return pt
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// history is the Points of the last historySpan, oldest first.
type history struct {
	mu     sync.Mutex
	points []Point
}

func (h *history) add(p Point) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cut := p.At.Add(-historySpan)
	i, _ := slices.BinarySearchFunc(h.points, cut, func(q Point, t time.Time) int { return q.At.Compare(t) })
	h.points = append(h.points[i:], p)
}

func (h *history) all() []Point {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.points)
}

// ServeHistory answers the Points of the last historySpan, oldest first
// (GET /history): what a page charts when it opens, from memory; the
// snapshots it then receives each carry the newest Point.
func (l *Live) ServeHistory(c echo.Context) error {
	points := l.history.all()
	if points == nil {
		points = []Point{}
	}
	return c.JSON(http.StatusOK, points)
}
