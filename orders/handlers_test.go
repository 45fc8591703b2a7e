package orders_test

import (
	"context"
	"database/sql"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/worker"
)

// settleOrders is the orders' entry of handlers.go, of s: what the
// handler tests deliver to through the kit (handlertest).
func settleOrders(s *orders.Service) worker.Subscription {
	return worker.Subscription{Name: "orders.settle", Stream: events.StreamReservations, Group: "orders",
		Handlers: []cqrs.GroupEventHandler{
			cqrs.NewGroupEventHandler(postgres.InInbox(s.OnStockReserved)),
			cqrs.NewGroupEventHandler(postgres.InInbox(s.OnStockRejected)),
			cqrs.NewGroupEventHandler(postgres.InInbox(s.OnStockReleased)),
		}}
}

// handle calls the handler on with e in a transaction of InTx, as the
// inbox does but without its row: to bring an order to a status on the
// package's database, and for the tests of what a handler tells its
// caller apart from its transaction (its notes, its metric).
func handle[E any](ctx context.Context, db *sql.DB, on func(context.Context, *postgres.Tx, *E) error, e E) error {
	return postgres.InTx(ctx, db, func(ctx context.Context, tx *postgres.Tx) error { return on(ctx, tx, &e) })
}
