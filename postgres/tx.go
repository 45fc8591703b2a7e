package postgres

import (
	"context"
	"database/sql"
	"fmt"
)

// txState is the transaction a context carries, and what is to run once it
// has committed.
type txState struct {
	tx          *sql.Tx
	afterCommit []func()
}

type txKey struct{}

// TxFrom returns the transaction ctx carries, if any.
func TxFrom(ctx context.Context) (*sql.Tx, bool) {
	s, ok := ctx.Value(txKey{}).(*txState)
	if !ok {
		return nil, false
	}
	return s.tx, true
}

// AfterCommit arranges for fn to run once the transaction ctx carries has
// committed; it does not run if the transaction rolls back. Without a
// transaction in ctx, fn runs at once.
func AfterCommit(ctx context.Context, fn func()) {
	if s, ok := ctx.Value(txKey{}).(*txState); ok {
		s.afterCommit = append(s.afterCommit, fn)
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

// begin starts a transaction and returns a context that carries it.
func begin(ctx context.Context, db *sql.DB) (context.Context, *txState, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return ctx, nil, fmt.Errorf("begin transaction: %w", err)
	}
	s := &txState{tx: tx}
	return context.WithValue(ctx, txKey{}, s), s, nil
}

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
