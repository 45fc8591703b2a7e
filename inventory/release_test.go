package inventory_test

import (
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
)

// cancel handles an OrderCancelled of order id: through the kit when f
// has one.
func (f fixture) cancel(id string) {
	f.t.Helper()
	e := events.OrderCancelled{OrderID: id, CancelledAt: time.Now()}
	if f.kit != nil {
		f.kit.Deliver(e)
		return
	}
	if err := handle(f.ctx, f.db, f.s.OnOrderCancelled, e); err != nil {
		f.t.Fatalf("OnOrderCancelled() = %v", err)
	}
}

// events returns the event types, and the items of each, that the outbox
// holds for order id, in the order they were written.
func (f fixture) events(id string) (types []string, items [][]events.Item) {
	f.t.Helper()
	for _, e := range testenv.OutboxEvents(f.t, f.db, "order_id", id) {
		var p struct{ Items []events.Item }
		testenv.DecodePayload(f.t, e, &p)
		types = append(types, e.Metadata[events.MetadataEventType])
		items = append(items, p.Items)
	}
	return types, items
}

// reservations is how many reservation rows order id has.
func (f fixture) reservations(id string) int {
	f.t.Helper()
	var n int
	if err := f.db.QueryRow(`SELECT count(*) FROM reservations WHERE order_id = $1`, id).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

func TestService_OnOrderCancelled(t *testing.T) {
	t.Parallel()
	// Delivered through the kit, one subtest after another, on a database
	// of the test's own.
	own := ownFixture(t)

	t.Run("gives_back_what_the_order_holds_and_announces_it", func(t *testing.T) {
		f := own.kitFor(t)
		a, b := f.sku(5), f.sku(5)
		id := f.place(events.Item{SKU: a, Quantity: 2}, events.Item{SKU: b, Quantity: 5})
		f.cancel(id)
		f.want(a, 5, 0)
		f.want(b, 5, 0)
		if n := f.reservations(id); n != 0 {
			t.Errorf("%d reservation rows left, want none", n)
		}
		types, items := f.events(id)
		if len(types) != 2 || types[1] != "StockReleased" || len(items[1]) != 2 {
			t.Fatalf("events = %v %v, want StockReserved then StockReleased of both items", types, items)
		}
	})

	t.Run("releases_once_however_often_it_is_told", func(t *testing.T) {
		f := own.kitFor(t)
		sku := f.sku(5)
		id := f.place(events.Item{SKU: sku, Quantity: 3})
		// Two OrderCancelled events of one order (the kit shows that the
		// inbox stops a redelivery of one; this is a second event).
		f.cancel(id)
		f.cancel(id)
		f.want(sku, 5, 0)
		if types, _ := f.events(id); len(types) != 2 {
			t.Errorf("events = %v, want StockReserved and one StockReleased", types)
		}
	})

	t.Run("before_its_placement_the_placement_reserves_nothing", func(t *testing.T) {
		f := own.kitFor(t)
		sku := f.sku(5)
		id := uuid.NewString()
		f.cancel(id)
		f.placeOrder(id, events.Item{SKU: sku, Quantity: 2})
		f.want(sku, 5, 0)
		types, items := f.events(id)
		if len(types) != 1 || types[0] != "StockReleased" || len(items[0]) != 0 {
			t.Errorf("events = %v %v, want only a StockReleased of nothing", types, items)
		}
	})

	t.Run("of_a_rejected_order_releases_nothing", func(t *testing.T) {
		f := own.kitFor(t)
		sku := f.sku(1)
		id := f.place(events.Item{SKU: sku, Quantity: 2})
		f.cancel(id)
		f.want(sku, 1, 0)
		types, items := f.events(id)
		if len(types) != 2 || types[0] != "StockRejected" || types[1] != "StockReleased" || len(items[1]) != 0 {
			t.Errorf("events = %v %v, want StockRejected, then a StockReleased of nothing", types, items)
		}
	})

	t.Run("refuses_an_order_id_that_is_no_uuid", func(t *testing.T) {
		f := own.kitFor(t)
		published, err := f.kit.Attempt(events.OrderCancelled{OrderID: "not-a-uuid"})
		if !errors.Is(err, events.ErrMalformed) || len(published) != 0 {
			t.Errorf("OnOrderCancelled() = %v, published %v; want ErrMalformed and nothing", err, published)
		}
	})
}

// TestService_cancellationRacesItsPlacement forces the two interleavings
// in which the placement and the cancellation of one order are handled at
// the same time (they travel as separate events, and two consumers can
// hold one each): whichever gets the order first, nothing stays reserved
// and nothing is given back twice.
func TestService_cancellationRacesItsPlacement(t *testing.T) {
	t.Parallel()

	// The placement has checked for a release and waits on a stock row
	// that another transaction holds when the cancellation comes. The
	// cancellation must wait for the placement, then release what it
	// reserved.
	t.Run("placement_in_flight_when_the_cancellation_comes", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		db := f.db
		sku := f.sku(5)
		id := uuid.NewString()
		holder := hold(t, db, `SELECT 1 FROM stock WHERE sku = $1 FOR UPDATE`, sku)
		placed := goRun(func() error {
			return handle(f.ctx, db, f.s.OnOrderPlaced, events.OrderPlaced{OrderID: id, Items: []events.Item{{SKU: sku, Quantity: 2}}})
		})
		waitBlockedBy(t, db, holder.pid)
		cancelled := goRun(func() error {
			return handle(f.ctx, db, f.s.OnOrderCancelled, events.OrderCancelled{OrderID: id, CancelledAt: time.Now()})
		})
		waitBlockedBehind(t, db, holder.pid, cancelled, "OnOrderCancelled") // on the placement, which waits on the row
		holder.end()
		if err := placed.wait(); err != nil {
			t.Fatalf("OnOrderPlaced() = %v", err)
		}
		if err := cancelled.wait(); err != nil {
			t.Fatalf("OnOrderCancelled() = %v", err)
		}
		f.want(sku, 5, 0)
		if types, items := f.events(id); len(types) != 2 || types[1] != "StockReleased" || len(items[1]) != 1 {
			t.Errorf("events = %v %v, want StockReserved, then StockReleased of the item", types, items)
		}
	})

	// The cancellation is recording its release (held on the release row
	// by another transaction) when the placement comes. The placement must
	// wait for it, then reserve nothing.
	t.Run("cancellation_in_flight_when_the_placement_comes", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		db := f.db
		sku := f.sku(5)
		id := uuid.NewString()
		holder := hold(t, db, `INSERT INTO stock_releases (order_id) VALUES ($1)`, id)
		cancelled := goRun(func() error {
			return handle(f.ctx, db, f.s.OnOrderCancelled, events.OrderCancelled{OrderID: id, CancelledAt: time.Now()})
		})
		waitBlockedBy(t, db, holder.pid)
		placed := goRun(func() error {
			return handle(f.ctx, db, f.s.OnOrderPlaced, events.OrderPlaced{OrderID: id, Items: []events.Item{{SKU: sku, Quantity: 2}}})
		})
		waitBlockedBehind(t, db, holder.pid, placed, "OnOrderPlaced")
		holder.end()
		if err := cancelled.wait(); err != nil {
			t.Fatalf("OnOrderCancelled() = %v", err)
		}
		if err := placed.wait(); err != nil {
			t.Fatalf("OnOrderPlaced() = %v", err)
		}
		f.want(sku, 5, 0)
		if types, _ := f.events(id); len(types) != 1 || types[0] != "StockReleased" {
			t.Errorf("events = %v, want only StockReleased", types)
		}
	})
}

