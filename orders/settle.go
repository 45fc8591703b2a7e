package orders

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/logging"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/validate"
)

// OnStockReserved confirms the order whose items were all reserved, and
// announces it (OrderConfirmed).
func (s *Service) OnStockReserved(ctx context.Context, tx *postgres.Tx, e *events.StockReserved) error {
	return s.settle(ctx, tx, e.OrderID, StatusConfirmed, "")
}

// OnStockRejected rejects the order that could not be reserved, with the
// inventory's reason, and announces it (OrderRejected).
func (s *Service) OnStockRejected(ctx context.Context, tx *postgres.Tx, e *events.StockRejected) error {
	if e.Reason != events.ReasonInsufficientStock && e.Reason != events.ReasonUnknownSKU {
		return fmt.Errorf("%w: unknown rejection reason %q", events.ErrMalformed, e.Reason)
	}
	return s.settle(ctx, tx, e.OrderID, StatusRejected, e.Reason)
}

// settle moves a pending order to status, in tx, and announces its outcome
// in the same transaction. An order that is no longer pending stays as it
// is and nothing is announced: an order settles once.
func (s *Service) settle(ctx context.Context, tx *postgres.Tx, id, status, reason string) error {
	id, ok := validate.UUID(id)
	if !ok {
		return fmt.Errorf("%w: order id %q", events.ErrMalformed, id)
	}
	var current, customer string
	var changed bool
	var at time.Time
	var took float64 // seconds from commit to now, by the database clock
	err := tx.QueryRowContext(ctx, `
		WITH upd AS (
			UPDATE orders
			SET status = $2, reason = NULLIF($3, ''), updated_at = clock_timestamp()
			WHERE id = $1 AND status = 'pending'
			RETURNING status, customer_id, updated_at, EXTRACT(EPOCH FROM updated_at - created_at) AS took)
		SELECT status, customer_id, updated_at, true, took FROM upd
		UNION ALL
		SELECT status, customer_id, updated_at, false, 0 FROM orders WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM upd)`,
		id, status, reason).Scan(&current, &customer, &at, &changed, &took)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: settle order %s: %w", events.ErrMalformed, id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("settle order %s: %w", id, err)
	}
	if !changed {
		logging.Note(ctx, "order_id", id, "outcome", "already_"+current)
		return nil
	}
	logging.Note(ctx, "order_id", id, "outcome", status)
	var outcome events.Event = events.OrderConfirmed{OrderID: id, CustomerID: customer, ConfirmedAt: at}
	if status == StatusRejected {
		logging.Note(ctx, "reason", reason)
		outcome = events.OrderRejected{OrderID: id, CustomerID: customer, Reason: reason, RejectedAt: at}
	}
	// Observed once settled for good: a rolled-back attempt settles nothing.
	tx.AfterCommit(func() { s.settled(time.Duration(took * float64(time.Second))) })
	return tx.Publish(ctx, outcome)
}
