// Package notifications tells customers what became of their orders: the
// example of a handler added to orderstream. It records a notification
// for each confirmed order, where a real service would send the mail, in
// the transaction of the message's inbox row, so each order is notified
// once however often its OrderConfirmed arrives.
package notifications

import (
	"context"
	"fmt"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/postgres"
)

// Service records the notifications to send.
type Service struct{}

// OnOrderConfirmed records that the customer is to hear that the order is
// confirmed.
func (Service) OnOrderConfirmed(ctx context.Context, tx *postgres.Tx, e *events.OrderConfirmed) error {
	_, err := tx.ExecContext(ctx,
		`INSERT INTO notifications (order_id, customer_id, kind) VALUES ($1, $2, 'order_confirmed')`,
		e.OrderID, e.CustomerID)
	if err != nil {
		return fmt.Errorf("record notification: %w", err)
	}
	return nil
}
