package main

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync"
	"time"

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
//     and the workers resume, and more orders for other SKUs are placed.
//     While the row is held, the orders for other SKUs, placed before and
//     during the lock, must settle: the held SKU's messages, whose handlers
//     wait for the lock, do not keep the consumers (guarantee 6: a message
//     failing for a passing reason is parked, its consumer given back), and
//     their events are forwarded while the lock lasts. None of the held
//     SKU's orders may settle while the row is held, and none be
//     dead-lettered. Once the lock goes, every one of them settles within
//     lockSettleBound (a parked message is tried again within
//     PARK_BACKOFF_MAX).
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
// lock part must have settled: a held SKU's message parked just before it
// ended waits PARK_BACKOFF_MAX (+20 % jitter) and the parked messages'
// republisher notices it within its 5 s poll; then one attempt
// (HANDLER_TIMEOUT), the outcome's forwarding (2 s) and one attempt of the
// orders handler, and 10 s of slack.
func lockSettleBound() (time.Duration, string) {
	parkMax := knob("PARK_BACKOFF_MAX", time.Minute)
	handler := knob("HANDLER_TIMEOUT", 5*time.Second)
	const poll, forward, slack = 5 * time.Second, 2 * time.Second, 10 * time.Second
	return parkMax + parkMax/5 + poll + handler + forward + handler + slack,
		fmt.Sprintf("park %s + 1/5 + poll %s + handler %s + forward %s + handler %s + %s slack", parkMax, poll, handler, forward, handler, slack)
}

// rowLock is the first part: a stock row locked FOR UPDATE.
func (s *lockScenario) rowLock(ctx context.Context, h *harness, rdb *redis.Client) error {
	// The orders' events must be on the stream before the lock is taken,
	// or they would wait in the outbox behind the locking transaction and
	// never meet the lock in a handler. So the workers are paused while
	// they are placed and forwarded, and resumed once the lock is held.
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
		"waiting_orders", len(held), "other_orders", len(other), "consumers", len(workers)*h.opts.workerConcurrency)
	resume()

	if err := h.load.run(ctx, s.during, h.opts.clients, 0, h.opts.seed); err != nil {
		return err
	}
	h.loadProblems("lock")
	during := h.load.idsOf(s.during)
	for _, g := range []struct {
		what string
		ids  []string
	}{
		{"before", other},
		{"during", during},
	} {
		if err := waitSettled(ctx, h.db, g.ids, time.Until(until)); err != nil {
			h.found.add("lock", "orders for other SKUs placed %s the lock did not settle while %s was locked FOR UPDATE (%s): %v; %s",
				g.what, lockedSKU, h.opts.lockHold, err, progressOf(ctx, h.db, rdb, from, g.ids))
		}
	}
	h.logger.Info("chaos: orders for other SKUs settled while the row was locked", "orders", len(other)+len(during),
		"after", time.Since(lockedAt).Round(time.Millisecond))
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
	if err := waitSettled(ctx, h.db, held, time.Until(released.Add(bound))); err != nil {
		h.found.add("lock", "the orders for %s did not settle within %s of the lock's end (%s): %v", lockedSKU, bound, why, err)
	}
	h.logger.Info("chaos: orders of the row lock settled", "after_release", time.Since(released).Round(time.Millisecond), "bound", bound)
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
