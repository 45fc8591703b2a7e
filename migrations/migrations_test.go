package migrations_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/migrations"
	"github.com/orderstream/orderstream/postgres"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// emptyDatabase creates a database of the test's own without the schema,
// dropped when the test ends.
func emptyDatabase(t *testing.T, prefix string, maxConns int) *sql.DB {
	t.Helper()
	u, err := url.Parse(testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ReplaceAll(testenv.Unique(prefix), "-", "_")
	u.Path = "/" + name
	db, err := postgres.Open(context.Background(), u.String(), maxConns) // creates it
	if err != nil {
		t.Fatal(err)
	}
	admin := testenv.DB(t)
	t.Cleanup(func() {
		db.Close()
		admin.Exec("DROP DATABASE IF EXISTS " + pq.QuoteIdentifier(name) + " WITH (FORCE)")
	})
	return db
}

// gooseLockID is the advisory lock goose's Postgres session locker takes.
const gooseLockID = 4097083626

// TestApply_waitsForTheMigrationLock: while another process holds the
// migration lock, Apply changes nothing and does not return; once the lock
// is released it applies the migrations.
func TestApply_waitsForTheMigrationLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := emptyDatabase(t, "test_migrate_lock", 4)

	holder, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := holder.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, gooseLockID); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() { done <- migrations.Apply(ctx, db, slog.New(slog.DiscardHandler)) }()
	// Wait until Apply has asked for the lock and been refused.
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("Apply() = %v while another process held the migration lock", err)
		default:
		}
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND query LIKE '%pg_try_advisory_lock%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Apply never asked for the migration lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var table *string
	if err := db.QueryRow(`SELECT to_regclass('stock')::text`).Scan(&table); err != nil || table != nil {
		t.Fatalf("the schema changed while another process held the lock: stock = %v (%v)", table, err)
	}

	if _, err := holder.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, gooseLockID); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Apply() = %v once the lock was released", err)
	}
	if err := db.QueryRow(`SELECT to_regclass('stock')::text`).Scan(&table); err != nil || table == nil {
		t.Errorf("after Apply, stock = %v (%v), want the table", table, err)
	}
}

// TestSchema_refusesWhatBreaksAGuarantee: the tables themselves refuse
// negative stock and a second inbox row for one handler and message.
func TestSchema_refusesWhatBreaksAGuarantee(t *testing.T) {
	t.Parallel()
	db := testenv.DB(t)
	sku := testenv.Unique("SKU")
	if _, err := db.Exec(`INSERT INTO stock (sku, available) VALUES ($1, 1)`, sku); err != nil {
		t.Fatal(err)
	}
	handler := testenv.Unique("schema")
	if _, err := db.Exec(`INSERT INTO inbox (handler, message_uuid) VALUES ($1, 'm')`, handler); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, query string
		arg         string
		code        pq.ErrorCode
	}{
		{"negative_available", `UPDATE stock SET available = available - 2 WHERE sku = $1`, sku, "23514"},
		{"negative_reserved", `UPDATE stock SET reserved = reserved - 1 WHERE sku = $1`, sku, "23514"},
		{"second_inbox_row", `INSERT INTO inbox (handler, message_uuid) VALUES ($1, 'm')`, handler, "23505"},
	} {
		_, err := db.Exec(c.query, c.arg)
		var pqErr *pq.Error
		if !errors.As(err, &pqErr) || pqErr.Code != c.code {
			t.Errorf("%s: %v, want error %s", c.name, err, c.code)
		}
	}
}
