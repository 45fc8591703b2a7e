package outbox_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/outbox"
)

// TestJanitor_runsAlso: a round runs the clean-ups of Also after its own,
// in their order, and reports each as it reports its own: what went, or
// the failure; a clean-up that fails does not keep the next from running.
func TestJanitor_runsAlso(t *testing.T) {
	t.Parallel()
	db := testenv.OwnDB(t)
	ctx := context.Background()
	// The outbox's clean-up deletes one row, the one the forwarder passed.
	for _, id := range []string{"a", "b"} {
		publish(t, db, ctx, events.OrderPlaced{OrderID: id})
	}
	if _, err := db.Exec(`INSERT INTO watermill_offsets_outbox (consumer_group, offset_acked, last_processed_transaction_id)
		SELECT 'forwarder', "offset", transaction_id FROM watermill_outbox ORDER BY transaction_id DESC LIMIT 1`); err != nil {
		t.Fatal(err)
	}
	kind := testenv.Unique("janitor")
	if _, err := db.Exec(`INSERT INTO notifications (order_id, customer_id, kind)
		SELECT gen_random_uuid(), 'c-1', $1 FROM generate_series(1, 3)`, kind); err != nil {
		t.Fatal(err)
	}

	var ran []string
	outboxLeft := -1
	logs := &testenv.Buffer{}
	j := outbox.Janitor{
		DB: db, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		OutboxRetention: 0, InboxRetention: time.Hour,
		Also: []outbox.Cleanup{
			{What: "test notifications", Delete: func(ctx context.Context) (int64, error) {
				ran = append(ran, "test notifications")
				if err := db.QueryRowContext(ctx, `SELECT count(*) FROM watermill_outbox`).Scan(&outboxLeft); err != nil {
					return 0, err
				}
				res, err := db.ExecContext(ctx, `DELETE FROM notifications WHERE kind = $1`, kind)
				if err != nil {
					return 0, err
				}
				return res.RowsAffected()
			}},
			{What: "a failing thing", Delete: func(context.Context) (int64, error) {
				ran = append(ran, "a failing thing")
				return 0, errors.New("table away")
			}},
			{What: "nothing to do", Delete: func(context.Context) (int64, error) {
				ran = append(ran, "nothing to do")
				return 0, nil
			}},
		},
	}
	j.Once(ctx)

	if strings.Join(ran, ", ") != "test notifications, a failing thing, nothing to do" {
		t.Errorf("ran %v, want every clean-up of Also, in its order", ran)
	}
	if outboxLeft != 1 {
		t.Errorf("the outbox held %d rows when Also ran, want 1: Also runs after the outbox's clean-up", outboxLeft)
	}
	var left int
	if err := db.QueryRow(`SELECT count(*) FROM notifications WHERE kind = $1`, kind).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d notifications left (%v), want the clean-up to have deleted them", left, err)
	}
	log := logs.String()
	for _, want := range []string{
		`msg="cleaned up" what=outbox deleted=1`,
		`msg="cleaned up" what="test notifications" deleted=3`,
		`msg="clean-up failed" what="a failing thing" err="table away"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	if strings.Contains(log, "nothing to do") {
		t.Errorf("a clean-up that deleted nothing is logged:\n%s", log)
	}
}
