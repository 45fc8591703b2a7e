package postgres_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/postgres"
)

// A statement with parameters is prepared once per connection and run by
// name after that; one whose result's columns changed (a migration of
// another process) fails once and is prepared again.
func TestOpen_preparesStatementsOncePerConnection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := postgres.Open(ctx, testenv.DatabaseURL(t), 1) // one connection: every statement below is on it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	table := testenv.Unique("prepared")
	other := testenv.DB(t)
	if _, err := other.Exec(fmt.Sprintf(`CREATE TABLE %q (a int)`, table)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Exec(fmt.Sprintf(`DROP TABLE %q`, table)) }) //nolint:errcheck // the test's own table
	query := fmt.Sprintf(`SELECT * FROM %q WHERE a = $1`, table)

	preparedAs := func() int {
		t.Helper()
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE statement = $1`, query).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for range 3 {
		rows, err := db.QueryContext(ctx, query, 1)
		if err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	if n := preparedAs(); n != 1 {
		t.Fatalf("statement prepared %d times after 3 runs, want 1", n)
	}

	if _, err := other.Exec(fmt.Sprintf(`ALTER TABLE %q ADD COLUMN b int`, table)); err != nil {
		t.Fatal(err)
	}
	if rows, err := db.QueryContext(ctx, query, 1); err == nil {
		rows.Close()
		t.Log("the server planned the changed statement again itself")
	}
	rows, err := db.QueryContext(ctx, query, 1)
	if err != nil {
		t.Fatalf("the statement fails after its table changed: %v", err)
	}
	columns, err := rows.Columns()
	rows.Close()
	if err != nil || len(columns) != 2 {
		t.Errorf("columns after the change = %v (%v), want a and b", columns, err)
	}
}

// Past maxPrepared statements a connection prepares no more: the rest run
// unnamed, as lib/pq runs them.
func TestOpen_preparesABoundedNumberOfStatements(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := postgres.Open(ctx, testenv.DatabaseURL(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for i := range 150 {
		var n int
		if err := db.QueryRowContext(ctx, fmt.Sprintf(`SELECT $1::int + %d`, i), 1).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1+i {
			t.Fatalf("statement %d returned %d, want %d", i, n, 1+i)
		}
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_prepared_statements`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == 0 || n > 100 {
		t.Errorf("%d statements prepared on the connection, want 1 to 100", n)
	}
}
