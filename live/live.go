// Package live is the live page: the page itself (plain HTML, CSS and
// JavaScript, embedded, with uPlot for its charts), its event stream
// (Server-Sent Events, one Snapshot a second to every open page), the
// charts' last 15 minutes (GET /history), and the backlog watcher
// (Watcher) that reads the figures for the page, its charts and the
// metrics. The HTTP API
// (package httpapi) serves its routes; it owns its own JSON shapes, so that
// what the page reads changes only here.
package live

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/orderstream/orderstream/activity"
	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/redisstreams"
)

// Snapshot is what the live page shows, collected on a timer by one reader
// however many pages watch.
type Snapshot struct {
	At          time.Time                   `json:"at"`
	Orders      []Order                     `json:"orders"`
	Stock       []Stock                     `json:"stock"`
	Outbox      OutboxFigures               `json:"outbox"`
	Streams     []redisstreams.StreamStatus `json:"streams"`
	DeadLetters []DeadLetter                `json:"dead_letters"`
	// Activity is the latest messages the handlers handled, newest first
	// (package activity): at most activityShown a reading.
	Activity []activity.Entry `json:"activity"`
	// Point is the newest reading of the charts, which a page adds to the
	// history it read at GET /history.
	Point Point `json:"point"`
}

// Order is an order as the live page lists it.
type Order struct {
	ID         string    `json:"id"`
	CustomerID string    `json:"customer_id"`
	Status     string    `json:"status"`
	Reason     string    `json:"reason,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	// SettleMillis is how long the order took from its commit to its
	// confirmation or rejection; nil before, and for a cancelled order.
	SettleMillis *float64 `json:"settle_ms,omitempty"`
}

// ordersOf is the page's view of os.
func ordersOf(os []orders.Order) []Order {
	out := make([]Order, len(os))
	for i, o := range os {
		out[i] = Order{ID: o.ID, CustomerID: o.CustomerID, Status: o.Status, Reason: o.Reason, CreatedAt: o.CreatedAt}
		if o.Status == orders.StatusConfirmed || o.Status == orders.StatusRejected {
			ms := float64(o.UpdatedAt.Sub(o.CreatedAt)) / float64(time.Millisecond)
			out[i].SettleMillis = &ms
		}
	}
	return out
}

// Stock is the stock of a SKU as the live page lists it.
type Stock struct {
	SKU       string `json:"sku"`
	Available int    `json:"available"`
	Reserved  int    `json:"reserved"`
}

// stockOf is the page's view of stock.
func stockOf(stock []inventory.Stock) []Stock {
	out := make([]Stock, len(stock))
	for i, st := range stock {
		out[i] = Stock{SKU: st.SKU, Available: st.Available, Reserved: st.Reserved}
	}
	return out
}

// OutboxFigures are the outbox backlog.
type OutboxFigures struct {
	Pending       int64   `json:"pending"`
	OldestSeconds float64 `json:"oldest_seconds"`
}

// DeadLetter is a dead letter as the page lists it.
type DeadLetter struct {
	ID        string    `json:"id"`
	At        time.Time `json:"at"`
	Stream    string    `json:"stream"`
	Handler   string    `json:"handler"`
	UUID      string    `json:"uuid"`
	EventType string    `json:"event_type"`
	Reason    string    `json:"reason"`
}

// DeadLetterOf is d as the page lists it.
func DeadLetterOf(d redisstreams.DeadLetter) DeadLetter {
	return DeadLetter{
		ID: d.ID, At: d.At, Stream: d.Stream, Handler: d.Handler, UUID: d.Message.UUID,
		EventType: d.Message.Metadata.Get(events.MetadataEventType), Reason: d.Reason,
	}
}

// The bounds of the event streams. A client is an address (behind a
// trusted proxy, the one it forwards for): one client cannot take every
// stream, and a stream that lives for ever, or a reader that stopped
// reading, holds nothing for ever. A page's EventSource reconnects when
// its stream ends.
const (
	maxWatchers          = 100
	maxWatchersPerClient = 4
	maxStreamAge         = time.Hour
	eventWriteTimeout    = 10 * time.Second
)

// Live hands the latest Snapshot to every open page, by Server-Sent Events,
// and serves the page.
type Live struct {
	page     page
	history  history
	mu       sync.Mutex
	last     []byte
	watchers map[chan []byte]string // the client of each stream
	joined   chan struct{}
	closing  chan struct{}
	once     sync.Once
}

// New returns a Live with no watchers.
func New() *Live {
	return &Live{page: newPage(), watchers: map[chan []byte]string{}, joined: make(chan struct{}, 1), closing: make(chan struct{})}
}

// Close ends every event stream, and any opened later at once: the server
// is stopping, and a stream would otherwise hold its shutdown until the
// timeout (a stream is a request that never ends by itself). A page's
// EventSource reconnects when its stream ends, to whichever server then
// answers.
func (l *Live) Close() { l.once.Do(func() { close(l.closing) }) }

// Watching reports whether any page is open: the collector reads the page's
// figures only then, and more often.
func (l *Live) Watching() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.watchers) > 0
}

// Joined signals when a page opens, so the collector need not wait for its
// next tick.
func (l *Live) Joined() <-chan struct{} { return l.joined }

// Publish sends s to every open page. A page still busy with the previous
// snapshot gets this one instead: only the latest matters.
func (l *Live) Publish(s Snapshot) {
	data, err := json.Marshal(s)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last = data
	for ch := range l.watchers {
		select {
		case <-ch:
		default:
		}
		ch <- data
	}
}

func (l *Live) watch(client string) (ch chan []byte, last []byte, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.watchers) >= maxWatchers {
		return nil, nil, echo.NewHTTPError(http.StatusServiceUnavailable, "too many live pages open; try again later")
	}
	n := 0
	for _, c := range l.watchers {
		if c == client {
			n++
		}
	}
	if n >= maxWatchersPerClient {
		return nil, nil, echo.NewHTTPError(http.StatusTooManyRequests,
			fmt.Sprintf("at most %d live pages open per client", maxWatchersPerClient))
	}
	ch = make(chan []byte, 1)
	l.watchers[ch] = client
	select {
	case l.joined <- struct{}{}:
	default:
	}
	return ch, l.last, nil
}

func (l *Live) unwatch(ch chan []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.watchers, ch)
}

// ServeEvents streams snapshots to one page until it goes away, for at
// most maxStreamAge (GET /events). With maxWatchers pages open it answers
// 503, with maxWatchersPerClient of the client's 429, as an echo.HTTPError
// for the API's error mapping to answer.
func (l *Live) ServeEvents(c echo.Context) error {
	ch, last, err := l.watch(c.RealIP())
	if err != nil {
		return err
	}
	defer l.unwatch(ch)

	w := c.Response()
	rc := http.NewResponseController(w)
	// The server's write timeout is for ordinary requests: each event
	// gets its own.
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set(echo.HeaderContentType, "text/event-stream")
	w.Header().Set(echo.HeaderCacheControl, "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(data []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
		if _, err := fmt.Fprintf(w, "data: %s\n\n", data); err != nil {
			return err
		}
		w.Flush()
		return nil
	}
	if last != nil {
		if err := send(last); err != nil {
			return nil
		}
	} else {
		w.Flush()
	}
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	end := time.NewTimer(maxStreamAge)
	defer end.Stop()
	for {
		select {
		case <-c.Request().Context().Done():
			return nil
		case <-end.C:
			return nil
		case <-l.closing:
			return nil
		case data := <-ch:
			if err := send(data); err != nil {
				return nil
			}
		case <-keepAlive.C:
			_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
			w.Flush()
		}
	}
}
