package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/migrations"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/postgres"
)

// TestRealignOutbox_afterRestoreIntoAnotherCluster copies a database with
// pg_dump from a cluster whose transaction ids are far ahead (a cluster of
// the test's own) into the shared one, whose ids are behind, as a restore
// into a new cluster does; then shows the forwarder and the clean-up
// refusing, the realignment, and every event on its stream exactly once.
func TestRealignOutbox_afterRestoreIntoAnotherCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	targetURL := testenv.OwnDatabaseURL(t)
	target := open(t, targetURL)
	var here string
	if err := target.QueryRow(`SELECT pg_current_xact_id()::text`).Scan(&here); err != nil {
		t.Fatal(err)
	}
	xid, _ := strconv.ParseUint(here, 10, 64)
	old := startCluster(t, xid>>32+1)
	oldURL := old.url("orderstream")
	source := open(t, oldURL) // creates the database
	if err := migrations.Apply(ctx, source, testenv.Logger(t)); err != nil {
		t.Fatal(err)
	}
	streams := testenv.Streams(t)
	rdb := streams.NewClient()
	defer rdb.Close()
	key := streams.Name(events.StreamOrdersPlaced)
	cfg := outbox.ForwarderConfig{PollInterval: 20 * time.Millisecond, BatchSize: 100}

	// In the old cluster: three events forwarded, two not yet.
	for i := range 3 {
		publish(t, source, ctx, events.OrderPlaced{OrderID: fmt.Sprintf("forwarded-%d", i)})
	}
	stop := startForwarder(t, source, streams, cfg)
	entries(t, rdb, key, 3)
	waitPending(t, source, 0) // and acked
	if err := stop(); err != nil {
		t.Fatalf("forwarder in the old cluster: %v", err)
	}
	for i := range 2 {
		publish(t, source, ctx, events.OrderPlaced{OrderID: fmt.Sprintf("pending-%d", i)})
	}
	dump := filepath.Join(t.TempDir(), "orderstream.dump")
	for _, cmd := range []*exec.Cmd{
		exec.Command(filepath.Join(old.bin, "pg_dump"), "--format=custom", "--file="+dump, "--dbname="+oldURL),
		exec.Command(filepath.Join(old.bin, "pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
			"--dbname="+targetURL, dump),
	} {
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", filepath.Base(cmd.Path), err, out)
		}
	}

	// In the new cluster: two events written after the restore.
	for i := range 2 {
		publish(t, target, ctx, events.OrderPlaced{OrderID: fmt.Sprintf("local-%d", i)})
	}
	var m *outbox.Misalignment
	if err := outbox.CheckOutboxAlignment(ctx, target); !errors.As(err, &m) || m.Position < m.Next {
		t.Fatalf("CheckOutboxAlignment() = %v, want the forwarder's position ahead", err)
	}
	f, err := outbox.NewForwarder(target, streams, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A forwarder that does start runs until the deadline and returns nil.
	runCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := f.Run(runCtx); !errors.Is(err, outbox.ErrOutboxMisaligned) || !strings.Contains(err.Error(), "orderstream outbox realign") {
		t.Fatalf("forwarder Run() = %v, want a refusal naming orderstream outbox realign", err)
	}
	if n, err := outbox.CleanOutbox(ctx, target, 0); !errors.Is(err, outbox.ErrOutboxMisaligned) || n != 0 {
		t.Errorf("CleanOutbox() = %d, %v; want a refusal", n, err)
	}
	if n := outboxRows(t, target); n != 7 {
		t.Errorf("%d outbox rows after the clean-up, want all 7 kept", n)
	}
	if st, err := outbox.Outbox(ctx, target); err != nil || st.Misalignment == nil {
		t.Errorf("Outbox() = %+v, %v; want the misalignment reported", st, err)
	}

	// One more event, its transaction still open while the outbox is
	// realigned.
	endInFlight := openTx(t, ctx, target, func(ctx context.Context, tx *postgres.Tx) error {
		return tx.Publish(ctx, events.OrderPlaced{OrderID: "in-flight"})
	})
	r, err := outbox.RealignOutbox(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	if r.Misalignment == nil || r.Passed != 3 || r.Pending != 2 || r.Local != 2 {
		t.Errorf("RealignOutbox() = %+v, want 3 passed, 2 pending, 2 local", r)
	}
	endInFlight(true)
	if err := outbox.CheckOutboxAlignment(ctx, target); err != nil {
		t.Fatalf("after realigning: %v", err)
	}
	if r, err := outbox.RealignOutbox(ctx, target); err != nil || r.Misalignment != nil {
		t.Errorf("RealignOutbox() again = %+v, %v; want nothing to do", r, err)
	}

	stop = startForwarder(t, target, streams, cfg)
	defer stop()
	entries(t, rdb, key, 8)
	waitPending(t, target, 0)
	var got []string
	for _, msg := range entries(t, rdb, key, 8) {
		e, err := events.Decode[events.OrderPlaced](msg)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.OrderID)
	}
	want := "forwarded-0 forwarded-1 forwarded-2 pending-0 pending-1 local-0 local-1 in-flight"
	if strings.Join(got, " ") != want {
		t.Errorf("stream holds\n%s\nwant each event once, in this order\n%s", strings.Join(got, " "), want)
	}
	if n, err := outbox.CleanOutbox(ctx, target, 0); err != nil || n < 5 {
		t.Errorf("CleanOutbox() = %d, %v; want at least the 5 restored rows deleted", n, err)
	}
}

