package main

import (
	"context"
	"database/sql"
	"fmt"
)

// pipelineResult is the raw limit of the whole pipeline: the three
// business transactions of one order, run together by pgbench in equal
// numbers, with none of the application around them.
type pipelineResult struct {
	*rawResult
	perSecond float64 // orders: tps ÷ 3
}

// settleScript is the transaction the orders handler commits for a
// StockReserved, statement for statement: the outbox writers' lock, the
// inbox row, the update of the order from pending to confirmed (or, when
// it is settled already, the read of its status), and the commit. It
// settles one of the pending orders the measurement placed beforehand,
// whose ids are the numbers 1 to %[2]d. %[1]d is the writers' lock.
const settleScript = `\set k random(1, %[2]d)
BEGIN;
SELECT pg_advisory_xact_lock_shared(%[1]d);
INSERT INTO inbox (handler, message_uuid) VALUES ('orders.settle', gen_random_uuid()::text)
  ON CONFLICT DO NOTHING;
WITH upd AS (
    UPDATE orders
    SET status = 'confirmed', reason = NULLIF('', ''), updated_at = clock_timestamp()
    WHERE id = lpad(to_hex(:k), 32, '0')::uuid AND status = 'pending'
    RETURNING status, EXTRACT(EPOCH FROM updated_at - created_at) AS took)
SELECT status, true, took FROM upd
UNION ALL
SELECT status, false, 0 FROM orders WHERE id = lpad(to_hex(:k), 32, '0')::uuid AND NOT EXISTS (SELECT 1 FROM upd);
COMMIT;
`

// pendingOrders is how many pending orders the settlement script draws
// from: far more than a run settles, so that nearly every draw finds its
// order pending, as the handler does.
const pendingOrders = 100_000

// measurePipeline runs placement, reservation and settlement at 1:1:1 from
// opts.clients clients: what one order costs the database, as often as it
// can be done on this machine.
func measurePipeline(ctx context.Context, st *stage, rep *report) error {
	db, err := st.freshDatabase(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := fillForPipeline(ctx, db, st.opts.skus); err != nil {
		return err
	}
	if err := st.checkpoint(ctx); err != nil {
		return err
	}
	settle := pgScript{"settle_order.sql", fmt.Sprintf(settleScript, writersLock, pendingOrders), 1}
	r, err := runPgbench(ctx, st, st.opts.clients, placeScript(st.opts.skus), reserveStockScript(st.opts.skus), settle)
	if err != nil {
		return err
	}
	rep.pipeline = &pipelineResult{rawResult: r, perSecond: r.tps / 3}
	return nil
}

// fillForPipeline gives every SKU stockUnits units and places the pending
// orders that the settlement script settles, two items each, as the
// application stores them.
func fillForPipeline(ctx context.Context, db *sql.DB, skus int) error {
	_, err := db.ExecContext(ctx, `
		INSERT INTO stock (sku, available)
		SELECT 'SKU-' || lpad(i::text, 3, '0'), $2 FROM generate_series(0, $1 - 1) AS i`,
		skus, stockUnits)
	if err != nil {
		return fmt.Errorf("set stock: %w", err)
	}
	_, err = db.ExecContext(ctx, `
		WITH o AS (
			INSERT INTO orders (id, customer_id)
			SELECT lpad(to_hex(i), 32, '0')::uuid, 'pipeline-' || (i % 1000) FROM generate_series(1, $1) AS i
			RETURNING id)
		INSERT INTO order_items (order_id, position, sku, quantity)
		SELECT id, p, 'SKU-' || lpad(((get_byte(uuid_send(id), 15) + p) % $2)::text, 3, '0'), 1
		FROM o, generate_series(1, 2) AS p`,
		pendingOrders, skus)
	if err != nil {
		return fmt.Errorf("place pending orders: %w", err)
	}
	if _, err := db.ExecContext(ctx, `VACUUM ANALYZE`); err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	return nil
}

// pipelineRate is the raw pipeline's orders/s that the open loops take
// fractions of: -pipeline when given, else the measured one, measured now
// if it was not yet.
func pipelineRate(ctx context.Context, st *stage, rep *report) (float64, error) {
	if st.opts.pipelineRate > 0 {
		return float64(st.opts.pipelineRate), nil
	}
	if rep.pipeline == nil {
		if err := measurePipeline(ctx, st, rep); err != nil {
			return 0, fmt.Errorf("measure the raw pipeline first: %w", err)
		}
	}
	return rep.pipeline.perSecond, nil
}
