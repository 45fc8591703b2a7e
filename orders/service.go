package orders

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/logging"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/validate"
)

// Service places, reads, settles and cancels orders.
type Service struct {
	db      *sql.DB
	settled func(time.Duration)
	keyTTL  time.Duration // how long an idempotency key counts
}

// Option configures a Service.
type Option func(*Service)

// WithSettled makes the Service call observe with the time each order took
// from its commit to its confirmation or rejection, by the database clock.
func WithSettled(observe func(time.Duration)) Option {
	return func(s *Service) { s.settled = observe }
}

// NewService returns a Service that keeps orders in db.
func NewService(db *sql.DB, opts ...Option) *Service {
	s := &Service{db: db, settled: func(time.Duration) {}, keyTTL: DefaultIdempotencyTTL}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// Place validates req and stores it as a pending order together with its
// OrderPlaced event, in one transaction.
//
// With a non-empty idempotencyKey, a request that repeats an earlier one
// (same key, same body) returns the earlier order and created == false; the
// same key with another body is ErrIdempotencyConflict. The key is
// req.CustomerID's: another customer's same key is another key. It counts
// for the Service's TTL (WithIdempotencyTTL); a request with an expired
// key places a new order and takes the key over.
func (s *Service) Place(ctx context.Context, req PlaceRequest, idempotencyKey string) (o Order, created bool, err error) {
	if err := req.Validate(); err != nil {
		return Order{}, false, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Order{}, false, fmt.Errorf("place order: %w", err)
	}
	o = Order{ID: id.String(), CustomerID: req.CustomerID, Items: req.Items, Status: StatusPending}
	hash := requestHash(req)

	var earlier string // the order an idempotency key already names
	err = postgres.InTx(ctx, s.db, func(ctx context.Context, tx *postgres.Tx) error {
		placed, err := insertOrder(ctx, tx, &o, idempotencyKey, hash, s.keyTTL)
		if err != nil {
			return err
		}
		if !placed {
			earlier, err = keptRequest(ctx, tx, o.CustomerID, idempotencyKey, hash)
			return err // a replay writes nothing
		}
		// The event commits with the order or not at all.
		return tx.Publish(ctx, events.OrderPlaced{
			OrderID:    o.ID,
			CustomerID: o.CustomerID,
			Items:      eventItems(o.Items),
			PlacedAt:   o.CreatedAt,
		})
	})
	if err != nil {
		return Order{}, false, fmt.Errorf("place order: %w", err)
	}
	if earlier != "" {
		logging.Note(ctx, "order_id", earlier, "outcome", "replayed")
		o, err := s.Get(ctx, earlier)
		return o, false, err
	}
	logging.Note(ctx, "order_id", o.ID, "outcome", "placed")
	return o, true, nil
}

// insertOrder inserts the order and its items, and with a key records
// first that the order's customer's key names it, in one statement: placed
// is false, and nothing inserted, when the key names an order already and
// has not expired (older than ttl); an expired key is taken over. The key
// goes in before the order, so a concurrent request with the same key
// waits on it until this transaction ends (idempotency.go tells how; the
// key's foreign key to the order is checked at commit).
func insertOrder(ctx context.Context, tx *postgres.Tx, o *Order, key string, hash []byte, ttl time.Duration) (placed bool, err error) {
	skus := make([]string, len(o.Items))
	quantities := make([]int64, len(o.Items))
	for i, it := range o.Items {
		skus[i], quantities[i] = it.SKU, int64(it.Quantity)
	}
	err = tx.QueryRowContext(ctx, `
		WITH k AS (
			INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id)
			SELECT $2::text, $5::text, $6::bytea, $1::uuid WHERE $5::text <> ''
			ON CONFLICT (customer_id, key) DO UPDATE
			SET request_hash = EXCLUDED.request_hash, order_id = EXCLUDED.order_id, created_at = now()
			WHERE idempotency_keys.created_at < now() - $7::bigint * interval '1 millisecond'
			RETURNING true),
		fresh AS (
			SELECT $5::text = '' OR EXISTS (SELECT FROM k) AS ok),
		o AS (
			INSERT INTO orders (id, customer_id) SELECT $1::uuid, $2::text FROM fresh WHERE ok
			RETURNING created_at, updated_at),
		i AS (
			INSERT INTO order_items (order_id, position, sku, quantity)
			SELECT $1::uuid, t.position, t.sku, t.quantity
			FROM fresh, unnest($3::text[], $4::int[]) WITH ORDINALITY AS t(sku, quantity, position)
			WHERE fresh.ok)
		SELECT created_at, updated_at FROM o`,
		o.ID, o.CustomerID, pq.Array(skus), pq.Array(quantities), key, hash, ttl.Milliseconds(),
	).Scan(&o.CreatedAt, &o.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("insert order: %w", err)
	}
	return true, nil
}

// Get returns the order with id, or ErrNotFound. An id that is not a UUID
// in its 36-character form names no order.
func (s *Service) Get(ctx context.Context, id string) (Order, error) {
	id, ok := validate.UUID(id)
	if !ok {
		return Order{}, ErrNotFound
	}
	o := Order{ID: id}
	var reason sql.NullString
	var cancelledAt sql.NullTime
	err := s.db.QueryRowContext(ctx, `
		SELECT customer_id, status, reason, created_at, updated_at, cancelled_at
		FROM orders WHERE id = $1`, id,
	).Scan(&o.CustomerID, &o.Status, &reason, &o.CreatedAt, &o.UpdatedAt, &cancelledAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Order{}, ErrNotFound
	}
	if err != nil {
		return Order{}, fmt.Errorf("get order: %w", err)
	}
	o.Reason, o.CancelledAt = reason.String, cancelledAt.Time

	rows, err := s.db.QueryContext(ctx,
		`SELECT sku, quantity FROM order_items WHERE order_id = $1 ORDER BY position`, id)
	if err != nil {
		return Order{}, fmt.Errorf("get order items: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var it Item
		if err := rows.Scan(&it.SKU, &it.Quantity); err != nil {
			return Order{}, fmt.Errorf("get order items: %w", err)
		}
		o.Items = append(o.Items, it)
	}
	if err := rows.Err(); err != nil {
		return Order{}, fmt.Errorf("get order items: %w", err)
	}
	return o, nil
}