// TestRealignOutbox_changesNothingWhenAligned: realigning an outbox that
// needs none would move the position back before what was forwarded.
func TestRealignOutbox_changesNothingWhenAligned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.OwnDB(t)
	streams := testenv.Streams(t)
	rdb := streams.NewClient()
	defer rdb.Close()
	publish(t, db, ctx, events.OrderPlaced{OrderID: "o"})
	stop := startForwarder(t, db, streams, outbox.ForwarderConfig{PollInterval: 20 * time.Millisecond, BatchSize: 10})
	entries(t, rdb, streams.Name(events.StreamOrdersPlaced), 1)
	waitPending(t, db, 0)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	before, err := outbox.Outbox(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := outbox.RealignOutbox(ctx, db); err != nil || r.Misalignment != nil {
		t.Errorf("RealignOutbox() = %+v, %v; want nothing done", r, err)
	}
	after, err := outbox.Outbox(ctx, db)
	if err != nil || !reflect.DeepEqual(after, before) {
		t.Errorf("outbox status %+v, then %+v (%v); want it unchanged", before, after, err)
	}
}

// TestRealignOutbox_rowsAheadOfAPositionBehind: this cluster's counter has
// overtaken the forwarder's restored position, but not every restored row.
// Those rows are forwarded at once instead of when the counter reaches them.
func TestRealignOutbox_rowsAheadOfAPositionBehind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.OwnDB(t)
	streams := testenv.Streams(t)
	rdb := streams.NewClient()
	defer rdb.Close()
	publish(t, db, ctx, events.OrderPlaced{OrderID: "local"})
	// A row from a cluster 2^32 transactions ahead.
	if _, err := db.Exec(`INSERT INTO watermill_outbox (uuid, payload, transaction_id)
		SELECT uuid, payload, (transaction_id::text::numeric + 4294967296)::text::xid8 FROM watermill_outbox`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO watermill_offsets_outbox (consumer_group, offset_acked, last_processed_transaction_id)
		VALUES ('forwarder', 0, '0')`); err != nil {
		t.Fatal(err)
	}
	var m *outbox.Misalignment
	if err := outbox.CheckOutboxAlignment(ctx, db); !errors.As(err, &m) || m.Newest < m.Next || m.Position > m.Next {
		t.Fatalf("CheckOutboxAlignment() = %v, want rows ahead", err)
	}
	if r, err := outbox.RealignOutbox(ctx, db); err != nil || r.Pending != 1 || r.Local != 1 {
		t.Fatalf("RealignOutbox() = %+v, %v; want 1 pending, 1 local", r, err)
	}
	defer startForwarder(t, db, streams, outbox.ForwarderConfig{PollInterval: 20 * time.Millisecond, BatchSize: 10})()
	entries(t, rdb, streams.Name(events.StreamOrdersPlaced), 2)
	waitPending(t, db, 0)
}

func open(t *testing.T, url string) *sql.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), url, 10)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func outboxRows(t *testing.T, db *sql.DB) (n int) {
	t.Helper()
	if err := db.QueryRow(`SELECT count(*) FROM watermill_outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitPending waits until the forwarder has n rows left to forward.
func waitPending(t *testing.T, db *sql.DB, n int64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := outbox.Outbox(context.Background(), db)
		if err == nil && st.Pending == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox status %+v (%v), want %d pending", st, err, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
