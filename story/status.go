package story

import (
	"time"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/orders"
)

// statusSteps are the order's changes of status: from the events that
// announced them (a confirmation before a cancellation too), and from its
// row.
func statusSteps(o Order, evs []*event) []Step {
	var out []Step
	add := func(kind, name string, at time.Time, detail string) {
		if at.IsZero() { // a payload that did not decode
			return
		}
		for _, s := range out {
			if s.Kind == kind && s.Name == name {
				return
			}
		}
		out = append(out, Step{Kind: kind, Name: name, At: at, Detail: detail, rank: rankStatus})
	}
	for _, e := range evs {
		p := e.payload()
		switch e.typ {
		case events.OrderConfirmed{}.EventType():
			add(KindSettled, orders.StatusConfirmed, p.ConfirmedAt, "confirmed: every item reserved")
		case events.OrderRejected{}.EventType():
			add(KindSettled, orders.StatusRejected, p.RejectedAt, "rejected: "+p.Reason)
		case events.OrderCancelled{}.EventType():
			detail := "cancellation requested"
			if p.Reason != "" {
				detail += ": " + p.Reason
			}
			add(KindCancelling, orders.StatusCancelling, p.CancelledAt, detail)
		}
	}
	// The row's, when the outbox no longer holds the event that announced it.
	switch o.Status {
	case orders.StatusConfirmed:
		add(KindSettled, o.Status, o.UpdatedAt, "confirmed: every item reserved")
	case orders.StatusRejected:
		add(KindSettled, o.Status, o.UpdatedAt, "rejected: "+o.Reason)
	case orders.StatusCancelling:
		add(KindCancelling, o.Status, o.UpdatedAt, "cancellation requested")
	case orders.StatusCancelled:
		if o.CancelledAt != nil {
			add(KindCancelled, o.Status, *o.CancelledAt, "cancelled, holding nothing")
		}
	}
	return out
}
