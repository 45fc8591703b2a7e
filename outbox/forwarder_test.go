package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// publish commits e through the outbox.
func publish(t *testing.T, db *sql.DB, ctx context.Context, e events.Event) {
	t.Helper()
	err := postgres.InTx(ctx, db, func(ctx context.Context, tx *postgres.Tx) error { return tx.Publish(ctx, e) })
	if err != nil {
		t.Fatal(err)
	}
}

// openTx runs fn in a transaction begun as orderstream begins its own
// (postgres.InTx) and keeps the transaction open until end is called: to
// commit it, or to roll it back. A test that ends without calling end
// rolls it back.
func openTx(t *testing.T, ctx context.Context, db *sql.DB, fn func(ctx context.Context, tx *postgres.Tx) error) (end func(commit bool)) {
	t.Helper()
	ran := make(chan error, 1)
	decided := make(chan bool, 1)
	done := make(chan error, 1)
	go func() {
		done <- postgres.InTx(ctx, db, func(ctx context.Context, tx *postgres.Tx) error {
			err := fn(ctx, tx)
			ran <- err
			if err != nil {
				return err
			}
			if !<-decided {
				return errRolledBack
			}
			return nil
		})
	}()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	var ended bool
	finish := func(commit bool) error {
		if ended {
			return nil
		}
		ended = true
		decided <- commit
		return <-done
	}
	t.Cleanup(func() { finish(false) })
	return func(commit bool) {
		t.Helper()
		if err := finish(commit); commit && err != nil {
			t.Fatal(err)
		}
	}
}

var errRolledBack = errors.New("rolled back by the test")

// entries waits until key holds n entries and returns them as messages.
func entries(t *testing.T, rdb redis.UniversalClient, key string, n int) []*message.Message {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		xs, err := rdb.XRange(context.Background(), key, "-", "+").Result()
		if err == nil && len(xs) >= n {
			var msgs []*message.Message
			for _, x := range xs {
				msg, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(x.Values)
				if err != nil {
					t.Fatalf("entry %s: %v", x.ID, err)
				}
				msgs = append(msgs, msg)
			}
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d entries (%v), want %d", key, len(xs), err, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runForwarder runs a forwarder until the test ends.
func runForwarder(t *testing.T, db *sql.DB, streams redisstreams.Config, cfg outbox.ForwarderConfig) {
	t.Helper()
	stop := startForwarder(t, db, streams, cfg)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("forwarder: %v", err)
		}
	})
}

// startForwarder runs a forwarder until the returned stop is called.
func startForwarder(t *testing.T, db *sql.DB, streams redisstreams.Config, cfg outbox.ForwarderConfig) (stop func() error) {
	t.Helper()
	return goForwarder(t, db, streams, cfg).stop
}

// forwarderRun is a forwarder running in the background.
type forwarderRun struct {
	done   chan struct{} // closed once Run has returned
	err    error         // what Run returned
	cancel context.CancelFunc
}

