package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/postgres"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// counter is a handler effect that can be counted: it adds one to the
// reserved units of a SKU of its own, in the transaction it is given.
type counter struct {
	db  *sql.DB
	sku string
}

func newCounter(t *testing.T, db *sql.DB) counter {
	t.Helper()
	c := counter{db, testenv.Unique("inbox")}
	if _, err := db.Exec(`INSERT INTO stock (sku, available) VALUES ($1, 0)`, c.sku); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c counter) add(ctx context.Context, tx *postgres.Tx) error {
	_, err := tx.ExecContext(ctx, `UPDATE stock SET reserved = reserved + 1 WHERE sku = $1`, c.sku)
	return err
}

// handle is add as the handler of any message, in the inbox's transaction.
func (c counter) handle(ctx context.Context, tx *postgres.Tx, _ *message.Message) error {
	return c.add(ctx, tx)
}

// inInbox is fn adapted with InInbox, as a cqrs event handler is, to a
// Watermill handler: the event it handles is the message itself.
func inInbox(fn func(ctx context.Context, tx *postgres.Tx, msg *message.Message) error) message.NoPublishHandlerFunc {
	h := postgres.InInbox(fn)
	return func(msg *message.Message) error { return h(msg.Context(), msg) }
}

func (c counter) value(t *testing.T) int {
	t.Helper()
	var n int
	if err := c.db.QueryRow(`SELECT reserved FROM stock WHERE sku = $1`, c.sku).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// route runs a Watermill router over an in-memory pub/sub whose Publish
// returns once the message is acked (a nack redelivers it at once).
func route(t *testing.T, db *sql.DB, onDuplicate func(string), handlers map[string]message.NoPublishHandlerFunc) *gochannel.GoChannel {
	t.Helper()
	pubsub := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, nil)
	r, err := message.NewRouter(message.RouterConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.AddMiddleware(postgres.Inbox(db, onDuplicate))
	for name, h := range handlers {
		r.AddConsumerHandler(name, "topic", pubsub, h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-r.Running()
	return pubsub
}

func TestInbox(t *testing.T) {
	t.Parallel()

	t.Run("runs_a_redelivered_message_once", func(t *testing.T) {
		t.Parallel()
		db := testenv.DB(t)
		c := newCounter(t, db)
		var duplicates atomic.Int32
		pubsub := route(t, db, func(string) { duplicates.Add(1) }, map[string]message.NoPublishHandlerFunc{
			"count": inInbox(c.handle),
		})
		msg := message.NewMessage(testenv.Unique("uuid"), nil)
		for range 3 {
			if err := pubsub.Publish("topic", msg.Copy()); err != nil {
				t.Fatal(err)
			}
		}
		if n := c.value(t); n != 1 {
			t.Errorf("effect ran %d times, want 1", n)
		}
		if n := duplicates.Load(); n != 2 {
			t.Errorf("%d duplicates reported, want 2", n)
		}
	})

	t.Run("runs_a_failed_handler_again_and_keeps_one_effect", func(t *testing.T) {
		t.Parallel()
		db := testenv.DB(t)
		c := newCounter(t, db)
		var calls atomic.Int32
		pubsub := route(t, db, nil, map[string]message.NoPublishHandlerFunc{
			"count": inInbox(func(ctx context.Context, tx *postgres.Tx, _ *message.Message) error {
				// The effect is written, then the handler fails: the
				// rollback must take the effect and the inbox row with it.
				if err := c.add(ctx, tx); err != nil {
					return err
				}
				if calls.Add(1) == 1 {
					return errors.New("first attempt fails")
				}
				return nil
			}),
		})
		msg := message.NewMessage(testenv.Unique("uuid"), nil)
		if err := pubsub.Publish("topic", msg); err != nil { // nacked once, then acked
			t.Fatal(err)
		}
		if n := calls.Load(); n != 2 {
			t.Errorf("handler ran %d times, want 2", n)
		}
		if n := c.value(t); n != 1 {
			t.Errorf("effect is %d, want 1", n)
		}
	})

	t.Run("keys_by_handler", func(t *testing.T) {
		t.Parallel()
		db := testenv.DB(t)
		a, b := newCounter(t, db), newCounter(t, db)
		pubsub := route(t, db, nil, map[string]message.NoPublishHandlerFunc{
			"a": inInbox(a.handle),
			"b": inInbox(b.handle),
		})
		msg := message.NewMessage(testenv.Unique("uuid"), nil)
		for range 2 {
			if err := pubsub.Publish("topic", msg.Copy()); err != nil {
				t.Fatal(err)
			}
		}
		if a.value(t) != 1 || b.value(t) != 1 {
			t.Errorf("effects a=%d b=%d, want 1 each", a.value(t), b.value(t))
		}
	})

	t.Run("runs_concurrent_deliveries_once", func(t *testing.T) {
		t.Parallel()
		db := testenv.DB(t)
		c := newCounter(t, db)
		add := inInbox(c.handle)
		h := postgres.Inbox(db, nil)(func(msg *message.Message) ([]*message.Message, error) {
			time.Sleep(20 * time.Millisecond) // hold the inbox row while the others arrive
			return nil, add(msg)
		})
		uuid := testenv.Unique("uuid")
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				if _, err := h(message.NewMessage(uuid, nil)); err != nil {
					t.Errorf("handler = %v", err)
				}
			})
		}
		wg.Wait()
		if n := c.value(t); n != 1 {
			t.Errorf("effect ran %d times, want 1", n)
		}
	})

	t.Run("an_InInbox_handler_writes_in_the_inbox_transaction", func(t *testing.T) {
		t.Parallel()
		db := testenv.DB(t)
		for name, fail := range map[string]bool{"commits_with_the_row": false, "rolls_back_with_the_row": true} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				c := newCounter(t, db)
				var rowInTx int
				h := postgres.Inbox(db, nil)(func(msg *message.Message) ([]*message.Message, error) {
					return nil, inInbox(func(ctx context.Context, tx *postgres.Tx, msg *message.Message) error {
						// The inbox row, not yet committed, is in the
						// handler's transaction.
						err := tx.QueryRowContext(ctx, `SELECT count(*) FROM inbox WHERE message_uuid = $1`, msg.UUID).Scan(&rowInTx)
						if err != nil {
							return err
						}
						if err := c.add(ctx, tx); err != nil {
							return err
						}
						if fail {
							return errors.New("handler fails")
						}
						return nil
					})(msg)
				})
				msg := message.NewMessage(testenv.Unique("uuid"), nil)
				_, err := h(msg)
				if (err != nil) != fail {
					t.Fatalf("handler = %v, want an error: %v", err, fail)
				}
				var rows int
				if err := db.QueryRow(`SELECT count(*) FROM inbox WHERE message_uuid = $1`, msg.UUID).Scan(&rows); err != nil {
					t.Fatal(err)
				}
				want := 1
				if fail {
					want = 0
				}
				if rowInTx != 1 || rows != want || c.value(t) != want {
					t.Errorf("the handler's transaction held %d inbox rows; after it, %d inbox rows and effect %d; want 1, then %d and %d",
						rowInTx, rows, c.value(t), want, want)
				}
			})
		}
	})
}

