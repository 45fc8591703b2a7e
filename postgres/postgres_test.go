package postgres_test

import (
	"context"
	"database/sql"
	"net/url"
	"strings"
	"sync"
	"testing"

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

// TestIsTransient classifies errors the server and the driver really return.
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
