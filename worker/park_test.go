package worker_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/logging"
	"github.com/orderstream/orderstream/metrics"
	"github.com/orderstream/orderstream/orders"
	"github.com/orderstream/orderstream/parked"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/worker"
)

const reserveStock = "inventory.reserve_stock"

// jsonLog is a logger whose JSON lines the test can read back; they are
// shown when the test fails.
type jsonLog struct {
	buf *testenv.Buffer
}

func newJSONLog(t *testing.T) (jsonLog, func(*worker.MessagesConfig)) {
	t.Helper()
	l := jsonLog{buf: &testenv.Buffer{}}
	logger, err := logging.New(l.buf, "json", "debug")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", l.buf.String())
		}
	})
	return l, func(c *worker.MessagesConfig) { c.Logger = logger }
}

// lines returns the log records with message msg about the message uuid
// (about any message when uuid is "").
func (l jsonLog) lines(t *testing.T, msg, uuid string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewBufferString(l.buf.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		if rec["msg"] == msg && (uuid == "" || rec["message_uuid"] == uuid) {
			out = append(out, rec)
		}
	}
	return out
}

// lockTimeoutDB is the test database with a short lock_timeout, as the
// worker's own pool has one.
func lockTimeoutDB(t *testing.T, d time.Duration) *sql.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), testenv.DatabaseURL(t), 20, postgres.LockTimeout(d))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// holdStock locks sku's stock row from a session of its own until release
// is called (or the test ends).
func holdStock(t *testing.T, sku string) (release func()) {
	t.Helper()
	tx, err := testenv.DB(t).Begin()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback() })
	if _, err := tx.Exec(`SELECT 1 FROM stock WHERE sku = $1 FOR UPDATE`, sku); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
	}
}

func (w harness) placed(skus ...string) string {
	w.t.Helper()
	items := make([]events.Item, len(skus))
	for i, sku := range skus {
		items[i] = events.Item{SKU: sku, Quantity: 1}
	}
	msg, err := events.NewMessage(w.ctx, events.OrderPlaced{OrderID: uuid.NewString(), CustomerID: "c", Items: items})
	if err != nil {
		w.t.Fatal(err)
	}
	w.publish(events.StreamOrdersPlaced, msg)
	return msg.UUID
}

func (w harness) reserved(sku string) int {
	w.t.Helper()
	st, err := w.inventory.Get(w.ctx, sku)
	if err != nil {
		w.t.Fatal(err)
	}
	return st.Reserved
}

func (w harness) parkedRows(uuid string) int {
	w.t.Helper()
	var n int
	if err := w.db.QueryRow(`SELECT count(*) FROM parked_messages WHERE message_uuid = $1`, uuid).Scan(&n); err != nil {
		w.t.Fatal(err)
	}
	return n
}

