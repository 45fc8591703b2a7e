package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/outbox"
)

func TestCleanOutbox(t *testing.T) {
	t.Parallel()
	db := testenv.OwnDB(t)
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		publish(t, db, ctx, events.OrderPlaced{OrderID: id})
	}
	count := func() (n int) {
		if err := db.QueryRow(`SELECT count(*) FROM watermill_outbox`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	clean := func(retention time.Duration) int64 {
		n, err := outbox.CleanOutbox(ctx, db, retention)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	if n := clean(0); n != 0 {
		t.Errorf("deleted %d rows before any consumer group read the outbox, want 0", n)
	}
	// The forwarder has passed the first two rows' transactions: it is at
	// the third's.
	if _, err := db.Exec(`INSERT INTO watermill_offsets_outbox (consumer_group, offset_acked, last_processed_transaction_id)
		SELECT 'forwarder', "offset", transaction_id FROM watermill_outbox ORDER BY transaction_id DESC LIMIT 1`); err != nil {
		t.Fatal(err)
	}
	if n := clean(time.Hour); n != 0 {
		t.Errorf("deleted %d rows younger than the retention, want 0", n)
	}
	if n := clean(0); n != 2 || count() != 1 {
		t.Errorf("deleted %d rows, %d left; want 2 deleted and the one not passed left", n, count())
	}
}

// TestCleanOutbox_keepsWhatASlowerGroupHasNotPassed: with two consumer
// groups, the rows behind the faster one but not behind the slower one
// stay.
func TestCleanOutbox_keepsWhatASlowerGroupHasNotPassed(t *testing.T) {
	t.Parallel()
	db := testenv.OwnDB(t)
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		publish(t, db, ctx, events.OrderPlaced{OrderID: id})
	}
	// fast is at the third row's transaction, slow at the second's.
	if _, err := db.Exec(`INSERT INTO watermill_offsets_outbox (consumer_group, offset_acked, last_processed_transaction_id)
		SELECT g, "offset", transaction_id FROM (
			SELECT "offset", transaction_id, row_number() OVER (ORDER BY transaction_id) AS n FROM watermill_outbox) r
		JOIN (VALUES ('slow', 2), ('fast', 3)) AS v(g, at) ON r.n = v.at`); err != nil {
		t.Fatal(err)
	}
	n, err := outbox.CleanOutbox(ctx, db, 0)
	if err != nil {
		t.Fatal(err)
	}
	var left int
	if err := db.QueryRow(`SELECT count(*) FROM watermill_outbox`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if n != 1 || left != 2 {
		t.Errorf("deleted %d rows, %d left; want only the row both groups passed deleted", n, left)
	}
}
