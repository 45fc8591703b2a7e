package inventory_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/worker/handlertest"
)

// TestService_OnOrderPlaced_theKitCatchesABrokenInbox: the kit's check
// holds on the real handler, not only on the kit's own. With an inbox that
// records every delivery as new (its key dropped), every delivery of an
// OrderPlaced, concurrent or repeated, is handled again: the order is
// rejected, and its rejection announced, once per delivery, and the kit
// reports it.
func TestService_OnOrderPlaced_theKitCatchesABrokenInbox(t *testing.T) {
	t.Parallel()
	f := ownFixture(t)
	if _, err := f.db.ExecContext(f.ctx, `ALTER TABLE inbox DROP CONSTRAINT inbox_pkey`); err != nil {
		t.Fatal(err)
	}
	// Short of stock: the effect is the announcement alone. (A reservation
	// made again would fail on the reservations' key instead.)
	sku := f.sku(1)
	r := &handlertest.Recorder{TB: t}
	published := handlertest.New(r, f.db, reserveStock(f.s)).Deliver(events.OrderPlaced{
		OrderID: uuid.NewString(), CustomerID: "c", Items: []events.Item{{SKU: sku, Quantity: 2}}})
	if len(published) != 4 {
		t.Errorf("the 4 first deliveries published %v, want a StockRejected each", published)
	}
	failures := r.Failures()
	for _, want := range []string{
		"4 deliveries of OrderPlaced", "at once committed the handler's effect 4 times, want once",
		"the second delivery of OrderPlaced", "the concurrent deliveries of OrderPlaced",
		"ran the handler's effect again", "published [StockRejected]", "changed the tables [inbox watermill_outbox",
	} {
		if !strings.Contains(failures, want) {
			t.Errorf("the kit's failures do not say %q:\n%s", want, failures)
		}
	}
	f.want(sku, 1, 0)
}
