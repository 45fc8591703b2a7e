package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/postgres"
)

// TestOpenPooled: through PgBouncer in transaction mode, each transaction
// runs with the pool's limits, and they stay in it: the server sessions,
// which other clients' transactions share, keep none.
func TestOpenPooled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pooled := testenv.PgBouncer(t, testenv.DatabaseURL(t))
	db, err := postgres.OpenPooled(ctx, pooled, 2*testenv.PgBouncerPoolSize,
		postgres.IdleInTransactionTimeout(15*time.Second), postgres.LockTimeout(1500*time.Millisecond),
		postgres.StatementTimeout(5*time.Second), postgres.ApplicationName("orderstream test"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	limits := map[string]string{
		"idle_in_transaction_session_timeout": "15s", "lock_timeout": "1500ms", "statement_timeout": "5s",
	}
	check := func(t *testing.T, q postgres.Queryer, want func(name string) string) {
		t.Helper()
		for name := range limits {
			var got string
			if err := q.QueryRowContext(ctx, "SELECT current_setting($1)", name).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want(name) {
				t.Errorf("%s = %q, want %q", name, got, want(name))
			}
		}
	}
	inTx := func(name string) string { return limits[name] }

	t.Run("each_transaction_has_the_limits", func(t *testing.T) {
		err := postgres.InTx(ctx, db, func(ctx context.Context, tx *postgres.Tx) error {
			check(t, tx, inTx)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		tx, err := postgres.BeginTx(ctx, db, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		check(t, tx, inTx)
	})
	t.Run("the_sessions_keep_none", func(t *testing.T) {
		// More statements than server sessions, after the transactions.
		for range 2 * testenv.PgBouncerPoolSize {
			check(t, db, func(string) string { return "0" })
		}
		var name string
		if err := db.QueryRowContext(ctx, "SELECT current_setting('application_name')").Scan(&name); err != nil || name != "orderstream test" {
			t.Errorf("application_name = %q, %v; want the pool's, passed on at connect", name, err)
		}
	})
	t.Run("an_idle_transaction_is_ended_by_the_server", func(t *testing.T) {
		short, err := postgres.OpenPooled(ctx, pooled, 1, postgres.IdleInTransactionTimeout(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer short.Close()
		err = postgres.InTx(ctx, short, func(ctx context.Context, tx *postgres.Tx) error {
			time.Sleep(time.Second)
			_, err := tx.ExecContext(ctx, "SELECT 1")
			return err
		})
		if err == nil {
			t.Error("a transaction left idle for 1 s committed, want it ended after 200 ms")
		}
	})
}

// TestOpen_throughPgBouncer: a session's own parameters are refused at
// connect, at once and for good, and so is a pool that would need two
// round trips per statement.
func TestOpen_throughPgBouncer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pooled := testenv.PgBouncer(t, testenv.DatabaseURL(t))
	for name, open := range map[string]func() (*sql.DB, error){
		"Open":                func() (*sql.DB, error) { return postgres.Open(ctx, pooled, 1) },
		"OpenPooled_ReadOnly": func() (*sql.DB, error) { return postgres.OpenPooled(ctx, pooled, 1, postgres.ReadOnly()) },
	} {
		db, err := open()
		if err == nil {
			db.Close()
			t.Errorf("%s through PgBouncer succeeded, want its startup parameters refused", name)
			continue
		}
		if !errors.Is(err, postgres.ErrParameterRefused) || postgres.IsUnavailable(err) || postgres.IsTransient(err) {
			t.Errorf("%s = %v, want ErrParameterRefused, neither unavailable nor transient", name, err)
		}
	}
	db, err := postgres.OpenPooled(ctx, pooled+"&binary_parameters=no", 1)
	if err == nil {
		db.Close()
		t.Fatal("OpenPooled with binary_parameters=no succeeded")
	}
	if !strings.Contains(err.Error(), "binary_parameters") {
		t.Errorf("OpenPooled with binary_parameters=no = %v, want it named", err)
	}
}
