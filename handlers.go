package main

import (
	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/router"
)

// handlers is the one list of message handlers: a handler is registered
// here and nowhere else. The worker subscribes each; the streams they read
// are the ones trimmed, reported by `outbox status`, measured by the lag
// gauges, shown on the live page and open to dead-letter replay.
//
// An entry names the handler's inbox key, its stream, its consumer group
// and the service methods for the stream's event types. A service that
// only handles events can be made in its entry: the services do no I/O
// until called, and the app of an operator command has none of them (it
// only needs the streams).
func (a *app) handlers() []router.Handler {
	return []router.Handler{
		{Name: "inventory.reserve_stock", Stream: events.StreamOrdersPlaced, Group: "inventory",
			On: []router.EventHandler{router.On(a.inventory.OnOrderPlaced), router.On(a.inventory.OnOrderCancelled)}},
		{Name: "orders.settle", Stream: events.StreamReservations, Group: "orders",
			On: []router.EventHandler{router.On(a.orders.OnStockReserved), router.On(a.orders.OnStockRejected),
				router.On(a.orders.OnStockReleased)}},
	}
}
