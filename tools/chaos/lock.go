package main

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/lib/pq"
	"github.com/redis/go-redis/v9"
)

// lockedSKU is the SKU whose stock row the lock scenario holds.
const lockedSKU = "CHAOS-LOCKED"

// lockScenario checks that a lock, or a session that forgets to end its
// transaction, delays only what must wait for it (docs/design.md,
// guarantees 5 and 6). Such a session has a transaction id, but it does
// not hold the outbox writers' lock, so the forwarder does not wait for it
// (outbox's writersHorizon): only the orders that need the locked row wait.
//
//   - Row lock: orders for one SKU (more of them than the workers have
//     consumers) and for other SKUs are placed and forwarded first, with
//     the workers paused, so that the held SKU's handlers meet the lock;
//     then a session holds the SKU's stock row FOR UPDATE for -lock-hold
//     and the workers resume, and once the orders placed before have
//     settled, more orders for other SKUs are placed at a steady pace.
//     While the row is held, the orders for other SKUs, placed before and
//     during the lock, must settle: the held SKU's messages, whose handlers
//     wait for the lock, do not keep the consumers (guarantee 6: a message
//     failing for a passing reason is parked, its consumer given back), and
//     their events are forwarded while the lock lasts. None of the held
//     SKU's orders may settle while the row is held, and none be
//     dead-lettered. The orders for other SKUs placed during the lock
//     settle within lockOthersBound at the 99th percentile, as if nothing
//     were held. Once the lock goes, every held order settles within
//     lockSettleBound: one of their messages is tried every
//     PARK_BACKOFF_INITIAL, and its success puts the others back at once.
//   - Idle transaction: while another session sits idle for -idle-hold in
//     a transaction that holds a transaction id, orders are placed; they
//     settle before it ends, with no dead letter.
type lockScenario struct {
	held, other, during, idle indices
}

// lockOthers is how many orders of other SKUs each part places.
const lockOthers = 40

func (s *lockScenario) prepare(h *harness) {
	s.held = h.plan.addOrders("lock-held", 2*h.opts.workerConcurrency+4, lockedSKU)
	s.other = h.plan.addOrders("lock-other", lockOthers, skuNames("CHAOS-LOCK-OTHER", 5)...)
	s.during = h.plan.addOrders("lock-during", lockOthers, skuNames("CHAOS-LOCK-DURING", 5)...)
	s.idle = h.plan.addOrders("idle-tx", lockOthers, skuNames("CHAOS-IDLE", 5)...)
}

func (s *lockScenario) run(ctx context.Context, h *harness) error {
	rdb := h.redis.client()
	defer rdb.Close()
	h.quiet(ctx, "lock")
	if err := s.rowLock(ctx, h, rdb); err != nil {
		return err
	}
	h.quiet(ctx, "lock")
	return s.idleTransaction(ctx, h, rdb)
}

// lockSettleBound is how long after the lock ends every order of the row
// lock part must have settled: the held SKU's probe is tried every
// PARK_BACKOFF_INITIAL (+20 % jitter); once it succeeds it puts the others
// back at once, and they and their outcomes take a moment to go through.
func lockSettleBound() (time.Duration, string) {
	initial := knob("PARK_BACKOFF_INITIAL", time.Second)
	const through = time.Second
	return initial + initial/5 + through,
		fmt.Sprintf("the probe every %s + 1/5, then %s for the held orders to go through", initial, through)
}

// lockOthersBound is the most the orders for other SKUs placed during the
// lock may take to settle, at the 99th percentile: as if nothing were held.
const lockOthersBound = time.Second

// lockResult is what the summary line reports of the row lock.
type lockResult struct {
	others           []time.Duration // settle times of the orders for other SKUs placed during the lock
	heldAfterRelease time.Duration   // from the lock's end until the last held order settled
}

func (r lockResult) othersP99() string {
	if len(r.others) == 0 {
		return "-"
	}
	return percentile(r.others, 0.99).Round(time.Millisecond).String()
}

// percentile is the q-th quantile of ds by the nearest rank.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// settleTimes is, for each settled order of ids, how long it took from its
// commit to its settlement, by the database's clock.
func settleTimes(ctx context.Context, db *sql.DB, ids []string) ([]time.Duration, error) {
	rows, err := db.QueryContext(ctx, `
		SELECT EXTRACT(EPOCH FROM updated_at - created_at)::float8 FROM orders
		WHERE id = ANY($1::uuid[]) AND status IN ('confirmed', 'rejected')`, pq.Array(ids))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []time.Duration
	for rows.Next() {
		var s float64
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, time.Duration(s*float64(time.Second)))
	}
	return out, rows.Err()
}

