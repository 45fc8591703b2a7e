package inventory

import (
	"context"
	"fmt"

	"github.com/lib/pq"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/logging"
	"github.com/orderstream/orderstream/postgres"
)

// OnOrderPlaced reserves every item of the order or none, and announces the
// outcome (StockReserved or StockRejected) through the outbox in the same
// transaction. An order whose cancellation was handled first reserves
// nothing and announces nothing: its StockReleased is out already.
func (s *Service) OnOrderPlaced(ctx context.Context, tx *postgres.Tx, e *events.OrderPlaced) error {
	if err := checkItems(e.Items); err != nil {
		return err
	}
	skus := make([]string, len(e.Items))
	quantities := make([]int64, len(e.Items))
	for i, it := range e.Items {
		skus[i], quantities[i] = it.SKU, int64(it.Quantity)
	}
	if err := takeOrderLock(ctx, tx, e.OrderID); err != nil {
		return err
	}
	cancelled, available, err := lockStockUnlessReleased(ctx, tx, e.OrderID, skus)
	if err != nil {
		return err
	}
	if cancelled {
		logging.Note(ctx, "order_id", e.OrderID, "outcome", "cancelled_before")
		return nil
	}
	if reason := Decide(e.Items, available); reason != "" {
		logging.Note(ctx, "order_id", e.OrderID, "outcome", "rejected", "reason", reason)
		return tx.Publish(ctx, events.StockRejected{OrderID: e.OrderID, Items: e.Items, Reason: reason})
	}
	_, err = tx.ExecContext(ctx, `
		WITH r AS (
			SELECT * FROM unnest($2::text[], $3::int[]) AS r(sku, quantity)),
		upd AS (
			UPDATE stock
			SET available = stock.available - r.quantity,
			    reserved = stock.reserved + r.quantity,
			    updated_at = now()
			FROM r WHERE stock.sku = r.sku)
		INSERT INTO reservations (order_id, sku, quantity)
		SELECT $1, sku, quantity FROM r`,
		e.OrderID, pq.Array(skus), pq.Array(quantities))
	if err != nil {
		return fmt.Errorf("reserve stock: %w", err)
	}
	logging.Note(ctx, "order_id", e.OrderID, "outcome", "reserved")
	return tx.Publish(ctx, events.StockReserved{OrderID: e.OrderID, Items: e.Items})
}

// stockInSKUOrder selects the stock rows of the SKUs in the text[]
// parameter skus (say "$1"), locked in SKU order. Every transaction that
// locks stock rows takes them this way, so that two over overlapping SKUs
// cannot deadlock.
func stockInSKUOrder(skus string) string {
	return `SELECT sku, available FROM stock WHERE sku = ANY(` + skus + `) ORDER BY sku FOR UPDATE`
}

// reserveLockQuery is lockOrder's release check ($1, the order) and the
// stock rows of the SKUs in $2, locked, in one statement.
var reserveLockQuery = `
	SELECT ` + releasedCheck + `,
	       COALESCE(array_agg(s.sku ORDER BY s.sku), '{}'),
	       COALESCE(array_agg(s.available ORDER BY s.sku), '{}')
	FROM (` + stockInSKUOrder("$2") + `) AS s`

// lockStockUnlessReleased is lockOrder's release check and the stock lock
// in one statement, a round trip less for every reservation: it reports
// whether the order's cancellation was handled already (a statement after
// the order's lock, so it sees what the lock's last holder committed), and
// otherwise returns the available units of the stock rows of skus, which
// it locks in SKU order; unknown SKUs are absent from the map. A released
// order's rows are locked too, until its transaction ends, which changes
// nothing: the order's lock, taken first, orders it with its cancellation
// anyway.
func lockStockUnlessReleased(ctx context.Context, tx *postgres.Tx, orderID string, skus []string) (released bool, available map[string]int, err error) {
	var locked []string
	var units []int64
	err = tx.QueryRowContext(ctx, reserveLockQuery, orderID, pq.Array(skus)).
		Scan(&released, pq.Array(&locked), pq.Array(&units))
	if err != nil {
		return false, nil, fmt.Errorf("lock stock: %w", postgres.Held(err, skus...))
	}
	if released {
		return true, nil, nil
	}
	available = make(map[string]int, len(locked))
	for i, sku := range locked {
		available[sku] = int(units[i])
	}
	return false, available, nil
}
