package inventory

import (
	"context"
	"fmt"
	"time"

	"github.com/lib/pq"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/logging"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/validate"
)

// OnOrderCancelled gives back what the order holds: its reservations are
// removed and their units go from reserved back to available, in the
// transaction that records the release and announces it (StockReleased,
// with the items given back; none when the order held nothing). Should
// the order's OrderPlaced come after, it finds the release and reserves
// nothing. A release is done once: another OrderCancelled of the same
// order changes nothing and announces nothing.
func (s *Service) OnOrderCancelled(ctx context.Context, tx *postgres.Tx, e *events.OrderCancelled) error {
	again, err := lockOrder(ctx, tx, e.OrderID)
	if err != nil {
		return err
	}
	if again {
		logging.Note(ctx, "order_id", e.OrderID, "outcome", "already_released")
		return nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO stock_releases (order_id) VALUES ($1)`, e.OrderID); err != nil {
		return fmt.Errorf("record release: %w", err)
	}
	released, err := release(ctx, tx, e.OrderID)
	if err != nil {
		return err
	}
	logging.Note(ctx, "order_id", e.OrderID, "outcome", "released", "items", len(released))
	return tx.Publish(ctx, events.StockReleased{OrderID: e.OrderID, Items: released})
}

// release removes the reservations of the order and gives their units back,
// and returns them (none when it holds nothing).
func release(ctx context.Context, tx *postgres.Tx, orderID string) ([]events.Item, error) {
	rows, err := tx.QueryContext(ctx,
		`SELECT sku, quantity FROM reservations WHERE order_id = $1 ORDER BY sku`, orderID)
	if err != nil {
		return nil, fmt.Errorf("read reservation: %w", err)
	}
	defer rows.Close()
	items := []events.Item{}
	for rows.Next() {
		var it events.Item
		if err := rows.Scan(&it.SKU, &it.Quantity); err != nil {
			return nil, fmt.Errorf("read reservation: %w", err)
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read reservation: %w", err)
	}
	if len(items) == 0 {
		return items, nil
	}
	skus := make([]string, len(items))
	for i, it := range items {
		skus[i] = it.SKU
	}
	if _, err := tx.ExecContext(ctx, stockInSKUOrder("$1"), pq.Array(skus)); err != nil {
		return nil, fmt.Errorf("lock stock: %w", postgres.Held(err, skus...))
	}
	_, err = tx.ExecContext(ctx, `
		WITH r AS (
			DELETE FROM reservations WHERE order_id = $1 RETURNING sku, quantity)
		UPDATE stock
		SET available = stock.available + r.quantity,
		    reserved = stock.reserved - r.quantity,
		    updated_at = now()
		FROM r WHERE stock.sku = r.sku`, orderID)
	if err != nil {
		return nil, fmt.Errorf("release stock: %w", err)
	}
	return items, nil
}

// orderLock is the class of the advisory locks that make the placement and
// the cancellation of one order take turns in the inventory (the order's
// lock is this class and a hash of its id; a collision only makes two
// orders wait for each other).
const orderLock = 0x6f73_7404

// lockOrder takes the order's lock for the rest of tx, before any stock
// row, and reports whether the order's cancellation was handled already.
// Without it, a cancellation that finds no reservation yet could commit
// while the order's reservation is being made, and that reservation
// would outlive it.
func lockOrder(ctx context.Context, tx *postgres.Tx, orderID string) (cancelled bool, err error) {
	if err := takeOrderLock(ctx, tx, orderID); err != nil {
		return false, err
	}
	// A statement after the lock: it sees what the transaction that held
	// the lock committed.
	if err = tx.QueryRowContext(ctx, `SELECT `+releasedCheck, orderID).Scan(&cancelled); err != nil {
		return false, fmt.Errorf("read release: %w", err)
	}
	return cancelled, nil
}

// takeOrderLock takes the order's lock (orderLock) for the rest of tx.
func takeOrderLock(ctx context.Context, tx *postgres.Tx, orderID string) error {
	if _, ok := validate.UUID(orderID); !ok {
		return fmt.Errorf("%w: order id %q", events.ErrMalformed, orderID)
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))`, orderLock, orderID); err != nil {
		return fmt.Errorf("lock order: %w", err)
	}
	return nil
}

// releasedCheck is true when the order, $1, has had its stock released.
const releasedCheck = `EXISTS (SELECT 1 FROM stock_releases WHERE order_id = $1)`

// lockKeyReleases is the advisory lock of ForgetReleases: one process at a
// time forgets releases.
const lockKeyReleases int64 = 0x6f7374_0005

// ForgetReleases deletes the records of releases made longer ago than
// retention, in batches, and returns how many went. A release record makes
// a second OrderCancelled of its order give nothing back, and an
// OrderPlaced handled after it reserve nothing; each inbox already drops
// a redelivery for INBOX_RETENTION, and an event older than that may take
// effect again whatever is kept (backfill refuses one): INBOX_RETENTION is
// the retention to pass.
func (s *Service) ForgetReleases(ctx context.Context, retention time.Duration) (int64, error) {
	n, err := postgres.DeleteInBatches(ctx, s.db, lockKeyReleases, 1000, `
		DELETE FROM stock_releases WHERE order_id = ANY(ARRAY(
			SELECT order_id FROM stock_releases
			WHERE released_at < now() - $1::bigint * interval '1 millisecond'
			LIMIT $2))`, retention.Milliseconds())
	if err != nil {
		return n, fmt.Errorf("forget stock releases: %w", err)
	}
	return n, nil
}
