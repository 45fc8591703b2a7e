package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// lostScenario checks that an order settles even when Redis loses the
// OrderPlaced it acknowledged (docs/design.md, guarantee 2 holds only while
// Redis keeps what it acknowledged; guarantee 5 must hold regardless): the
// forwarder has acked the outbox row, so nothing forwards it again, and
// only the re-drive of an order left pending or cancelling for longer than
// ORDER_SETTLE_TIMEOUT (its forwarded events written to the outbox again
// with their original UUIDs) brings it through.
//
// With the workers paused (SIGSTOP) and the outbox empty, a copy of
// Redis's data is taken; then -lost-orders orders are placed and their
// OrderPlaced forwarded onto the stream (the forwarder has passed every
// outbox row), Redis is SIGKILLed and started on the copy, and the entries
// must be gone from the stream. The workers resume, and every one of the
// orders must settle within lostSettleBound, each of them through an
// OrderPlaced with the UUID of the one Redis lost, and none be
// dead-lettered. The processes run with the ORDER_SETTLE_TIMEOUT of the
// harness's environment (1 min by default, as deployed): a shorter one
// would re-drive, in the other scenarios, orders that are only slow.
type lostScenario struct {
	orders indices
}

// orderSettleTimeout is the processes' ORDER_SETTLE_TIMEOUT.
func orderSettleTimeout() time.Duration {
	return knob("ORDER_SETTLE_TIMEOUT", time.Minute)
}

// lostSettleBound is how long after the workers resume every order whose
// OrderPlaced Redis lost must have settled.
func lostSettleBound() (time.Duration, string) {
	timeout := orderSettleTimeout()
	const through = 30 * time.Second
	return 2*timeout + through,
		fmt.Sprintf("2 × ORDER_SETTLE_TIMEOUT (%s): an order is re-driven once pending that long, by a pass that comes within as long again; then %s for its events to be forwarded and handled",
			timeout, through)
}

// lostResult is what the summary line reports of the lost scenario.
type lostResult struct {
	settledAfter time.Duration // from the workers' resuming until the last of the orders settled
}

func (s *lostScenario) prepare(h *harness) {
	s.orders = h.plan.addOrders("lost", h.opts.lostOrders, skuNames("CHAOS-LOST", 5)...)
}

func (s *lostScenario) run(ctx context.Context, h *harness) error {
	h.quiet(ctx, "lost")
	resume := h.cluster.pauseWorkers()
	defer resume()

	// Paused, the workers publish nothing more; once the outbox is empty,
	// the copy holds every event so far, and the rewind takes only the
	// orders placed after it.
	if err := waitForwarded(ctx, h.db, time.Minute); err != nil {
		h.found.add("lost", "the outbox did not empty before the snapshot: %v", err)
	}
	if err := h.redis.snapshot(ctx); err != nil {
		return fmt.Errorf("snapshot redis: %w", err)
	}
	rdb := h.redis.client()
	from, err := lastID(ctx, rdb, streamPlaced)
	if err != nil {
		rdb.Close()
		return err
	}
	if err := h.load.run(ctx, s.orders, h.opts.clients, 0, h.opts.seed); err != nil {
		rdb.Close()
		return err
	}
	h.loadProblems("lost")
	ids := h.load.idsOf(s.orders)
	if err := waitOnStream(ctx, rdb, streamPlaced, from, ids, time.Minute); err != nil {
		h.found.add("lost", "the OrderPlaced of the orders did not reach %s while the workers were paused: %v", streamPlaced, err)
	}
	// Each row acked: the forwarder will not send them again.
	if err := waitForwarded(ctx, h.db, time.Minute); err != nil {
		h.found.add("lost", "the forwarder did not ack the orders' outbox rows: %v", err)
	}
	acked, err := entriesAfter(ctx, rdb, streamPlaced, from)
	rdb.Close()
	if err != nil {
		return err
	}
	original := map[string]string{} // order id → the UUID of its OrderPlaced
	for _, e := range acked {
		original[e.orderID] = e.uuid
	}

	took, err := h.redis.rewind(ctx)
	if err != nil {
		return fmt.Errorf("rewind redis: %w", err)
	}
	h.faults.add(faultRewind)
	rdb = h.redis.client()
	defer rdb.Close()
	if missing, err := missingFromStream(ctx, rdb, streamPlaced, from, ids); err != nil {
		h.found.add("lost", "read %s after the rewind: %v", streamPlaced, err)
	} else if missing != len(ids) {
		h.found.add("lost", "%d of the %d OrderPlaced entries Redis acknowledged are still on %s after it was started on the older copy",
			len(ids)-missing, len(ids), streamPlaced)
	}
	h.logger.Info("chaos: redis started on the copy taken before the orders", "took", took.Round(time.Millisecond),
		"orders", len(ids), "entries_lost", len(acked))
	resume()
	resumed := time.Now()

	bound, why := lostSettleBound()
	if err := waitSettled(ctx, h.db, ids, bound); err != nil {
		h.found.add("lost", "the orders whose OrderPlaced Redis lost did not settle within %s of the workers' resuming (%s): %v; %s",
			bound, why, err, progressOf(ctx, h.db, rdb, from, ids))
	} else if last, err := lastSettled(ctx, h.db, ids); err != nil {
		h.found.add("lost", "read when the orders settled: %v", err)
	} else {
		h.lost.settledAfter = last.Sub(resumed)
	}
	h.logger.Info("chaos: orders whose OrderPlaced Redis lost", "orders", len(ids),
		"settled_after_resume", h.lost.settledAfter.Round(time.Millisecond), "bound", bound)
	return s.sameUUIDs(ctx, h, rdb, from, ids, original)
}

