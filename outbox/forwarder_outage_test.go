package outbox_test

import (
	"context"
	"database/sql"
	"log/slog"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/netfault"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/postgres"
)

// TestForwarder_waitsForTheDatabaseAtStart: a forwarder started while its
// database cannot be reached waits for it, as its polls would, instead of
// exiting at its first check; once the database answers it forwards.
func TestForwarder_waitsForTheDatabaseAtStart(t *testing.T) {
	t.Parallel()
	url := testenv.OwnDatabaseURL(t)
	srv := netfault.NewServer()
	defer srv.Close()
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := srv.Proxy("postgres", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxied, err := proxy.Rewrite(url)
	if err != nil {
		t.Fatal(err)
	}
	down, err := proxy.Reset(0)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("postgres", proxied)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	streams := testenv.Streams(t)
	run := goForwarder(t, db, streams, outbox.ForwarderConfig{PollInterval: 100 * time.Millisecond, BatchSize: 10})
	defer run.stop()

	select {
	case <-run.done:
		t.Fatalf("Run() = %v while the database was away, want it to wait", run.err)
	case <-time.After(time.Second):
	}
	if err := down.Remove(); err != nil {
		t.Fatal(err)
	}
	own, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	publish(t, own, context.Background(), events.OrderPlaced{OrderID: "after-the-outage"})
	rdb := streams.NewClient()
	defer rdb.Close()
	entries(t, rdb, streams.Name(events.StreamOrdersPlaced), 1)
}

// TestForwarder_subscribesOnceTheDatabaseLetsIt: the forwarder's
// subscription first writes its group's row; when the database refuses
// that for a passing reason (here a lock on the offsets table, which the
// forwarder's sessions wait for only briefly), the forwarder tries again
// instead of ending, and forwards once the lock is gone.
func TestForwarder_subscribesOnceTheDatabaseLetsIt(t *testing.T) {
	t.Parallel()
	url := testenv.OwnDatabaseURL(t)
	own, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	// SHARE conflicts with the row's INSERT, not with the reads of the
	// start's alignment check.
	lock, err := own.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()
	if _, err := lock.Exec(`LOCK TABLE watermill_offsets_outbox IN SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	db, err := postgres.Open(context.Background(), url, 4, postgres.LockTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	logs := &testenv.Buffer{}
	streams := testenv.Streams(t)
	streams.Logger = watermill.NewSlogLogger(slog.New(slog.NewTextHandler(logs, nil)))
	run := goForwarder(t, db, streams, outbox.ForwarderConfig{PollInterval: 100 * time.Millisecond, BatchSize: 10})
	defer run.stop()

	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "Cannot subscribe to the outbox yet") {
		select {
		case <-run.done:
			t.Fatalf("Run() = %v while the offsets table was locked, want it to wait", run.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed subscription logged:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	publish(t, own, context.Background(), events.OrderPlaced{OrderID: "after-the-lock"})
	rdb := streams.NewClient()
	defer rdb.Close()
	entries(t, rdb, streams.Name(events.StreamOrdersPlaced), 1)
}