// TestInbox_failures: a handler's own error comes back as it is; an
// attempt whose context ended (its timeout) fails with the context's error,
// whatever error its transaction gave (database/sql rolls the transaction back when the
// context ends, and the next statement fails with sql.ErrTxDone), so that
// it counts as a passing failure.
func TestInbox_failures(t *testing.T) {
	t.Parallel()
	db := testenv.DB(t)
	t.Run("returns_a_handlers_own_error_unchanged", func(t *testing.T) {
		t.Parallel()
		own := errors.New("refused by the handler")
		h := postgres.Inbox(db, nil)(func(*message.Message) ([]*message.Message, error) { return nil, own })
		if _, err := h(message.NewMessage(testenv.Unique("uuid"), nil)); err != own {
			t.Errorf("handler = %v, want %v itself", err, own)
		}
	})
	t.Run("an_attempt_whose_context_ended_fails_with_the_contexts_error", func(t *testing.T) {
		t.Parallel()
		ctx, end := context.WithCancel(context.Background())
		defer end()
		var stmtErr error
		h := postgres.Inbox(db, nil)(func(msg *message.Message) ([]*message.Message, error) {
			end() // as a timeout would, in the middle of the attempt
			tx, _ := postgres.InboxTx(msg.Context())
			for { // until database/sql has rolled the transaction back
				if _, stmtErr = tx.ExecContext(context.Background(), `SELECT 1`); stmtErr != nil {
					return nil, stmtErr // sql.ErrTxDone: not the context's error
				}
				time.Sleep(time.Millisecond)
			}
		})
		msg := message.NewMessage(testenv.Unique("uuid"), nil)
		msg.SetContext(ctx)
		_, err := h(msg)
		if errors.Is(stmtErr, context.Canceled) {
			t.Fatalf("the statement failed with the context's error itself (%v): nothing to join", stmtErr)
		}
		if !errors.Is(err, context.Canceled) || !errors.Is(err, stmtErr) {
			t.Errorf("handler = %v, want both the statement's error (%v) and context.Canceled", err, stmtErr)
		}
	})
	t.Run("an_InInbox_handler_run_without_the_inbox_fails_before_it_runs", func(t *testing.T) {
		t.Parallel()
		ran := false
		h := inInbox(func(context.Context, *postgres.Tx, *message.Message) error { ran = true; return nil })
		if err := h(message.NewMessage(testenv.Unique("uuid"), nil)); err == nil || ran {
			t.Errorf("handler = %v, ran: %v; want an error, not run", err, ran)
		}
	})
}

