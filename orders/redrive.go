package orders

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/lib/pq"

	"github.com/orderstream/orderstream/postgres"
)

// Redriven is what a re-drive found of one order's events (Redriver.Resend).
type Redriven struct {
	OrderID string
	// Events is how many of its events were written to the outbox again:
	// those the forwarder had passed and the outbox still holds.
	Events int
	// InFlight is how many the forwarder has not passed yet.
	InFlight int
}

// Outcomes of a re-drive, the label of its counter.
const (
	RedriveResent   = "resent"    // events written to the outbox again
	RedriveInFlight = "in_flight" // events still waiting in the outbox: nothing to do yet
	RedriveNoEvent  = "no_event"  // no event left to resend: past OUTBOX_RETENTION, or from before keys were kept
)

// RedriveOutcomes are every outcome, for a counter shown at 0.
var RedriveOutcomes = []string{RedriveResent, RedriveInFlight, RedriveNoEvent}

// Redriver is the orders' process manager with a timeout: an order that
// has stayed pending or cancelling for longer than After has its events
// sent again from what the database holds, and is tried again after a
// growing wait until it settles. It is the end-to-end check of the flow:
// an event that Redis lost after acknowledging it (a failover to a replica
// that lagged, a restore from a backup, a mistaken XTRIM) leaves the order
// unsettled, which only the order itself can tell.
//
// Resend writes the order's retained outbox events again, each with its
// UUID (the placement, the inventory's answer if it gave one, the
// cancellation): each consumer's inbox drops what it handled already, and
// the step that was lost takes effect. An order whose events are gone
// (OUTBOX_RETENTION) cannot be re-driven: it is logged as an error at
// each attempt, counted, and the age of the oldest unsettled order
// (OldestUnsettled) fires the OrderUnsettled alert.
//
// Several processes may run one: each round takes a lock that one
// process holds at a time, and the orders re-driven are recorded
// (order_redrives), so no order is re-driven twice within its wait.
type Redriver struct {
	DB     *sql.DB
	After  time.Duration // ORDER_SETTLE_TIMEOUT
	Resend func(ctx context.Context, tx *postgres.Tx, orderIDs []string) ([]Redriven, error)
	Logger *slog.Logger
	// Counted, when not nil, is called with the outcome of each order
	// re-driven.
	Counted func(outcome string)
	// Behind, when not nil, says why the consumers are too far behind for
	// a re-drive ("" when they are not): an order waiting in a backlog is
	// not lost, and sending its events again would only grow the backlog.
	Behind func(ctx context.Context) (string, error)
}

const (
	// redriveLock is the advisory lock a batch holds (in the clean-up
	// jobs' series, postgres.LockOutboxCleanup and on).
	redriveLock int64 = 0x6f7374_0006
	// redriveBatch is how many orders one transaction re-drives.
	redriveBatch = 500
	// redriveMaxWait caps the wait between the re-drives of an order, in
	// multiples of After.
	redriveMaxWait = 32
	// redriveLoud is the attempt from which each re-drive is an error.
	redriveLoud = 3
)

