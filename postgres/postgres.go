// Package postgres holds what the packages that own tables share: opening the
// database (directly or behind PgBouncer), running a function in a
// transaction (InTx, Tx), the outbox write (Tx.Publish: an event committed
// with the change it announces, or not at all), the inbox that makes a
// message handler's effect happen once per message (Inbox, InInbox), and the
// classes of database errors (IsUnavailable, IsTransient).
package postgres

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lib/pq"
)

// Queryer is what a read needs: a *sql.DB, or a *sql.Tx to read several
// things in one transaction.
type Queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Open connects to the database at dsn (a postgres:// URL), creating the
// database first when the server exists but the database does not, so that a
// fresh machine needs nothing but a running server.
//
// Unless dsn says otherwise, lib/pq's binary_parameters is on: a statement
// with parameters then takes one round trip instead of two (parse and
// describe, then bind and execute), which is most of the statements of an
// order and of a handled event. It also sends []byte parameters as binary
// data, which is their text form for the json columns and the raw bytes
// for bytea.
//
// Each connection also asks the server to probe it with TCP keepalives
// (tcp_keepalives_idle 30 s, then every 10 s, 3 times), so that the session
// of a client that vanished without closing its connection (a host gone,
// a network cut) ends within about a minute instead of the system's two
// hours. lib/pq dials with Go's defaults, which probe the server from the
// client's side (15 s idle, every 15 s). opts add the session's own limits.
// Anything dsn sets itself wins. A dsn in the key=value form is used as it is.
func Open(ctx context.Context, dsn string, maxConns int, opts ...Option) (*sql.DB, error) {
	return open(ctx, dsn, maxConns, true, opts)
}

// ErrNoDatabase says that the server answers but the database named in the
// URL does not exist.
var ErrNoDatabase = errors.New("no such database")

// ErrParameterRefused says that the server refused a run-time parameter
// that the session asked for as it started: a pooler such as PgBouncer
// passes on only the few it knows (see OpenPooled).
var ErrParameterRefused = errors.New("a startup parameter was refused")

// OpenExisting is Open without creating the database: when the server has
// no database of that name it returns an error wrapping ErrNoDatabase that
// names it. It is for the commands that must not change anything on a
// mistyped URL, where Open would create a new, empty database.
func OpenExisting(ctx context.Context, dsn string, maxConns int, opts ...Option) (*sql.DB, error) {
	return open(ctx, dsn, maxConns, false, opts)
}

func open(ctx context.Context, dsn string, maxConns int, create bool, opts []Option) (*sql.DB, error) {
	params := []param{
		{"binary_parameters", "yes"},
		{"tcp_keepalives_idle", "30"},
		{"tcp_keepalives_interval", "10"},
		{"tcp_keepalives_count", "3"},
	}
	for _, o := range opts {
		params = append(params, o.param)
	}
	withOpts, err := withParams(dsn, params)
	if err != nil {
		return nil, err
	}
	c, err := pq.NewConnector(withOpts)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	return connect(ctx, sql.OpenDB(connector{c, pgDriver{lockQuery: writerLockQuery}}), dsn, maxConns, create)
}

// connect sizes db's pool and checks that the database answers, creating
// it first when create allows and the server has no database of dsn's name.
func connect(ctx context.Context, db *sql.DB, dsn string, maxConns int, create bool) (*sql.DB, error) {
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)

	err := db.PingContext(ctx)
	if isMissingDatabase(err) && !create {
		db.Close()
		return nil, fmt.Errorf("connect to database%s: %w (%w)", onServer(dsn), ErrNoDatabase, err)
	}
	if isMissingDatabase(err) {
		err = createDatabase(ctx, dsn)
		if err == nil {
			err = db.PingContext(ctx)
		}
	}
	if isRefusedParameter(err) {
		db.Close()
		return nil, fmt.Errorf("connect to database%s: %w (%w)", onServer(dsn), ErrParameterRefused, err)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return db, nil
}

// An Option sets a server parameter for every session of a pool.
type Option struct {
	param param
	// perTransaction: a pool through a transaction pooler (OpenPooled)
	// sets it within each transaction instead.
	perTransaction bool
}

type param struct{ name, value string }

// ReadOnly makes every transaction of the pool's sessions read-only
// (default_transaction_read_only): a statement that would write, DDL
// included, fails with SQLSTATE 25006 instead of changing anything.
func ReadOnly() Option { return Option{param: param{"default_transaction_read_only", "on"}} }

// IdleInTransactionTimeout ends a session that sits idle inside a
// transaction for longer than d (idle_in_transaction_session_timeout),
// releasing its locks and its transaction id: one such session anywhere in
// the cluster hides every later commit from the outbox forwarder.
func IdleInTransactionTimeout(d time.Duration) Option {
	return Option{param{"idle_in_transaction_session_timeout", millis(d)}, true}
}

// LockTimeout makes a statement that waits longer than d for a lock fail
// (lock_timeout, SQLSTATE 55P03, which IsTransient reports), instead of
// waiting as long as the holder keeps it.
func LockTimeout(d time.Duration) Option { return Option{param{"lock_timeout", millis(d)}, true} }

// StatementTimeout makes the server cancel a statement that runs longer
// than d (statement_timeout), even when the client is gone and cannot.
func StatementTimeout(d time.Duration) Option {
	return Option{param{"statement_timeout", millis(d)}, true}
}

// ApplicationName names the sessions in pg_stat_activity, so that an
// operator can tell whose a long transaction is.
func ApplicationName(name string) Option { return Option{param: param{"application_name", name}} }

// millis is d in whole milliseconds, at least 1: 0 would turn the limit off.
func millis(d time.Duration) string { return strconv.FormatInt(max(d.Milliseconds(), 1), 10) }

// withParams adds each of params to dsn, a postgres:// URL, unless dsn
// sets it already. lib/pq sends the parameters it does not know itself to
// the server as the session's run-time parameters.
func withParams(dsn string, params []param) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("parse database url: %w", withoutURL(err))
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return dsn, nil // a key=value string: the user's, as it is
	}
	q := u.Query()
	for _, p := range params {
		if !q.Has(p.name) {
			q.Set(p.name, p.value)
		}
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// isRefusedParameter reports whether err is PgBouncer's answer to a
// startup parameter it does not pass on. Its other protocol_violation
// errors (SQLSTATE 08P01) include passing ones, such as a server it cannot
// log in to yet.
func isRefusedParameter(err error) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr) && pqErr.Code == "08P01" && strings.HasPrefix(pqErr.Message, "unsupported startup parameter")
}

