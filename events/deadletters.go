package events

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/redis/go-redis/v9"
)

// DeadLetter is a message that could not be handled, as the dead-letter
// stream keeps it.
type DeadLetter struct {
	ID      string // the dead-letter stream's entry ID
	At      time.Time
	Stream  string // where it came from, without the prefix
	Handler string
	Reason  string
	Message *message.Message
}

// poisonKeys are the metadata the dead-letter middleware adds.
var poisonKeys = []string{
	middleware.ReasonForPoisonedKey, middleware.PoisonedTopicKey,
	middleware.PoisonedHandlerKey, middleware.PoisonedSubscriberKey,
}

// DeadLetters returns the dead letters, oldest first.
func (s Streams) DeadLetters(ctx context.Context, rdb redis.UniversalClient) ([]DeadLetter, error) {
	entries, err := rdb.XRange(ctx, s.Name(StreamDeadLetter), "-", "+").Result()
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	return s.toDeadLetters(entries), nil
}

// LatestDeadLetters returns the n newest dead letters, newest first.
func (s Streams) LatestDeadLetters(ctx context.Context, rdb redis.UniversalClient, n int64) ([]DeadLetter, error) {
	entries, err := rdb.XRevRangeN(ctx, s.Name(StreamDeadLetter), "+", "-", n).Result()
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	return s.toDeadLetters(entries), nil
}

func (s Streams) toDeadLetters(entries []redis.XMessage) []DeadLetter {
	out := make([]DeadLetter, 0, len(entries))
	for _, e := range entries {
		msg, _ := tolerantUnmarshaller{}.Unmarshal(e.Values)
		d := DeadLetter{
			ID:      e.ID,
			Stream:  strings.TrimPrefix(msg.Metadata.Get(middleware.PoisonedTopicKey), s.Prefix),
			Handler: msg.Metadata.Get(middleware.PoisonedHandlerKey),
			Reason:  msg.Metadata.Get(middleware.ReasonForPoisonedKey),
			Message: msg,
		}
		if id, err := parseID(e.ID); err == nil {
			d.At = time.UnixMilli(int64(id.ms)).UTC()
		}
		out = append(out, d)
	}
	return out
}

// ErrNoDeadLetter means no dead letter has the ID asked for.
var ErrNoDeadLetter = errors.New("no such dead letter")

// ReplayID replays the dead letter with stream entry ID id (see Replay).
func (s Streams) ReplayID(ctx context.Context, rdb redis.UniversalClient, id string) error {
	entries, err := rdb.XRangeN(ctx, s.Name(StreamDeadLetter), id, id, 1).Result()
	if err != nil {
		return fmt.Errorf("read dead letter %s: %w", id, err)
	}
	if len(entries) == 0 {
		return fmt.Errorf("%w: %s", ErrNoDeadLetter, id)
	}
	return s.Replay(ctx, rdb, s.toDeadLetters(entries)[0])
}

// ErrNotReplayable means a dead letter cannot go back to a stream: it
// never was an event, or could not be read.
var ErrNotReplayable = errors.New("dead letter cannot be replayed")

// Replay publishes the dead letter d to the stream it came from, with its
// original UUID and metadata, then deletes it from the dead-letter stream.
// A crash between the two leaves it to be replayed again, which the inbox
// makes harmless: the UUID is the deduplication key.
func (s Streams) Replay(ctx context.Context, rdb redis.UniversalClient, d DeadLetter) error {
	if d.Message.Metadata.Get(MetadataUndecodable) != "" || !slices.Contains(ConsumedStreams(), d.Stream) {
		return fmt.Errorf("%w: %s (from %q): %s", ErrNotReplayable, d.ID, d.Stream, d.Reason)
	}
	msg := d.Message.Copy()
	for _, k := range poisonKeys {
		delete(msg.Metadata, k)
	}
	values, err := redisstream.DefaultMarshallerUnmarshaller{}.Marshal(d.Stream, msg)
	if err != nil {
		return fmt.Errorf("replay %s: %w", d.ID, err)
	}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.Name(d.Stream), Values: values}).Err(); err != nil {
		return fmt.Errorf("replay %s: %w", d.ID, err)
	}
	if err := rdb.XDel(ctx, s.Name(StreamDeadLetter), d.ID).Err(); err != nil {
		return fmt.Errorf("replay %s: delete dead letter: %w", d.ID, err)
	}
	return nil
}
