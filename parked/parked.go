// Package parked owns the messages that failed for a passing reason: a row
// lock held elsewhere, a timeout, the database away. Instead of being
// redelivered in a loop by the consumer that holds them (which holds that
// consumer, until another consumer claims the entry and loops too), such a
// message is parked in the parked_messages table and its stream entry is
// acked; a Republisher puts it back on its stream, with the same UUID and
// marked for the handler that failed, once its backoff has passed. The
// backoff doubles with every park up to a cap, so a message whose cause
// lasts costs one attempt chain per cap interval, and one that has kept
// failing for longer than a bound is surfaced (see Parked.Overdue).
package parked

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/lib/pq"
)

// Metadata a republished message carries. MetadataHandler names the one
// handler that is to see it again: the consumer groups of the stream's other
// handlers ack it without handling it (they handled the original). The
// attempts and the time of the first failure carry the backoff over to the
// next park. MetadataWaitsOn, a JSON array, is what a message parked for a
// lock wait was waiting for (Park's waitsOn): its success puts back the
// messages waiting for the same (Wake).
const (
	MetadataHandler  = "parked_handler"
	MetadataAttempts = "parked_attempts"
	MetadataSince    = "parked_since"
	MetadataWaitsOn  = "parked_waits_on"
)

// Keys are every metadata key this package sets, for whoever wants a
// message without them (a dead letter, say).
var Keys = []string{MetadataHandler, MetadataAttempts, MetadataSince, MetadataWaitsOn}

// Backoff is how long a parked message waits: Initial after its first park,
// doubling with every park after it up to Max, each jittered by ±20%.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
}

// Delay is the wait after the attempts-th park (1 for the first).
func (b Backoff) Delay(attempts int) time.Duration {
	d := b.Initial
	for i := 1; i < attempts && d < b.Max; i++ {
		d *= 2
	}
	return b.jittered(min(d, b.Max))
}

