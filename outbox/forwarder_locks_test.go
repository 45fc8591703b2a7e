package outbox_test

import (
	"context"
	"database/sql"
	"net/url"
	"testing"
	"time"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/postgres"
)

// The forwarder's horizon (writersHorizon) reads pg_locks to tell the
// transactions that may write the outbox from those that cannot. Under
// load pg_locks shows, for a moment, two things that would make a writer
// look lockless: its writers' lock under another virtual transaction than
// its transaction id (a committing backend resets its own while its locks
// are read), and a ShareLock on its id held by a lockless session that
// waited for it. Here a view stands in for pg_catalog.pg_locks on the
// forwarder's connections and shows either for as long as the test needs,
// while the writer is open; a forwarder that takes the writer for a
// lockless one forwards what was committed after it and never its event.
func TestForwarder_waitsForAWriterThatPgLocksShowsAmiss(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		show func(db *sql.DB, pid int, xid string) error // makes the view show it of the writer
	}{
		{"its_writers_lock_under_another_virtual_transaction", func(db *sql.DB, pid int, _ string) error {
			_, err := db.Exec(`INSERT INTO lockview.reset_lxid (pid) VALUES ($1)`, pid)
			return err
		}},
		{"a_lockless_waiter_granted_a_share_lock_on_its_id", func(db *sql.DB, _ int, xid string) error {
			_, err := db.Exec(`INSERT INTO lockview.waiter (xid) VALUES ($1::text::xid)`, xid)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dsn := testenv.OwnDatabaseURL(t)
			db := openDB(t, dsn)
			if _, err := db.Exec(lockView); err != nil {
				t.Fatal(err)
			}
			streams := testenv.Streams(t)
			rdb := streams.NewClient()
			defer rdb.Close()
			key := streams.Name(events.StreamOrdersPlaced)

			publish(t, db, ctx, events.OrderPlaced{OrderID: "before"})
			var pid int
			var xid string
			end := openTx(t, ctx, db, func(ctx context.Context, tx *postgres.Tx) error {
				if err := tx.Publish(ctx, events.OrderPlaced{OrderID: "held"}); err != nil {
					return err
				}
				return tx.QueryRowContext(ctx, `SELECT pg_backend_pid(), pg_current_xact_id()::xid::text`).Scan(&pid, &xid)
			})
			if err := tc.show(db, pid, xid); err != nil {
				t.Fatal(err)
			}
			publish(t, db, ctx, events.OrderPlaced{OrderID: "after"})

			runForwarder(t, openDB(t, withLockView(t, dsn)), streams,
				outbox.ForwarderConfig{PollInterval: 20 * time.Millisecond, BatchSize: 100})
			// "before" on the stream: a poll has run while the writer was
			// open and "after" committed.
			entries(t, rdb, key, 1)
			end(true)
			if got := orderIDs(t, entries(t, rdb, key, 3)); got != "before held after" {
				t.Errorf("stream holds %s, want before held after", got)
			}
		})
	}
}

// lockView is pg_catalog.pg_locks with what the tables beside it ask for:
// the advisory locks of the pids in reset_lxid under virtual transaction
// N/0, and for each id in waiter a granted ShareLock on it, held by a
// session that holds nothing else.
const lockView = `
	CREATE SCHEMA lockview;
	CREATE TABLE lockview.reset_lxid (pid int);
	CREATE TABLE lockview.waiter (xid xid);
	CREATE VIEW lockview.pg_locks AS
		SELECT locktype, database, relation, page, tuple, virtualxid, transactionid, classid, objid, objsubid,
		       CASE WHEN locktype = 'advisory' AND pid IN (SELECT pid FROM lockview.reset_lxid)
		            THEN split_part(virtualtransaction, '/', 1) || '/0' ELSE virtualtransaction END AS virtualtransaction,
		       pid, mode, granted, fastpath, waitstart
		FROM pg_catalog.pg_locks
		UNION ALL
		SELECT 'transactionid', NULL, NULL, NULL, NULL, NULL, xid, NULL, NULL, NULL,
		       '999/1', 0, 'ShareLock', true, false, NULL
		FROM lockview.waiter`

// withLockView returns dsn with a search path that finds lockview.pg_locks
// before pg_catalog's, and the tables in public.
func withLockView(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", "public,lockview,pg_catalog")
	u.RawQuery = q.Encode()
	return u.String()
}

func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), dsn, 10)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
