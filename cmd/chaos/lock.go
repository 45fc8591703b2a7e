package main

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// lockedSKU is the SKU whose stock row the lock scenario holds.
const lockedSKU = "CHAOS-LOCKED"

// lockScenario checks that a lock, or a session that forgets to end its
// transaction, delays only what must wait for it:
//
//   - While a session holds one SKU's stock row FOR UPDATE for -lock-hold,
//     orders for other SKUs settle; the orders for the locked SKU, whose
//     handlers wait for the lock, are retried for as long as it takes and
//     settle once it is released, without a dead letter (guarantee 6: a
//     message failing for a passing reason waits without holding a
//     consumer, and is never dead-lettered for it). There are more of them
//     than the workers have consumers, so a handler that holds its consumer
//     while it waits stops every other order.
//   - While another session sits idle for -idle-hold in a transaction that
//     holds a transaction id, the orders placed meanwhile settle once it
//     ends: the outbox forwards only rows of transactions older than every
//     one still running, so they may wait for it, but no longer.
type lockScenario struct {
	held, other, idle indices
}

// lockOthers is how many orders of other SKUs each part places.
const lockOthers = 40

func (s *lockScenario) prepare(h *harness) {
	s.held = h.plan.addOrders("lock-held", 2*h.opts.workerConcurrency+4, lockedSKU)
	s.other = h.plan.addOrders("lock-other", lockOthers, skuNames("CHAOS-LOCK-OTHER", 5)...)
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

// rowLock is the first part: a stock row locked FOR UPDATE.
func (s *lockScenario) rowLock(ctx context.Context, h *harness, rdb *redis.Client) error {
	// The held orders' events must be on the stream before the lock is
	// taken, or they would wait in the outbox behind the locking
	// transaction and never meet the lock in a handler. So the workers are
	// paused while they are placed and forwarded, and resumed once the
	// lock is held.
	workers := h.cluster.named("worker")
	var resumeOnce sync.Once
	resume := func() {
		resumeOnce.Do(func() {
			for _, w := range workers {
				w.pause(false)
			}
		})
	}
	for _, w := range workers {
		w.pause(true)
	}
	defer resume()
	from, err := lastID(ctx, rdb, streamPlaced)
	if err != nil {
		return err
	}
	if err := h.load.run(ctx, s.held, h.opts.clients, 0, h.opts.seed); err != nil {
		return err
	}
	held := h.load.idsOf(s.held)
	if err := waitOnStream(ctx, rdb, streamPlaced, from, held, time.Minute); err != nil {
		h.found.add("lock", "the events of the orders for %s did not reach %s while the workers were paused: %v", lockedSKU, streamPlaced, err)
	}

	lock, err := beginIdle(ctx, h.db, `SELECT 1 FROM stock WHERE sku = $1 FOR UPDATE`, lockedSKU)
	if err != nil {
		return fmt.Errorf("lock the stock row of %s: %w", lockedSKU, err)
	}
	defer lock.end()
	lockedAt := time.Now()
	h.faults.add(faultRowLock)
	h.logger.Info("chaos: stock row locked", "sku", lockedSKU, "for", h.opts.lockHold, "waiting_orders", len(held))
	resume()

	if from, err = lastID(ctx, rdb, streamPlaced); err != nil {
		return err
	}
	if err := h.load.run(ctx, s.other, h.opts.clients, 0, h.opts.seed); err != nil {
		return err
	}
	h.loadProblems("lock")
	other := h.load.idsOf(s.other)
	if err := waitSettled(ctx, h.db, other, time.Until(lockedAt.Add(h.opts.lockHold))); err != nil {
		h.found.add("lock", "orders for other SKUs did not settle while %s was locked FOR UPDATE (%s): %v; %s",
			lockedSKU, h.opts.lockHold, err, progressOf(ctx, h.db, rdb, from, other))
	} else {
		h.logger.Info("chaos: orders for other SKUs settled while the row was locked", "orders", len(other),
			"after", time.Since(lockedAt).Round(time.Millisecond))
	}
	// The lock holds for its full time, so that the waiting orders'
	// handlers are retried past the point where a failing message would be
	// dead-lettered.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(lockedAt.Add(h.opts.lockHold))):
	}
	if n, err := countPending(ctx, h.db, held); err == nil && n != len(held) {
		h.found.add("lock", "%d of the %d orders for %s settled while its stock row was locked", len(held)-n, len(held), lockedSKU)
	}
	lock.end()
	released := time.Now()
	if err := waitSettled(ctx, h.db, held, h.opts.settleTimeout); err != nil {
		h.found.add("lock", "the orders for %s did not settle once its lock was released: %v", lockedSKU, err)
	} else {
		h.logger.Info("chaos: orders for the locked SKU settled", "orders", len(held), "after_release", time.Since(released).Round(time.Millisecond))
	}
	s.noDeadLetters(ctx, h, rdb, held, "the orders that waited for the lock")
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
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(began.Add(h.opts.idleHold))):
	}
	idle.end()
	ended := time.Now()
	if err := waitSettled(ctx, h.db, ids, h.opts.settleTimeout); err != nil {
		h.found.add("lock", "the orders placed while a session sat idle in a transaction did not settle once it ended: %v", err)
	} else {
		h.logger.Info("chaos: orders placed during the idle transaction settled", "orders", len(ids), "after_it_ended", time.Since(ended).Round(time.Millisecond))
	}
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
