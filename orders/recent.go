package orders

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Summary is an order as the live page lists it.
type Summary struct {
	ID         string    `json:"id"`
	CustomerID string    `json:"customer_id"`
	Status     string    `json:"status"`
	Reason     string    `json:"reason,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	// SettleMillis is how long the order took from its commit to leaving
	// pending; nil while pending.
	SettleMillis *float64 `json:"settle_ms,omitempty"`
}

// Recent returns the n orders placed last, newest first.
func (s *Service) Recent(ctx context.Context, n int) ([]Summary, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT id, customer_id, status, reason, created_at,
		       CASE WHEN status <> 'pending' THEN EXTRACT(EPOCH FROM updated_at - created_at) * 1000 END
		FROM orders ORDER BY created_at DESC LIMIT $1`, n)
	if err != nil {
		return nil, fmt.Errorf("list recent orders: %w", err)
	}
	defer rows.Close()
	var out []Summary
	for rows.Next() {
		var o Summary
		var reason sql.NullString
		if err := rows.Scan(&o.ID, &o.CustomerID, &o.Status, &reason, &o.CreatedAt, &o.SettleMillis); err != nil {
			return nil, fmt.Errorf("list recent orders: %w", err)
		}
		o.Reason = reason.String
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list recent orders: %w", err)
	}
	return out, nil
}
