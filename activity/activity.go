// Package activity is the consumers' activity feed of the live page: an
// entry per attempt of a message handler (handler, event type, order id,
// outcome, duration, and whether the message was retried, parked or
// dead-lettered). The worker processes record the entries (Recorder) off
// their handlers' path, rate-limited, to a capped Redis stream that every
// process shares; the API process reads the newest back (Latest).
package activity

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/redisstreams"
)

// Stream is the stream of the feed, before the stream prefix
// (redisstreams.Config.Name): capped, never consumed by a group.
const Stream = "activity"

// field is the stream entry's one field: the Entry, in JSON.
const field = "entry"

// Entry is one attempt of a handler at a message.
type Entry struct {
	// ID is the stream entry's ID, set by Latest (not stored).
	ID string `json:"id,omitempty"`
	// At is when the attempt ended.
	At          time.Time `json:"at"`
	Handler     string    `json:"handler"`
	EventType   string    `json:"event_type"`
	MessageUUID string    `json:"message_uuid"`
	// OrderID is what the handler noted, or, for an attempt that failed
	// before it noted one, the order_id of the event.
	OrderID string `json:"order_id"`
	// Outcome is what the handler noted (reserved, rejected,
	// duplicate_skipped, …), "handled" when it noted none, "failed" when
	// the attempt failed.
	Outcome    string  `json:"outcome"`
	DurationMS float64 `json:"duration_ms"`
	// Attempt counts the attempts of one delivery, from 1: above 1, the
	// attempt is a retry in process. A parked message put back starts
	// again at 1.
	Attempt int `json:"attempt"`
	// What came of a failed attempt: tried again at once (Retried), parked
	// to be tried again later after failing for a passing reason (Parked),
	// or moved to the dead-letter stream (DeadLettered). None of them: the
	// message was left to be delivered again (the worker stopping, or
	// parking failed).
	Retried      bool `json:"retried"`
	Parked       bool `json:"parked"`
	DeadLettered bool `json:"dead_lettered"`
	// Error is the attempt's error, cut to MaxErrorLen bytes.
	Error string `json:"error"`
	// Skipped is how many entries the recording process left out of the
	// feed just before this one: over its rate, its buffer full, or Redis
	// away.
	Skipped uint64 `json:"skipped"`
}

// Marked reports whether e is one the rate limit never drops: a failure,
// a retry, a parked or a dead-lettered message.
func (e Entry) Marked() bool {
	return e.Error != "" || e.Attempt > 1 || e.Retried || e.Parked || e.DeadLettered
}

// MaxErrorLen is the most of an error an entry carries.
const MaxErrorLen = 200

// Latest returns the n newest entries of the feed, newest first. An entry
// it cannot read is left out.
func Latest(ctx context.Context, rdb redis.UniversalClient, streams redisstreams.Config, n int64) ([]Entry, error) {
	if n <= 0 {
		return nil, nil
	}
	msgs, err := rdb.XRevRangeN(ctx, streams.Name(Stream), "+", "-", n).Result()
	if err != nil {
		return nil, fmt.Errorf("read activity: %w", err)
	}
	out := make([]Entry, 0, len(msgs))
	for _, m := range msgs {
		s, _ := m.Values[field].(string)
		var e Entry
		if json.Unmarshal([]byte(s), &e) != nil {
			continue
		}
		e.ID = m.ID
		out = append(out, e)
	}
	return out, nil
}
