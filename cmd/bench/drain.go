package main

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/orderstream/orderstream/events"
)

// drainResult is one forwarder run over a backlog built while no forwarder
// ran.
type drainResult struct {
	backlog   int
	insert    time.Duration // building the backlog, not measured
	startup   time.Duration // from the process's start to the first entry on the stream
	drain     time.Duration // from the first entry seen to the last
	forwarded int64
	perSecond float64 // entries forwarded after the first seen, per second of drain
	overall   float64 // every entry, per second from the process's start
	complete  bool    // false: the run hit -drain-timeout
	cpu       cpuUsage
}

// backlogBatch is how many outbox rows one transaction inserts: as many
// transactions as a busy API would commit, each with its own transaction id,
// which is what the forwarder's select orders and skips by.
const backlogBatch = 10_000

// backlogSQL inserts outbox rows $1 to $2 as events.Publish writes them: a
// watermill-sql message whose payload is the forwarder's envelope around an
// OrderPlaced (of two of $3 SKUs), its UUID, payload in base64 and metadata.
const backlogSQL = `
INSERT INTO watermill_outbox (uuid, payload, metadata, transaction_id)
SELECT gen_random_uuid()::text,
       ('{"destination_topic":"orders.placed","uuid":"' || gen_random_uuid() ||
        '","payload":"' || translate(encode(convert_to(e.event, 'UTF8'), 'base64'), E'\n', '') ||
        '","metadata":{"correlation_id":"' || gen_random_uuid() || '","event_type":"OrderPlaced"}}')::json,
       '{}'::json, pg_current_xact_id()
FROM (
    SELECT '{"order_id":"' || gen_random_uuid() || '","customer_id":"backlog-' || (i % 1000) ||
           '","items":[{"sku":"SKU-' || lpad((i % $3)::text, 3, '0') || '","quantity":1},' ||
           '{"sku":"SKU-' || lpad(((i + 1) % $3)::text, 3, '0') || '","quantity":2}],"placed_at":"' ||
           to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"}' AS event
    FROM generate_series($1::int, $2::int) AS i) e`

// measureDrain drains a small and a large backlog, each on a fresh
// database: the drain rate should not depend on how much is waiting.
func measureDrain(ctx context.Context, st *stage, rep *report) error {
	for _, n := range []int{st.opts.backlogSmall, st.opts.backlogLarge} {
		r, err := drainBacklog(ctx, st, n)
		if err != nil {
			return fmt.Errorf("drain %s: %w", thousands(int64(n)), err)
		}
		rep.drains = append(rep.drains, r)
	}
	return nil
}

func drainBacklog(ctx context.Context, st *stage, n int) (*drainResult, error) {
	db, err := st.freshDatabase(ctx)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	r := &drainResult{backlog: n}
	began := time.Now()
	if err := insertBacklog(ctx, st, db, n); err != nil {
		return nil, err
	}
	r.insert = time.Since(began)

	prefix := st.streamPrefix(fmt.Sprintf("drain%d", n))
	defer func() { _ = st.clearStreams(context.WithoutCancel(ctx), prefix) }()
	stream := prefix + events.StreamOrdersPlaced
	fwd, err := st.start("forwarder", prefix)
	if err != nil {
		return nil, err
	}
	defer func() { _ = fwd.stop() }()
	before := sampleCPU(fwd)

	var firstAt time.Time
	var firstSeen int64
	deadline := fwd.started.Add(st.opts.drainTimeout)
	for {
		got, err := st.rdb.XLen(ctx, stream).Result()
		if err != nil {
			return nil, fmt.Errorf("read stream length: %w", err)
		}
		now := time.Now()
		if got > 0 && firstAt.IsZero() {
			firstAt, firstSeen = now, got
		}
		r.forwarded = got
		if got >= int64(n) || now.After(deadline) {
			r.complete = got >= int64(n)
			if !firstAt.IsZero() {
				r.startup = firstAt.Sub(fwd.started)
				r.drain = now.Sub(firstAt)
				if r.drain > 0 {
					r.perSecond = float64(got-firstSeen) / r.drain.Seconds()
				}
			}
			r.overall = float64(got) / now.Sub(fwd.started).Seconds()
			break
		}
		select {
		case <-fwd.exited:
			return nil, fmt.Errorf("forwarder exited: %v", fwd.err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	r.cpu = sampleCPU(fwd).usageSince(before)
	return r, fwd.stop()
}

// insertBacklog fills the outbox with n rows, then vacuums and analyzes it
// as autovacuum would have while a real backlog built up.
func insertBacklog(ctx context.Context, st *stage, db *sql.DB, n int) error {
	last := time.Now()
	for from := 1; from <= n; from += backlogBatch {
		to := min(from+backlogBatch-1, n)
		if _, err := db.ExecContext(ctx, backlogSQL, from, to, st.opts.skus); err != nil {
			return fmt.Errorf("insert outbox backlog: %w", err)
		}
		if time.Since(last) > 10*time.Second {
			st.logger.Info("bench: building the outbox backlog", "rows", thousands(int64(to)), "of", thousands(int64(n)))
			last = time.Now()
		}
	}
	if _, err := db.ExecContext(ctx, `VACUUM (ANALYZE) watermill_outbox`); err != nil {
		return fmt.Errorf("vacuum outbox: %w", err)
	}
	var rows int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM watermill_outbox`).Scan(&rows); err != nil {
		return fmt.Errorf("count outbox: %w", err)
	}
	if rows != n {
		return fmt.Errorf("outbox holds %d rows, want %d", rows, n)
	}
	return st.checkpoint(ctx)
}
