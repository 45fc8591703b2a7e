package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/parked"
	"github.com/orderstream/orderstream/postgres"
)

// Defaults of MessagesConfig's retry and parking settings.
const (
	defaultRetryInitial = 100 * time.Millisecond
	defaultParkInitial  = time.Second
	defaultParkMax      = time.Minute
	defaultSurfaceAfter = 5 * time.Minute
	// probeLockWait is how long the probe of a held lock, a message put
	// back after a lock wait that ran out, waits for it: the lock is
	// either gone or held still, and the probe's transaction holds back the
	// forwarder while it waits.
	probeLockWait = 10 * time.Millisecond
)

// skipParkedForOthers acks, without a database round trip, a message put
// back on its stream for another handler: this handler's consumer group
// handled the original already.
func skipParkedForOthers(next message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if h := msg.Metadata.Get(parked.MetadataHandler); h != "" && h != message.HandlerNameFromCtx(msg.Context()) {
			return nil, nil
		}
		return next(msg)
	}
}

// park parks a message whose attempts all failed for a passing reason
// (!deadLetterable), so that its entry is acked and its consumer freed; it
// is tried again after a backoff (parked.Store), or, when it waited for a
// lock its handler named (postgres.Held), once the lock frees. One that has
// failed for longer than the store's bound is logged as an error and
// counted. When parking fails too (the database away) the error goes on
// and the message is nacked, to be delivered again in process. A message
// that goes to the dead-letter stream leaves without the parking metadata.
//
// A message put back after waiting for a lock that now succeeds wakes the
// messages parked waiting for the same lock (parked.Store.Wake).
func park(store *parked.Store, timeout time.Duration, logger *slog.Logger, m *metrics.Metrics) message.HandlerMiddleware {
	return func(next message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			waited := parked.WaitedOn(msg)
			if waited != nil {
				// The probe of a held lock: its transaction would hold
				// back the forwarder while it waits.
				msg.SetContext(postgres.WithLockWait(msg.Context(), probeLockWait))
			}
			produced, err := next(msg)
			if err == nil {
				if waited != nil {
					ctx := msg.Context()
					wakeCtx, cancel := context.WithTimeout(ctx, timeout)
					defer cancel()
					if err := store.Wake(wakeCtx, message.HandlerNameFromCtx(ctx), waited); err != nil {
						// They are tried again after their backoff anyway.
						logger.WarnContext(ctx, "waking the messages parked for a lock failed", "waits_on", waited, "err", err)
					}
				}
				return produced, nil
			}
			if deadLetterable(err) {
				for _, k := range parked.Keys {
					delete(msg.Metadata, k)
				}
				return nil, err
			}
			ctx := msg.Context()
			if ctx.Err() != nil {
				return nil, err // stopping: the entry stays pending, to be claimed
			}
			handler := message.HandlerNameFromCtx(ctx)
			attrs := []any{
				"handler", handler, "message_uuid", msg.UUID,
				"correlation_id", msg.Metadata.Get(events.MetadataCorrelationID),
			}
			parkCtx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			p, perr := store.Park(parkCtx, handler, message.SubscribeTopicFromCtx(ctx), msg, err, postgres.HeldKeys(err))
			if perr != nil {
				logger.WarnContext(ctx, "parking a failing message failed; delivering it again",
					append(attrs, "err", err, "park_err", perr)...)
				return nil, err
			}
			m.MessagesParked.WithLabelValues(handler).Inc()
			attrs = append(attrs, "attempts", p.Attempts, "failing_for", p.Failing.Round(time.Millisecond),
				"next_attempt_in", p.NextAttemptIn.Round(time.Millisecond), "err", err)
			if p.Overdue {
				m.MessagesParkedOverdue.WithLabelValues(handler).Inc()
				logger.ErrorContext(ctx, "message keeps failing for a passing reason", attrs...)
			} else {
				logger.WarnContext(ctx, "message parked to be tried again later", attrs...)
			}
			return nil, nil
		}
	}
}