// sameUUIDs checks that the OrderPlaced of each order on the stream after
// the rewind carries the UUID of the one Redis lost (the inbox knows an
// event again by it), and that none was dead-lettered.
func (s *lostScenario) sameUUIDs(ctx context.Context, h *harness, rdb *redis.Client, from string, ids []string, original map[string]string) error {
	again, err := entriesAfter(ctx, rdb, streamPlaced, from)
	if err != nil {
		return err
	}
	changed := 0
	var first string
	for _, e := range again {
		if want, ok := original[e.orderID]; ok && e.uuid != want {
			if changed == 0 {
				first = fmt.Sprintf("order %s: %s, want %s", e.orderID, e.uuid, want)
			}
			changed++
		}
	}
	if changed > 0 {
		h.found.add("lost", "%d OrderPlaced entries came back with another UUID than the one Redis lost (the first: %s)", changed, first)
	}
	dl, err := deadLettersFor(ctx, rdb, ids)
	switch {
	case err != nil:
		h.found.add("lost", "read dead letters: %v", err)
	case len(dl) > 0:
		h.found.add("lost", "%d dead letters for the orders whose OrderPlaced Redis lost, want none (the first: entry %s, order %s)",
			len(dl), dl[0].id, dl[0].orderID)
	}
	return nil
}

// waitForwarded waits until the forwarder has passed every outbox row.
func waitForwarded(ctx context.Context, db *sql.DB, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	for {
		var n int64
		err := db.QueryRowContext(ctx, outboxNotForwarded).Scan(&n)
		if err == nil && n == 0 {
			return nil
		}
		last = err
		if err == nil {
			last = fmt.Errorf("%d rows not forwarded", n)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w", limit, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// outboxNotForwarded counts the rows of every outbox shard after the
// forwarder's position in it (its consumer group's transaction id and
// offset acked), as orderstream outbox status does.
var outboxNotForwarded = func() string {
	shards := make([]string, 16)
	for shard := range shards {
		topic := "outbox"
		if shard > 0 {
			topic = fmt.Sprintf("outbox_%d", shard)
		}
		shards[shard] = fmt.Sprintf(`(
			WITH f AS (
				SELECT last_processed_transaction_id AS tx, offset_acked AS "offset"
				FROM watermill_offsets_%[1]s WHERE consumer_group = 'forwarder')
			SELECT count(*) FROM watermill_%[1]s o
			WHERE (o.transaction_id, o."offset") >
			      (COALESCE((SELECT tx FROM f), '0'), COALESCE((SELECT "offset" FROM f), 0)))`, topic)
	}
	return "SELECT " + strings.Join(shards, " + ")
}()