// Run re-drives, every quarter of After, until ctx is done.
func (r *Redriver) Run(ctx context.Context) {
	t := time.NewTicker(max(r.After/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		if err := r.Round(ctx); err != nil && ctx.Err() == nil {
			r.Logger.WarnContext(ctx, "re-driving unsettled orders failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Round re-drives the unsettled orders that are due, in batches, and
// forgets the orders re-driven that have settled since.
func (r *Redriver) Round(ctx context.Context) error {
	if _, err := r.DB.ExecContext(ctx, `
		DELETE FROM order_redrives d USING orders o
		WHERE o.id = d.order_id AND o.status NOT IN ('pending', 'cancelling')`); err != nil {
		return fmt.Errorf("forget settled re-drives: %w", err)
	}
	if r.Behind != nil {
		why, err := r.Behind(ctx)
		if err != nil {
			return err
		}
		if why != "" {
			r.Logger.DebugContext(ctx, "re-drive waits for the consumers", "why", why)
			return nil
		}
	}
	for {
		n, err := r.batch(ctx)
		if err != nil || n < redriveBatch {
			return err
		}
	}
}

// errLocked ends a batch another process is running.
var errLocked = errors.New("re-drive running elsewhere")

type due struct {
	id       string
	status   string
	attempts int
	age      time.Duration
}

func (r *Redriver) batch(ctx context.Context) (int, error) {
	var n int
	err := postgres.InTx(ctx, r.DB, func(ctx context.Context, tx *postgres.Tx) error {
		var locked bool
		if err := tx.QueryRowContext(ctx, `SELECT pg_try_advisory_xact_lock($1)`, redriveLock).Scan(&locked); err != nil {
			return fmt.Errorf("take the re-drive lock: %w", err)
		}
		if !locked {
			return errLocked
		}
		orders, err := dueOrders(ctx, tx, r.After)
		if err != nil || len(orders) == 0 {
			return err
		}
		n = len(orders)
		ids := make([]string, n)
		for i, o := range orders {
			ids[i] = o.id
		}
		found, err := r.Resend(ctx, tx, ids)
		if err != nil {
			return err
		}
		byID := make(map[string]Redriven, len(found))
		for _, f := range found {
			byID[f.OrderID] = f
		}
		outcomes := make([]string, n)
		for i, o := range orders {
			outcomes[i] = outcomeOf(byID[o.id])
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO order_redrives AS d (order_id, attempts, next_at, last_outcome)
			SELECT id, 1, now() + $3::bigint * interval '1 millisecond', outcome
			FROM unnest($1::uuid[], $2::text[]) AS r(id, outcome)
			ON CONFLICT (order_id) DO UPDATE SET
				attempts = d.attempts + 1, last_at = now(), last_outcome = excluded.last_outcome,
				next_at = now() + LEAST(power(2, d.attempts), $4) * $3::bigint * interval '1 millisecond'`,
			pq.Array(ids), pq.Array(outcomes), r.After.Milliseconds(), redriveMaxWait); err != nil {
			return fmt.Errorf("record re-drives: %w", err)
		}
		tx.AfterCommit(func() {
			for i, o := range orders {
				r.report(ctx, o, byID[o.id], outcomes[i])
			}
		})
		return nil
	})
	if errors.Is(err, errLocked) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("re-drive unsettled orders: %w", err)
	}
	return n, nil
}

// dueOrders are the orders unsettled for longer than after whose wait
// since their last re-drive is over, oldest first.
func dueOrders(ctx context.Context, tx *postgres.Tx, after time.Duration) ([]due, error) {
	rows, err := tx.QueryContext(ctx, `
		SELECT o.id, o.status, COALESCE(d.attempts, 0), EXTRACT(EPOCH FROM now() - o.updated_at)::float8
		FROM orders o LEFT JOIN order_redrives d ON d.order_id = o.id
		WHERE o.status IN ('pending', 'cancelling')
		  AND o.updated_at < now() - $1::bigint * interval '1 millisecond'
		  AND (d.next_at IS NULL OR d.next_at <= now())
		ORDER BY o.updated_at LIMIT $2`, after.Milliseconds(), redriveBatch)
	if err != nil {
		return nil, fmt.Errorf("read unsettled orders: %w", err)
	}
	defer rows.Close()
	var out []due
	for rows.Next() {
		var d due
		var age float64
		if err := rows.Scan(&d.id, &d.status, &d.attempts, &age); err != nil {
			return nil, fmt.Errorf("read unsettled orders: %w", err)
		}
		d.age = time.Duration(age * float64(time.Second))
		out = append(out, d)
	}
	return out, rows.Err()
}

func outcomeOf(f Redriven) string {
	switch {
	case f.Events > 0:
		return RedriveResent
	case f.InFlight > 0:
		return RedriveInFlight
	default:
		return RedriveNoEvent
	}
}

// report logs and counts one order's re-drive: a warning the first
// times, an error from the redriveLoud-th on or when nothing is left to
// resend.
func (r *Redriver) report(ctx context.Context, o due, f Redriven, outcome string) {
	if r.Counted != nil {
		r.Counted(outcome)
	}
	attrs := []any{"order_id", o.id, "status", o.status, "unsettled_for", o.age.Round(time.Millisecond),
		"attempt", o.attempts + 1, "events_resent", f.Events, "events_in_flight", f.InFlight, "outcome", outcome}
	switch {
	case outcome == RedriveNoEvent:
		r.Logger.ErrorContext(ctx, "unsettled order has no event left to re-drive: settle it by hand", attrs...)
	case o.attempts+1 >= redriveLoud:
		r.Logger.ErrorContext(ctx, "order still unsettled after re-driving", attrs...)
	default:
		r.Logger.WarnContext(ctx, "unsettled order re-driven", attrs...)
	}
}

// OldestUnsettled is how long the order placed longest ago that is still
// pending or cancelling has existed; 0 when none is.
func OldestUnsettled(ctx context.Context, db postgres.Queryer) (time.Duration, error) {
	var s float64
	err := db.QueryRowContext(ctx, `
		SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8
		FROM orders WHERE status IN ('pending', 'cancelling')`).Scan(&s)
	if err != nil {
		return 0, fmt.Errorf("read oldest unsettled order: %w", err)
	}
	return time.Duration(s * float64(time.Second)), nil
}
