package outbox_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/postgres"
)

// TestResend: the rows of an order that the forwarder has passed are
// written again, in their order, each event with its UUID; the rows it has
// not passed, and other orders' rows, are left as they are.
func TestResend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.OwnDB(t)
	a, b, none := uuid.NewString(), uuid.NewString(), uuid.NewString()
	items := []events.Item{{SKU: "SKU-1", Quantity: 1}}
	publish := func(e events.Event) {
		t.Helper()
		if err := postgres.InTx(ctx, db, func(ctx context.Context, tx *postgres.Tx) error { return tx.Publish(ctx, e) }); err != nil {
			t.Fatal(err)
		}
	}
	// uuids are the event UUIDs of the outbox's rows, oldest first.
	uuids := func() []string {
		t.Helper()
		rows, err := db.Query(`SELECT payload FROM watermill_outbox ORDER BY transaction_id, "offset"`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var payload []byte
			var env outbox.Envelope
			if err := rows.Scan(&payload); err != nil || json.Unmarshal(payload, &env) != nil {
				t.Fatalf("row %s: %v", payload, err)
			}
			out = append(out, env.UUID)
		}
		return out
	}

	publish(events.OrderPlaced{OrderID: a, CustomerID: "c", Items: items})
	publish(events.StockReserved{OrderID: a, Items: items})
	// The forwarder has passed the two rows so far.
	if _, err := db.Exec(`
		INSERT INTO watermill_offsets_outbox (consumer_group, offset_acked, last_processed_transaction_id)
		SELECT 'forwarder', "offset", transaction_id FROM watermill_outbox ORDER BY transaction_id DESC, "offset" DESC LIMIT 1
		ON CONFLICT (consumer_group) DO UPDATE
		SET offset_acked = excluded.offset_acked, last_processed_transaction_id = excluded.last_processed_transaction_id`); err != nil {
		t.Fatal(err)
	}
	publish(events.OrderPlaced{OrderID: b, CustomerID: "c", Items: items})
	publish(events.OrderCancelled{OrderID: a})
	before := uuids()

	var got []outbox.Resent
	err := postgres.InTx(ctx, db, func(ctx context.Context, tx *postgres.Tx) (err error) {
		got, err = outbox.Resend(ctx, tx, []string{a, b, none})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []outbox.Resent{{Key: a, Rows: 2, InFlight: 1}, {Key: b, InFlight: 1}, {Key: none}}
	if !slices.Equal(got, want) {
		t.Errorf("Resend = %+v, want %+v", got, want)
	}
	if after := uuids(); !slices.Equal(after, append(before, before[0], before[1])) {
		t.Errorf("outbox after = %v, want %v and then the first two again", after, before)
	}
}
