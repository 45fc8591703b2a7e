package orders

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/orderstream/orderstream/postgres"
)

// flowLag is how far behind the database clock a Flow's window ends: an
// order's created_at and updated_at are taken before its transaction
// commits, so a window that ended now would miss the orders whose commit
// is still under way, and the next window would not count them either.
const flowLag = 2 * time.Second

// Flow is the orders placed and settled within a window of time, by the
// database clock, and the commit-to-settled latency of those settled.
type Flow struct {
	Since, Until     time.Time
	Placed, Settled  int64
	SettleP50        time.Duration // 0 when none settled
	SettleP99        time.Duration
	HasSettleFigures bool
}

// Seconds is the window's length.
func (f Flow) Seconds() float64 { return f.Until.Sub(f.Since).Seconds() }

// ReadFlow reads the Flow from since to flowLag before now; a zero since is
// a window of a second. Settled are the orders confirmed or rejected
// within it (a cancelled order's updated_at is its cancellation's); each
// count is a range of an index (orders_created_at_id, orders_updated_at),
// however many orders the table holds.
func ReadFlow(ctx context.Context, q postgres.Queryer, since time.Time) (Flow, error) {
	var f Flow
	var from sql.NullTime
	if !since.IsZero() {
		from = sql.NullTime{Time: since, Valid: true}
	}
	var p50, p99 sql.NullFloat64
	err := q.QueryRowContext(ctx, `
		WITH w AS (
			SELECT coalesce($1, now() - $2 * interval '1 second' - interval '1 second') AS since,
			       now() - $2 * interval '1 second' AS until)
		SELECT w.since, w.until,
		       (SELECT count(*) FROM orders WHERE created_at > w.since AND created_at <= w.until),
		       s.n, s.p50, s.p99
		  FROM w, LATERAL (
			SELECT count(*) AS n,
			       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)) AS p50,
			       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)) AS p99
			  FROM orders
			 WHERE updated_at > w.since AND updated_at <= w.until
			   AND status IN ('confirmed', 'rejected')) s`,
		from, flowLag.Seconds()).Scan(&f.Since, &f.Until, &f.Placed, &f.Settled, &p50, &p99)
	if err != nil {
		return f, fmt.Errorf("read the orders placed and settled: %w", err)
	}
	if p50.Valid && p99.Valid {
		f.HasSettleFigures = true
		f.SettleP50 = time.Duration(p50.Float64 * float64(time.Second))
		f.SettleP99 = time.Duration(p99.Float64 * float64(time.Second))
	}
	return f, nil
}
