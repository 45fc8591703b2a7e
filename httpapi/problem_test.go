package httpapi

import (
	"errors"
	"fmt"
	"testing"

	"github.com/lib/pq"

	"github.com/orderstream/orderstream/redisstreams"
)

// TestToProblem_backstops: what the validations missed still answers as
// the client's mistake or the dependency's absence, and is logged
// (expected == false); a bug stays a 500.
func TestToProblem_backstops(t *testing.T) {
	for _, tt := range []struct {
		err    error
		status int
	}{
		{fmt.Errorf("insert order: %w", &pq.Error{Code: "22021"}), 400}, // a NUL, invalid UTF-8
		{fmt.Errorf("get order: %w", &pq.Error{Code: "22P02"}), 400},    // not a uuid
		{&pq.Error{Code: "22012"}, 500},                                 // division by zero: ours
		{&pq.Error{Code: "42601"}, 500},                                 // a syntax error: ours
		{fmt.Errorf("replay: %w", redisstreams.ErrStreamsUnavailable), 503},
		{errors.New("boom"), 500},
	} {
		p, expected := toProblem(tt.err)
		if p.Status != tt.status || expected {
			t.Errorf("toProblem(%v) = %d, expected %v; want %d, unexpected", tt.err, p.Status, expected, tt.status)
		}
	}
}
