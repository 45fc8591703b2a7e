package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"testing"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/outbox"
)

// TestMisalignment_Summary: what `orderstream outbox status` and the
// forwarder's refusal tell the operator names the ids that are ahead: the
// forwarder's position when it is at or above the database's next id, the
// outbox rows otherwise.
func TestMisalignment_Summary(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		m    outbox.Misalignment
		want string
	}{
		{"rows_ahead_of_a_position_behind", outbox.Misalignment{Position: 5, Newest: 100, Next: 10},
			"outbox rows (transaction ids up to 100) are ahead of this database's transaction ids (next 10)"},
		{"a_position_ahead", outbox.Misalignment{Position: 100, Newest: 100, Next: 10},
			"the forwarder's position (transaction 100) is ahead of this database's transaction ids (next 10)"},
		{"a_position_at_the_next_id", outbox.Misalignment{Position: 10, Newest: 5, Next: 10},
			"the forwarder's position (transaction 10) is ahead of this database's transaction ids (next 10)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.m.Summary(); got != tc.want {
				t.Errorf("Summary() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestCheckOutboxAlignment_atTheNextID: a forwarder's position at the
// database's next transaction id is ahead of every transaction this
// cluster has had, whose rows would sort before it and be passed over;
// one below it is not. The check runs in a repeatable-read transaction
// whose snapshot holds the next id while the test sets the position.
func TestCheckOutboxAlignment_atTheNextID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.OwnDB(t)
	for _, tc := range []struct {
		name      string
		below     int64 // the position is this far below the next id
		misaligns bool
	}{
		{"a_position_at_the_next_id_is_ahead", 0, true},
		{"a_position_below_it_is_not", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead})
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			var next int64
			if err := tx.QueryRow(`SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint`).Scan(&next); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(`INSERT INTO watermill_offsets_outbox (consumer_group, offset_acked, last_processed_transaction_id)
				VALUES ('forwarder', 0, $1::text::xid8)
				ON CONFLICT (consumer_group) DO UPDATE SET last_processed_transaction_id = excluded.last_processed_transaction_id`,
				strconv.FormatInt(next-tc.below, 10)); err != nil {
				t.Fatal(err)
			}
			err = outbox.OutboxAlignmentIn(ctx, tx)
			var m *outbox.Misalignment
			if got := errors.As(err, &m); got != tc.misaligns || (err != nil && m == nil) {
				t.Fatalf("position %d, next %d: CheckOutboxAlignment = %v, want misaligned %v", next-tc.below, next, err, tc.misaligns)
			}
			if m != nil && (m.Position != uint64(next) || m.Next != uint64(next)) {
				t.Errorf("misalignment %+v, want position and next %d", *m, next)
			}
		})
	}
}