// TestService_ledgerUnderPlacesAndCancels: many orders of a few SKUs are
// placed and cancelled at once, in either order; afterwards available +
// reserved per SKU is what was set, every cancelled order holds nothing,
// and reserved is what the others hold.
func TestService_ledgerUnderPlacesAndCancels(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const stock = 40
	skus := []string{f.sku(stock), f.sku(stock), f.sku(stock)}
	const orders = 60
	var wg sync.WaitGroup
	ids := make([]string, orders)
	for i := range orders {
		ids[i] = uuid.NewString()
		items := []events.Item{{SKU: skus[i%3], Quantity: 1 + i%3}, {SKU: skus[(i+1)%3], Quantity: 1}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := handle(f.ctx, f.db, f.s.OnOrderPlaced, events.OrderPlaced{OrderID: ids[i], Items: items}); err != nil {
				t.Errorf("OnOrderPlaced() = %v", err)
			}
		}()
		if i%2 == 0 { // half of them cancelled, racing their placement
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := handle(f.ctx, f.db, f.s.OnOrderCancelled, events.OrderCancelled{OrderID: ids[i]}); err != nil {
					t.Errorf("OnOrderCancelled() = %v", err)
				}
			}()
		}
	}
	wg.Wait()
	db := f.db
	for _, sku := range skus {
		var available, reserved, held int
		err := db.QueryRow(`
			SELECT s.available, s.reserved, COALESCE((SELECT sum(quantity) FROM reservations r WHERE r.sku = s.sku), 0)
			FROM stock s WHERE s.sku = $1`, sku).Scan(&available, &reserved, &held)
		if err != nil {
			t.Fatal(err)
		}
		if available+reserved != stock || reserved != held {
			t.Errorf("%s: available %d + reserved %d, reservations hold %d; want a sum of %d and reserved = held",
				sku, available, reserved, held, stock)
		}
	}
	for i := 0; i < orders; i += 2 {
		if n := f.reservations(ids[i]); n != 0 {
			t.Errorf("cancelled order %s holds %d reservations", ids[i], n)
		}
	}
}

