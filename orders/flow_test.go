package orders_test

import (
	"context"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/orders"
)

// TestReadFlow counts the orders placed and those confirmed or rejected
// within the window, with the settle percentiles of the latter, and leaves
// out what lies outside it or was cancelled.
func TestReadFlow(t *testing.T) {
	t.Parallel()
	db := testenv.OwnDB(t)
	ctx := context.Background()
	// Orders whose created_at and updated_at are offsets from now, in
	// seconds: the window is (now-60s, now-2s].
	insert := func(status string, createdAgo, settleMillis float64) {
		t.Helper()
		reason := any(nil)
		if status == "rejected" {
			reason = "insufficient_stock"
		}
		_, err := db.ExecContext(ctx, `
			INSERT INTO orders (id, customer_id, status, reason, created_at, updated_at, cancelled_at)
			VALUES (gen_random_uuid(), 'flow', $1, $2,
			        now() - $3 * interval '1 second',
			        now() - $3 * interval '1 second' + $4 * interval '1 millisecond',
			        CASE WHEN $1 = 'cancelled' THEN now() END)`,
			status, reason, createdAgo, settleMillis)
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 98 {
		insert("confirmed", 30, float64(10+i%2)) // 49 at 10 ms, 49 at 11 ms
	}
	insert("rejected", 30, 500)
	insert("confirmed", 30, 900)
	insert("cancelled", 20, 5)    // settled by its cancellation: not counted as settled
	insert("pending", 10, 0)      // placed, not settled
	insert("confirmed", 90, 10)   // placed and settled before the window
	insert("confirmed", 0.5, 0.1) // within flowLag of now: the next window's

	var since time.Time
	if err := db.QueryRowContext(ctx, `SELECT now() - interval '60 seconds'`).Scan(&since); err != nil {
		t.Fatal(err)
	}
	f, err := orders.ReadFlow(ctx, db, since)
	if err != nil {
		t.Fatal(err)
	}
	if f.Placed != 102 || f.Settled != 100 {
		t.Errorf("placed %d, settled %d; want 102 and 100", f.Placed, f.Settled)
	}
	if !f.HasSettleFigures || f.SettleP50 < 10*time.Millisecond || f.SettleP50 > 11*time.Millisecond {
		t.Errorf("p50 %v (figures %v), want 10 to 11 ms", f.SettleP50, f.HasSettleFigures)
	}
	if f.SettleP99 < 500*time.Millisecond || f.SettleP99 > 900*time.Millisecond {
		t.Errorf("p99 %v, want between the two slow orders' 500 and 900 ms", f.SettleP99)
	}
	if !f.Since.Equal(since) || f.Seconds() < 57 || f.Seconds() > 59 {
		t.Errorf("window %v to %v (%.1f s), want from %v to 2 s before now", f.Since, f.Until, f.Seconds(), since)
	}

	next, err := orders.ReadFlow(ctx, db, f.Until)
	if err != nil {
		t.Fatal(err)
	}
	if next.Placed != 0 || next.Settled != 0 {
		t.Errorf("next window: placed %d, settled %d; want none: it starts where the first ended, and the newest order is still within flowLag", next.Placed, next.Settled)
	}
	empty, err := orders.ReadFlow(ctx, db, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if empty.HasSettleFigures || empty.Seconds() != 1 {
		t.Errorf("the first window: %+v, want a second with nothing settled", empty)
	}
}
