package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/lib/pq"
)

// OpenPooled is Open for a dsn that reaches PostgreSQL through a pooler in
// transaction mode, such as PgBouncer with pool_mode = transaction: each
// transaction, and each statement outside one, may run on another server
// session, which runs other clients' transactions in between.
//
// A parameter set for a session would then apply to whatever else runs on
// it, and PgBouncer refuses the ones it does not know at connect anyway
// (ErrParameterRefused). So the limits of opts (IdleInTransactionTimeout,
// LockTimeout, StatementTimeout) are set within each transaction, for it
// alone (set_config with is_local): InTx sets them in the statement that
// takes LockOutboxWriters, at no cost; BeginTx, for the transactions a
// library begins, in one statement more. Statements outside a transaction
// are bounded only by their contexts, whose cancel requests PgBouncer
// forwards. The other options are sent at connect, as Open sends them:
// PgBouncer passes ApplicationName on, and refuses ReadOnly.
//
// No keepalives are asked for: the server's client is the pooler, and a
// vanished client's transaction is ended by the idle timeout set in it. A
// session of its own (LISTEN, the migrations' advisory lock, read-only
// sessions) cannot be had through such a pooler: open it with Open on
// PostgreSQL itself.
//
// binary_parameters must stay on: without it a statement with parameters
// is parsed in one round trip and run in a second, and the pooler may hand
// the session to another client in between.
func OpenPooled(ctx context.Context, dsn string, maxConns int, opts ...Option) (*sql.DB, error) {
	params := []param{{"binary_parameters", "yes"}}
	var local []param
	for _, o := range opts {
		if o.perTransaction {
			local = append(local, o.param)
		} else {
			params = append(params, o.param)
		}
	}
	withOpts, err := withParams(dsn, params)
	if err != nil {
		return nil, err
	}
	cfg, err := pq.NewConfig(withOpts)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if !cfg.BinaryParameters {
		return nil, errors.New("open database: through a transaction pooler binary_parameters must be on")
	}
	c, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	d := pgDriver{pooled: true, lockQuery: writerLockQuery}
	if len(local) > 0 {
		set := setLocal(local)
		d.lockQuery = "SELECT " + set + ", " + writerLock
		d.setQuery = "SELECT " + set
	}
	return connect(ctx, sql.OpenDB(connector{c, d}), dsn, maxConns, true)
}

// setLocal is set_config calls that set params for the current
// transaction only.
func setLocal(params []param) string {
	calls := make([]string, len(params))
	for i, p := range params {
		calls[i] = fmt.Sprintf("set_config(%s, %s, true)", pq.QuoteLiteral(p.name), pq.QuoteLiteral(p.value))
	}
	return strings.Join(calls, ", ")
}

// BeginTx begins a transaction as db.BeginTx does. Through a transaction
// pooler (OpenPooled) it sets the pool's limits for the transaction, in a
// statement sent with the BEGIN: it is for the transactions InTx does not
// begin, such as a library's.
func BeginTx(ctx context.Context, db *sql.DB, opts *sql.TxOptions) (*sql.Tx, error) {
	if d, ok := db.Driver().(pgDriver); ok && d.setQuery != "" {
		tx, _, err := beginWith(ctx, db, opts, d.setQuery)
		if err != nil {
			return nil, fmt.Errorf("begin transaction and set its limits: %w", err)
		}
		return tx, nil
	}
	return db.BeginTx(ctx, opts)
}