// held is a transaction of the test's that holds a lock.
type held struct {
	tx  *sql.Tx
	pid int
}

// hold runs query in a transaction of its own, left open.
func hold(t *testing.T, db *sql.DB, query string, args ...any) held {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback() })
	var h held
	h.tx = tx
	if err := tx.QueryRow(`SELECT pg_backend_pid()`).Scan(&h.pid); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(query, args...); err != nil {
		t.Fatal(err)
	}
	return h
}

// end rolls the transaction back, which lets its locks go.
func (h held) end() { h.tx.Rollback() }

// running is a call in a goroutine of its own.
type running struct {
	done chan struct{}
	err  error
}

func goRun(fn func() error) *running {
	r := &running{done: make(chan struct{})}
	go func() { r.err = fn(); close(r.done) }()
	return r
}

// wait returns the call's error once it has returned.
func (r *running) wait() error { <-r.done; return r.err }

// returned reports whether the call has returned.
func (r *running) returned() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// waitBlockedBy waits until a session waits on the one of pid.
func waitBlockedBy(t *testing.T, db *sql.DB, pid int) {
	t.Helper()
	testenvEventually(t, func() bool {
		var n int
		err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, pid).Scan(&n)
		return err == nil && n > 0
	})
}

// waitBlockedBehind waits until a session waits on one that waits on the
// session of pid: second, which must wait, fails the test by returning.
func waitBlockedBehind(t *testing.T, db *sql.DB, pid int, second *running, name string) {
	t.Helper()
	testenvEventually(t, func() bool {
		if second.returned() {
			t.Fatalf("%s returned (%v) while the other was in flight: nothing made it wait", name, second.err)
		}
		var n int
		err := db.QueryRow(`
			SELECT count(*) FROM pg_stat_activity a
			WHERE EXISTS (SELECT 1 FROM pg_stat_activity b
			              WHERE $1 = ANY(pg_blocking_pids(b.pid)) AND b.pid = ANY(pg_blocking_pids(a.pid)))`, pid).Scan(&n)
		return err == nil && n > 0
	})
}

func TestService_ForgetReleases(t *testing.T) {
	t.Parallel()
	f := ownFixture(t)
	ctx, db, svc := f.ctx, f.db, f.s
	old, recent := uuid.NewString(), uuid.NewString()
	for id, ago := range map[string]string{old: "2 hours", recent: "10 minutes"} {
		if _, err := db.Exec(`INSERT INTO stock_releases (order_id, released_at) VALUES ($1, now() - $2::interval)`, id, ago); err != nil {
			t.Fatal(err)
		}
	}
	n, err := svc.ForgetReleases(ctx, time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("ForgetReleases = %d, %v; want the one release older than the retention", n, err)
	}
	var left []string
	rows, err := db.Query(`SELECT order_id FROM stock_releases`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		left = append(left, id)
	}
	if len(left) != 1 || left[0] != recent {
		t.Errorf("releases left = %v, want only %s", left, recent)
	}
}
