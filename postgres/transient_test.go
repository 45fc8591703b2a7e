package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/lib/pq"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/postgres"
)

// TestIsUnavailable_serverShutdownCodes: the codes of a server that shuts
// down or starts up are hard to provoke on a shared server; each is named
// here.
func TestIsUnavailable_serverShutdownCodes(t *testing.T) {
	t.Parallel()
	for code, want := range map[pq.ErrorCode]bool{
		"08006": true, "57P01": true, "57P02": true, "57P03": true,
		"57014": false, "40001": false, "23505": false,
	} {
		if got := postgres.IsUnavailable(&pq.Error{Code: code}); got != want {
			t.Errorf("IsUnavailable(%s) = %v, want %v", code, got, want)
		}
	}
}

func TestDeleteInBatches_returnsTheErrorOfAFailingDelete(t *testing.T) {
	t.Parallel()
	n, err := postgres.DeleteInBatches(context.Background(), testenv.DB(t), 0x6f7374_ff03, 2,
		`DELETE FROM no_such_table WHERE $1 > 0`)
	if err == nil || !strings.Contains(err.Error(), "no_such_table") || n != 0 {
		t.Errorf("DeleteInBatches() = %d, %v, want the delete's error", n, err)
	}
}