func isMissingDatabase(err error) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr) && pqErr.Code == "3D000" // invalid_catalog_name
}

// withoutURL drops the URL from a net/url error: it may hold a password.
func withoutURL(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// onServer names the host and port of dsn, a postgres:// URL, without its
// user or password.
func onServer(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return ""
	}
	return " on " + u.Host
}

// createDatabase creates the database named in dsn through the server's
// maintenance database.
func createDatabase(ctx context.Context, dsn string) error {
	u, err := url.Parse(dsn)
	if err != nil {
		return fmt.Errorf("parse database url: %w", withoutURL(err))
	}
	name := strings.TrimPrefix(u.Path, "/")
	u.Path = "/postgres"
	admin, err := sql.Open("postgres", u.String())
	if err != nil {
		return fmt.Errorf("open maintenance database: %w", err)
	}
	defer admin.Close()
	_, err = admin.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(name))
	// Another process created it first: duplicate_database, or, when both
	// ran at once, unique_violation on the catalog.
	var pqErr *pq.Error
	if errors.As(err, &pqErr) && (pqErr.Code == "42P04" || pqErr.Code == "23505") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// IsUnavailable reports whether err says the database could not be reached,
// went away (a connection closed by the server while it starts, as during
// crash recovery, is a bare io.EOF), or is starting or shutting down: a
// condition that passes, as opposed to a wrong query or a broken
// constraint.
func IsUnavailable(err error) bool {
	var netErr *net.OpError
	var pqErr *pq.Error
	switch {
	case errors.As(err, &netErr), errors.Is(err, driver.ErrBadConn), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE):
		return true
	case errors.As(err, &pqErr):
		// Class 08: connection exception. 57P01-57P03: admin shutdown,
		// crash shutdown, cannot connect now (starting up or shutting down).
		// A refused startup parameter is refused again on every try.
		return (pqErr.Code.Class() == "08" && !isRefusedParameter(err)) || pqErr.Code == "57P01" || pqErr.Code == "57P02" || pqErr.Code == "57P03"
	}
	return false
}

// IsTransient reports whether err may pass if the same work is tried again
// later: the database is unavailable, the transaction lost a serialization
// or deadlock conflict, the server ran short of resources, or the statement
// was cancelled (a timeout).
func IsTransient(err error) bool {
	if IsUnavailable(err) {
		return true
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		// Class 40: transaction rollback (serialization failure, deadlock).
		// Class 53: insufficient resources (too many connections, out of
		// memory or disk). 55P03: lock not available. 57014: query
		// cancelled.
		switch pqErr.Code.Class() {
		case "40", "53":
			return true
		}
		return pqErr.Code == "55P03" || pqErr.Code == "57014"
	}
	return false
}

// OldestTransactionAge is the age of the oldest transaction open anywhere
// in the cluster, in any database, that holds a transaction id (it wrote,
// or locked a row), prepared transactions included: until it ends, VACUUM
// keeps every row version it might still see, in every table. The
// forwarder does not wait for it unless it writes the outbox (see
// OldestOutboxWriterAge). 0 when there is none. Without the
// pg_read_all_stats role (or superuser) only the sessions of the same user
// are seen.
func OldestTransactionAge(ctx context.Context, db Queryer) (time.Duration, error) {
	var seconds float64
	err := db.QueryRowContext(ctx, `
		SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(started)), 0)::float8 FROM (
			SELECT xact_start AS started FROM pg_stat_activity
			WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
			UNION ALL
			SELECT prepared FROM pg_prepared_xacts) t`).Scan(&seconds)
	if err != nil {
		return 0, fmt.Errorf("read oldest transaction: %w", err)
	}
	return time.Duration(max(seconds, 0) * float64(time.Second)), nil
}

// OldestOutboxWriterAge is the age of the oldest transaction of this
// database that holds LockOutboxWriters and a transaction id: the outbox
// forwarder forwards nothing committed after it began until it ends. Each
// is one of orderstream's, ended by its statement and idle timeouts. 0
// when there is none.
func OldestOutboxWriterAge(ctx context.Context, db Queryer) (time.Duration, error) {
	classid, objid := LockOutboxWritersID()
	var seconds float64
	err := db.QueryRowContext(ctx, `
		SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(a.xact_start)), 0)::float8
		FROM pg_stat_activity a
		JOIN pg_locks l ON l.pid = a.pid
		WHERE a.backend_xid IS NOT NULL AND a.pid <> pg_backend_pid()
		  AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid = $1 AND l.objid = $2`,
		classid, objid).Scan(&seconds)
	if err != nil {
		return 0, fmt.Errorf("read oldest outbox writer: %w", err)
	}
	return time.Duration(max(seconds, 0) * float64(time.Second)), nil
}
