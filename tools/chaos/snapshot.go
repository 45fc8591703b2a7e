package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/lib/pq"
)

// dbOrder is an order as the database holds it.
type dbOrder struct {
	status string
	reason string
	items  []item
}

type dbStock struct{ available, reserved int }

// snapshot is everything the checks read from the database, read in one
// repeatable-read transaction so that the tables agree with each other.
type snapshot struct {
	keys         map[string]string   // Idempotency-Key → order id, of the placements
	cancelKeys   map[string]string   // Idempotency-Key → order id, of the cancels
	orders       map[string]*dbOrder // by order id
	stock        map[string]dbStock  // by SKU
	reservations map[string][]item   // by order id
	inbox        map[string]int      // rows per handler
	outbox       map[string]int      // events (distinct UUIDs) per event type
}

func readSnapshot(ctx context.Context, db *sql.DB) (*snapshot, error) {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("read snapshot: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	s := &snapshot{
		keys:         map[string]string{},
		cancelKeys:   map[string]string{},
		orders:       map[string]*dbOrder{},
		stock:        map[string]dbStock{},
		reservations: map[string][]item{},
		inbox:        map[string]int{},
		outbox:       map[string]int{},
	}
	reads := []struct {
		what  string
		query string
		row   func(scan func(...any) error) error
	}{
		{"idempotency keys", `SELECT key, order_id::text FROM idempotency_keys`, func(scan func(...any) error) error {
			var k, id string
			err := scan(&k, &id)
			if strings.HasSuffix(k, cancelKeySuffix) {
				s.cancelKeys[k] = id
			} else {
				s.keys[k] = id
			}
			return err
		}},
		{"orders", `SELECT id::text, status, coalesce(reason, '') FROM orders`, func(scan func(...any) error) error {
			var id string
			o := &dbOrder{}
			err := scan(&id, &o.status, &o.reason)
			s.orders[id] = o
			return err
		}},
		{"order items", `SELECT order_id::text, sku, quantity FROM order_items ORDER BY order_id, position`, func(scan func(...any) error) error {
			var id string
			var it item
			if err := scan(&id, &it.SKU, &it.Quantity); err != nil {
				return err
			}
			o, ok := s.orders[id]
			if !ok {
				return fmt.Errorf("item of unknown order %s", id)
			}
			o.items = append(o.items, it)
			return nil
		}},
		{"stock", `SELECT sku, available, reserved FROM stock`, func(scan func(...any) error) error {
			var sku string
			var st dbStock
			err := scan(&sku, &st.available, &st.reserved)
			s.stock[sku] = st
			return err
		}},
		{"reservations", `SELECT order_id::text, sku, quantity FROM reservations`, func(scan func(...any) error) error {
			var id string
			var it item
			err := scan(&id, &it.SKU, &it.Quantity)
			s.reservations[id] = append(s.reservations[id], it)
			return err
		}},
		{"inbox", `SELECT handler, count(*) FROM inbox GROUP BY handler`, func(scan func(...any) error) error {
			var h string
			var n int
			err := scan(&h, &n)
			s.inbox[h] = n
			return err
		}},
		// The forwarder's envelope holds each event's own UUID and
		// metadata. An event is counted once however many rows hold it: a
		// re-drive writes an unsettled order's events again, each with its
		// UUID.
		{"outbox", `SELECT coalesce(payload::jsonb->'metadata'->>'event_type', ''), count(DISTINCT payload::jsonb->>'uuid') FROM ` +
			outboxRows + ` AS o GROUP BY 1`,
			func(scan func(...any) error) error {
				var typ string
				var n int
				err := scan(&typ, &n)
				s.outbox[typ] = n
				return err
			}},
	}
	for _, r := range reads {
		if err := queryRows(ctx, tx, r.query, r.row); err != nil {
			return nil, fmt.Errorf("read %s: %w", r.what, err)
		}
	}
	return s, nil
}

func queryRows(ctx context.Context, tx *sql.Tx, query string, row func(scan func(...any) error) error) error {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}

// countPending is how many of the orders ids (nil: of all orders) are
// still pending or cancelling: not settled.
func countPending(ctx context.Context, db *sql.DB, ids []string) (int, error) {
	var n int
	q, args := `SELECT count(*) FROM orders WHERE status IN ('pending', 'cancelling')`, []any{}
	if ids != nil {
		q, args = q+` AND id::text = ANY($1)`, []any{pq.Array(ids)}
	}
	if err := db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count pending orders: %w", err)
	}
	return n, nil
}

// countReserved is how many of the orders ids hold a reservation: the
// inventory handler has reserved their stock.
func countReserved(ctx context.Context, db *sql.DB, ids []string) (int, error) {
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(DISTINCT order_id) FROM reservations WHERE order_id::text = ANY($1)`,
		pq.Array(ids)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count reserved orders: %w", err)
	}
	return n, nil
}

// outboxRows is the payloads of every outbox shard: the tables
// watermill_outbox and watermill_outbox_1 to _15 (migration 00007).
var outboxRows = func() string {
	tables := []string{"SELECT payload FROM watermill_outbox"}
	for shard := 1; shard < 16; shard++ {
		tables = append(tables, fmt.Sprintf("SELECT payload FROM watermill_outbox_%d", shard))
	}
	return "(" + strings.Join(tables, " UNION ALL ") + ")"
}()
