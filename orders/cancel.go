package orders

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/logging"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/validate"
)

// MaxCancelReasonLen is the longest a cancellation's reason can be, in
// characters.
const MaxCancelReasonLen = 200

// ErrNotCancellable means the order was rejected: it holds nothing and
// stays rejected.
var ErrNotCancellable = errors.New("a rejected order cannot be cancelled")

// Cancel moves a pending or confirmed order to cancelling, in the
// transaction that writes its OrderCancelled event; the inventory gives back
// what it holds, and OnStockReleased makes it cancelled. It returns the
// order and whether this call cancelled it: an order cancelling or
// cancelled already is returned as it is, a rejected one is
// ErrNotCancellable, an unknown one ErrNotFound.
//
// With a non-empty idempotencyKey, the key is recorded with the request
// (this order, this reason): the same key again returns the order, the same
// key with another request is ErrIdempotencyConflict.
func (s *Service) Cancel(ctx context.Context, id, reason, idempotencyKey string) (o Order, cancelled bool, err error) {
	id, ok := validate.UUID(id)
	if !ok {
		return Order{}, false, ErrNotFound
	}
	var errs validate.Errors
	switch {
	case utf8.RuneCountInString(reason) > MaxCancelReasonLen:
		errs.Add("reason", "must be at most %d characters", MaxCancelReasonLen)
	case !validate.Text(reason):
		errs.Add("reason", validate.TextRule)
	}
	if err := errs.Err(); err != nil {
		return Order{}, false, err
	}
	err = postgres.InTx(ctx, s.db, func(ctx context.Context, tx *postgres.Tx) error {
		// The order's row first: a settlement or another cancel of it waits
		// until this one commits.
		var status string
		err := tx.QueryRowContext(ctx, `SELECT status FROM orders WHERE id = $1 FOR UPDATE`, id).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("lock order: %w", err)
		}
		// A key is stored only with a change: a cancel that changes
		// nothing leaves none behind, but may not reuse another request's.
		if changes := status == StatusPending || status == StatusConfirmed; idempotencyKey != "" && changes {
			if replay, err := claimKey(ctx, tx, idempotencyKey, cancelHash(id, reason), id); err != nil || replay != "" {
				return err // a replay writes nothing
			}
		} else if idempotencyKey != "" {
			if err := checkKey(ctx, tx, idempotencyKey, cancelHash(id, reason)); err != nil {
				return err
			}
		}
		switch status {
		case StatusRejected:
			return ErrNotCancellable
		case StatusCancelling, StatusCancelled:
			return nil
		}
		var at sql.NullTime
		err = tx.QueryRowContext(ctx, `
			UPDATE orders SET status = 'cancelling', updated_at = clock_timestamp()
			WHERE id = $1 RETURNING updated_at`, id).Scan(&at)
		if err != nil {
			return fmt.Errorf("cancel order: %w", err)
		}
		cancelled = true
		// The event commits with the status or not at all.
		return tx.Publish(ctx, events.OrderCancelled{OrderID: id, Reason: reason, CancelledAt: at.Time})
	})
	if err != nil {
		return Order{}, false, fmt.Errorf("cancel order %s: %w", id, err)
	}
	if cancelled {
		logging.Note(ctx, "order_id", id, "outcome", "cancelling")
	} else {
		logging.Note(ctx, "order_id", id, "outcome", "unchanged")
	}
	o, err = s.Get(ctx, id)
	return o, cancelled, err
}

// checkKey returns ErrIdempotencyConflict when key names a request other
// than hash's; a key that names none, or this one, is no conflict.
func checkKey(ctx context.Context, tx *postgres.Tx, key string, hash []byte) error {
	var storedHash []byte
	err := tx.QueryRowContext(ctx, `SELECT request_hash FROM idempotency_keys WHERE key = $1`, key).Scan(&storedHash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("read idempotency key: %w", err)
	case !bytes.Equal(storedHash, hash):
		return ErrIdempotencyConflict
	}
	return nil
}

// cancelHash identifies a cancel request for its Idempotency-Key, apart
// from any request that places an order.
func cancelHash(id, reason string) []byte {
	h := sha256.Sum256([]byte("cancel\x00" + id + "\x00" + reason))
	return h[:]
}

// OnStockReleased makes the cancelling order cancelled, and announces it
// (OrderCancellationCompleted): the inventory holds nothing for it any
// more. An order cancelled already stays as it is.
func (s *Service) OnStockReleased(ctx context.Context, tx *postgres.Tx, e *events.StockReleased) error {
	id, ok := validate.UUID(e.OrderID)
	if !ok {
		return fmt.Errorf("%w: order id %q", events.ErrMalformed, e.OrderID)
	}
	var status, customer string
	var at time.Time
	var changed bool
	err := tx.QueryRowContext(ctx, `
		WITH upd AS (
			UPDATE orders
			SET status = 'cancelled', cancelled_at = clock_timestamp(), updated_at = clock_timestamp()
			WHERE id = $1 AND status = 'cancelling'
			RETURNING status, customer_id, cancelled_at)
		SELECT status, customer_id, cancelled_at, true FROM upd
		UNION ALL
		SELECT status, customer_id, updated_at, false FROM orders WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM upd)`,
		id).Scan(&status, &customer, &at, &changed)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: release of order %s: %w", events.ErrMalformed, id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("mark order %s cancelled: %w", id, err)
	}
	if !changed {
		logging.Note(ctx, "order_id", id, "outcome", "already_"+status)
		return nil
	}
	logging.Note(ctx, "order_id", id, "outcome", StatusCancelled)
	return tx.Publish(ctx, events.OrderCancellationCompleted{OrderID: id, CustomerID: customer, CancelledAt: at})
}
