package notifications_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/google/uuid"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/notifications"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/worker"
	"github.com/orderstream/orderstream/worker/handlertest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestService_OnOrderConfirmed(t *testing.T) {
	db := testenv.OwnDB(t)
	kit := handlertest.New(t, db, worker.Subscription{
		Name: "notifications.order_confirmed", Stream: events.StreamOrderOutcomes, Group: "notifications",
		Handlers: []cqrs.GroupEventHandler{
			cqrs.NewGroupEventHandler(postgres.InInbox(notifications.Service{}.OnOrderConfirmed)),
		},
	})
	order := uuid.NewString()

	// Once, again with the same UUID, and concurrently: one notification.
	kit.Deliver(events.OrderConfirmed{OrderID: order, CustomerID: "c-1", ConfirmedAt: time.Now()})

	var customer, kind string
	err := db.QueryRow(`SELECT customer_id, kind FROM notifications WHERE order_id = $1`, order).Scan(&customer, &kind)
	if err != nil || customer != "c-1" || kind != "order_confirmed" {
		t.Errorf("notification = %q %q (%v), want c-1's order_confirmed", customer, kind, err)
	}
}
