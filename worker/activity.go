package worker

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderstream/orderstream/activity"
	"github.com/orderstream/orderstream/events"
)

// outcomeNotHandled is the outcome of a message acked untouched, its event
// of a type that the group does not handle (contractOnly): no attempt of
// the group's, so none in the consumers' activity.
const outcomeNotHandled = "not_handled"

// delivery is what track keeps of one delivery of a message: its attempt
// waiting for what comes of it.
type delivery struct {
	rec      *activity.Recorder
	attempts int
	last     *activity.Entry
}

type deliveryKey struct{}

// track records, with rec, an entry of the consumers' activity per attempt
// at a message, as observe saw it (attempted), marked with what came of
// it: an attempt followed by another was retried; the last one, when it
// failed, was dead-lettered if its error is deadLetterable, and parked if
// it is not and the message is acked all the same (only park turns a
// failure into an ack). So track sits outside park and inside the
// dead-letter publish. Without rec it is no middleware at all.
func track(rec *activity.Recorder) message.HandlerMiddleware {
	return func(next message.HandlerFunc) message.HandlerFunc {
		if rec == nil {
			return next
		}
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx := msg.Context()
			d := &delivery{rec: rec}
			msg.SetContext(context.WithValue(ctx, deliveryKey{}, d))
			produced, err := next(msg)
			msg.SetContext(ctx)
			if e := d.last; e != nil {
				if e.Error != "" {
					e.DeadLettered = err != nil && deadLetterable(err)
					e.Parked = err == nil
				}
				rec.Record(*e)
			}
			return produced, err
		}
	}
}

// attempted hands one attempt at msg, as observe saw it (what the handler
// noted, its duration and error), to the delivery that track follows in
// ctx, if any.
func attempted(ctx context.Context, msg *message.Message, handler string, noted []any, took time.Duration, err error) {
	d, ok := ctx.Value(deliveryKey{}).(*delivery)
	if !ok {
		return
	}
	e := activity.Entry{
		At: time.Now(), Handler: handler, EventType: events.Marshaler{}.NameFromMessage(msg), MessageUUID: msg.UUID,
		DurationMS: float64(took.Microseconds()) / 1000, Outcome: "handled",
	}
	var r slog.Record
	r.Add(noted...)
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "order_id":
			e.OrderID = a.Value.String()
		case "outcome":
			e.Outcome = a.Value.String()
		}
		return true
	})
	if e.Outcome == outcomeNotHandled {
		return
	}
	if err != nil {
		e.Outcome, e.Error = "failed", err.Error()
	}
	if e.OrderID == "" {
		// Failed before the handler noted it, or skipped by the inbox:
		// every event of the contract carries its order.
		var p struct {
			OrderID string `json:"order_id"`
		}
		_ = json.Unmarshal(msg.Payload, &p)
		e.OrderID = p.OrderID
	}
	if d.last != nil {
		d.last.Retried = true
		d.rec.Record(*d.last)
	}
	d.attempts++
	e.Attempt = d.attempts
	d.last = &e
}