// lastSettled is when the last of ids settled.
func lastSettled(ctx context.Context, db *sql.DB, ids []string) (time.Time, error) {
	var t time.Time
	err := db.QueryRowContext(ctx, `SELECT max(updated_at) FROM orders WHERE id = ANY($1::uuid[])`, pq.Array(ids)).Scan(&t)
	return t, err
}

// rowLock is the first part: a stock row locked FOR UPDATE.
func (s *lockScenario) rowLock(ctx context.Context, h *harness, rdb *redis.Client) error {
	// The orders' events must be on the stream before the lock is taken,
	// or they would wait in the outbox behind the locking transaction and
	// never meet the lock in a handler. So the workers are paused while
	// they are placed and forwarded, and resumed once the lock is held.
	resume := h.cluster.pauseWorkers()
	defer resume()
	from, err := lastID(ctx, rdb, streamPlaced)
	if err != nil {
		return err
	}
	for _, idx := range []indices{s.held, s.other} {
		if err := h.load.run(ctx, idx, h.opts.clients, 0, h.opts.seed); err != nil {
			return err
		}
	}
	held, other := h.load.idsOf(s.held), h.load.idsOf(s.other)
	if err := waitOnStream(ctx, rdb, streamPlaced, from, append(append([]string(nil), held...), other...), time.Minute); err != nil {
		h.found.add("lock", "the events of the orders placed before the lock did not reach %s while the workers were paused: %v", streamPlaced, err)
	}

	lock, err := beginIdle(ctx, h.db, `SELECT 1 FROM stock WHERE sku = $1 FOR UPDATE`, lockedSKU)
	if err != nil {
		return fmt.Errorf("lock the stock row of %s: %w", lockedSKU, err)
	}
	defer lock.end()
	lockedAt := time.Now()
	until := lockedAt.Add(h.opts.lockHold)
	h.faults.add(faultRowLock)
	h.logger.Info("chaos: stock row locked", "sku", lockedSKU, "for", h.opts.lockHold,
		"waiting_orders", len(held), "other_orders", len(other), "consumers", len(h.cluster.named("worker"))*h.opts.workerConcurrency)
	resume()

	// The orders placed before the lock, the held SKU's among them, were
	// waiting on the stream: they go through first.
	if err := waitSettled(ctx, h.db, other, time.Until(until)); err != nil {
		h.found.add("lock", "orders for other SKUs placed before the lock did not settle while %s was locked FOR UPDATE (%s): %v; %s",
			lockedSKU, h.opts.lockHold, err, progressOf(ctx, h.db, rdb, from, other))
	}
	h.logger.Info("chaos: orders for other SKUs placed before the lock settled", "orders", len(other),
		"after", time.Since(lockedAt).Round(time.Millisecond))

	// Then orders for other SKUs come at a steady pace over half of what
	// is left of the lock, from a few clients, as customers would place
	// them: they must settle as if nothing were held.
	rate := float64(lockOthers) / max(time.Until(until).Seconds()/2, 1)
	if err := h.load.run(ctx, s.during, 3, rate, h.opts.seed); err != nil {
		return err
	}
	h.loadProblems("lock")
	during := h.load.idsOf(s.during)
	if err := waitSettled(ctx, h.db, during, time.Until(until)); err != nil {
		h.found.add("lock", "orders for other SKUs placed during the lock did not settle while %s was locked FOR UPDATE (%s): %v; %s",
			lockedSKU, h.opts.lockHold, err, progressOf(ctx, h.db, rdb, from, during))
	}
	if took, err := settleTimes(ctx, h.db, during); err != nil {
		h.found.add("lock", "read the settle times of the orders placed during the lock: %v", err)
	} else {
		h.lock.others = took
		if p99 := percentile(took, 0.99); p99 > lockOthersBound {
			h.found.add("lock", "orders for other SKUs placed while %s was locked settled in %s at the 99th percentile, want at most %s: the held SKU's messages keep the consumers",
				lockedSKU, p99.Round(time.Millisecond), lockOthersBound)
		}
	}
	// The lock holds for its full time, so that the waiting orders'
	// handlers are retried past the point where a failing message would be
	// dead-lettered, and parked more than once.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(until)):
	}
	if n, err := countPending(ctx, h.db, held); err == nil && n != len(held) {
		h.found.add("lock", "%d of the %d orders for %s settled while its stock row was locked", len(held)-n, len(held), lockedSKU)
	}
	s.noDeadLetters(ctx, h, rdb, held, "the orders that waited for the lock, while it was held")
	lock.end()
	released := time.Now()
	bound, why := lockSettleBound()
	// Waited for longer than the bound, to report how long they took.
	if err := waitSettled(ctx, h.db, held, time.Until(released.Add(knob("PARK_BACKOFF_MAX", time.Minute)+30*time.Second))); err != nil {
		h.found.add("lock", "the orders for %s did not settle within %s of the lock's end (%s): %v", lockedSKU, bound, why, err)
	} else if last, err := lastSettled(ctx, h.db, held); err != nil {
		h.found.add("lock", "read when the orders for %s settled: %v", lockedSKU, err)
	} else {
		h.lock.heldAfterRelease = last.Sub(released)
		if h.lock.heldAfterRelease > bound {
			h.found.add("lock", "the orders for %s settled %s after the lock's end, want at most %s (%s)",
				lockedSKU, h.lock.heldAfterRelease.Round(time.Millisecond), bound, why)
		}
	}
	h.logger.Info("chaos: orders of the row lock settled", "after_release", h.lock.heldAfterRelease.Round(time.Millisecond), "bound", bound)
	s.noDeadLetters(ctx, h, rdb, slices.Concat(held, other, during), "the orders of the row lock")
	return nil
}

