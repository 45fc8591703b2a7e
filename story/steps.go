package story

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/orders"
)

// Ranks of the steps of one time: a cause before its effects (an inbox
// row, its transaction's writes, and their outcome share the time the
// transaction began).
const (
	rankPlaced = iota
	rankHandled
	rankRedriven
	rankStock
	rankWritten
	rankStatus
	rankOnStream
	rankDeadLettered // by Redis's clock too, after the entry it was read from
)

// payload is what the steps show of an event's payload.
type payload struct {
	Items       []events.Item `json:"items"`
	Reason      string        `json:"reason"`
	PlacedAt    time.Time     `json:"placed_at"`
	ConfirmedAt time.Time     `json:"confirmed_at"`
	RejectedAt  time.Time     `json:"rejected_at"`
	CancelledAt time.Time     `json:"cancelled_at"`
}

func (e *event) payload() payload {
	var p payload
	_ = json.Unmarshal(e.rows[0].env.Payload, &p) // what does not decode is not shown
	return p
}

// announced is the time the event announces (its placement, confirmation
// …), taken in the transaction that wrote it: its entry cannot be older.
func (p payload) announced() time.Time {
	var t time.Time
	for _, at := range []time.Time{p.PlacedAt, p.ConfirmedAt, p.RejectedAt, p.CancelledAt} {
		t = notBefore(t, at)
	}
	return t
}

// steps are everything read, as steps, in no particular order.
func steps(rec record, evs []*event, src Sources) []Step {
	o := rec.order
	out := []Step{{Kind: KindPlaced, Name: "order placed", At: o.CreatedAt, rank: rankPlaced,
		Detail: "committed for customer " + o.CustomerID}}
	for _, e := range evs {
		out = append(out, e.steps(rec, src)...)
	}
	if d := rec.redrive; d != nil {
		times := "once"
		if d.attempts > 1 {
			times = fmt.Sprintf("%d times, the last at %s", d.attempts, clock(d.last))
		}
		out = append(out, Step{Kind: KindRedriven, Name: "re-driven", At: d.first, rank: rankRedriven,
			Detail: fmt.Sprintf("unsettled for longer than ORDER_SETTLE_TIMEOUT: re-driven %s, %s; next try at %s",
				times, redriveOutcomes[d.outcome], clock(d.next))})
	}
	if len(rec.reserved) > 0 {
		at, items := rec.reserved[0].at, make([]events.Item, len(rec.reserved))
		for i, r := range rec.reserved {
			if r.at.Before(at) {
				at = r.at
			}
			items[i] = events.Item{SKU: r.sku, Quantity: r.quantity}
		}
		out = append(out, Step{Kind: KindReserved, Name: "stock reserved", At: at, rank: rankStock,
			Detail: "holds " + itemList(items)})
	}
	if !rec.released.IsZero() {
		out = append(out, Step{Kind: KindReleased, Name: "stock released", At: rec.released, rank: rankStock,
			Detail: "the inventory released what the order held, if anything"})
	}
	return append(out, statusSteps(o, evs)...)
}

// redriveOutcomes say what a re-drive's outcome (orders.Redrive…) means.
var redriveOutcomes = map[string]string{
	orders.RedriveResent:   "its events written to the outbox again",
	orders.RedriveInFlight: "nothing sent: its events had not left the outbox yet",
	orders.RedriveNoEvent:  "nothing sent: the outbox no longer holds its events",
}