// jittered is d ±20%.
func (Backoff) jittered(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// normalized is keys sorted, each once; nil when there are none.
func normalized(keys []string) []string {
	if len(keys) == 0 {
		return nil
	}
	out := slices.Sorted(slices.Values(keys))
	return slices.Compact(out)
}

// Wake puts back at once the messages of handler parked waiting for keys
// that keys holds (a subset of them): msg, which waited for keys, has just
// succeeded, so what held them is gone. It is called with the keys of a
// message put back after waiting (MetadataWaitsOn). A message on its way
// back already (leased) is left alone: waking it would put it back twice.
func (s *Store) Wake(ctx context.Context, handler string, keys []string) error {
	res, err := s.db.ExecContext(ctx, `
		UPDATE parked_messages SET next_attempt_at = now()
		WHERE handler = $1 AND waits_on <@ $2 AND next_attempt_at > now()
		  AND (leased_until IS NULL OR leased_until <= now())`,
		handler, pq.Array(normalized(keys)))
	if err != nil {
		return fmt.Errorf("wake parked messages: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n > 0 {
		s.signal()
	}
	return nil
}

// WaitedOn returns the keys a message put back after waiting for them
// carries (MetadataWaitsOn), or nil.
func WaitedOn(msg *message.Message) []string {
	var keys []string
	if v := msg.Metadata.Get(MetadataWaitsOn); v != "" && json.Unmarshal([]byte(v), &keys) == nil {
		return keys
	}
	return nil
}

// signal wakes the republisher, to recompute when the next message is due.
func (s *Store) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Store parks messages in the database.
type Store struct {
	db      *sql.DB
	backoff Backoff
	// SurfaceAfter is how long a message may keep failing, counted from
	// its first failure, before Park reports it overdue.
	surfaceAfter time.Duration
	wake         chan struct{}
}

// NewStore parks messages in db with backoff, and reports one overdue once
// it has kept failing for surfaceAfter.
func NewStore(db *sql.DB, backoff Backoff, surfaceAfter time.Duration) *Store {
	return &Store{db: db, backoff: backoff, surfaceAfter: surfaceAfter, wake: make(chan struct{}, 1)}
}

// Parked is what Park recorded.
type Parked struct {
	Attempts      int           // times parked, this one included
	Failing       time.Duration // since the first failure, by the database clock
	NextAttemptIn time.Duration
	// Overdue is set once the message has kept failing for longer than
	// the bound: it is to be surfaced, not just retried.
	Overdue bool
}

// Park records msg, read from stream (its Redis key) by handler, with the
// error of its last attempt, to be put back on stream after its backoff.
// It returns once the row has committed: only then may the entry be acked.
// Parking again a message already parked (a redelivery of the same entry)
// updates its row.
//
// waitsOn, when not empty, is what the attempt waited for in vain: the
// keys of a lock held elsewhere (postgres.Held). Of the messages of a
// handler waiting for the same keys, one is the probe: it is tried again
// every Backoff.Initial, however often it was parked. A message parked
// while another is due within twice that waits Backoff.Max instead,
// unless the probe, or any message waiting for a superset of its keys,
// succeeds first and wakes it (Wake); the republisher puts off the others
// whenever it takes a probe. A held row so costs one attempt per Initial,
// not one per message waiting for it, and once it frees its messages go
// back at once.
func (s *Store) Park(ctx context.Context, handler, stream string, msg *message.Message, cause error, waitsOn []string) (Parked, error) {
	attempts := 1
	if n, err := strconv.Atoi(msg.Metadata.Get(MetadataAttempts)); err == nil && n > 0 {
		attempts = n + 1
	}
	var since sql.NullTime
	if t, err := time.Parse(time.RFC3339Nano, msg.Metadata.Get(MetadataSince)); err == nil {
		since = sql.NullTime{Time: t, Valid: true}
	}
	// A message waiting for keys waits Initial when it is their probe
	// (the statement decides), Max otherwise.
	wait, follow := s.backoff.Delay(attempts), time.Duration(0)
	keys := normalized(waitsOn)
	if keys != nil {
		wait, follow = s.backoff.jittered(s.backoff.Initial), s.backoff.jittered(s.backoff.Max)
	}
	metadata, err := json.Marshal(stripped(msg.Metadata))
	if err != nil {
		return Parked{}, fmt.Errorf("park message: %w", err)
	}
	var p Parked
	var failing, next float64
	err = s.db.QueryRowContext(ctx, `
		WITH probe AS (
			SELECT $10::text[] IS NULL OR NOT EXISTS (
				SELECT 1 FROM parked_messages o
				WHERE o.handler = $1 AND o.waits_on = $10 AND o.message_uuid <> $2
				  AND o.next_attempt_at < now() + 2 * $8::bigint * interval '1 microsecond') AS is_probe)
		INSERT INTO parked_messages AS p (handler, message_uuid, stream, payload, metadata,
			attempts, first_failed_at, next_attempt_at, last_error, waits_on)
		SELECT $1, $2, $3, $4, $5, $6, COALESCE($7, now()),
			now() + (CASE WHEN probe.is_probe THEN $8 ELSE $11 END)::bigint * interval '1 microsecond', $9, $10
		FROM probe
		ON CONFLICT (handler, message_uuid) DO UPDATE SET
			stream = excluded.stream, payload = excluded.payload, metadata = excluded.metadata,
			attempts = GREATEST(p.attempts, excluded.attempts),
			first_failed_at = LEAST(p.first_failed_at, excluded.first_failed_at),
			next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error,
			waits_on = excluded.waits_on, leased_until = NULL
		RETURNING attempts, EXTRACT(EPOCH FROM now() - first_failed_at)::float8,
			EXTRACT(EPOCH FROM next_attempt_at - now())::float8`,
		handler, msg.UUID, stream, []byte(msg.Payload), string(metadata),
		attempts, since, wait.Microseconds(), cause.Error(), pq.Array(keys), follow.Microseconds(),
	).Scan(&p.Attempts, &failing, &next)
	if err != nil {
		return Parked{}, fmt.Errorf("park message: %w", err)
	}
	p.Failing = time.Duration(failing * float64(time.Second))
	p.NextAttemptIn = time.Duration(next * float64(time.Second))
	p.Overdue = p.Failing >= s.surfaceAfter
	s.signal()
	return p, nil
}

// stripped is metadata without this package's keys: they are set afresh
// when the message is put back.
func stripped(md message.Metadata) message.Metadata {
	out := make(message.Metadata, len(md))
	for k, v := range md {
		out[k] = v
	}
	for _, k := range Keys {
		delete(out, k)
	}
	return out
}

// Status is what is parked, for the metrics.
type Status struct {
	Messages int
	// OldestFailing is how long the message parked longest ago has been
	// failing, since its first failure; 0 when none is parked.
	OldestFailing time.Duration
}

// ReadStatus counts the parked messages of every handler, through a
// *sql.DB or a *sql.Tx.
func ReadStatus(ctx context.Context, db interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}) (Status, error) {
	var st Status
	var oldest float64
	err := db.QueryRowContext(ctx, `
		SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(first_failed_at)), 0)::float8
		FROM parked_messages`).Scan(&st.Messages, &oldest)
	if err != nil {
		return Status{}, fmt.Errorf("read parked messages: %w", err)
	}
	st.OldestFailing = time.Duration(oldest * float64(time.Second))
	return st, nil
}
