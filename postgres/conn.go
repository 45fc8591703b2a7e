package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"

	"github.com/lib/pq"
)

// connector opens a pool's lib/pq connections (conn). Its Driver is what
// db.Driver() returns: it carries what the pool's transactions begin with.
type connector struct {
	pq     *pq.Connector
	driver pgDriver
}

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	cn, err := c.pq.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &conn{conn: cn, prepare: !c.driver.pooled, stmts: map[string]driver.Stmt{}}, nil
}

func (c connector) Driver() driver.Driver { return c.driver }

type pgDriver struct {
	pq.Driver
	pooled    bool   // through a transaction pooler (OpenPooled)
	lockQuery string // takes LockOutboxWriters and, through a pooler, sets the pool's limits
	setQuery  string // through a pooler, sets the limits; "" when there are none
}

// lockQueryOf is the statement that takes LockOutboxWriters and, through a
// transaction pooler, sets the pool's limits.
func lockQueryOf(db *sql.DB) string {
	if d, ok := db.Driver().(pgDriver); ok {
		return d.lockQuery
	}
	return writerLockQuery
}

// beginWith begins a transaction on db whose first statements are first,
// statements without parameters, and returns the result of the last of
// them. On a pool opened here they are sent with the BEGIN, in one round
// trip; on another, after it.
func beginWith(ctx context.Context, db *sql.DB, opts *sql.TxOptions, first string) (*sql.Tx, sql.Result, error) {
	if _, ok := db.Driver().(pgDriver); ok {
		b := &beginning{first: first}
		tx, err := db.BeginTx(context.WithValue(ctx, beginningKey{}, b), opts)
		return tx, b.result, err
	}
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	res, err := tx.ExecContext(ctx, first)
	if err != nil {
		tx.Rollback() //nolint:errcheck // the statement's error is the one to report
		return nil, nil, err
	}
	return tx, res, nil
}

// beginning is what a transaction begins with (beginWith): the statements
// sent with its BEGIN, and the result of the last of them once it began.
type beginning struct {
	first  string
	result driver.Result
}

// beginningKey is the context key of a transaction's beginning.
type beginningKey struct{}

// maxPrepared is how many statements one connection keeps prepared; past
// it, a statement is sent unnamed, as lib/pq sends every statement.
const maxPrepared = 100

// conn is a lib/pq connection that saves round trips:
//
//   - It prepares each statement with parameters the first time it runs
//     it, and runs it by name after that. lib/pq sends a statement unnamed,
//     which the server parses and plans at every execution: for the
//     forwarder's poll, whose select reads pg_locks and the snapshot,
//     planning took three times as long as running it (pgbench, -M
//     extended against -M prepared). A prepared statement is planned from
//     the server's plan cache. Either way a statement is one round trip;
//     preparing it is one more, once per connection. Not through a
//     transaction pooler: a prepared statement belongs to one server
//     session, which such a pooler does not keep for a client.
//   - It sends a transaction's first statements (beginWith) with its BEGIN,
//     as one query of the simple protocol: one round trip, and the same
//     order of the two on the server.
//
// The optional interfaces of database/sql it implements are lib/pq's
// connection's, each passed on to it.
type conn struct {
	conn    driver.Conn
	prepare bool
	stmts   map[string]driver.Stmt // by query text
}

// BeginTx begins every transaction of the connection, so that lib/pq's
// own BeginTx, which keeps a watch on the context of the transaction it
// began and ends it again at the next one's end, never runs. Each
// statement is cancelled with its own context as before, and database/sql
// rolls the transaction back when its context ends.
func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	mode, err := beginMode(opts)
	if err != nil {
		return nil, err
	}
	query := "BEGIN" + mode
	b, ok := ctx.Value(beginningKey{}).(*beginning)
	if ok {
		query += "; " + b.first
	}
	exec := c.conn.(driver.ExecerContext)
	res, err := exec.ExecContext(ctx, query, nil)
	if err != nil {
		// The BEGIN may have run and the statement after it failed: end
		// the failed transaction (a ROLLBACK outside one only warns).
		exec.ExecContext(context.WithoutCancel(ctx), "ROLLBACK", nil) //nolint:errcheck // the first error is the one to report
		return nil, err
	}
	if ok {
		b.result = res // lib/pq's is the last statement's
	}
	return c.conn.(driver.Tx), nil // lib/pq's connection is its transaction
}

// beginMode is the BEGIN's options, as lib/pq writes them.
func beginMode(opts driver.TxOptions) (string, error) {
	var mode string
	switch sql.IsolationLevel(opts.Isolation) {
	case sql.LevelDefault:
	case sql.LevelReadCommitted:
		mode = " ISOLATION LEVEL READ COMMITTED"
	case sql.LevelRepeatableRead:
		mode = " ISOLATION LEVEL REPEATABLE READ"
	case sql.LevelSerializable:
		mode = " ISOLATION LEVEL SERIALIZABLE"
	default:
		return "", fmt.Errorf("begin transaction: isolation level %s not supported", sql.IsolationLevel(opts.Isolation))
	}
	if opts.ReadOnly {
		return mode + " READ ONLY", nil
	}
	return mode + " READ WRITE", nil
}

// prepared returns query's statement, preparing it on first use; nil for
// a statement without parameters (the simple protocol, one round trip as
// it is), or when the connection prepares none or holds maxPrepared
// already.
func (c *conn) prepared(ctx context.Context, query string, args []driver.NamedValue) (driver.Stmt, error) {
	if len(args) == 0 || !c.prepare {
		return nil, nil
	}
	if st, ok := c.stmts[query]; ok || len(c.stmts) >= maxPrepared {
		return st, nil
	}
	st, err := c.conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.stmts[query] = st
	return st, nil
}

// forget drops query's statement after err, when err says the server will
// not run it again: its result's columns changed (a migration of another
// process altered a table it reads). The server keeps it until the
// connection ends; there is no round trip to spend on it in a failed
// transaction.
func (c *conn) forget(query string, err error) {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) && pqErr.Code == "0A000" { // cached plan must not change result type
		delete(c.stmts, query)
	}
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	st, err := c.prepared(ctx, query, args)
	switch {
	case err != nil:
		return nil, err
	case st == nil:
		return c.conn.(driver.QueryerContext).QueryContext(ctx, query, args)
	}
	rows, err := st.(driver.StmtQueryContext).QueryContext(ctx, args)
	c.forget(query, err)
	return rows, err
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	st, err := c.prepared(ctx, query, args)
	switch {
	case err != nil:
		return nil, err
	case st == nil:
		return c.conn.(driver.ExecerContext).ExecContext(ctx, query, args)
	}
	res, err := st.(driver.StmtExecContext).ExecContext(ctx, args)
	c.forget(query, err)
	return res, err
}

func (c *conn) Prepare(query string) (driver.Stmt, error) { return c.conn.Prepare(query) }

func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
}

// Close closes the connection, and with it its statements on the server.
func (c *conn) Close() error { return c.conn.Close() }

func (c *conn) Begin() (driver.Tx, error) { return c.conn.Begin() } //nolint:staticcheck // part of driver.Conn

func (c *conn) Ping(ctx context.Context) error { return c.conn.(driver.Pinger).Ping(ctx) }

func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	return c.conn.(driver.NamedValueChecker).CheckNamedValue(nv)
}

func (c *conn) ResetSession(ctx context.Context) error {
	return c.conn.(driver.SessionResetter).ResetSession(ctx)
}

func (c *conn) IsValid() bool { return c.conn.(driver.Validator).IsValid() }
