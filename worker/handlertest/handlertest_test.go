package handlertest_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/google/uuid"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/worker"
	"github.com/orderstream/orderstream/worker/handlertest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// effects is a handler of OrderConfirmed that records a row per event in
// a table of the test's own, and announces nothing, or what publish says.
type effects struct {
	db      *sql.DB
	sleep   time.Duration
	publish func(ctx context.Context, tx *postgres.Tx, e *events.OrderConfirmed) error
}

func (h effects) OnOrderConfirmed(ctx context.Context, tx *postgres.Tx, e *events.OrderConfirmed) error {
	time.Sleep(h.sleep)
	if _, err := tx.ExecContext(ctx, `INSERT INTO kit_effects (order_id) VALUES ($1)`, e.OrderID); err != nil {
		return err
	}
	if h.publish != nil {
		return h.publish(ctx, tx, e)
	}
	return nil
}

func setUp(t *testing.T) *sql.DB {
	db := testenv.OwnDB(t)
	if _, err := db.ExecContext(t.Context(), `CREATE TABLE kit_effects (id bigserial PRIMARY KEY, order_id text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return db
}

func subscription(h effects) worker.Subscription {
	return worker.Subscription{Name: "kit.effects", Stream: events.StreamOrderOutcomes, Group: "kit",
		Handlers: []cqrs.GroupEventHandler{cqrs.NewGroupEventHandler(postgres.InInbox(h.OnOrderConfirmed))}}
}

func confirmed() events.OrderConfirmed {
	return events.OrderConfirmed{OrderID: uuid.NewString(), CustomerID: "c-1", ConfirmedAt: time.Now()}
}

func TestKit_Deliver(t *testing.T) {
	t.Parallel()

	t.Run("passes_a_handler_whose_effect_happens_once", func(t *testing.T) {
		t.Parallel()
		db := setUp(t)
		r := &handlertest.Recorder{TB: t}
		kit := handlertest.New(r, db, subscription(effects{db: db, publish: func(ctx context.Context, tx *postgres.Tx, e *events.OrderConfirmed) error {
			return tx.Publish(ctx, events.OrderRejected{OrderID: e.OrderID, CustomerID: e.CustomerID, Reason: events.ReasonUnknownSKU})
		}}))
		published := kit.Deliver(confirmed())
		if f := r.Failures(); f != "" {
			t.Fatalf("the kit failed a correct handler:\n%s", f)
		}
		if len(published) != 1 || published[0].EventType() != "OrderRejected" {
			t.Errorf("published = %v, want the one OrderRejected", published)
		}
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM kit_effects`).Scan(&n); err != nil || n != 1 {
			t.Errorf("effects = %d (%v), want 1", n, err)
		}
	})

	t.Run("fails_when_the_inbox_is_bypassed", func(t *testing.T) {
		t.Parallel()
		db := setUp(t)
		// Without its key the inbox records every delivery as new.
		if _, err := db.Exec(`ALTER TABLE inbox DROP CONSTRAINT inbox_pkey`); err != nil {
			t.Fatal(err)
		}
		r := &handlertest.Recorder{TB: t}
		handlertest.New(r, db, subscription(effects{db: db})).Deliver(confirmed())
		f := r.Failures()
		for _, want := range []string{"at once committed the handler's effect 4 times", "the second delivery", "the concurrent deliveries", "ran the handler's effect again", "changed the tables [inbox kit_effects]"} {
			if !strings.Contains(f, want) {
				t.Errorf("the kit's failures do not say %q:\n%s", want, f)
			}
		}
	})

	t.Run("fails_a_handler_that_publishes_outside_its_transaction", func(t *testing.T) {
		t.Parallel()
		db := setUp(t)
		r := &handlertest.Recorder{TB: t}
		handlertest.New(r, db, subscription(effects{db: db, publish: func(ctx context.Context, _ *postgres.Tx, e *events.OrderConfirmed) error {
			return postgres.InTx(context.WithoutCancel(context.Background()), db, func(ctx context.Context, other *postgres.Tx) error {
				return other.Publish(ctx, events.OrderRejected{OrderID: e.OrderID, Reason: events.ReasonUnknownSKU})
			})
		}})).Deliver(confirmed())
		if f := r.Failures(); !strings.Contains(f, "publishes outside the transaction it is handed") {
			t.Errorf("the kit did not report the publish outside the transaction:\n%s", f)
		}
	})

	t.Run("fails_a_handler_slower_than_the_timeout", func(t *testing.T) {
		t.Parallel()
		db := setUp(t)
		r := &handlertest.Recorder{TB: t}
		kit := handlertest.New(r, db, subscription(effects{db: db, sleep: 300 * time.Millisecond}), handlertest.WithTimeout(100*time.Millisecond))
		if _, err := kit.Attempt(confirmed()); err == nil {
			t.Errorf("an attempt past its timeout succeeded")
		}
		if f := r.Failures(); !strings.Contains(f, "longer than the handler timeout") {
			t.Errorf("the kit did not report the slow handler:\n%s", f)
		}
	})

	t.Run("refuses_InTx_within_a_handler", func(t *testing.T) {
		t.Parallel()
		db := setUp(t)
		kit := handlertest.New(t, db, subscription(effects{db: db, publish: func(ctx context.Context, _ *postgres.Tx, _ *events.OrderConfirmed) error {
			return postgres.InTx(ctx, db, func(context.Context, *postgres.Tx) error { return nil })
		}}))
		if _, err := kit.Attempt(confirmed()); err == nil || !strings.Contains(err.Error(), postgres.ErrNestedTx.Error()) {
			t.Errorf("InTx in a handler = %v, want ErrNestedTx", err)
		}
	})
}