func goForwarder(t *testing.T, db *sql.DB, streams redisstreams.Config, cfg outbox.ForwarderConfig) *forwarderRun {
	t.Helper()
	f, err := outbox.NewForwarder(db, streams, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &forwarderRun{done: make(chan struct{}), cancel: cancel}
	go func() { r.err = f.Run(ctx); close(r.done) }()
	return r
}

// stop ends the run and returns Run's error.
func (r *forwarderRun) stop() error {
	r.cancel()
	<-r.done
	return r.err
}

func TestForwarder(t *testing.T) {
	t.Parallel()
	db := testenv.OwnDB(t)
	streams := testenv.Streams(t)
	rdb := streams.NewClient()
	defer rdb.Close()
	ctx := events.WithCorrelationID(context.Background(), "corr-f")

	publish(t, db, ctx, events.OrderPlaced{OrderID: "o-1", CustomerID: "c"})
	// Rows that are not envelopes must not block the rows behind them: no
	// destination, a payload that is not base64, metadata that is not
	// strings.
	for _, payload := range []string{
		`{"hello":"world"}`,
		`{"destination_topic":"orders.placed","uuid":"u","payload":"not base64!"}`,
		`{"destination_topic":"orders.placed","uuid":"u","payload":"e30=","metadata":{"n":1}}`,
	} {
		if _, err := db.Exec(`INSERT INTO watermill_outbox (uuid, payload, transaction_id)
			VALUES ('not-an-envelope', $1, pg_current_xact_id())`, payload); err != nil {
			t.Fatal(err)
		}
	}
	publish(t, db, ctx, events.StockReserved{OrderID: "o-1"})
	uuids := map[string]bool{}
	rows, err := db.Query(`SELECT payload->>'uuid' FROM watermill_outbox WHERE uuid <> 'not-an-envelope'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			t.Fatal(err)
		}
		uuids[u] = true
	}
	if err := rows.Close(); err != nil || len(uuids) != 2 {
		t.Fatalf("outbox events: %v (%v)", uuids, err)
	}

	runForwarder(t, db, streams, outbox.ForwarderConfig{PollInterval: 20 * time.Millisecond, BatchSize: 100})

	placed := entries(t, rdb, streams.Name(events.StreamOrdersPlaced), 1)
	reserved := entries(t, rdb, streams.Name(events.StreamReservations), 1)
	for _, msg := range []*message.Message{placed[0], reserved[0]} {
		if !uuids[msg.UUID] {
			t.Errorf("forwarded message %s does not keep its outbox UUID %v", msg.UUID, uuids)
		}
		if msg.Metadata.Get(events.MetadataCorrelationID) != "corr-f" || msg.Metadata.Get(events.MetadataEventType) == "" {
			t.Errorf("forwarded metadata = %v", msg.Metadata)
		}
	}
	dead := entries(t, rdb, streams.Name(events.StreamDeadLetter), 3)
	if len(dead) != 3 {
		t.Fatalf("%d dead letters, want 3", len(dead))
	}
	for _, d := range dead {
		if d.Metadata.Get("reason_poisoned") == "" || d.Metadata.Get("topic_poisoned") != postgres.OutboxTopic(0) {
			t.Errorf("dead letter metadata = %v", d.Metadata)
		}
	}
}

// TestForwarder_stopsWhileStarting: a stop that comes before the forwarder
// has subscribed is a stop, not an error.
func TestForwarder_stopsWhileStarting(t *testing.T) {
	t.Parallel()
	f, err := outbox.NewForwarder(testenv.OwnDB(t), testenv.Streams(t), outbox.ForwarderConfig{PollInterval: time.Second, BatchSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Run(ctx); err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
}

// TestForwarder_wakesOnCommit shows the forwarder moving events as they
// commit, woken by the notification sent after each commit, though it would
// not poll again for a minute.
func TestForwarder_wakesOnCommit(t *testing.T) {
	t.Parallel()
	url := testenv.OwnDatabaseURL(t)
	db, err := postgres.Open(context.Background(), url, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	streams := testenv.Streams(t)
	rdb := streams.NewClient()
	defer rdb.Close()
	runForwarder(t, db, streams, outbox.ForwarderConfig{DatabaseURL: url, PollInterval: time.Minute, BatchSize: 100})
	time.Sleep(200 * time.Millisecond) // past the first, empty poll: now it waits

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, err := outbox.NewCommitNotifier(db, watermill.NopLogger{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	go n.Run(ctx)
	ctx = outbox.WithCommitNotifier(ctx, n)
	for i := range 3 {
		publish(t, db, ctx, events.OrderPlaced{OrderID: fmt.Sprintf("wake-%d", i)})
		entries(t, rdb, streams.Name(events.StreamOrdersPlaced), i+1)
	}
}

// A forwarder in the process that commits is woken directly by the
// process's notifier, with no NOTIFY: here none is sent (the notifier's Run
// does not run) and the forwarder does not listen, yet it moves each event
// as it commits, though it would not poll again for a minute.
func TestForwarder_wakesLocallyWithoutNotifications(t *testing.T) {
	t.Parallel()
	db := testenv.OwnDB(t)
	streams := testenv.Streams(t)
	rdb := streams.NewClient()
	defer rdb.Close()
	f, err := outbox.NewForwarder(db, streams, outbox.ForwarderConfig{PollInterval: time.Minute, BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	n, err := outbox.NewCommitNotifier(db, watermill.NopLogger{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n.WakesLocally(f)
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("forwarder: %v", err)
		}
	})
	select {
	case <-f.Running():
	case err := <-done:
		t.Fatalf("forwarder: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // past the first, empty poll: now it waits

	ctx := outbox.WithCommitNotifier(context.Background(), n)
	for i := range 3 {
		publish(t, db, ctx, events.OrderPlaced{OrderID: fmt.Sprintf("local-%d", i)})
		entries(t, rdb, streams.Name(events.StreamOrdersPlaced), i+1)
	}
}
