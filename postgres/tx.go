package postgres

import (
	"context"
	"database/sql"
	"fmt"
)

type txKey struct{}

// WithTx returns a context that carries tx, so that InTx called with it joins
// tx instead of starting its own transaction.
func WithTx(ctx context.Context, tx *sql.Tx) context.Context {
	return context.WithValue(ctx, txKey{}, tx)
}

// TxFrom returns the transaction ctx carries, if any.
func TxFrom(ctx context.Context) (*sql.Tx, bool) {
	tx, ok := ctx.Value(txKey{}).(*sql.Tx)
	return tx, ok
}

// InTx runs fn in a transaction. When ctx already carries one (a message
// handler running inside the inbox's transaction), fn joins it and the owner
// of that transaction commits; otherwise InTx begins a transaction, commits it
// when fn returns nil and rolls it back when fn fails.
func InTx(ctx context.Context, db *sql.DB, fn func(tx *sql.Tx) error) error {
	if tx, ok := TxFrom(ctx); ok {
		return fn(tx)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}