func TestInTx(t *testing.T) {
	t.Parallel()
	db := testenv.DB(t)

	t.Run("rolls_back_and_skips_after_commit_when_fn_fails", func(t *testing.T) {
		t.Parallel()
		c := newCounter(t, db)
		afterCommit := false
		err := postgres.InTx(context.Background(), db, func(ctx context.Context, tx *postgres.Tx) error {
			if err := c.add(ctx, tx); err != nil {
				return err
			}
			tx.AfterCommit(func() { afterCommit = true })
			return errors.New("roll back")
		})
		if err == nil || c.value(t) != 0 || afterCommit {
			t.Errorf("InTx() = %v, effect %d, after-commit ran: %v; want the error, no effect, not run", err, c.value(t), afterCommit)
		}
	})

	t.Run("after_commit_runs_once_it_has_committed", func(t *testing.T) {
		t.Parallel()
		c := newCounter(t, db)
		var seen []int
		err := postgres.InTx(context.Background(), db, func(ctx context.Context, tx *postgres.Tx) error {
			if err := c.add(ctx, tx); err != nil {
				return err
			}
			// Another connection does not see the effect before the commit.
			tx.AfterCommit(func() { seen = append(seen, c.value(t)) })
			return nil
		})
		if err != nil || len(seen) != 1 || seen[0] != 1 {
			t.Errorf("InTx() = %v, after-commit saw %v; want it run once, seeing the effect", err, seen)
		}
	})

	// A handler writes in the inbox's transaction, the one it is handed:
	// a transaction of its own would commit apart from the inbox row.
	t.Run("returns_ErrNestedTx_in_a_message_handlers_context", func(t *testing.T) {
		t.Parallel()
		ran := false
		h := postgres.Inbox(db, nil)(func(msg *message.Message) ([]*message.Message, error) {
			return nil, postgres.InTx(msg.Context(), db, func(context.Context, *postgres.Tx) error {
				ran = true
				return nil
			})
		})
		if _, err := h(message.NewMessage(testenv.Unique("uuid"), nil)); !errors.Is(err, postgres.ErrNestedTx) || ran {
			t.Errorf("InTx() in a handler = %v, fn ran: %v; want ErrNestedTx, not run", err, ran)
		}
	})
}

func TestCleanInbox(t *testing.T) {
	t.Parallel()
	db := testenv.DB(t)
	handler := testenv.Unique("clean")
	if _, err := db.Exec(`INSERT INTO inbox (handler, message_uuid, processed_at) VALUES
		($1, 'old-1', now() - interval '8 days'), ($1, 'old-2', now() - interval '30 days'), ($1, 'new', now())`, handler); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.CleanInbox(context.Background(), db, 7*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	var left []string
	rows, err := db.Query(`SELECT message_uuid FROM inbox WHERE handler = $1`, handler)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		rows.Scan(&id)
		left = append(left, id)
	}
	if len(left) != 1 || left[0] != "new" {
		t.Errorf("left %v, want only the recent row", left)
	}
}
