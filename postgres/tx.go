package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/orderstream/orderstream/events"
)

// Tx is a transaction that holds the outbox writers' lock
// (LockOutboxWriters): the only kind of transaction an event can be
// published in (Tx.Publish). Two things begin one, and nothing else can:
//
//   - InTx, for work that starts outside a message (an HTTP request, an
//     operator command);
//   - the inbox (Inbox), for each message a handler handles: the handler
//     receives it as an argument (InInbox) and writes its effect in it, with
//     the inbox row.
//
// A Tx is not safe for use by several goroutines at once, as *sql.Tx is not.
type Tx struct {
	tx          *sql.Tx
	afterCommit []func()
	// published are the messages written to the outbox in this
	// transaction, for the handler test kit (Published).
	published []events.Event
}

// ErrNestedTx is returned by InTx called with the context of a
// transaction, InTx's or a message handler's: what it writes belongs in
// that transaction, the one the caller was handed, or it would commit
// apart from it (a handler's effect apart from its inbox row).
var ErrNestedTx = errors.New("a transaction within a transaction: write in the Tx you were handed")

// ExecContext, QueryContext and QueryRowContext run a statement in the
// transaction, as *sql.Tx's methods of those names do.
func (tx *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return tx.tx.ExecContext(ctx, query, args...)
}

func (tx *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return tx.tx.QueryContext(ctx, query, args...)
}

func (tx *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return tx.tx.QueryRowContext(ctx, query, args...)
}

// AfterCommit arranges for fn to run once the transaction has committed;
// it does not run if the transaction rolls back. What must only be seen
// once the change is durable goes here: a metric, a wake-up.
func (tx *Tx) AfterCommit(fn func()) { tx.afterCommit = append(tx.afterCommit, fn) }

// txKey is the context key of the transaction a context belongs to.
type txKey struct{}

// InTx runs fn in a transaction it begins: it commits when fn returns nil
// and rolls back when fn fails. The transaction takes the outbox writers'
// lock first, so fn may publish events (Tx.Publish).
//
// Called with the context of a transaction (within fn, or in a message
// handler, whose context carries the inbox's), it begins nothing and
// returns ErrNestedTx: the caller writes in the transaction it is handed.
func InTx(ctx context.Context, db *sql.DB, fn func(ctx context.Context, tx *Tx) error) error {
	if _, ok := ctx.Value(txKey{}).(*Tx); ok {
		return ErrNestedTx
	}
	tx, _, err := begin(ctx, db, "")
	if err != nil {
		return err
	}
	defer tx.tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := fn(context.WithValue(ctx, txKey{}, tx), tx); err != nil {
		return err
	}
	return tx.commit()
}

// LockOutboxWriters is the advisory lock that marks a transaction which
// may write the outbox. Every transaction begun here takes it, shared, as
// its first statement: before it writes anything, so before it has a
// transaction id. The forwarder then waits only for the transactions that
// hold it (outbox's outboxSchema): a transaction id whose owner runs
// without it belongs to a transaction that will never write the outbox,
// such as another client's row lock or idle transaction. Nothing takes it
// exclusively, so it never makes anyone wait.
const LockOutboxWriters int64 = 0x6f7374_0003

// LockOutboxWritersID is LockOutboxWriters as pg_locks shows an advisory
// lock taken with one bigint key: classid the high 32 bits, objid the low
// ones, objsubid 1.
func LockOutboxWritersID() (classid, objid uint32) {
	return uint32(uint64(LockOutboxWriters) >> 32), uint32(uint64(LockOutboxWriters) & 0xffffffff)
}

// writerLock takes LockOutboxWriters. writerLockQuery, the statement,
// has no parameters: one round trip (the simple protocol).
var (
	writerLock      = fmt.Sprintf(`pg_advisory_xact_lock_shared(%d)`, LockOutboxWriters)
	writerLockQuery = "SELECT " + writerLock
)

// begin starts a transaction that holds LockOutboxWriters (and, through a
// transaction pooler, the pool's limits). All it begins with is sent with
// the BEGIN, in one round trip (beginWith): the lock first, then the lock
// wait WithLockWait gave ctx (after the pool's limits, which the lock's
// statement may set), then more, statements without parameters ("" for
// none), whose last result it returns.
func begin(ctx context.Context, db *sql.DB, more string) (*Tx, sql.Result, error) {
	first := lockQueryOf(db)
	if d, ok := lockWait(ctx); ok {
		first += fmt.Sprintf("; SELECT set_config('lock_timeout', '%s', true)", millis(d))
	}
	if more != "" {
		first += "; " + more
	}
	tx, res, err := beginWith(ctx, db, nil, first)
	if err != nil {
		return nil, nil, fmt.Errorf("begin transaction and take outbox writers' lock: %w", err)
	}
	return &Tx{tx: tx}, res, nil
}

// commit commits, then runs what was arranged with AfterCommit.
func (tx *Tx) commit() error {
	if err := tx.tx.Commit(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	for _, fn := range tx.afterCommit {
		fn()
	}
	return nil
}