// steps are the event's: each outbox row and its entry, each handler's
// inbox row, and its parked messages and dead letters.
func (e *event) steps(rec record, src Sources) []Step {
	var out []Step
	p := e.payload()
	var cause time.Time // when the handlers could first have had it: its first entry, or row
	searches := e.entries
	for i, r := range e.rows {
		at := notBefore(r.at, rec.order.CreatedAt) // the placing transaction began before its order row
		w := e.step(KindWritten, e.typ, at, rankWritten)
		shard, forwarded := r.shard, r.forwarded
		w.Shard, w.Forwarded = &shard, &forwarded
		w.Detail = writtenDetail(rec.order, r, i > 0, p)
		if cause.IsZero() {
			cause = at
		}
		if r.forwarded && len(searches) > 0 {
			x := searches[0]
			searches = searches[1:]
			if x.id == "" {
				w.Detail += "; " + e.notOnStream(x, rec, src)
			} else {
				s := e.step(KindOnStream, e.typ, notBefore(notBefore(x.at, at), p.announced()), rankOnStream)
				s.StreamID, s.Detail = x.id, fmt.Sprintf("on %s as entry %s", e.stream, x.id)
				out = append(out, s)
				if i == 0 {
					cause = s.At
				}
			}
		}
		out = append(out, w)
	}
	for _, r := range rec.inbox {
		if r.uuid == e.uuid {
			s := e.step(KindHandled, r.handler, r.at, rankHandled)
			s.Handler, s.Detail = r.handler, fmt.Sprintf("handled %s (its inbox row)", e.typ)
			out = append(out, s)
		}
	}
	for _, r := range rec.parked {
		if r.uuid == e.uuid {
			s := e.step(KindParked, r.handler, r.firstFailed, rankHandled)
			s.Handler, s.Detail = r.handler, fmt.Sprintf("%s parked after %d failed attempts; next attempt at %s; last error: %s",
				e.typ, r.attempts, clock(r.nextAt), oneLine(r.lastError))
			out = append(out, s)
		}
	}
	for _, d := range e.letters {
		s := e.step(KindDeadLettered, d.Handler, notBefore(d.At, cause), rankDeadLettered)
		s.Handler, s.StreamID = d.Handler, d.ID
		s.Detail = fmt.Sprintf("%s dead-lettered (entry %s of the dead-letter stream, %d copies): %s",
			e.typ, d.ID, d.Copies(), oneLine(d.Reason))
		out = append(out, s)
	}
	return out
}

// step is a step of the event.
func (e *event) step(kind, name string, at time.Time, rank int) Step {
	return Step{Kind: kind, Name: name, At: at, EventType: e.typ, EventUUID: e.uuid, Stream: e.stream, rank: rank}
}

func writtenDetail(o Order, r outboxRow, again bool, p payload) string {
	var b strings.Builder
	switch {
	case again:
		fmt.Fprintf(&b, "written again to outbox shard %d by the re-drive", r.shard)
	case !r.at.After(o.CreatedAt):
		fmt.Fprintf(&b, "written to outbox shard %d in the transaction that placed the order", r.shard)
	default:
		fmt.Fprintf(&b, "written to outbox shard %d", r.shard)
	}
	fmt.Fprintf(&b, " (uuid %s)", r.env.UUID)
	if len(p.Items) > 0 {
		b.WriteString(": " + itemList(p.Items))
	}
	if p.Reason != "" {
		b.WriteString(", reason " + p.Reason)
	}
	if r.forwarded {
		b.WriteString("; the forwarder has passed it")
	} else {
		b.WriteString("; the forwarder has not passed it yet")
	}
	return b.String()
}

// notOnStream says why a forwarded event's entry x was not found.
func (e *event) notOnStream(x entry, rec record, src Sources) string {
	switch {
	case x.bounded && x.scanned >= searchMax:
		return fmt.Sprintf("not among the %d entries of %s after it was written (lost, or forwarded later)", x.scanned, e.stream)
	case x.bounded:
		return fmt.Sprintf("not on %s in the minute after it was written (lost, or forwarded later)", e.stream)
	case src.StreamRetention > 0 && rec.now.Sub(e.rows[0].at) > src.StreamRetention:
		return fmt.Sprintf("no longer on %s: trimmed after STREAM_RETENTION (%s)", e.stream, src.StreamRetention)
	}
	return fmt.Sprintf("not on %s: Redis lost it", e.stream)
}

// correlationID is the correlation id the order's first event carries.
func correlationID(rec record) string {
	for _, r := range rec.rows {
		if id := r.env.Metadata[events.MetadataCorrelationID]; id != "" {
			return id
		}
	}
	return ""
}

func itemList(items []events.Item) string {
	parts := make([]string, len(items))
	for i, it := range items {
		parts[i] = fmt.Sprintf("%d of %s", it.Quantity, it.SKU)
	}
	return strings.Join(parts, ", ")
}

// clock is t as the details show it.
func clock(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
