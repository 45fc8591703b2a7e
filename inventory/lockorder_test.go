package inventory_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/inventory"
	"github.com/orderstream/orderstream/postgres"
)

// TestService_OnOrderPlaced_locksInSKUOrder: a reservation takes its stock
// row locks in SKU order, whatever the order of its items and of the rows
// on disk, so two orders over the same SKUs cannot deadlock. While another
// session holds the first SKU's row, the reservation waits for it without
// having locked the later SKU.
func TestService_OnOrderPlaced_locksInSKUOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.DB(t)
	// The reservation reads the rows with a sequential scan, in their order
	// on disk (an index scan would return them in key order anyway).
	u, _ := url.Parse(testenv.DatabaseURL(t))
	q := u.Query()
	q.Set("enable_indexscan", "off")
	q.Set("enable_bitmapscan", "off")
	u.RawQuery = q.Encode()
	seqDB, err := postgres.Open(ctx, u.String(), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer seqDB.Close()
	s := inventory.NewService(seqDB)

	base := testenv.Unique("SKU")
	first, later := base+"-a", base+"-b"
	for _, sku := range []string{later, first} { // the later SKU first on disk
		if _, err := s.Set(ctx, sku, 5); err != nil {
			t.Fatal(err)
		}
	}

	holder, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback()
	var holderPID int
	if err := holder.QueryRow(`SELECT pg_backend_pid()`).Scan(&holderPID); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(`SELECT 1 FROM stock WHERE sku = $1 FOR UPDATE`, first); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		done <- handle(ctx, seqDB, s.OnOrderPlaced, events.OrderPlaced{OrderID: uuid.NewString(), CustomerID: "c",
			Items: []events.Item{{SKU: later, Quantity: 1}, {SKU: first, Quantity: 1}}})
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var waiting bool
		if err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)))`,
			holderPID).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the reservation finished (%v) while the first SKU's row was held", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the reservation to wait for the first SKU's row")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A third session can lock the later SKU's row at once: the waiting
	// reservation does not hold it.
	probe, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = probe.Exec(`SELECT 1 FROM stock WHERE sku = $1 FOR UPDATE NOWAIT`, later)
	probe.Rollback()
	var pqErr *pq.Error
	if errors.As(err, &pqErr) && pqErr.Code == "55P03" {
		t.Fatalf("the later SKU's row is locked while the reservation waits for the first one's: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}

	if err := holder.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("OnOrderPlaced() = %v", err)
	}
	for _, sku := range []string{first, later} {
		if st, _ := s.Get(ctx, sku); st.Reserved != 1 {
			t.Errorf("%s: %+v, want 1 reserved once the lock went", sku, st)
		}
	}
}
