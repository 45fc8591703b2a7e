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
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Metadata a republished message carries. MetadataHandler names the one
// handler that is to see it again: the consumer groups of the stream's other
// handlers ack it without handling it (they handled the original). The
// attempts and the time of the first failure carry the backoff over to the
// next park.
const (
	MetadataHandler  = "parked_handler"
	MetadataAttempts = "parked_attempts"
	MetadataSince    = "parked_since"
)

// Keys are every metadata key this package sets, for whoever wants a
// message without them (a dead letter, say).
var Keys = []string{MetadataHandler, MetadataAttempts, MetadataSince}

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
	d = min(d, b.Max)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
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
func (s *Store) Park(ctx context.Context, handler, stream string, msg *message.Message, cause error) (Parked, error) {
	attempts := 1
	if n, err := strconv.Atoi(msg.Metadata.Get(MetadataAttempts)); err == nil && n > 0 {
		attempts = n + 1
	}
	var since sql.NullTime
	if t, err := time.Parse(time.RFC3339Nano, msg.Metadata.Get(MetadataSince)); err == nil {
		since = sql.NullTime{Time: t, Valid: true}
	}
	wait := s.backoff.Delay(attempts)
	metadata, err := json.Marshal(stripped(msg.Metadata))
	if err != nil {
		return Parked{}, fmt.Errorf("park message: %w", err)
	}
	p := Parked{NextAttemptIn: wait}
	var failing float64
	err = s.db.QueryRowContext(ctx, `
		INSERT INTO parked_messages AS p (handler, message_uuid, stream, payload, metadata,
			attempts, first_failed_at, next_attempt_at, last_error)
		VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7, now()), now() + $8::bigint * interval '1 microsecond', $9)
		ON CONFLICT (handler, message_uuid) DO UPDATE SET
			stream = excluded.stream, payload = excluded.payload, metadata = excluded.metadata,
			attempts = GREATEST(p.attempts, excluded.attempts),
			first_failed_at = LEAST(p.first_failed_at, excluded.first_failed_at),
			next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error
		RETURNING attempts, EXTRACT(EPOCH FROM now() - first_failed_at)::float8`,
		handler, msg.UUID, stream, []byte(msg.Payload), string(metadata),
		attempts, since, wait.Microseconds(), cause.Error(),
	).Scan(&p.Attempts, &failing)
	if err != nil {
		return Parked{}, fmt.Errorf("park message: %w", err)
	}
	p.Failing = time.Duration(failing * float64(time.Second))
	p.Overdue = p.Failing >= s.surfaceAfter
	select { // the republisher recomputes when the next one is due
	case s.wake <- struct{}{}:
	default:
	}
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
