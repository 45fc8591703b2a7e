// Package story tells one order's story: everything the database and
// Redis hold about it, as a timeline. The order's row, its events in the
// outbox (and whether the forwarder has passed them), their entries on
// their streams, each handler's inbox row, parked messages and dead
// letters, re-drives, the reservation and the release, and for an order
// that has not settled, what is missing in plain words. It only reads, and
// only when asked: nothing on the way of an order writes anything for it.
//
// It reads the tables of other packages (orders, inventory, parked, the
// inbox and the outbox) as a report does, in one read-only snapshot, each
// through its primary key but the outbox, which it searches by the order's
// key across every shard as the re-drive does (outbox.Resend).
package story

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/redisstreams"
	"github.com/orderstream/orderstream/validate"
)

var (
	// ErrNotFound means no order has the id asked for.
	ErrNotFound = errors.New("order not found")
	// ErrBadID means the id asked for is not an order id (a UUID).
	ErrBadID = errors.New("not an order id")
)

// Sources are what a story is read from.
type Sources struct {
	DB      *sql.DB
	Redis   redis.UniversalClient
	Streams redisstreams.Config // the stream names (STREAM_PREFIX)
	// Handlers are the handler groups (the one list, handlers.go): which
	// inbox rows an event should have.
	Handlers []Handler
	// The settings the missing lines speak of: ORDER_SETTLE_TIMEOUT,
	// OUTBOX_RETENTION and STREAM_RETENTION.
	SettleTimeout   time.Duration
	OutboxRetention time.Duration
	StreamRetention time.Duration
}

// Handler is one handler group: its name (its inbox key), the stream it
// reads as its consumer group, and the event types it handles.
type Handler struct {
	Name, Stream, Group string
	EventTypes          []string
}

// Story is an order's story. Its JSON is what `orderstream orders trace
// --json` prints and GET /orders/{id}/story answers: every field always
// present, names stable.
type Story struct {
	Order         Order  `json:"order"`
	CorrelationID string `json:"correlation_id"` // "" when no event of it carries one
	// Settled is true once the order is confirmed, rejected or cancelled.
	Settled bool   `json:"settled"`
	Steps   []Step `json:"steps"` // in time order
	// Missing says, for an order not settled, what has not happened and
	// why, one plain sentence each; empty when settled, or when nothing
	// has gone missing yet.
	Missing []string `json:"missing"`
}

// Order is the order's row. Times are the database clock's.
type Order struct {
	ID          string     `json:"id"`
	CustomerID  string     `json:"customer_id"`
	Status      string     `json:"status"`
	Reason      string     `json:"reason"`     // "" unless rejected
	CreatedAt   time.Time  `json:"created_at"` // the placement's commit
	UpdatedAt   time.Time  `json:"updated_at"`
	CancelledAt *time.Time `json:"cancelled_at"` // null until cancelled
}

// Kinds of Step.
const (
	KindPlaced       = "placed"        // the order's row: its placement
	KindWritten      = "written"       // an outbox row of one of its events
	KindOnStream     = "on_stream"     // that event's entry on its stream
	KindHandled      = "handled"       // a handler's inbox row for the event
	KindParked       = "parked"        // the event parked for a handler
	KindDeadLettered = "dead_lettered" // the event dead-lettered by a handler
	KindRedriven     = "redriven"      // the re-drive wrote its events again
	KindReserved     = "reserved"      // its reservation
	KindReleased     = "released"      // its stock released
	KindSettled      = "settled"       // confirmed or rejected
	KindCancelling   = "cancelling"    // cancellation requested
	KindCancelled    = "cancelled"     // cancelled, holding nothing
)

