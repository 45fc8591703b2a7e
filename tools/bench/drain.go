package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/postgres"
)

// drainResult is one forwarder run over a backlog built while no forwarder
// ran: outbox rows inserted by SQL (drain), or orders placed over HTTP
// (httpdrain).
type drainResult struct {
	backlog   int
	shards    int           // the outbox shards the backlog is spread over
	procs     int           // forwarder processes
	insert    time.Duration // building the backlog (and vacuuming it), not measured
	startup   time.Duration // from the process's start to the first entry on the stream
	drain     time.Duration // from the first entry seen to the last
	forwarded int64
	perSecond float64 // entries forwarded after the first seen, per second of drain
	overall   float64 // every entry, per second from the process's start
	complete  bool    // false: the run hit -drain-timeout
	cpu       cpuUsage
	placed    *loadResult // the orders placed over HTTP that built it; nil: inserted by SQL
}

// backlogBatch is how many outbox rows one transaction inserts: as many
// transactions as a busy API would commit, each with its own transaction id,
// which is what the forwarder's select orders and skips by.
const backlogBatch = 10_000

// backlogSQL inserts outbox rows $1 to $2 into the table of a shard as
// postgres.Tx.Publish writes them: a watermill-sql message whose payload is
// the forwarder's envelope around an OrderPlaced (of two of $3 SKUs), its
// UUID, payload in base64 and metadata.
const backlogSQL = `
INSERT INTO outbox_shard_table (uuid, payload, metadata, transaction_id)
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

// measureDrain drains a small and a large backlog, spread over each of
// -drain-shards outbox shards, by each of -drain-procs forwarder processes:
// the drain rate should not depend on how much is waiting, and should grow
// with the shards until something else bounds it. Each backlog is built
// once per shard count, on a fresh database; each run after the first
// starts the forwarders from the beginning again.
func measureDrain(ctx context.Context, st *stage, rep *report) error {
	for _, n := range []int{st.opts.backlogSmall, st.opts.backlogLarge} {
		for _, shards := range st.opts.drainShards {
			rs, err := drainBuilt(ctx, st, shards, st.opts.drainProcs, func(ctx context.Context, db *sql.DB) (int, error) {
				return n, insertBacklog(ctx, st, db, n, shards)
			})
			rep.drains = append(rep.drains, rs...)
			if err != nil {
				return fmt.Errorf("drain %s in %d shards: %w", thousands(int64(n)), shards, err)
			}
		}
	}
	return nil
}

// backlogBuilder fills the outbox of a fresh database while no forwarder
// runs; it returns how many OrderPlaced entries the forwarder is to put on
// the stream.
type backlogBuilder func(ctx context.Context, db *sql.DB) (int, error)

// drainBuilt builds a backlog spread over shards outbox shards with build,
// on a fresh database, then drains it by each of procs forwarder
// processes, rewinding the forwarder between runs.
func drainBuilt(ctx context.Context, st *stage, shards int, procs []int, build backlogBuilder) ([]*drainResult, error) {
	db, err := st.freshDatabase(ctx)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	began := time.Now()
	n, err := build(ctx, db)
	if err != nil {
		return nil, err
	}
	built := time.Since(began)
	var out []*drainResult
	for i, p := range procs {
		if i > 0 {
			if err := rewindForwarder(ctx, db, n); err != nil {
				return out, err
			}
		}
		r, err := drainBacklog(ctx, st, n, shards, p)
		if r != nil {
			r.insert = built
			out = append(out, r)
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// rewindForwarder puts the forwarder back before every row of the n
// forwarded, as if none had been.
func rewindForwarder(ctx context.Context, db *sql.DB, n int) error {
	for shard := range postgres.MaxOutboxShards {
		if _, err := db.ExecContext(ctx, `UPDATE watermill_offsets_`+postgres.OutboxTopic(shard)+`
			SET offset_acked = 0, last_processed_transaction_id = '0'`); err != nil {
			return fmt.Errorf("rewind the forwarder: %w", err)
		}
	}
	return nil
}

func drainBacklog(ctx context.Context, st *stage, n, shards, procs int) (*drainResult, error) {
	r := &drainResult{backlog: n, shards: shards, procs: procs}
	prefix := st.streamPrefix(fmt.Sprintf("drain%d-%d-%d", n, shards, procs))
	defer func() { _ = st.clearStreams(context.WithoutCancel(ctx), prefix) }()
	stream := prefix + events.StreamOrdersPlaced
	var fwds []*proc
	stopAll := func() error {
		var errs []error
		for _, f := range fwds {
			errs = append(errs, f.stop())
		}
		return errors.Join(errs...)
	}
	defer func() { _ = stopAll() }()
	for range procs {
		fwd, err := st.start("forwarder", prefix)
		if err != nil {
			return nil, err
		}
		fwds = append(fwds, fwd)
	}
	fwd := fwds[0]
	before := sampleCPU(fwds...)

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
		for _, f := range fwds {
			select {
			case <-f.exited:
				return nil, fmt.Errorf("forwarder exited: %v", f.err)
			default:
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	r.cpu = sampleCPU(fwds...).usageSince(before)
	return r, stopAll()
}

// insertBacklog fills the outbox with n rows, spread evenly over the first
// shards shards, then vacuums it (vacuumOutbox).
func insertBacklog(ctx context.Context, st *stage, db *sql.DB, n, shards int) error {
	last := time.Now()
	per := (n + shards - 1) / shards
	for shard := range shards {
		table := "watermill_" + postgres.OutboxTopic(shard)
		end := min((shard+1)*per, n)
		for from := shard*per + 1; from <= end; from += backlogBatch {
			to := min(from+backlogBatch-1, end)
			if _, err := db.ExecContext(ctx, strings.Replace(backlogSQL, "outbox_shard_table", table, 1), from, to, st.opts.skus); err != nil {
				return fmt.Errorf("insert outbox backlog: %w", err)
			}
			if time.Since(last) > 10*time.Second {
				st.logger.Info("bench: building the outbox backlog", "rows", thousands(int64(to)), "of", thousands(int64(n)))
				last = time.Now()
			}
		}
	}
	rows, _, err := vacuumOutbox(ctx, st, db, shards)
	if err != nil {
		return err
	}
	if rows != n {
		return fmt.Errorf("outbox holds %d rows, want %d", rows, n)
	}
	return nil
}

// vacuumOutbox vacuums and analyzes the tables of the first shards outbox
// shards, as autovacuum would have while a real backlog built up, and
// checkpoints; it returns how many rows they hold, and how many of them
// hold any.
func vacuumOutbox(ctx context.Context, st *stage, db *sql.DB, shards int) (rows, used int, err error) {
	for shard := range shards {
		table := "watermill_" + postgres.OutboxTopic(shard)
		if _, err := db.ExecContext(ctx, `VACUUM (ANALYZE) `+table); err != nil {
			return 0, 0, fmt.Errorf("vacuum outbox: %w", err)
		}
		var k int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM `+table).Scan(&k); err != nil {
			return 0, 0, fmt.Errorf("count outbox: %w", err)
		}
		rows += k
		if k > 0 {
			used++
		}
	}
	return rows, used, st.checkpoint(ctx)
}
