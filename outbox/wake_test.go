package outbox_test

import (
	"context"
	"database/sql"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/lib/pq"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/outbox"
)

// TestCommitNotifier_logs: a notification the CommitNotifier could not
// send is logged as an error (the events then wait for the fallback poll,
// which nothing else would show); one it sent is not.
func TestCommitNotifier_logs(t *testing.T) {
	t.Parallel()
	const failed = "Cannot notify the forwarders"

	t.Run("a_notification_not_sent", func(t *testing.T) {
		t.Parallel()
		db, err := sql.Open("postgres", "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		n, log := runNotifier(t, db)
		n.Committed(0)
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(log.String(), failed) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q logged:\n%s", failed, log.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	})

	t.Run("a_notification_sent", func(t *testing.T) {
		t.Parallel()
		url := testenv.OwnDatabaseURL(t)
		db, err := sql.Open("postgres", url)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		l := pq.NewListener(url, 100*time.Millisecond, time.Second, nil)
		defer l.Close()
		if err := l.Listen("watermill_outbox"); err != nil {
			t.Fatal(err)
		}
		n, log := runNotifier(t, db)
		// The second notification is sent after the first was handled,
		// its outcome logged or not.
		for range 2 {
			n.Committed(0)
			select {
			case <-l.Notify:
			case <-time.After(15 * time.Second):
				t.Fatal("no notification")
			}
		}
		if strings.Contains(log.String(), failed) {
			t.Errorf("a notification that was sent logged %q:\n%s", failed, log.String())
		}
	})
}

// runNotifier runs a CommitNotifier on db until t ends, and returns it
// with its log.
func runNotifier(t *testing.T, db *sql.DB) (*outbox.CommitNotifier, *testenv.Buffer) {
	t.Helper()
	log := &testenv.Buffer{}
	n, err := outbox.NewCommitNotifier(db, watermill.NewSlogLogger(slog.New(slog.NewTextHandler(log, nil))), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return n, log
}
