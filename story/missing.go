package story

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/orders"
)

// missing says what has not happened to an order that has not settled,
// and why, one sentence each: for each of its events, where it stopped
// on its way to each of its handlers; then the answer the order waits
// for, when what should have written it has run.
func missing(rec record, evs []*event, src Sources) []string {
	var out []string
	if rec.misaligned != nil {
		out = append(out, "the outbox was copied from another cluster and is not realigned: the forwarder moves nothing "+
			"until `orderstream outbox realign` has run ("+rec.misaligned.Error()+")")
	}
	if len(evs) == 0 {
		if age := rec.now.Sub(rec.order.CreatedAt); src.OutboxRetention > 0 && age > src.OutboxRetention {
			return append(out, fmt.Sprintf("the outbox no longer holds the order's events (it was placed %s ago, "+
				"past OUTBOX_RETENTION, %s): the re-drive cannot send them again; settle the order by hand (cancel it)",
				Round(age), src.OutboxRetention))
		}
		return append(out, "the outbox holds no event of the order: it was written before the outbox rows carried "+
			"their order's key, or the outbox was emptied by hand; settle the order by hand (cancel it)")
	}
	for _, e := range evs {
		out = append(out, e.missing(rec, src)...)
	}
	return append(out, unanswered(rec, evs, src)...)
}

// missing says where e stopped on its way to each of its handlers.
func (e *event) missing(rec record, src Sources) []string {
	if !e.forwarded() {
		r := e.rows[0]
		return []string{fmt.Sprintf("%s (%s) is still in outbox shard %d, written %s ago: the forwarder has not passed it "+
			"yet; is a forwarder running? (`orderstream outbox status`)", e.typ, e.uuid, r.shard, Round(rec.now.Sub(r.at)))}
	}
	var out []string
	x, _ := e.found()
	if x.id == "" {
		out = append(out, fmt.Sprintf("%s (%s) was forwarded (the forwarder's offset passed it) but is %s; %s",
			e.typ, e.uuid, e.notOnStream(x, rec, src), redriveNote(rec, src)))
	}
	for _, h := range src.handlersOf(e.typ) {
		if !rec.handled(h.Name, e.uuid) {
			out = append(out, fmt.Sprintf("no inbox row for handler %s: %s", h.Name, e.unhandled(h, x, rec)))
		}
	}
	return out
}

// unhandled says why handler h has no inbox row for e, whose entry is x.
func (e *event) unhandled(h Handler, x entry, rec record) string {
	for _, d := range e.letters {
		if d.Handler == h.Name || d.Handler == "" {
			return fmt.Sprintf("it dead-lettered %s (%s); once the cause is fixed, put it back with "+
				"`orderstream deadletters replay %s`", e.typ, oneLine(d.Reason), d.ID)
		}
	}
	for _, p := range rec.parked {
		if p.handler == h.Name && p.uuid == e.uuid {
			return fmt.Sprintf("%s is parked after %d failed attempts (last error: %s); the next attempt is at %s",
				e.typ, p.attempts, oneLine(p.lastError), clock(p.nextAt))
		}
	}
	if x.id == "" {
		return fmt.Sprintf("it cannot handle %s until %s is on %s again", e.typ, e.typ, e.stream)
	}
	g := e.groups[h.Group]
	switch {
	case !g.exists:
		return fmt.Sprintf("consumer group %s does not exist on %s: no worker has read the stream yet", h.Group, e.stream)
	case g.pending != nil:
		return pendingWith(h.Group, e.typ, x.id, g.pending)
	case compareIDs(g.lastDelivered, x.id) < 0:
		return fmt.Sprintf("consumer group %s has not been handed %s (entry %s) yet, it is at %s: its workers are "+
			"behind, or none is running", h.Group, e.typ, x.id, g.lastDelivered)
	}
	return fmt.Sprintf("consumer group %s acknowledged %s (entry %s), and no parked message or dead letter says what "+
		"became of it: it may be back on %s after parking (a newer entry); the worker's log has its UUID", h.Group, e.typ, x.id, e.stream)
}

func pendingWith(group, typ, id string, p *redis.XPendingExt) string {
	return fmt.Sprintf("consumer group %s handed %s (entry %s) to consumer %s %s ago (delivered %d times), which has not "+
		"acknowledged it: it is being handled, or its worker stopped and another consumer claims it after STREAM_CLAIM_IDLE",
		group, typ, id, p.Consumer, Round(p.Idle), p.RetryCount)
}

// redriveNote says when the re-drive sends the order's events again.
func redriveNote(rec record, src Sources) string {
	if d := rec.redrive; d != nil {
		return fmt.Sprintf("the re-drive has tried %d times (the last at %s: %s); its next try is at %s",
			d.attempts, clock(d.last), redriveOutcomes[d.outcome], clock(d.next))
	}
	if age := rec.now.Sub(rec.order.UpdatedAt); age < src.SettleTimeout {
		return fmt.Sprintf("the re-drive will resend it after ORDER_SETTLE_TIMEOUT (%s), in about %s",
			src.SettleTimeout, max((src.SettleTimeout-age).Round(time.Second), time.Second))
	}
	return fmt.Sprintf("the re-drive resends it now that ORDER_SETTLE_TIMEOUT (%s) has passed, unless a consumer "+
		"group is behind; it runs in the forwarder process: is one running?", src.SettleTimeout)
}

// The answers an unsettled order waits for, by its status: what the
// handler of the event that left it so writes.
var awaited = map[string]struct {
	after   string   // the event it answers
	answers []string // the event types that answer it
}{
	orders.StatusPending: {events.OrderPlaced{}.EventType(),
		[]string{events.StockReserved{}.EventType(), events.StockRejected{}.EventType()}},
	orders.StatusCancelling: {events.OrderCancelled{}.EventType(), []string{events.StockReleased{}.EventType()}},
}

// unanswered says that the answer the order waits for is not in the
// outbox though every handler of the event it answers has handled it.
func unanswered(rec record, evs []*event, src Sources) []string {
	w, ok := awaited[rec.order.Status]
	if !ok || slices.ContainsFunc(evs, func(e *event) bool { return slices.Contains(w.answers, e.typ) }) {
		return nil
	}
	var by []string
	var at time.Time
	for _, e := range evs {
		if e.typ != w.after {
			continue
		}
		for _, h := range src.handlersOf(e.typ) {
			t, ok := rec.handledAt(h.Name, e.uuid)
			if !ok {
				return nil // said above
			}
			by, at = append(by, h.Name), t
		}
	}
	if len(by) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%s handled %s at %s, but no %s is in the outbox", strings.Join(by, " and "), w.after,
		clock(at), strings.Join(w.answers, " or "))}
}

// handled reports whether handler has an inbox row for the message uuid.
func (rec record) handled(handler, uuid string) bool {
	_, ok := rec.handledAt(handler, uuid)
	return ok
}

func (rec record) handledAt(handler, uuid string) (time.Time, bool) {
	for _, r := range rec.inbox {
		if r.handler == handler && r.uuid == uuid {
			return r.at, true
		}
	}
	return time.Time{}, false
}

// compareIDs orders stream entry ids, "ms-seq", by time then sequence.
func compareIDs(a, b string) int {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	if c := compareNumbers(am, bm); c != 0 {
		return c
	}
	return compareNumbers(as, bs)
}

// compareNumbers compares two decimal numbers written without leading zeros.
func compareNumbers(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}
