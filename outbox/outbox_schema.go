package outbox

import (
	"fmt"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"

	"github.com/orderstream/orderstream/postgres"
)

// outboxSchema is watermill-sql's Postgres schema with a select whose cost
// does not grow with the backlog. The default select finds the next rows
// with an OR over (transaction id, offset), which the planner cannot turn
// into one index range: with a million pending rows each poll filters most
// of them. A row comparison on the primary key is that range, so a poll
// reads only the rows it returns.
//
// It also sets two things of the poll's transaction, in the same
// statement:
//
//   - idle_in_transaction_session_timeout to pollIdle (when not zero):
//     watermill-sql sends nothing between its select and the ack of a
//     batch, so to the server a poll sits idle in its transaction for as
//     long as the batch takes to publish, and the pool's limit
//     (DB_IDLE_IN_TRANSACTION_TIMEOUT, 15 s) would end a batch slowed by
//     Redis, to be rolled back whole and forwarded again. A poll whose
//     select returns no row publishes nothing and ends at once.
//   - synchronous_commit off: the commit that moves the group's position
//     past a batch does not wait for its WAL to reach the disk. Redis
//     accepted every row of the batch before it, so a crash of PostgreSQL
//     that loses the position costs the batch being forwarded again (at
//     least once, the inbox drops the copies), never a row skipped. The
//     position is never lost while anything that relies on it is kept:
//     the WAL reaches the disk in order, so the durable commit of a
//     clean-up that deleted rows below it makes it durable first.
type outboxSchema struct {
	wsql.DefaultPostgreSQLSchema
	pollIdle time.Duration
}

func (s outboxSchema) SelectQuery(topic, consumerGroup string, offsets wsql.OffsetsAdapter) wsql.Query {
	next := offsets.NextOffsetQuery(topic, consumerGroup)
	batch := s.SubscribeBatchSize
	if batch == 0 {
		batch = 100
	}
	// Same rows, same order as the default: after the group's position,
	// and only below the horizon (writersHorizon), so that a transaction
	// that commits late cannot slip in behind rows already forwarded.
	query := `
		WITH last_processed AS (` + next.Query + `)
		SELECT "offset", transaction_id, uuid, payload, metadata FROM ` + s.MessagesTable(topic) + `
		WHERE (transaction_id, "offset") >
		      ((SELECT last_processed_transaction_id FROM last_processed), (SELECT offset_acked FROM last_processed))
		  AND transaction_id < (` + writersHorizon + `)` + s.settings() + `
		ORDER BY transaction_id, "offset"
		LIMIT ` + fmt.Sprint(batch)
	return wsql.Query{Query: query, Args: next.Args}
}

// settings is the select's condition that sets the poll's transaction's
// settings, evaluated once (an uncorrelated scalar subquery) before the
// first row is returned.
func (s outboxSchema) settings() string {
	set := `set_config('synchronous_commit', 'off', true)`
	if s.pollIdle > 0 {
		set += fmt.Sprintf(` || set_config('idle_in_transaction_session_timeout', '%d', true)`, s.pollIdle.Milliseconds())
	}
	return `
		  AND (SELECT ` + set + `) IS NOT NULL`
}

// writersHorizon is the transaction id below which every transaction that
// may write the outbox has ended, by the snapshot of the statement it is
// part of: the rows read below it are all the rows that will ever be there.
//
// watermill-sql's default is pg_snapshot_xmin, the oldest transaction
// still running anywhere in the cluster: then one session that holds a
// row lock, or sits idle in a transaction, for minutes, holds back every
// event committed after it began. But only transactions that hold
// postgres.LockOutboxWriters write the outbox, and they take it before
// they have a transaction id. So a transaction of the snapshot that runs
// without the lock when the locks are read (after the snapshot was taken)
// never writes the outbox, and is not waited for. One that ended between
// the two is waited for: its rows, if any, are not in the snapshot. One
// that has the lock and no id yet will get an id above the snapshot's
// xmax. pg_locks is read once (MATERIALIZED), so that a transaction's id
// and its locks are seen at one moment; the low 32 bits of a running
// transaction's xid8 are its xid.
//
// Two things pg_locks shows are not what they seem, and either would make
// a writer look lockless, its rows passed over for good:
//
//   - Only the owner of a transaction id holds its ExclusiveLock. Another
//     session that waited for the transaction (for a row it had locked)
//     is granted a ShareLock on the id once it has ended, and holds it
//     for a moment; a waiter without the writers' lock is not the writer.
//   - A lock's virtualtransaction is read from its backend as each lock is
//     copied, while a committing backend resets it before it releases its
//     locks: one read of pg_locks can show the transaction id under one
//     virtual transaction and the writers' lock under another (N/0). The
//     backend's pid does not change, and a backend holds one transaction's
//     locks at a time, so the writers' lock is matched by pid; by
//     virtualtransaction too, for a prepared transaction, which has no pid.
var writersHorizon = fmt.Sprintf(`
		WITH locks AS MATERIALIZED (
			SELECT locktype, mode, database, classid, objid, objsubid, transactionid, virtualtransaction, pid
			FROM pg_locks WHERE granted AND locktype IN ('advisory', 'transactionid')
		)
		SELECT COALESCE(min(x), pg_snapshot_xmax(pg_current_snapshot()))
		FROM pg_snapshot_xip(pg_current_snapshot()) AS x
		WHERE x::xid NOT IN (
			SELECT t.transactionid FROM locks t
			WHERE t.locktype = 'transactionid' AND t.mode = 'ExclusiveLock'
			  AND NOT EXISTS (
				SELECT FROM locks w
				WHERE w.locktype = 'advisory'
				  AND (w.pid = t.pid OR w.virtualtransaction = t.virtualtransaction)
				  AND w.database = (SELECT oid FROM pg_database WHERE datname = current_database())
				  AND w.classid = %d AND w.objid = %d AND w.objsubid = 1))`,
	lockOutboxWritersClassID, lockOutboxWritersObjID)

var lockOutboxWritersClassID, lockOutboxWritersObjID = postgres.LockOutboxWritersID()
