package orders

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
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
	s := &Service{db: db, settled: func(time.Duration) {}}
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
// same key with another body is ErrIdempotencyConflict.
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
		placed, err := insertOrder(ctx, tx, &o, idempotencyKey, hash)
		if err != nil {
			return err
		}
		if !placed {
			earlier, err = keptRequest(ctx, tx, idempotencyKey, hash)
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

// claimKey records that key names order id. When the key already names an
// order, it returns that order's id, or ErrIdempotencyConflict if the key
// came with another request.
func claimKey(ctx context.Context, tx *postgres.Tx, key string, hash []byte, id string) (earlier string, err error) {
	// The key goes in first: a concurrent request with the same key waits
	// on it until this transaction ends. (Its foreign key to the order is
	// checked at commit.)
	res, err := tx.ExecContext(ctx, `
		INSERT INTO idempotency_keys (key, request_hash, order_id) VALUES ($1, $2, $3)
		ON CONFLICT (key) DO NOTHING`, key, hash, id)
	if err != nil {
		return "", fmt.Errorf("record idempotency key: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return "", err
	}
	return keptRequest(ctx, tx, key, hash)
}

// keptRequest returns the order that key names, which it was not recorded
// for just now because it was there already, or ErrIdempotencyConflict if
// the key came with another request (hash). It is a statement of its own,
// so that it sees the row another request committed while this one
// waited on the key.
func keptRequest(ctx context.Context, tx *postgres.Tx, key string, hash []byte) (earlier string, err error) {
	var storedHash []byte
	err = tx.QueryRowContext(ctx,
		`SELECT request_hash, order_id FROM idempotency_keys WHERE key = $1`, key).Scan(&storedHash, &earlier)
	if err != nil {
		return "", fmt.Errorf("read idempotency key: %w", err)
	}
	if !bytes.Equal(storedHash, hash) {
		return "", ErrIdempotencyConflict
	}
	return earlier, nil
}

// insertOrder inserts the order and its items, and with a key records
// first that the key names it, in one statement: placed is false, and
// nothing inserted, when the key names an order already. The key goes in
// before the order, so a concurrent request with the same key waits on it
// until this transaction ends (the key's foreign key to the order is
// checked at commit).
func insertOrder(ctx context.Context, tx *postgres.Tx, o *Order, key string, hash []byte) (placed bool, err error) {
	skus := make([]string, len(o.Items))
	quantities := make([]int64, len(o.Items))
	for i, it := range o.Items {
		skus[i], quantities[i] = it.SKU, int64(it.Quantity)
	}
	err = tx.QueryRowContext(ctx, `
		WITH k AS (
			INSERT INTO idempotency_keys (key, request_hash, order_id)
			SELECT $5::text, $6::bytea, $1::uuid WHERE $5::text <> ''
			ON CONFLICT (key) DO NOTHING
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
		o.ID, o.CustomerID, pq.Array(skus), pq.Array(quantities), key, hash,
	).Scan(&o.CreatedAt, &o.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("insert order: %w", err)
	}
	return true, nil
}

// requestHash identifies a request body for idempotency: two bodies that
// decode to the same request have the same hash.
func requestHash(req PlaceRequest) []byte {
	b, _ := json.Marshal(req) // a struct of strings and ints always encodes
	h := sha256.Sum256(b)
	return h[:]
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