// counter is the value of orderstream's counter name for handler.
func (w harness) counter(name, handler string) float64 {
	w.t.Helper()
	families, err := w.metrics.Registry.Gather()
	if err != nil {
		w.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != metrics.Namespace+"_"+name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "handler" && l.GetValue() == handler {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestMessages_passingFailure(t *testing.T) {
	t.Parallel()

	// One consumer per group (testenv's streams): the old redelivery in
	// process kept the consumer on the held order for good, and nothing
	// behind it settled.
	t.Run("a_held_stock_lock_holds_no_consumer_and_the_order_settles_once_it_goes", func(t *testing.T) {
		t.Parallel()
		db := lockTimeoutDB(t, 100*time.Millisecond)
		w := startWorker(t, func(c *worker.MessagesConfig) {
			c.DB, c.HandlerTimeout, c.MaxRetries = db, 2*time.Second, 1
			c.ParkBackoff = parked.Backoff{Initial: 100 * time.Millisecond, Max: 400 * time.Millisecond}
		})
		held, free := testenv.Unique("SKU"), testenv.Unique("SKU")
		for _, sku := range []string{held, free} {
			if _, err := w.inventory.Set(w.ctx, sku, 10); err != nil {
				t.Fatal(err)
			}
		}
		release := holdStock(t, held)
		stuck := w.placed(held)
		eventually(t, func() bool { return w.failedAttempts(reserveStock) >= 1 }, "the order for the held SKU to fail")
		for range 3 {
			w.placed(free)
		}
		eventually(t, func() bool { return w.reserved(free) == 3 }, "the orders for another SKU to settle while the lock is held")
		if n := w.reserved(held); n != 0 {
			t.Fatalf("%d units of the held SKU reserved while it was locked", n)
		}

		release()
		eventually(t, func() bool { return w.reserved(held) == 1 }, "the held order to settle once the lock goes")
		w.drained(events.StreamOrdersPlaced, "inventory")
		if n := w.deadLetters(); n != 0 {
			t.Errorf("dead-letter stream holds %d entries, want none", n)
		}
		// The republisher deletes the row after putting it back, so the
		// order it carried may settle first.
		eventually(t, func() bool { return w.parkedRows(stuck) == 0 }, "the settled order's parked row to go")
		if n := w.counter("messages_parked_total", reserveStock); n < 1 {
			t.Errorf("messages parked = %v, want at least 1", n)
		}
		evs := testenv.OutboxEvents(t, w.db, "order_id", orderOf(t, w, stuck))
		if len(evs) != 1 {
			t.Errorf("the held order has %d outbox events, want one StockReserved", len(evs))
		}
	})

	// Parked messages wait an hour here: only the wake-up can settle the
	// orders behind the probe in time.
	t.Run("one_message_tries_a_held_row_and_its_success_puts_back_the_rest", func(t *testing.T) {
		t.Parallel()
		log, withLog := newJSONLog(t)
		db := lockTimeoutDB(t, 100*time.Millisecond)
		w := startWorker(t, withLog, func(c *worker.MessagesConfig) {
			c.DB, c.HandlerTimeout, c.MaxRetries = db, 2*time.Second, 3
			c.ParkBackoff = parked.Backoff{Initial: 100 * time.Millisecond, Max: time.Hour}
		})
		sku := testenv.Unique("SKU")
		if _, err := w.inventory.Set(w.ctx, sku, 10); err != nil {
			t.Fatal(err)
		}
		release := holdStock(t, sku)
		var held []string
		for range 4 {
			held = append(held, w.placed(sku))
		}
		attempts := func() map[string]int {
			out := map[string]int{}
			rows, err := w.db.Query(`SELECT message_uuid, attempts FROM parked_messages WHERE message_uuid = ANY($1)`, pq.Array(held))
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				var id string
				var n int
				if err := rows.Scan(&id, &n); err != nil {
					t.Fatal(err)
				}
				out[id] = n
			}
			return out
		}
		// Parked at the same moment, or while the probe is on its way back,
		// two messages may both find no other waiting and both be tried,
		// until the republisher takes one and puts the other off. Then one
		// message alone is tried, again and again.
		probing := func(before map[string]int) (probe string, ok bool) {
			a := attempts()
			if len(a) != len(held) {
				return "", false
			}
			for id, n := range a {
				if n > before[id] {
					if probe != "" {
						return "", false
					}
					probe = id
				}
			}
			return probe, probe != ""
		}
		var settled map[string]int
		eventually(t, func() bool {
			before := attempts()
			time.Sleep(500 * time.Millisecond) // some five attempts of a probe
			if _, ok := probing(before); !ok {
				return false
			}
			settled = attempts()
			return true
		}, "the four orders to be parked and one of them alone to be tried again and again")
		for id, n := range settled {
			// One failed attempt per delivery: a lock wait is not retried
			// in process (MaxRetries is 3).
			if lines := len(log.lines(t, "message handling failed", id)); lines < n || lines > n+1 {
				t.Errorf("message %s failed %d times over %d deliveries, want one attempt each", id, lines, n)
			}
		}

		release()
		eventually(t, func() bool { return w.reserved(sku) == len(held) }, "every held order to settle once the probe succeeds")
		eventually(t, func() bool { return len(attempts()) == 0 }, "the parked rows to go")
		if n := w.deadLetters(); n != 0 {
			t.Errorf("dead-letter stream holds %d entries, want none", n)
		}
	})

	t.Run("surfaces_a_message_still_failing_after_the_bound", func(t *testing.T) {
		t.Parallel()
		const bound = 1500 * time.Millisecond
		log, withLog := newJSONLog(t)
		db := lockTimeoutDB(t, 50*time.Millisecond)
		w := startWorker(t, withLog, func(c *worker.MessagesConfig) {
			c.DB, c.HandlerTimeout, c.MaxRetries = db, 2*time.Second, 0
			c.ParkBackoff = parked.Backoff{Initial: 100 * time.Millisecond, Max: 300 * time.Millisecond}
			c.SurfaceAfter = bound
		})
		sku := testenv.Unique("SKU")
		if _, err := w.inventory.Set(w.ctx, sku, 1); err != nil {
			t.Fatal(err)
		}
		release := holdStock(t, sku)
		stuck := w.placed(sku)
		overdue := func() float64 { return w.counter("messages_parked_overdue_total", reserveStock) }
		eventually(t, func() bool { return overdue() >= 1 }, "the overdue counter to move")
		release()
		eventually(t, func() bool { return w.reserved(sku) == 1 }, "the order to settle once the lock goes")

		// Parked quietly (a warning) before the bound, loudly (an error)
		// after it, each line saying how long the message has failed.
		failingFor := func(rec map[string]any) time.Duration {
			d, _ := rec["failing_for"].(float64) // slog writes a Duration in nanoseconds
			return time.Duration(d)
		}
		quiet := log.lines(t, "message parked to be tried again later", stuck)
		loud := log.lines(t, "message keeps failing for a passing reason", stuck)
		if len(quiet) == 0 || len(loud) == 0 {
			t.Fatalf("%d warnings and %d errors about the parked message, want both", len(quiet), len(loud))
		}
		for _, rec := range quiet {
			// The line rounds failing_for to the millisecond: a message
			// failing for a hair under the bound shows it as the bound.
			if rec["level"] != "WARN" || failingFor(rec) > bound {
				t.Errorf("warning %v: want level WARN and failing_for below %s", rec, bound)
			}
		}
		for _, rec := range loud {
			if rec["level"] != "ERROR" || failingFor(rec) < bound || rec["err"] == nil || rec["attempts"] == nil {
				t.Errorf("error %v: want level ERROR, failing_for of at least %s, the error and the attempts", rec, bound)
			}
		}
		if n := overdue(); int(n) != len(loud) {
			t.Errorf("overdue counter = %v, want one per error line (%d)", n, len(loud))
		}
		if n := w.deadLetters(); n != 0 {
			t.Errorf("dead-letter stream holds %d entries, want none", n)
		}
		// Neither its passing failures nor its success is logged as a
		// dead letter.
		if dl := log.lines(t, "message dead-lettered", stuck); len(dl) != 0 {
			t.Errorf("%d lines say the message was dead-lettered, want none: %v", len(dl), dl[0])
		}
	})
}

// orderOf is the order id of the OrderPlaced message uuid, read back from
// the stream.
func orderOf(t *testing.T, w harness, id string) string {
	t.Helper()
	entries, err := w.rdb.XRange(w.ctx, w.streams.Name(events.StreamOrdersPlaced), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		msg, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(e.Values)
		if err != nil || msg.UUID != id {
			continue
		}
		var p events.OrderPlaced
		if err := json.Unmarshal(msg.Payload, &p); err != nil {
			t.Fatal(err)
		}
		return p.OrderID
	}
	t.Fatalf("no entry with UUID %s", id)
	return ""
}

// TestMessages_plainErrorRetriedThenDeadLettered: a handler that fails for
// its own reason runs MaxRetries+1 times, waiting longer before each retry,
// and its message becomes one dead letter, never parked.
func TestMessages_plainErrorRetriedThenDeadLettered(t *testing.T) {
	t.Parallel()
	const maxRetries = 3
	log, withLog := newJSONLog(t)
	// 250 ms, 500 ms, 1 s, each ±20%: far enough apart that the jitter and
	// the scheduling of a busy machine cannot reorder them.
	// A database of its own: the trigger below takes locks on the stock
	// table that the other tests' row locks would hold up, and their
	// statements would queue behind.
	w := startWorkerOn(t, testenv.OwnDB(t), withLog, func(c *worker.MessagesConfig) { c.MaxRetries, c.RetryInitial = maxRetries, 250*time.Millisecond })
	sku := testenv.Unique("SKU")
	if _, err := w.inventory.Set(w.ctx, sku, 5); err != nil {
		t.Fatal(err)
	}
	// The reservation's UPDATE of this SKU's row fails with an error of the
	// trigger's own (SQLSTATE P0001), which no retry helps and which is not
	// a passing one.
	db := w.db
	fn := strings.ReplaceAll(strings.ToLower(testenv.Unique("fail_reservation")), "-", "_")
	for _, q := range []string{
		fmt.Sprintf(`CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN RAISE EXCEPTION 'reservations of %s are refused'; END $$`, fn, sku),
		fmt.Sprintf(`CREATE TRIGGER %s BEFORE UPDATE ON stock FOR EACH ROW WHEN (NEW.sku = '%s') EXECUTE FUNCTION %s()`, fn, sku, fn),
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { db.Exec(fmt.Sprintf(`DROP TRIGGER %s ON stock; DROP FUNCTION %s()`, fn, fn)) })

	id := w.placed(sku)
	eventually(t, func() bool { return len(log.lines(t, "message dead-lettered", id)) > 0 }, "the message to be dead-lettered")
	w.drained(events.StreamOrdersPlaced, "inventory")

	attempts := log.lines(t, "message handling failed", id)
	if len(attempts) != maxRetries+1 {
		t.Fatalf("%d attempts, want %d (MaxRetries+1)", len(attempts), maxRetries+1)
	}
	// The wait between the end of an attempt and the start of the next
	// grows with each retry.
	var prevEnd time.Time
	var prevGap time.Duration
	for i, rec := range attempts {
		end, err := time.Parse(time.RFC3339Nano, rec["time"].(string))
		if err != nil {
			t.Fatal(err)
		}
		start := end.Add(-time.Duration(rec["duration"].(float64)))
		if i > 0 {
			gap := start.Sub(prevEnd)
			if i > 1 && gap <= prevGap {
				t.Errorf("wait before attempt %d = %s, not longer than the one before it (%s)", i+1, gap, prevGap)
			}
			prevGap = gap
		}
		prevEnd = end
	}
	entries, err := w.rdb.XRange(w.ctx, w.streams.Name(events.StreamDeadLetter), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("dead-letter stream holds %d entries, want 1", len(entries))
	}
	dl, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(entries[0].Values)
	if err != nil {
		t.Fatal(err)
	}
	if dl.UUID != id || !strings.Contains(dl.Metadata.Get("reason_poisoned"), "refused") {
		t.Errorf("dead letter %s (%v), want the message %s with the trigger's error", dl.UUID, dl.Metadata, id)
	}
	if n := w.parkedRows(id); n != 0 {
		t.Errorf("the message was parked (%d rows)", n)
	}
	if n := w.reserved(sku); n != 0 {
		t.Errorf("%d units reserved by a failed reservation", n)
	}
}

// TestMessages_parkedForAnotherHandler: a message put back on its stream for
// one handler is acked by the other groups of the stream without running
// their handler (no inbox row, no effect).
func TestMessages_parkedForAnotherHandler(t *testing.T) {
	t.Parallel()
	w := startWorker(t)
	o, _, err := w.orders.Place(w.ctx, orders.PlaceRequest{CustomerID: "c", Items: []orders.Item{{SKU: "A", Quantity: 1}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := events.NewMessage(w.ctx, events.StockReserved{OrderID: o.ID, Items: []events.Item{{SKU: "A", Quantity: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	msg.Metadata.Set(parked.MetadataHandler, "someone.else")
	w.publish(events.StreamReservations, msg)
	w.drained(events.StreamReservations, "orders")

	if got, _ := w.orders.Get(w.ctx, o.ID); got.Status != orders.StatusPending {
		t.Errorf("order is %s, want pending: the message was for another handler", got.Status)
	}
	var n int
	if err := w.db.QueryRow(`SELECT count(*) FROM inbox WHERE message_uuid = $1`, msg.UUID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d inbox rows for a message parked for another handler, want none", n)
	}
}
