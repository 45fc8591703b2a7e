package postgres

import (
	"context"
	"database/sql/driver"
	"errors"

	"github.com/lib/pq"
)

// maxPrepared is how many statements one connection keeps prepared; past
// it, a statement is sent unnamed, as lib/pq sends every statement.
const maxPrepared = 100

// preparingConnector opens connections that prepare each statement with
// parameters the first time they run it, and run it by name after that.
// lib/pq sends a statement unnamed, which the server parses and plans at
// every execution: for the forwarder's poll, whose select reads pg_locks
// and the snapshot, planning took three times as long as running it
// (pgbench, -M extended against -M prepared). A prepared statement is
// planned from the server's plan cache. Either way a statement is one
// round trip; preparing one is a round trip more, once per connection.
//
// Not through a transaction pooler (OpenPooled): a prepared statement
// belongs to one server session, which such a pooler does not keep.
type preparingConnector struct{ driver.Connector }

func (c preparingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &preparingConn{conn: conn, stmts: map[string]driver.Stmt{}}, nil
}

// preparingConn is a lib/pq connection with its prepared statements. The
// optional interfaces of database/sql it implements are those of lib/pq's
// connection, each passed on to it.
type preparingConn struct {
	conn  driver.Conn
	stmts map[string]driver.Stmt // by query text
}

// prepared returns query's statement, preparing it on first use; nil when
// the connection holds maxPrepared already.
func (c *preparingConn) prepared(ctx context.Context, query string) (driver.Stmt, error) {
	if st, ok := c.stmts[query]; ok {
		return st, nil
	}
	if len(c.stmts) >= maxPrepared {
		return nil, nil
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
func (c *preparingConn) forget(query string, err error) {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) && pqErr.Code == "0A000" { // cached plan must not change result type
		delete(c.stmts, query)
	}
}

func (c *preparingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if len(args) > 0 {
		st, err := c.prepared(ctx, query)
		if err != nil {
			return nil, err
		}
		if st != nil {
			rows, err := st.(driver.StmtQueryContext).QueryContext(ctx, args)
			c.forget(query, err)
			return rows, err
		}
	}
	return c.conn.(driver.QueryerContext).QueryContext(ctx, query, args)
}

func (c *preparingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if len(args) > 0 {
		st, err := c.prepared(ctx, query)
		if err != nil {
			return nil, err
		}
		if st != nil {
			res, err := st.(driver.StmtExecContext).ExecContext(ctx, args)
			c.forget(query, err)
			return res, err
		}
	}
	return c.conn.(driver.ExecerContext).ExecContext(ctx, query, args)
}

func (c *preparingConn) Prepare(query string) (driver.Stmt, error) { return c.conn.Prepare(query) }

func (c *preparingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
}

// Close closes the connection, and with it its statements on the server.
func (c *preparingConn) Close() error { return c.conn.Close() }

func (c *preparingConn) Begin() (driver.Tx, error) { return c.conn.Begin() } //nolint:staticcheck // part of driver.Conn

func (c *preparingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
}

func (c *preparingConn) Ping(ctx context.Context) error { return c.conn.(driver.Pinger).Ping(ctx) }

func (c *preparingConn) CheckNamedValue(nv *driver.NamedValue) error {
	return c.conn.(driver.NamedValueChecker).CheckNamedValue(nv)
}

func (c *preparingConn) ResetSession(ctx context.Context) error {
	return c.conn.(driver.SessionResetter).ResetSession(ctx)
}

func (c *preparingConn) IsValid() bool { return c.conn.(driver.Validator).IsValid() }
