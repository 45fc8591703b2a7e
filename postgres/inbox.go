package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/lib/pq"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/logging"
)

// Inbox is the Watermill middleware that makes a handler's effect happen
// exactly once per message, however often the message is delivered.
//
// It begins a transaction (a Tx), records (handler name, message UUID) in
// the inbox table, and runs the handler with that transaction, which the
// handler receives as an argument (InInbox) and writes its effect in,
// outbox rows included; what it arranges with AfterCommit runs once it
// commits. The inbox row and the handler's writes commit together or not
// at all:
//
//   - a message whose row already exists was handled before: it is acked and
//     the handler does not run;
//   - a concurrent delivery of the same message waits on the row's unique key
//     until the first one commits (then it is a duplicate) or rolls back (then
//     it runs); the wait is a lock wait, so in the worker's pool it fails
//     after DB_LOCK_TIMEOUT, and the message is parked and tried again;
//   - a handler that fails rolls back the row with its effect, so a retry runs
//     it again. Recording the key before the handler and outside its
//     transaction, as middleware.Deduplicator does, would drop that retry.
//
// onDuplicate, when not nil, is called with the handler name of each
// duplicate skipped.
func Inbox(db *sql.DB, onDuplicate func(handler string)) message.HandlerMiddleware {
	return func(next message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) (_ []*message.Message, err error) {
			ctx := msg.Context()
			handler := message.HandlerNameFromCtx(ctx)
			// An attempt that ran out of time can fail with another error
			// than its deadline: database/sql rolls a transaction back
			// when its context ends, and what follows fails with
			// sql.ErrTxDone. The failure is the deadline's, and says so,
			// so that the message is delivered again, not dead-lettered.
			defer func() {
				if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
					err = fmt.Errorf("%w (%w)", err, ctx.Err())
				}
			}()

			tx, res, err := recordInInbox(ctx, db, handler, msg.UUID)
			if err != nil {
				return nil, fmt.Errorf("inbox: %w", err)
			}
			defer tx.tx.Rollback() //nolint:errcheck // a no-op after Commit

			if n, err := res.RowsAffected(); err != nil {
				return nil, fmt.Errorf("inbox: %w", err)
			} else if n == 0 {
				logging.Note(ctx, "outcome", "duplicate_skipped")
				if onDuplicate != nil {
					onDuplicate(handler)
				}
				return nil, nil
			}

			msg.SetContext(context.WithValue(ctx, txKey{}, tx))
			produced, err := next(msg)
			msg.SetContext(ctx)
			if err != nil {
				return nil, err
			}
			if err := tx.commit(); err != nil {
				// The attempt's timeout may have rolled the transaction
				// back first: then it failed for a passing reason.
				return nil, fmt.Errorf("inbox: %w", errors.Join(err, ctx.Err()))
			}
			return produced, nil
		}
	}
}

// recordInInbox begins the inbox's transaction and records (handler, uuid)
// in it: the result's RowsAffected is 0 when the row was there already. The
// insert is sent with the BEGIN and the writers' lock, in one round trip
// (begin), so it cannot have parameters: handler and uuid are quoted
// literals in it. A NUL byte, which a query's text cannot hold (nor
// PostgreSQL's text), makes the message malformed.
func recordInInbox(ctx context.Context, db *sql.DB, handler, uuid string) (*Tx, sql.Result, error) {
	if strings.IndexByte(handler, 0) >= 0 || strings.IndexByte(uuid, 0) >= 0 {
		return nil, nil, fmt.Errorf("record message in inbox: %w: a NUL byte in its UUID %q", events.ErrMalformed, uuid)
	}
	insert := fmt.Sprintf(`INSERT INTO inbox (handler, message_uuid) VALUES (%s, %s) ON CONFLICT DO NOTHING`,
		pq.QuoteLiteral(handler), pq.QuoteLiteral(uuid))
	tx, res, err := begin(ctx, db, insert)
	if err != nil {
		return nil, nil, fmt.Errorf("record message in inbox: %w", err)
	}
	return tx, res, nil
}

// errNoInbox is the error of a handler that InInbox adapted, run without
// the Inbox middleware: it has no transaction to write in.
var errNoInbox = errors.New("handler run outside the inbox: no transaction to write in")

// InInbox adapts fn, a handler that writes its effect in the inbox's
// transaction, to the signature of a Watermill cqrs event handler
// (cqrs.NewGroupEventHandler(postgres.InInbox(service.OnX))). The handler
// gets the transaction it writes in this way only: as its argument.
func InInbox[E any](fn func(ctx context.Context, tx *Tx, e *E) error) func(ctx context.Context, e *E) error {
	return func(ctx context.Context, e *E) error {
		tx, ok := InboxTx(ctx)
		if !ok {
			return errNoInbox
		}
		return fn(ctx, tx, e)
	}
}

// InboxTx returns the transaction of the message ctx belongs to, for
// middleware inside the inbox (the handler test kit).
func InboxTx(ctx context.Context) (*Tx, bool) {
	tx, ok := ctx.Value(txKey{}).(*Tx)
	return tx, ok
}
