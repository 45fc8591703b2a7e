package outbox_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
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
	rdb := streams.NewClient()
	defer rdb.Close()
	key := streams.Name(events.StreamOrdersPlaced)

	publish(t, db, ctx, events.OrderPlaced{OrderID: "before"})
	endFirst := openTx(t, ctx, db, func(ctx context.Context, tx *postgres.Tx) error {
		return tx.Publish(ctx, events.OrderPlaced{OrderID: "began-first"})
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
	rdb := streams.NewClient()
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
			end := openTx(t, ctx, other, func(ctx context.Context, tx *postgres.Tx) error {
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

// Publish refuses a Tx that neither InTx nor the inbox began (its zero
// value, or none): it does not hold the outbox writers' lock, and a late
// commit of it would be passed over. (A transaction of db.BeginTx is no
// Tx: publishing in one does not compile.)
func TestPublish_refusesATxNotBegunByInTxOrTheInbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for name, tx := range map[string]*postgres.Tx{"zero": {}, "nil": nil} {
		if err := tx.Publish(ctx, events.OrderPlaced{OrderID: "raw"}); err == nil {
			t.Errorf("Publish on a %s Tx succeeded, want a refusal", name)
		}
	}
}

// A wake-up poll that finds nothing because an older transaction that may
// write the outbox, still open, hides the rows that were committed is
// followed by rechecks that find them once it ends, long before the
// fallback (the idle check, outboxWaker).
//
// The wake-up is the listener's first signal (it may have missed
// notifications while connecting): shard 0's second poll, counted by the
// forwarder's metrics, is that wake-up poll. The older transaction then
// ends with a rollback, which notifies nobody.
func TestForwarder_rechecksAWakeUpWhoseRowsAreStillHidden(t *testing.T) {
	t.Parallel()
	w := untilEmptyPolls(t, "hidden", 2) // the first poll, the wake-up poll
	w.endOlder(false)

	entries(t, w.rdb, w.streams.Name(events.StreamOrdersPlaced), 1)
}

// hiddenRow is a forwarder that has polled and found nothing, while an
// older open transaction (endOlder) hides a committed row.
type hiddenRow struct {
	streams  redisstreams.Config
	rdb      redis.UniversalClient
	endOlder func(commit bool)
}

// untilEmptyPolls publishes OrderPlaced orderID behind an older open
// transaction and runs a forwarder until its loop of shard 0 (the row's)
// has polled n times and found nothing. It would not look again on its
// own for a minute.
func untilEmptyPolls(t *testing.T, orderID string, n float64) hiddenRow {
	t.Helper()
	ctx := context.Background()
	url := testenv.OwnDatabaseURL(t)
	db, err := postgres.Open(ctx, url, 10)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	w := hiddenRow{streams: testenv.Streams(t)}
	w.rdb = w.streams.NewClient()
	t.Cleanup(func() { w.rdb.Close() })

	w.endOlder = openTx(t, ctx, db, func(ctx context.Context, tx *postgres.Tx) error {
		_, err := tx.ExecContext(ctx, `SELECT pg_current_xact_id()`)
		return err
	})
	publish(t, db, ctx, events.OrderPlaced{OrderID: orderID})
	reg := prometheus.NewRegistry()
	runForwarder(t, db, w.streams, outbox.ForwarderConfig{DatabaseURL: url, PollInterval: time.Minute, BatchSize: 100, Metrics: reg})
	waitFor(t, "shard 0's empty polls", func() bool { return emptyPolls(t, reg, "0") >= n })
	return w
}

// emptyPolls is how many polls of shard found nothing, as reg counts them.
func emptyPolls(t *testing.T, reg *prometheus.Registry, shard string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "orderstream_outbox_polls_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["outcome"] == "empty" && labels["shard"] == shard {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
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
			rdb := streams.NewClient()
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
