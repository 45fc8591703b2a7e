package orders

import (
	"context"
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
// ErrNotCancellable, an unknown one ErrNotFound. An order the caller does
// not see (Caller.Sees) is ErrNotFound as well, so that ids cannot be
// probed, and nothing is written for it.
//
// With a non-empty idempotencyKey, the key is recorded with the request
// (this order, this reason): the same key again returns the order, the same
// key with another request is ErrIdempotencyConflict. The key is the
// order's customer's, as Place's is: a customer's own, and for an
// administrator cancelling another's order that customer's, so that it
// meets the customer's requests with the same key (an administrator has
// no keys of its own). It counts for the Service's TTL, as Place's does.
func (s *Service) Cancel(ctx context.Context, caller Caller, id, reason, idempotencyKey string) (o Order, cancelled bool, err error) {
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
		var status, customer string
		err := tx.QueryRowContext(ctx,
			`SELECT status, customer_id FROM orders WHERE id = $1 FOR UPDATE`, id).Scan(&status, &customer)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("lock order: %w", err)
		}
		// Another customer's order is an unknown one, before anything is
		// written: no key, no status.
		if !caller.Sees(Order{ID: id, CustomerID: customer}) {
			return ErrNotFound
		}
		// A key is stored only with a change: a cancel that changes
		// nothing leaves none behind, but may not reuse another request's.
		hash := cancelHash(id, reason)
		if changes := status == StatusPending || status == StatusConfirmed; idempotencyKey != "" && changes {
			if replay, err := claimKey(ctx, tx, customer, idempotencyKey, hash, id, s.keyTTL); err != nil || replay != "" {
				return err // a replay writes nothing
			}
		} else if idempotencyKey != "" {
			if err := checkKey(ctx, tx, customer, idempotencyKey, hash, s.keyTTL); err != nil {
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
