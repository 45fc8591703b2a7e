package inventory_test

import (
	"context"
	"database/sql"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/worker"
)

// reserveStock is the inventory's entry of handlers.go, of s: what the
// handler tests deliver to through the kit (handlertest).
func reserveStock(s *inventory.Service) worker.Subscription {
	return worker.Subscription{Name: "inventory.reserve_stock", Stream: events.StreamOrdersPlaced, Group: "inventory",
		Handlers: []cqrs.GroupEventHandler{
			cqrs.NewGroupEventHandler(postgres.InInbox(s.OnOrderPlaced)),
			cqrs.NewGroupEventHandler(postgres.InInbox(s.OnOrderCancelled)),
		}}
}

// handle calls the handler on with e in a transaction of InTx, as the
// inbox does but without its row: for the tests of how the events of
// several orders, or the placement and the cancellation of one, interleave,
// which the kit's redeliveries of one event do not fit.
func handle[E any](ctx context.Context, db *sql.DB, on func(context.Context, *postgres.Tx, *E) error, e E) error {
	return postgres.InTx(ctx, db, func(ctx context.Context, tx *postgres.Tx) error { return on(ctx, tx, &e) })
}
