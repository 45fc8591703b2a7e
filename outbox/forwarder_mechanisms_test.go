package outbox_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
)

// Each test here makes, deterministically, the situation one mechanism of
// the forwarder is for, and fails without that mechanism.

// A transaction that got its id first and commits last must not be passed
// over by the forwarder's position (outboxSchema: transaction_id below
// writersHorizon, which waits for it because it holds the outbox writers'
// lock).
func TestForwarder_forwardsATransactionThatStartedFirstAndCommitsLast(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.OwnDB(t)
	streams := testenv.Streams(t)
	rdb := streams.Client()
	defer rdb.Close()
	key := streams.Name(events.StreamOrdersPlaced)

	publish(t, db, ctx, events.OrderPlaced{OrderID: "before"})
	endFirst := openTx(t, ctx, db, func(ctx context.Context, tx *sql.Tx) error {
		return events.Publish(ctx, tx, events.OrderPlaced{OrderID: "began-first"})
	})
	publish(t, db, ctx, events.OrderPlaced{OrderID: "committed-first"})

	runForwarder(t, db, streams, outbox.ForwarderConfig{PollInterval: 20 * time.Millisecond, BatchSize: 100})
	// "before" on the stream: the forwarder has read the outbox since
	// committed-first committed, and moved what it may.
	entries(t, rdb, key, 1)
	endFirst(true)
	if got := orderIDs(t, entries(t, rdb, key, 3)); got != "before began-first committed-first" {
		t.Errorf("stream holds %s, want before began-first committed-first", got)
	}
}

// A transaction that does not hold the outbox writers' lock never writes
// the outbox, so the forwarder does not wait for it (writersHorizon): held
// open while an event commits, none of these delays the event, where
// pg_snapshot_xmin would hold it back until they end.
func TestForwarder_doesNotWaitForTransactionsThatCannotWriteTheOutbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.OwnDB(t)
	other := testenv.OwnDB(t)
	streams := testenv.Streams(t)
	rdb := streams.Client()
	defer rdb.Close()
	key := streams.Name(events.StreamOrdersPlaced)
	if _, err := db.Exec(`INSERT INTO inbox (handler, message_uuid) VALUES ('locked', 'row')`); err != nil {
		t.Fatal(err)
	}
	runForwarder(t, db, streams, outbox.ForwarderConfig{PollInterval: 20 * time.Millisecond, BatchSize: 100})

	for i, tc := range []struct {
		name string
		hold func(t *testing.T) (end func())
	}{
		{"another_clients_row_lock", func(t *testing.T) func() {
			tx, _ := session(t, db) // FOR UPDATE gives it a transaction id
			if _, err := tx.Exec(`SELECT FROM inbox WHERE handler = 'locked' FOR UPDATE`); err != nil {
				t.Fatal(err)
			}
			return func() { tx.Rollback() }
		}},
		{"a_session_idle_in_a_transaction_with_an_id", func(t *testing.T) func() {
			tx, _ := session(t, db)
			if _, err := tx.Exec(`SELECT pg_current_xact_id()`); err != nil {
				t.Fatal(err)
			}
			return func() { tx.Rollback() }
		}},
		{"a_writer_of_another_database", func(t *testing.T) func() {
			end := openTx(t, ctx, other, func(ctx context.Context, tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, `SELECT pg_current_xact_id()`)
				return err
			})
			return func() { end(false) }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			end := tc.hold(t)
			defer end()
			publish(t, db, ctx, events.OrderPlaced{OrderID: tc.name})
			msgs := entries(t, rdb, key, i+1)
			if got := orderIDs(t, msgs[i:]); got != tc.name {
				t.Errorf("forwarded %s, want %s", got, tc.name)
			}
		})
	}
}

// Publish refuses a transaction that postgres did not begin: it does not
// hold the outbox writers' lock, and a late commit of it would be passed
// over.
func TestPublish_refusesATransactionNotBegunByInTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.OwnDB(t)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := events.Publish(ctx, tx, events.OrderPlaced{OrderID: "raw"}); err == nil {
		t.Error("Publish on a transaction of db.BeginTx succeeded, want a refusal")
	}
	err = postgres.InTx(ctx, db, func(ctx context.Context, _ *sql.Tx) error {
		return events.Publish(ctx, tx, events.OrderPlaced{OrderID: "raw-in-another"})
	})
	if err == nil {
		t.Error("Publish on a transaction other than the context's succeeded, want a refusal")
	}
}

