package postgres

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/orderstream/orderstream/events"
)

// txState is the transaction a context carries, and what is to run once it
// has committed.
type txState struct {
	tx          *sql.Tx
	afterCommit []func()
}

// stateFrom returns the transaction ctx carries, if InTx or the inbox
// began it. The context carries it as the events.Writer that
// events.Publish writes in.
func stateFrom(ctx context.Context) (*txState, bool) {
	w, ok := events.WriterFrom(ctx)
	if !ok {
		return nil, false
	}
	s, ok := w.(*txState)
	return s, ok
}

// TxFrom returns the transaction ctx carries, if any.
func TxFrom(ctx context.Context) (*sql.Tx, bool) {
	s, ok := stateFrom(ctx)
	if !ok {
		return nil, false
	}
	return s.tx, true
}

// AfterCommit arranges for fn to run once the transaction ctx carries has
// committed; it does not run if the transaction rolls back. Without a
// transaction in ctx, fn runs at once.
func AfterCommit(ctx context.Context, fn func()) {
	if s, ok := stateFrom(ctx); ok {
		s.AfterCommit(fn)
		return
	}
	fn()
}

// InTx runs fn in a transaction, passing it a context that carries the
// transaction (for AfterCommit, and for InTx calls within fn to join). When
// ctx already carries one (a message handler running inside the inbox's
// transaction), fn joins it and the owner of that transaction commits;
// otherwise InTx begins a transaction, commits it when fn returns nil and
// rolls it back when fn fails.
func InTx(ctx context.Context, db *sql.DB, fn func(ctx context.Context, tx *sql.Tx) error) error {
	if tx, ok := TxFrom(ctx); ok {
		return fn(ctx, tx)
	}
	ctx, s, err := begin(ctx, db)
	if err != nil {
		return err
	}
	defer s.tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := fn(ctx, s.tx); err != nil {
		return err
	}
	return s.commit()
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
// transaction pooler, the pool's limits) and returns a context that
// carries it.
func begin(ctx context.Context, db *sql.DB) (context.Context, *txState, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return ctx, nil, fmt.Errorf("begin transaction: %w", err)
	}
	if _, err := tx.ExecContext(ctx, lockQueryOf(db)); err != nil {
		tx.Rollback() //nolint:errcheck // the lock's error is the one to report
		return ctx, nil, fmt.Errorf("begin transaction: take outbox writers' lock: %w", err)
	}
	s := &txState{tx: tx}
	return events.WithWriter(ctx, s), s, nil
}

// Tx and AfterCommit make a txState the events.Writer of its context.
func (s *txState) Tx() *sql.Tx { return s.tx }

func (s *txState) AfterCommit(fn func()) { s.afterCommit = append(s.afterCommit, fn) }

// commit commits, then runs what was arranged with AfterCommit.
func (s *txState) commit() error {
	if err := s.tx.Commit(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	for _, fn := range s.afterCommit {
		fn()
	}
	return nil
}
