package inventory_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/logging"
	"github.com/orderstream/orderstream/postgres"
)

func TestService_Set_acceptsTheLimits(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, available := range []int{0, inventory.MaxAvailable} {
		sku := testenv.Unique("SKU")
		if _, err := f.s.Set(f.ctx, sku, available); err != nil {
			t.Errorf("Set(%d) = %v, want it accepted", available, err)
		}
	}
}

// The reservation and its announcement commit together: when the outbox
// write fails, the handler fails and the stock is as it was.
func TestService_OnOrderPlaced_leavesStockAsItWasWhenTheOutboxWriteFails(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	sku := f.sku(5)
	// One connection, on which a temporary table shadows the outbox table
	// with columns the publisher's insert does not fit.
	one, err := postgres.Open(f.ctx, testenv.DatabaseURL(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if _, err := one.Exec(`CREATE TEMP TABLE watermill_outbox (broken int)`); err != nil {
		t.Fatal(err)
	}
	s := inventory.NewService(one)
	err = handle(f.ctx, one, s.OnOrderPlaced, events.OrderPlaced{OrderID: uuid.NewString(), Items: []events.Item{{SKU: sku, Quantity: 2}}})
	if err == nil || !strings.Contains(err.Error(), "outbox") {
		t.Errorf("OnOrderPlaced() = %v, want the outbox write's error", err)
	}
	f.want(sku, 5, 0)
}

// A reservation waits for a concurrent change of its stock rows and decides
// on the committed result: it reads them FOR UPDATE. Without the lock it
// would decide on what it read before the other transaction committed.
func TestService_OnOrderPlaced_decidesOnStockLockedForItself(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	db := testenv.DB(t)
	sku := f.sku(1)

	// Another transaction takes the last unit, and holds the row.
	other, err := db.BeginTx(f.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback()
	if _, err := other.Exec(`UPDATE stock SET available = 0, reserved = reserved + 1 WHERE sku = $1`, sku); err != nil {
		t.Fatal(err)
	}
	var otherPID int
	if err := other.QueryRow(`SELECT pg_backend_pid()`).Scan(&otherPID); err != nil {
		t.Fatal(err)
	}

	id := uuid.NewString()
	done := make(chan error, 1)
	go func() {
		done <- handle(f.ctx, f.db, f.s.OnOrderPlaced, events.OrderPlaced{OrderID: id, Items: []events.Item{{SKU: sku, Quantity: 1}}})
	}()
	// Wait until the reservation is blocked on the other transaction
	// (reading the row with the lock, or, without it, updating it).
	testenvEventually(t, func() bool {
		select {
		case err := <-done:
			t.Fatalf("OnOrderPlaced() = %v before the other transaction ended", err)
		default:
		}
		var n int
		err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, otherPID).Scan(&n)
		return err == nil && n > 0
	})
	if err := other.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("OnOrderPlaced() = %v, want the order rejected", err)
	}
	if typ, reason := f.outcome(id); typ != "StockRejected" || reason != events.ReasonInsufficientStock {
		t.Errorf("outcome = %s %q, want StockRejected insufficient_stock", typ, reason)
	}
	f.want(sku, 0, 1)
}

func TestService_OnOrderPlaced_notesTheOutcome(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	sku := f.sku(1)
	for _, c := range []struct {
		quantity int
		want     []any
	}{
		{1, []any{"outcome", "reserved"}},
		{1, []any{"outcome", "rejected", "reason", events.ReasonInsufficientStock}},
	} {
		ctx, notes := logging.WithNotes(context.Background())
		e := events.OrderPlaced{OrderID: uuid.NewString(), Items: []events.Item{{SKU: sku, Quantity: c.quantity}}}
		if err := handle(ctx, f.db, f.s.OnOrderPlaced, e); err != nil {
			t.Fatal(err)
		}
		if n := notes(); len(n) < 2 || !slices.Equal(n[2:], c.want) {
			t.Errorf("notes = %v, want order_id then %v", n, c.want)
		}
	}
}

func testenvEventually(t *testing.T, ok func() bool) {
	t.Helper()
	for range 1500 { // 30 s
		if ok() {
			return
		}
		sleep()
	}
	t.Fatal("timed out waiting for the reservation to wait on the other transaction")
}

func sleep() { time.Sleep(20 * time.Millisecond) }