// A wake-up poll that finds nothing because an older transaction that may
// write the outbox, still open, hides the rows that were committed is followed by rechecks that
// find them once it ends, long before the fallback poll (outboxWaker).
//
// The wake-up is the listener's first signal (it may have missed
// notifications while connecting). Two locks, which a poll waits for with
// its snapshot taken, make the order certain. The first poll waits for a
// row lock on the forwarder's offsets row. A table lock on the outbox then
// queues behind that poll (which holds ACCESS SHARE on it); the lock
// manager grants it the moment the poll ends, ahead of any later request,
// so the wake-up poll waits on it while the older transaction is still
// open. (A second row lock would not do: once the first poll ends the row
// looks unlocked, and the wake-up poll can take it before the waiting
// session wakes up.)
func TestForwarder_rechecksAWakeUpWhoseRowsAreStillHidden(t *testing.T) {
	t.Parallel()
	w := untilWakeUpPoll(t, "hidden")
	w.endOlder(false) // which notifies nobody
	w.lock.Rollback()

	entries(t, w.rdb, w.streams.Name(events.StreamOrdersPlaced), 1)
}

// wakeUpPoll is a forwarder whose wake-up poll, with its snapshot taken,
// waits on lock while an older open transaction (endOlder) hides a
// committed row: the first poll found nothing.
type wakeUpPoll struct {
	db       *sql.DB
	streams  redisstreams.Config
	rdb      *redis.Client
	endOlder func(commit bool)
	lock     *sql.Tx
	lockPID  int
}

// untilWakeUpPoll publishes OrderPlaced orderID behind an older open
// transaction and brings a forwarder to its wake-up poll, held by a table
// lock queued behind the first poll.
func untilWakeUpPoll(t *testing.T, orderID string) wakeUpPoll {
	t.Helper()
	ctx := context.Background()
	url := testenv.OwnDatabaseURL(t)
	db, err := postgres.Open(ctx, url, 10)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	w := wakeUpPoll{db: db, streams: testenv.Streams(t)}
	w.rdb = w.streams.Client()
	t.Cleanup(func() { w.rdb.Close() })
	if _, err := db.Exec(`INSERT INTO watermill_offsets_outbox (consumer_group, offset_acked, last_processed_transaction_id)
		VALUES ('forwarder', 0, '0')`); err != nil {
		t.Fatal(err)
	}

	w.endOlder = openTx(t, ctx, db, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `SELECT pg_current_xact_id()`)
		return err
	})
	publish(t, db, ctx, events.OrderPlaced{OrderID: orderID})

	lock1, pid1 := session(t, db)
	if err := lockOffsets(lock1); err != nil {
		t.Fatal(err)
	}
	runForwarder(t, db, w.streams, outbox.ForwarderConfig{DatabaseURL: url, PollInterval: time.Minute, BatchSize: 100})
	waitPollBlockedBy(t, db, pid1)
	waitListening(t, db)
	w.lock, w.lockPID = session(t, db)
	locked := lockOutboxAsync(w.lock)
	waitBlocked(t, db, w.lockPID) // behind the first poll's ACCESS SHARE
	lock1.Rollback()              // the first poll goes on, finds nothing, and waits for a wake-up
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
	waitPollBlockedBy(t, db, w.lockPID) // the wake-up poll
	return w
}

// lockOutboxAsync locks the outbox table in tx, in the background.
func lockOutboxAsync(tx *sql.Tx) <-chan error {
	locked := make(chan error, 1)
	go func() {
		_, err := tx.Exec(`LOCK TABLE watermill_outbox IN ACCESS EXCLUSIVE MODE`)
		locked <- err
	}()
	return locked
}

