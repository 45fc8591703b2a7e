package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/postgres"
)

// TestOpen_createsTheDatabase: processes that start together on a server
// without their database all connect; one of them creates it.
func TestOpen_createsTheDatabase(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ReplaceAll(testenv.Unique("test_create"), "-", "_")
	u.Path = "/" + name
	admin := testenv.DB(t)
	t.Cleanup(func() { admin.Exec("DROP DATABASE IF EXISTS " + pq.QuoteIdentifier(name) + " WITH (FORCE)") })

	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			db, err := postgres.Open(context.Background(), u.String(), 2)
			if err != nil {
				t.Errorf("Open() = %v", err)
				return
			}
			db.Close()
		})
	}
	wg.Wait()
}

// TestOpenExisting_createsNothing: on a server without the database,
// OpenExisting fails with ErrNoDatabase, names the database, and leaves the
// server without it.
func TestOpenExisting_createsNothing(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ReplaceAll(testenv.Unique("test_absent"), "-", "_")
	u.Path = "/" + name
	admin := testenv.DB(t)
	t.Cleanup(func() { admin.Exec("DROP DATABASE IF EXISTS " + pq.QuoteIdentifier(name) + " WITH (FORCE)") })

	db, err := postgres.OpenExisting(context.Background(), u.String(), 2)
	if err == nil {
		db.Close()
	}
	if !errors.Is(err, postgres.ErrNoDatabase) || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), u.Host) {
		t.Errorf("OpenExisting() = %v, want %v naming %s on %s", err, postgres.ErrNoDatabase, name, u.Host)
	}
	var n int
	if err := admin.QueryRow(`SELECT count(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil || n != 0 {
		t.Errorf("pg_database has %d rows for %s (%v), want none", n, name, err)
	}

	db, err = postgres.OpenExisting(context.Background(), testenv.DatabaseURL(t), 2)
	if err != nil {
		t.Fatalf("OpenExisting() on the test database = %v", err)
	}
	db.Close()
}

// TestOpen_readOnly: the sessions of a ReadOnly pool cannot write, DDL
// included.
func TestOpen_readOnly(t *testing.T) {
	t.Parallel()
	db, err := postgres.OpenExisting(context.Background(), testenv.DatabaseURL(t), 2, postgres.ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	table := pq.QuoteIdentifier(testenv.Unique("ro"))
	for _, stmt := range []string{"CREATE TABLE " + table + " (x int)", "INSERT INTO stock (sku, available) VALUES ('ro', 1)"} {
		_, err := db.Exec(stmt)
		var pqErr *pq.Error
		if !errors.As(err, &pqErr) || pqErr.Code != "25006" {
			t.Errorf("%s = %v, want read_only_sql_transaction (25006)", stmt, err)
		}
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM stock WHERE sku = 'ro'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("reading = %d, %v, want 0 rows and no error", n, err)
	}
}

// TestIsTransient classifies errors the server and the driver really return.
// TestOpen_saysWhyItCannotCreateTheDatabase: a role that may not create
// databases gets the server's refusal, not a vaguer error after it.
func TestOpen_saysWhyItCannotCreateTheDatabase(t *testing.T) {
	t.Parallel()
	admin := testenv.DB(t)
	role := strings.ReplaceAll(testenv.Unique("test_nocreatedb"), "-", "_")
	if _, err := admin.Exec("CREATE ROLE " + pq.QuoteIdentifier(role) + " LOGIN NOCREATEDB"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec("DROP ROLE IF EXISTS " + pq.QuoteIdentifier(role)) })
	u, err := url.Parse(testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	u.Path = "/" + role // no such database
	db, err := postgres.Open(context.Background(), u.String(), 1)
	if err == nil {
		db.Close()
		t.Fatal("Open() succeeded, want the server's refusal to create the database")
	}
	var pqErr *pq.Error
	if !errors.As(err, &pqErr) || pqErr.Code != "42501" || !strings.Contains(err.Error(), "create database") {
		t.Errorf("Open() = %v, want create database: permission denied (42501)", err)
	}
}

func TestIsTransient(t *testing.T) {
	t.Parallel()
	db := testenv.DB(t)
	ctx := context.Background()
	errorOf := func(queries ...string) error {
		t.Helper()
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, q := range queries {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		t.Fatalf("%q did not fail", queries)
		return nil
	}
	refused, err := sql.Open("postgres", "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer refused.Close()

	for _, c := range []struct {
		name      string
		err       error
		transient bool
	}{
		{"connection_refused", refused.PingContext(ctx), true},
		{"statement_timeout", errorOf(`SET statement_timeout = 10`, `SELECT pg_sleep(1)`), true},
		{"syntax_error", errorOf(`SELEC 1`), false},
		{"division_by_zero", errorOf(`SELECT 1/0`), false},
	} {
		if got := postgres.IsTransient(c.err); got != c.transient {
			t.Errorf("%s: IsTransient(%v) = %v, want %v", c.name, c.err, got, c.transient)
		}
	}
}

// TestOpen_sessionLimits: every session of the pool gets the limits asked
// for, and the keepalives, unless the URL sets them itself.
func TestOpen_sessionLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	show := func(db *sql.DB, name string) string {
		t.Helper()
		var v string
		if err := db.QueryRowContext(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	db, err := postgres.Open(ctx, testenv.DatabaseURL(t), 2,
		postgres.IdleInTransactionTimeout(15*time.Second), postgres.LockTimeout(1500*time.Millisecond),
		postgres.StatementTimeout(5*time.Second), postgres.ApplicationName("orderstream test"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for name, want := range map[string]string{
		"idle_in_transaction_session_timeout": "15s", "lock_timeout": "1500ms", "statement_timeout": "5s",
		"application_name": "orderstream test", "tcp_keepalives_idle": "30", "tcp_keepalives_interval": "10",
		"tcp_keepalives_count": "3",
	} {
		// TCP settings read 0 on a Unix socket.
		if got := show(db, name); got != want && !(strings.HasPrefix(name, "tcp_") && got == "0") {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}

	u, _ := url.Parse(testenv.DatabaseURL(t))
	q := u.Query()
	q.Set("lock_timeout", "0")
	u.RawQuery = q.Encode()
	own, err := postgres.Open(ctx, u.String(), 1, postgres.LockTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if got := show(own, "lock_timeout"); got != "0" {
		t.Errorf("lock_timeout = %q with the URL setting 0, want the URL's", got)
	}
}

// TestOldestTransactionAge: a transaction that holds a transaction id, in
// another database or not, counts from its start.
func TestOldestTransactionAge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.DB(t)
	u, err := url.Parse(testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/postgres" // another database of the cluster
	other, err := sql.Open("postgres", u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.BeginTx(ctx, nil)
	if err != nil {
		t.Skipf("maintenance database: %v", err)
	}
	defer tx.Rollback()
	var started time.Time
	if err := tx.QueryRow(`SELECT now() FROM pg_current_xact_id()`).Scan(&started); err != nil {
		t.Skipf("maintenance database: %v", err)
	}
	atLeast := ageOf(t, db, started)
	age, err := postgres.OldestTransactionAge(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if age <= 0 || age < atLeast {
		t.Errorf("OldestTransactionAge() = %s, want at least %s, the age of the open transaction", age, atLeast)
	}
}

// TestOldestOutboxWriterAge: a transaction begun by InTx that holds a
// transaction id counts from its start; one of another client, or one
// without an id, does not count.
func TestOldestOutboxWriterAge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.OwnDB(t)

	raw, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Rollback()
	if _, err := raw.Exec(`SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	inTx := func(fn func(ctx context.Context, tx *postgres.Tx) error) {
		t.Helper()
		if err := postgres.InTx(ctx, db, fn); err != nil {
			t.Fatal(err)
		}
	}
	age := func() time.Duration {
		t.Helper()
		a, err := postgres.OldestOutboxWriterAge(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	inTx(func(ctx context.Context, tx *postgres.Tx) error {
		if a := age(); a != 0 {
			t.Errorf("OldestOutboxWriterAge() = %s with a writer without a transaction id and another client's transaction, want 0", a)
		}
		var started time.Time
		if err := tx.QueryRowContext(ctx, `SELECT now() FROM pg_current_xact_id()`).Scan(&started); err != nil {
			return err
		}
		atLeast := ageOf(t, db, started)
		if a := age(); a <= 0 || a < atLeast {
			t.Errorf("OldestOutboxWriterAge() = %s, want at least %s, the age of the open writer", a, atLeast)
		}
		return nil
	})
}

// ageOf is how long ago started was by the database clock, which a
// transaction's start time comes from.
func ageOf(t *testing.T, db *sql.DB, started time.Time) time.Duration {
	t.Helper()
	var age time.Duration
	if err := db.QueryRow(`SELECT (EXTRACT(EPOCH FROM now() - $1::timestamptz) * 1e6)::bigint`, started).Scan((*microseconds)(&age)); err != nil {
		t.Fatal(err)
	}
	return age
}

type microseconds time.Duration

func (m *microseconds) Scan(v any) error {
	n, ok := v.(int64)
	if !ok {
		return fmt.Errorf("microseconds: %T", v)
	}
	*m = microseconds(time.Duration(n) * time.Microsecond)
	return nil
}

// TestIsUnavailable_serverClosingWhileItStarts: a server that closes the
// connection before it answers the start-up message (as PostgreSQL does
// while it recovers from a crash) is unavailable, so a starting process
// waits for it instead of exiting.
func TestIsUnavailable_serverClosingWhileItStarts(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	db, err := sql.Open("postgres", "postgres://postgres@"+ln.Addr().String()+"/x?sslmode=disable&connect_timeout=5")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.PingContext(context.Background())
	if err == nil || !postgres.IsUnavailable(err) {
		t.Errorf("IsUnavailable(%v) = false, want true", err)
	}
}

// TestOpen_keepsThePasswordOutOfItsErrors: a DATABASE_URL that does not
// parse is refused without repeating it, for it may hold a password.
func TestOpen_keepsThePasswordOutOfItsErrors(t *testing.T) {
	t.Parallel()
	for _, dsn := range []string{
		"postgres://u:s3cret@host:badport/db",
		"postgres://u:s3cret@ho st/db",
		"postgres://u:s3cret@%zz/db",
	} {
		_, err := postgres.Open(t.Context(), dsn, 1)
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open(%q) = %v, want an error without the password", dsn, err)
		}
	}
}
