package story

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/redisstreams"
)

// How far a stream is searched for an event's entry. Entry ids are
// millisecond times, so the search reads from a little before the outbox
// row was written (the clocks of PostgreSQL and Redis may differ) forward,
// a bounded number of entries within a bounded time.
const (
	clockSlack   = time.Second
	searchWindow = time.Minute
	searchMax    = 5000
	searchPage   = 500
)

// event is one of the order's events: its outbox rows (the first and any
// re-drive's copies, one UUID) and what Redis holds of it.
type event struct {
	uuid, typ, stream string
	rows              []outboxRow
	entries           []entry // the search for each row's entry (none for a row not forwarded)
	letters           []redisstreams.DeadLetter
	groups            map[string]groupState // by consumer group; read for an order not settled
}

// entry is what a search of the stream found of an event.
type entry struct {
	id string // "" when not found
	at time.Time
	// Not found: bounded is true when the search stopped at its bound with
	// the stream going on (the entry may be further on); false when it
	// read all there was from before the row was written.
	bounded bool
	scanned int
}

// groupState is where a consumer group is with an event's entry.
type groupState struct {
	exists        bool
	lastDelivered string
	pending       *redis.XPendingExt // handed to a consumer, not acknowledged; nil when not
}

// forwarded reports whether the forwarder has passed a row of e.
func (e *event) forwarded() bool {
	for _, r := range e.rows {
		if r.forwarded {
			return true
		}
	}
	return false
}

// found returns e's first entry found on its stream, and the last search
// when none was found; false when e was not searched for.
func (e *event) found() (entry, bool) {
	for _, x := range e.entries {
		if x.id != "" {
			return x, true
		}
	}
	if len(e.entries) == 0 {
		return entry{}, false
	}
	return e.entries[len(e.entries)-1], true
}

// eventsOf groups the order's readable outbox rows by event UUID, in the
// order of their first rows.
func eventsOf(rec record) []*event {
	var out []*event
	byUUID := map[string]*event{}
	for _, r := range rec.rows {
		if !r.readable {
			continue
		}
		e := byUUID[r.env.UUID]
		if e == nil {
			e = &event{uuid: r.env.UUID, typ: r.eventType, stream: r.env.DestinationTopic}
			byUUID[e.uuid] = e
			out = append(out, e)
		}
		e.rows = append(e.rows, r)
	}
	return out
}

// readStreams searches each forwarded row's stream for its event's entry
// and, for an order not settled, reads where the consumer groups of the
// event's handlers are with it.
func readStreams(ctx context.Context, src Sources, evs []*event, unsettled bool) error {
	last := map[string]string{}               // stream key → its newest entry id
	groups := map[string][]redis.XInfoGroup{} // stream key → its groups
	for _, e := range evs {
		key := src.Streams.Name(e.stream)
		for _, r := range e.rows {
			if !r.forwarded {
				continue
			}
			if _, ok := last[key]; !ok {
				xs, err := src.Redis.XRevRangeN(ctx, key, "+", "-", 1).Result()
				if err != nil {
					return unavailable(key, err)
				}
				last[key] = "0-0"
				if len(xs) > 0 {
					last[key] = xs[0].ID
				}
			}
			x, err := search(ctx, src.Redis, key, e.uuid, r.at, last[key])
			if err != nil {
				return err
			}
			e.entries = append(e.entries, x)
		}
		x, ok := e.found()
		if !unsettled || !ok || x.id == "" {
			continue
		}
		if _, ok := groups[key]; !ok {
			gs, err := src.Redis.XInfoGroups(ctx, key).Result()
			if err != nil && !strings.Contains(err.Error(), "no such key") {
				return unavailable(key, err)
			}
			groups[key] = gs
		}
		e.groups = map[string]groupState{}
		for _, h := range src.handlersOf(e.typ) {
			var st groupState
			for _, g := range groups[key] {
				if g.Name == h.Group {
					st.exists, st.lastDelivered = true, g.LastDeliveredID
				}
			}
			if st.exists {
				p, err := src.Redis.XPendingExt(ctx, &redis.XPendingExtArgs{
					Stream: key, Group: h.Group, Start: x.id, End: x.id, Count: 1}).Result()
				if err != nil {
					return unavailable(key, err)
				}
				if len(p) > 0 {
					st.pending = &p[0]
				}
			}
			e.groups[h.Group] = st
		}
	}
	return nil
}

// search reads the stream key from a little before written for the entry
// of the message uuid (watermill-redisstream's entry format), within the
// bounds above; newest is the stream's newest entry id.
func search(ctx context.Context, rdb redis.UniversalClient, key, uuid string, written time.Time, newest string) (entry, error) {
	from := max(written.Add(-clockSlack).UnixMilli(), 0)
	end := from + searchWindow.Milliseconds()
	var x entry
	start := strconv.FormatInt(from, 10)
	for x.scanned < searchMax {
		xs, err := rdb.XRangeN(ctx, key, start, strconv.FormatInt(end, 10), searchPage).Result()
		if err != nil {
			return entry{}, unavailable(key, err)
		}
		for _, m := range xs {
			if m.Values[redisstream.UUIDHeaderKey] == uuid {
				x.id, x.at = m.ID, idTime(m.ID)
				return x, nil
			}
		}
		x.scanned += len(xs)
		if len(xs) < searchPage {
			// All of the window read: the stream may go on after it.
			x.bounded = idTime(newest).UnixMilli() > end
			return x, nil
		}
		start = "(" + xs[len(xs)-1].ID
	}
	x.bounded = true
	return x, nil
}

// idTime is the time of a stream entry id, "ms-seq".
func idTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseInt(ms, 10, 64)
	return time.UnixMilli(n).UTC()
}

// readDeadLetters finds the dead letters of the events (the dead-letter
// stream is small, and read whole).
func readDeadLetters(ctx context.Context, src Sources, evs []*event) error {
	if len(evs) == 0 {
		return nil
	}
	letters, err := src.Streams.DeadLetters(ctx, src.Redis)
	if err != nil {
		return err
	}
	for _, d := range letters {
		for _, e := range evs {
			if d.Message.UUID == e.uuid {
				e.letters = append(e.letters, d)
			}
		}
	}
	return nil
}

// unavailable marks a failed read of Redis: it is away, or busy.
func unavailable(key string, err error) error {
	return fmt.Errorf("read %s: %w: %w", key, redisstreams.ErrStreamsUnavailable, err)
}
