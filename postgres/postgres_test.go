package postgres_test

import (
	"context"
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
