package outbox_test

import (
	"context"
	"database/sql"
	neturl "net/url"
	"testing"
	"time"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/netfault"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/outbox"
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
	f, err := outbox.NewForwarder(db, streams, outbox.ForwarderConfig{PollInterval: 100 * time.Millisecond, BatchSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
	}()

	select {
	case err := <-done:
		t.Fatalf("Run() = %v while the database was away, want it to wait", err)
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
	rdb := streams.Client()
	defer rdb.Close()
	entries(t, rdb, streams.Name(events.StreamOrdersPlaced), 1)
}
