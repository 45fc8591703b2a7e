package postgres_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/postgres"
)

// A transaction that may publish takes the outbox writers' lock in the
// round trip of its BEGIN. The forwarder's horizon relies on the lock
// coming before the transaction has an id (postgres.LockOutboxWriters):
// here the lock is held exclusively while an inbox transaction and an
// InTx begin, and their sessions, waiting for it, must have no
// transaction id and have written nothing; once the lock is free, their
// work runs. The inbox's row travels in the same round trip: the
// statement that waits for the lock holds its insert.
func TestBegin_takesTheWritersLockBeforeTheTransactionHasAnID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// sent is what the statement waiting for the lock also holds.
		sent  string
		begin func(t *testing.T, db *sql.DB, work func()) <-chan error
	}{
		{"inbox", "INSERT INTO inbox", func(t *testing.T, db *sql.DB, work func()) <-chan error {
			pubsub := route(t, db, nil, map[string]message.NoPublishHandlerFunc{
				"locked": inInbox(func(context.Context, *postgres.Tx, *message.Message) error {
					work()
					return nil
				}),
			})
			done := make(chan error, 1)
			go func() { done <- pubsub.Publish("topic", message.NewMessage(testenv.Unique("uuid"), nil)) }()
			return done
		}},
		{"in_tx", "pg_advisory_xact_lock_shared", func(t *testing.T, db *sql.DB, work func()) <-chan error {
			done := make(chan error, 1)
			go func() {
				done <- postgres.InTx(context.Background(), db, func(context.Context, *postgres.Tx) error {
					work()
					return nil
				})
			}()
			return done
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			writersLockComesFirst(t, tc.sent, tc.begin)
		})
	}
}

// writersLockComesFirst holds the writers' lock while begin begins a
// transaction, and checks that it waits for the lock without an id, in a
// statement that holds sent.
func writersLockComesFirst(t *testing.T, sent string, begin func(t *testing.T, db *sql.DB, work func()) <-chan error) {
	ctx := context.Background()
	db, err := postgres.Open(ctx, testenv.OwnDatabaseURL(t), 10) // its own: the lock stops every writer of its database
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	holder, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := holder.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, postgres.LockOutboxWriters); err != nil {
		t.Fatal(err)
	}
	handled := make(chan struct{})
	published := begin(t, db, func() { close(handled) })

	pid := waitingForTheWritersLock(t, db)
	var xid sql.NullString
	var query string
	if err := db.QueryRowContext(ctx, `SELECT backend_xid::text, query FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&xid, &query); err != nil {
		t.Fatal(err)
	}
	if xid.Valid {
		t.Errorf("the transaction waits for the writers' lock with transaction id %s, want none yet", xid.String)
	}
	if !strings.HasPrefix(query, "BEGIN") || !strings.Contains(query, sent) {
		t.Errorf("the statement waiting for the writers' lock is %q, want the BEGIN with %q", query, sent)
	}
	var rows int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM inbox`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Errorf("%d inbox rows visible before the lock was taken", rows)
	}

	if _, err := holder.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, postgres.LockOutboxWriters); err != nil {
		t.Fatal(err)
	}
	select {
	case <-handled:
	case <-time.After(30 * time.Second):
		t.Fatal("the transaction's work did not run once the writers' lock was free")
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
}

// waitingForTheWritersLock returns the pid of the session that waits for
// LockOutboxWriters.
func waitingForTheWritersLock(t *testing.T, db *sql.DB) int {
	t.Helper()
	classid, objid := postgres.LockOutboxWritersID()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var pid int
		err := db.QueryRow(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND classid = $1 AND objid = $2 AND objsubid = 1`, classid, objid).Scan(&pid)
		switch {
		case err == nil:
			return pid
		case err != sql.ErrNoRows:
			t.Fatal(err)
		case time.Now().After(deadline):
			t.Fatal("no session came to wait for the writers' lock")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
