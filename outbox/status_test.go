package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/outbox"
)

// TestOutbox_status: the outbox status (orderstream status, the
// outbox_oldest_pending_age_seconds gauge) gives the age of the oldest row
// the forwarder has not passed, as the database's clock has it.
func TestOutbox_status(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.OwnDB(t)

	t.Run("nothing_pending_has_no_age", func(t *testing.T) {
		st, err := outbox.Outbox(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if st.Pending != 0 || st.OldestAge != 0 {
			t.Errorf("empty outbox: %d pending, oldest %s; want 0, 0", st.Pending, st.OldestAge)
		}
	})

	t.Run("the_age_of_the_oldest_pending_row", func(t *testing.T) {
		publish(t, db, ctx, events.OrderPlaced{OrderID: "oldest"})
		publish(t, db, ctx, events.OrderPlaced{OrderID: "newer"})
		if _, err := db.Exec(`UPDATE watermill_outbox SET created_at = created_at - interval '1 hour'
			WHERE "offset" = (SELECT min("offset") FROM watermill_outbox)`); err != nil {
			t.Fatal(err)
		}
		age := func() time.Duration {
			var s float64
			if err := db.QueryRow(`SELECT EXTRACT(EPOCH FROM LOCALTIMESTAMP - min(created_at)) FROM watermill_outbox`).Scan(&s); err != nil {
				t.Fatal(err)
			}
			return time.Duration(s * float64(time.Second))
		}
		before := age()
		st, err := outbox.Outbox(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		after := age()
		if st.Pending != 2 || st.OldestAge < before || st.OldestAge > after {
			t.Errorf("outbox: %d pending, oldest %s; want 2, between %s and %s", st.Pending, st.OldestAge, before, after)
		}
	})
}