// idleTransaction is the second part: a session idle in a transaction.
func (s *lockScenario) idleTransaction(ctx context.Context, h *harness, rdb *redis.Client) error {
	// pg_current_xact_id gives the transaction an id, as its first write
	// would.
	idle, err := beginIdle(ctx, h.db, `SELECT pg_current_xact_id()`)
	if err != nil {
		return fmt.Errorf("begin the idle transaction: %w", err)
	}
	defer idle.end()
	began := time.Now()
	h.faults.add(faultIdleTx)
	h.logger.Info("chaos: session idle in transaction", "for", h.opts.idleHold)
	if err := h.load.run(ctx, s.idle, h.opts.clients, 0, h.opts.seed); err != nil {
		return err
	}
	h.loadProblems("lock")
	ids := h.load.idsOf(s.idle)
	if err := waitSettled(ctx, h.db, ids, time.Until(began.Add(h.opts.idleHold))); err != nil {
		h.found.add("lock", "the orders placed while a session sat idle in a transaction did not settle before it ended (%s): %v", h.opts.idleHold, err)
	} else {
		h.logger.Info("chaos: orders placed during the idle transaction settled while it lasted", "orders", len(ids),
			"after", time.Since(began).Round(time.Millisecond))
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(began.Add(h.opts.idleHold))):
	}
	idle.end()
	s.noDeadLetters(ctx, h, rdb, ids, "the orders placed during the idle transaction")
	return nil
}

func (s *lockScenario) noDeadLetters(ctx context.Context, h *harness, rdb *redis.Client, ids []string, what string) {
	dl, err := deadLettersFor(ctx, rdb, ids)
	switch {
	case err != nil:
		h.found.add("lock", "read dead letters: %v", err)
	case len(dl) > 0:
		h.found.add("lock", "%d dead letters for %s, want none (the first: entry %s, order %s)", len(dl), what, dl[0].id, dl[0].orderID)
	}
}

// idleTx is a transaction on a connection of its own that ran one statement
// and now waits.
type idleTx struct {
	conn *sql.Conn
	tx   *sql.Tx
	once sync.Once
}

func beginIdle(ctx context.Context, db *sql.DB, query string, args ...any) (*idleTx, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err == nil {
		_, err = tx.ExecContext(ctx, query, args...)
	}
	if err != nil {
		if tx != nil {
			_ = tx.Rollback()
		}
		conn.Close()
		return nil, err
	}
	return &idleTx{conn: conn, tx: tx}, nil
}

// end rolls the transaction back, once.
func (t *idleTx) end() {
	t.once.Do(func() {
		_ = t.tx.Rollback()
		_ = t.conn.Close()
	})
}

// progressOf says how far the orders ids got: placed, OrderPlaced on its
// stream, stock reserved, settled. It tells a stalled outbox from a stalled
// consumer.
func progressOf(ctx context.Context, db *sql.DB, rdb *redis.Client, from string, ids []string) string {
	missing, err1 := missingFromStream(ctx, rdb, streamPlaced, from, ids)
	reserved, err2 := countReserved(ctx, db, ids)
	pending, err3 := countPending(ctx, db, ids)
	if err1 != nil || err2 != nil || err3 != nil {
		return fmt.Sprintf("progress unknown: %v %v %v", err1, err2, err3)
	}
	return fmt.Sprintf("of %d orders placed, %d had their OrderPlaced on %s, %d their stock reserved, %d were settled",
		len(ids), len(ids)-missing, streamPlaced, reserved, len(ids)-pending)
}
