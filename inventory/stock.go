// Package inventory owns stock: how many units of each SKU can still be
// reserved and how many orders hold, and the reservation of an order's items,
// all of them or none.
package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/orderstream/orderstream/logging"
	"github.com/orderstream/orderstream/validate"
)

// MaxAvailable is the most units of one SKU that stock can hold.
const MaxAvailable = 1_000_000_000

// ErrNotFound means the SKU has no stock record.
var ErrNotFound = errors.New("sku not found")

// Stock is the stock of one SKU. Available units can still be reserved;
// reserved units are held by orders.
type Stock struct {
	SKU       string
	Available int
	Reserved  int
}

// Service sets, reads and reserves stock.
type Service struct {
	db *sql.DB
}

// NewService returns a Service that keeps stock in db.
func NewService(db *sql.DB) *Service {
	return &Service{db: db}
}

// Set sets the units of sku that can still be reserved; what orders already
// hold stays reserved.
func (s *Service) Set(ctx context.Context, sku string, available int) (Stock, error) {
	var errs validate.Errors
	if !validate.SKU(sku) {
		errs.Add("sku", "must be 1 to %d characters of A-Z a-z 0-9 . _ -", validate.MaxSKULen)
	}
	if available < 0 || available > MaxAvailable {
		errs.Add("available", "must be 0 to %d", MaxAvailable)
	}
	if err := errs.Err(); err != nil {
		return Stock{}, err
	}
	st := Stock{SKU: sku}
	err := s.db.QueryRowContext(ctx, `
		INSERT INTO stock (sku, available) VALUES ($1, $2)
		ON CONFLICT (sku) DO UPDATE SET available = excluded.available, updated_at = now()
		RETURNING available, reserved`, sku, available).Scan(&st.Available, &st.Reserved)
	if err != nil {
		return Stock{}, fmt.Errorf("set stock: %w", err)
	}
	logging.Note(ctx, "sku", sku, "available", st.Available, "reserved", st.Reserved)
	return st, nil
}

// Get returns the stock of sku, or ErrNotFound.
func (s *Service) Get(ctx context.Context, sku string) (Stock, error) {
	if !validate.SKU(sku) {
		return Stock{}, ErrNotFound
	}
	st := Stock{SKU: sku}
	err := s.db.QueryRowContext(ctx,
		`SELECT available, reserved FROM stock WHERE sku = $1`, sku).Scan(&st.Available, &st.Reserved)
	if errors.Is(err, sql.ErrNoRows) {
		return Stock{}, ErrNotFound
	}
	if err != nil {
		return Stock{}, fmt.Errorf("get stock: %w", err)
	}
	return st, nil
}

// List returns the stock of up to n SKUs, in SKU order.
func (s *Service) List(ctx context.Context, n int) ([]Stock, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT sku, available, reserved FROM stock ORDER BY sku LIMIT $1`, n)
	if err != nil {
		return nil, fmt.Errorf("list stock: %w", err)
	}
	defer rows.Close()
	var out []Stock
	for rows.Next() {
		var st Stock
		if err := rows.Scan(&st.SKU, &st.Available, &st.Reserved); err != nil {
			return nil, fmt.Errorf("list stock: %w", err)
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list stock: %w", err)
	}
	return out, nil
}
