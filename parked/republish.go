package parked

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/lib/pq"
	"github.com/redis/go-redis/v9"
)

const (
	// poll is the longest the republisher waits before looking again. It
	// is woken when its own process parks a message and sleeps until the
	// next one is due, so this only bounds how late it notices a message
	// that another process parked and could not put back (it stopped).
	poll = 5 * time.Second
	// lease is how long a message taken to be put back stays out of the
	// other republishers' reach: if this one stops between the publish and
	// the delete, another publishes it again after this (a duplicate, which
	// the inbox absorbs).
	lease = 10 * time.Second
	batch = 100
	// putBackTimeout bounds the publish and the delete of one message,
	// which a stop lets finish.
	putBackTimeout = 5 * time.Second
)

// Republisher puts the parked messages of some streams back on them once
// they are due.
type Republisher struct {
	store   *Store
	rdb     redis.UniversalClient
	streams []string
	logger  *slog.Logger
}

// Republisher returns a Republisher for the messages parked from streams
// (Redis keys), published with rdb.
func (s *Store) Republisher(rdb redis.UniversalClient, streams []string, logger *slog.Logger) *Republisher {
	return &Republisher{store: s, rdb: rdb, streams: streams, logger: logger}
}

// Run puts due messages back until ctx is done.
func (r *Republisher) Run(ctx context.Context) {
	for {
		wait, err := r.republishDue(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.logger.WarnContext(ctx, "putting parked messages back failed", "err", err)
			wait = time.Second
		}
		t := time.NewTimer(min(wait, poll))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-r.store.wake:
			t.Stop()
		}
	}
}

// republishDue puts back what is due and returns how long until the next
// parked message of its streams is.
func (r *Republisher) republishDue(ctx context.Context) (time.Duration, error) {
	for {
		n, err := r.republishBatch(ctx)
		if err != nil {
			return 0, err
		}
		if n < batch {
			break
		}
	}
	var next sql.NullFloat64
	err := r.store.db.QueryRowContext(ctx, `
		SELECT EXTRACT(EPOCH FROM min(next_attempt_at) - now())::float8
		FROM parked_messages WHERE stream = ANY($1)`, pq.Array(r.streams)).Scan(&next)
	if err != nil {
		return 0, fmt.Errorf("read next parked message: %w", err)
	}
	if !next.Valid {
		return poll, nil
	}
	return max(time.Duration(next.Float64*float64(time.Second)), 0), nil
}

// republishBatch leases due messages, publishes each to its stream and
// deletes its row once Redis has accepted it. The lease is one statement
// of its own, not a transaction held open across the publishes: an open
// transaction would hide every later commit from the outbox forwarder.
//
// Of the due messages waiting for the same keys (Park's waitsOn), it
// leases one, the probe, the one that failed first, and puts the others
// of those keys off by Backoff.Max: two messages parked at once may both
// have found no other waiting, and both come due together; Wake brings
// the others back once the probe succeeds.
func (r *Republisher) republishBatch(ctx context.Context) (int, error) {
	rows, err := r.store.db.QueryContext(ctx, `
		WITH due AS (
			SELECT handler, message_uuid, waits_on, first_failed_at FROM parked_messages
			WHERE stream = ANY($1) AND next_attempt_at <= now()
			ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED),
		probe AS (
			SELECT DISTINCT ON (handler, waits_on) handler, message_uuid, waits_on FROM due
			WHERE waits_on IS NOT NULL ORDER BY handler, waits_on, first_failed_at, message_uuid),
		put_off AS (
			UPDATE parked_messages o SET next_attempt_at = now() + $4::bigint * interval '1 millisecond'
			FROM probe WHERE o.handler = probe.handler AND o.waits_on = probe.waits_on
			  AND o.message_uuid <> probe.message_uuid
			  AND o.next_attempt_at < now() + $4::bigint * interval '1 millisecond'
			  AND (o.leased_until IS NULL OR o.leased_until <= now())),
		taken AS (
			SELECT handler, message_uuid FROM due WHERE waits_on IS NULL
			UNION ALL SELECT handler, message_uuid FROM probe)
		UPDATE parked_messages p SET next_attempt_at = now() + $2::bigint * interval '1 millisecond',
			leased_until = now() + $2::bigint * interval '1 millisecond'
		FROM taken
		WHERE p.handler = taken.handler AND p.message_uuid = taken.message_uuid
		RETURNING p.handler, p.message_uuid, p.stream, p.payload, p.metadata, p.attempts, p.first_failed_at, p.waits_on`,
		pq.Array(r.streams), lease.Milliseconds(), batch, r.store.backoff.Max.Milliseconds())
	if err != nil {
		return 0, fmt.Errorf("lease parked messages: %w", err)
	}
	type leased struct {
		handler, stream string
		attempts        int
		msg             *message.Message
	}
	var due []leased
	for rows.Next() {
		var l leased
		var uuid string
		var payload, metadata []byte
		var since time.Time
		var waitsOn []string
		if err := rows.Scan(&l.handler, &uuid, &l.stream, &payload, &metadata, &l.attempts, &since, pq.Array(&waitsOn)); err != nil {
			rows.Close()
			return 0, fmt.Errorf("lease parked messages: %w", err)
		}
		l.msg = message.NewMessage(uuid, payload)
		if err := json.Unmarshal(metadata, &l.msg.Metadata); err != nil {
			rows.Close()
			return 0, fmt.Errorf("lease parked messages: metadata of %s: %w", uuid, err)
		}
		l.msg.Metadata.Set(MetadataHandler, l.handler)
		l.msg.Metadata.Set(MetadataAttempts, strconv.Itoa(l.attempts))
		l.msg.Metadata.Set(MetadataSince, since.UTC().Format(time.RFC3339Nano))
		if len(waitsOn) > 0 {
			keys, _ := json.Marshal(waitsOn)
			l.msg.Metadata.Set(MetadataWaitsOn, string(keys))
		}
		due = append(due, l)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, fmt.Errorf("lease parked messages: %w", err)
	}

	for _, l := range due {
		// A stop comes between two messages, never between the publish
		// and the delete of one, which would leave the row to be put back
		// again after its lease: the rest stay leased, for another
		// republisher once their lease is over.
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if err := r.putBack(context.WithoutCancel(ctx), l.handler, l.stream, l.attempts, l.msg); err != nil {
			return 0, err
		}
	}
	return len(due), nil
}

// putBack publishes msg to stream and deletes its row once Redis has
// accepted it, within putBackTimeout.
func (r *Republisher) putBack(ctx context.Context, handler, stream string, attempts int, msg *message.Message) error {
	ctx, cancel := context.WithTimeout(ctx, putBackTimeout)
	defer cancel()
	values, err := redisstream.DefaultMarshallerUnmarshaller{}.Marshal(stream, msg)
	if err != nil {
		return fmt.Errorf("put back parked message %s: %w", msg.UUID, err)
	}
	if err := r.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: values}).Err(); err != nil {
		return fmt.Errorf("put back parked message %s: %w", msg.UUID, err)
	}
	// Only the row as leased: a message put back, failed again and
	// parked again meanwhile has more attempts, and stays.
	if _, err := r.store.db.ExecContext(ctx,
		`DELETE FROM parked_messages WHERE handler = $1 AND message_uuid = $2 AND attempts = $3`,
		handler, msg.UUID, attempts); err != nil {
		return fmt.Errorf("delete parked message %s: %w", msg.UUID, err)
	}
	r.logger.DebugContext(ctx, "parked message put back",
		"handler", handler, "message_uuid", msg.UUID, "stream", stream, "attempts", attempts)
	return nil
}