// Step is one thing that happened to the order.
type Step struct {
	Kind string `json:"kind"` // one of the Kind constants
	// Name is the event type (written, on_stream), the handler (handled,
	// parked, dead_lettered) or the status (settled), else a title.
	Name string `json:"name"`
	// At is when, by the database's clock, or for a stream entry or dead
	// letter by Redis's (its id's millisecond). Such a step is never placed
	// before what it follows from (an entry before its outbox row or the
	// time its event announces, a dead letter before the entry): the two
	// clocks may differ, and an entry id counts whole milliseconds.
	At time.Time `json:"at"`
	// Delay is the time since the step before (JSON: delay_ms).
	Delay     time.Duration `json:"-"`
	Detail    string        `json:"detail"`     // in plain words
	EventType string        `json:"event_type"` // "" for a step of no one event
	EventUUID string        `json:"event_uuid"`
	Handler   string        `json:"handler"`
	Stream    string        `json:"stream"`    // without STREAM_PREFIX
	StreamID  string        `json:"stream_id"` // the entry id (on_stream, dead_lettered)
	Shard     *int          `json:"shard"`     // the outbox shard (written); null otherwise
	Forwarded *bool         `json:"forwarded"` // whether the forwarder has passed it (written); null otherwise
	rank      int           // orders steps of one time: a cause before its effects
}

// MarshalJSON writes the step with its delay in milliseconds, delay_ms.
func (s Step) MarshalJSON() ([]byte, error) {
	type step Step
	return json.Marshal(struct {
		step
		DelayMS float64 `json:"delay_ms"`
	}{step(s), float64(s.Delay) / float64(time.Millisecond)})
}

// Read tells the story of the order orderID. An id that is not a UUID is
// ErrBadID; one that no order has, ErrNotFound.
//
// The database is read first, in one snapshot, then Redis: an event the
// forwarder had passed when the snapshot was taken was on its stream
// before it, so an entry not found is not one still on its way.
func Read(ctx context.Context, src Sources, orderID string) (Story, error) {
	id, ok := validate.UUID(orderID)
	if !ok {
		return Story{}, fmt.Errorf("%w: %q is not a UUID", ErrBadID, orderID)
	}
	rec, err := readDatabase(ctx, src.DB, id, src.handlerNames())
	if err != nil {
		return Story{}, err
	}
	evs := eventsOf(rec)
	if err := readStreams(ctx, src, evs, !settled(rec.order.Status)); err != nil {
		return Story{}, err
	}
	if err := readDeadLetters(ctx, src, evs); err != nil {
		return Story{}, err
	}
	st := Story{Order: rec.order, Settled: settled(rec.order.Status), Missing: []string{}}
	st.CorrelationID = correlationID(rec)
	st.Steps = inTimeOrder(steps(rec, evs, src))
	if !st.Settled {
		st.Missing = append(st.Missing, missing(rec, evs, src)...)
	}
	return st, nil
}

// settled reports whether an order of status has left pending and
// cancelling for good.
func settled(status string) bool {
	return status != orders.StatusPending && status != orders.StatusCancelling
}

func (src Sources) handlerNames() []string {
	names := make([]string, len(src.Handlers))
	for i, h := range src.Handlers {
		names[i] = h.Name
	}
	return names
}

// handlersOf are the handlers of events of type typ.
func (src Sources) handlersOf(typ string) []Handler {
	var out []Handler
	for _, h := range src.Handlers {
		if slices.Contains(h.EventTypes, typ) {
			out = append(out, h)
		}
	}
	return out
}

// inTimeOrder sorts steps by time, a cause before its effects at the same
// time, and sets each one's delay from the one before.
func inTimeOrder(steps []Step) []Step {
	slices.SortStableFunc(steps, func(a, b Step) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return cmp.Compare(a.rank, b.rank)
	})
	for i := range steps {
		if i > 0 {
			steps[i].Delay = steps[i].At.Sub(steps[i-1].At)
		}
	}
	if steps == nil {
		steps = []Step{}
	}
	return steps
}

// notBefore is t, or cause when t is earlier (see Step.At).
func notBefore(t, cause time.Time) time.Time {
	if t.Before(cause) {
		return cause
	}
	return t
}

// Round is d rounded for reading: to the microsecond below a millisecond,
// to 10 µs below a second, to the millisecond above.
func Round(d time.Duration) time.Duration {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond)
	case d < time.Second:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}