// The stream entry of an event keeps the outbox event's UUID, the dedup key
// of every consumer, and its metadata, whether the hop is traced or not: a
// traced hop re-encodes the envelope (inspectEnvelope) to carry its own
// span.
func TestForwarder_keepsTheOutboxUUIDAndMetadata(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		tracer *sdktrace.TracerProvider
	}{
		{"tracing_off", nil},
		{"tracing_on", sdktrace.NewTracerProvider()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := testenv.OwnDB(t)
			streams := testenv.Streams(t)
			rdb := streams.Client()
			defer rdb.Close()
			ctx := events.WithCorrelationID(context.Background(), "corr-"+tc.name)
			cfg := outbox.ForwarderConfig{PollInterval: 20 * time.Millisecond, BatchSize: 10}
			if tc.tracer != nil {
				var span trace.Span
				ctx, span = tc.tracer.Tracer("test").Start(ctx, "place order")
				defer span.End()
				cfg.Tracer = tc.tracer
			}
			publish(t, db, ctx, events.OrderPlaced{OrderID: "o-" + tc.name})
			written := testenv.OutboxEvents(t, db, "order_id", "o-"+tc.name)
			if len(written) != 1 {
				t.Fatalf("%d outbox events, want 1", len(written))
			}

			runForwarder(t, db, streams, cfg)
			msg := entries(t, rdb, streams.Name(events.StreamOrdersPlaced), 1)[0]
			if msg.UUID != written[0].UUID {
				t.Errorf("stream entry UUID %s, want the outbox event's %s", msg.UUID, written[0].UUID)
			}
			for _, k := range []string{events.MetadataEventType, events.MetadataCorrelationID} {
				if msg.Metadata.Get(k) != written[0].Metadata[k] || msg.Metadata.Get(k) == "" {
					t.Errorf("stream entry %s = %q, want the outbox event's %q", k, msg.Metadata.Get(k), written[0].Metadata[k])
				}
			}
			if tc.tracer != nil {
				// The hop's span, a child of the one that wrote the event:
				// same trace, another span.
				got, was := msg.Metadata.Get("traceparent"), written[0].Metadata["traceparent"]
				if len(got) < 36 || len(was) < 36 || got[:36] != was[:36] || got == was {
					t.Errorf("traceparent %q, want the hop's span in the trace of %q", got, was)
				}
			}
		})
	}
}

// lockOffsets locks the forwarder's offsets row in tx.
func lockOffsets(tx *sql.Tx) error {
	_, err := tx.Exec(`SELECT FROM watermill_offsets_outbox WHERE consumer_group = 'forwarder' FOR UPDATE`)
	return err
}

// session begins a transaction and returns it with the pid of its
// connection.
func session(t *testing.T, db *sql.DB) (*sql.Tx, int) {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback() })
	var pid int
	if err := tx.QueryRow(`SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return tx, pid
}

// waitUntil waits until the query, counting, returns more than zero.
func waitUntil(t *testing.T, db *sql.DB, what, query string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var n int
		err := db.QueryRow(query, args...).Scan(&n)
		if err == nil && n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s (%v)", what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitPollBlockedBy waits until a forwarder's poll waits for a lock pid
// holds.
func waitPollBlockedBy(t *testing.T, db *sql.DB, pid int) {
	t.Helper()
	waitUntil(t, db, "a poll waiting on a lock", `SELECT count(*) FROM pg_stat_activity
		WHERE $1 = ANY(pg_blocking_pids(pid)) AND query LIKE '%WITH last_processed%'`, pid)
}

func waitBlocked(t *testing.T, db *sql.DB, pid int) {
	t.Helper()
	waitUntil(t, db, "the lock to queue", `SELECT cardinality(pg_blocking_pids($1))`, pid)
}

// waitListening waits until the forwarder listens for notifications.
func waitListening(t *testing.T, db *sql.DB) {
	t.Helper()
	waitUntil(t, db, "the forwarder to listen", `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN %' AND state = 'idle'`)
}

func orderIDs(t *testing.T, msgs []*message.Message) string {
	t.Helper()
	var ids []string
	for _, msg := range msgs {
		e, err := events.Decode[events.OrderPlaced](msg)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.OrderID)
	}
	return strings.Join(ids, " ")
}
