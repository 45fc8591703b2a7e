package main

import (
	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/notifications"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/worker"
)

// subscriptions is the one list of message handlers: Watermill cqrs event
// handlers, in groups that each read one stream as one consumer group. A
// handler is registered here and nowhere else. The worker subscribes each
// group; the streams they read are the ones trimmed, reported by `outbox
// status`, measured by the lag gauges, shown on the live page and open to
// dead-letter replay and backfill.
//
// Each handler writes its effect in the transaction of its message's inbox
// row, which it is handed as an argument (postgres.InInbox): the effect
// happens once per message however often it is delivered. A service that
// only handles events can be made in its entry: the services do no I/O
// until called, and the app of an operator command has none of them (it
// only needs the streams), so the list is data it can read.
func (a *app) subscriptions() []worker.Subscription {
	return []worker.Subscription{
		{Name: "inventory.reserve_stock", Stream: events.StreamOrdersPlaced, Group: "inventory",
			Handlers: []cqrs.GroupEventHandler{
				cqrs.NewGroupEventHandler(postgres.InInbox(a.inventory.OnOrderPlaced)),
				cqrs.NewGroupEventHandler(postgres.InInbox(a.inventory.OnOrderCancelled)),
			}},
		{Name: "orders.settle", Stream: events.StreamReservations, Group: "orders",
			Handlers: []cqrs.GroupEventHandler{
				cqrs.NewGroupEventHandler(postgres.InInbox(a.orders.OnStockReserved)),
				cqrs.NewGroupEventHandler(postgres.InInbox(a.orders.OnStockRejected)),
				cqrs.NewGroupEventHandler(postgres.InInbox(a.orders.OnStockReleased)),
			}},
		{Name: "notifications.order_confirmed", Stream: events.StreamOrderOutcomes, Group: "notifications",
			Handlers: []cqrs.GroupEventHandler{
				cqrs.NewGroupEventHandler(postgres.InInbox(notifications.Service{}.OnOrderConfirmed)),
			}},
	}
}
