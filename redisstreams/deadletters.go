package redisstreams

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
)

// DeadLetter is a message that could not be handled, as the dead-letter
// stream keeps it: once, however many entries hold it (Earlier).
type DeadLetter struct {
	ID      string // the dead-letter stream's entry ID: the newest entry of the message
	At      time.Time
	Stream  string // where it came from, without the prefix
	Handler string
	Reason  string
	Message *message.Message
	// Earlier are the entry IDs of the message's older copies, oldest
	// first: entries of the same UUID from the same stream, written when
	// the message was dead-lettered again (deadletters_copies.go).
	Earlier []string
}

// poisonKeys are the metadata the dead-letter middleware adds.
var poisonKeys = []string{
	middleware.ReasonForPoisonedKey, middleware.PoisonedTopicKey,
	middleware.PoisonedHandlerKey, middleware.PoisonedSubscriberKey,
}

// DeadLetters returns the dead letters, each message once with all its
// copies, oldest first (by the entry that speaks for each, its newest).
func (s Config) DeadLetters(ctx context.Context, rdb redis.UniversalClient) ([]DeadLetter, error) {
	entries, err := rdb.XRange(ctx, s.Name(events.StreamDeadLetter), "-", "+").Result()
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", redisError(err))
	}
	var l letterSet
	for _, d := range s.toDeadLetters(entries) {
		l.add(d, false)
	}
	slices.SortFunc(l.letters, func(a, b DeadLetter) int { return compareIDs(a.ID, b.ID) })
	return l.letters, nil
}

// latestPage is how many entries LatestDeadLetters reads at a time, at
// least.
const latestPage = 100

// LatestDeadLetters returns the n newest dead letters, each message once,
// newest first. It reads back only until it has n messages, so their
// Earlier holds only the copies it met on the way (DeadLetters and
// ReplayID find them all).
func (s Config) LatestDeadLetters(ctx context.Context, rdb redis.UniversalClient, n int64) ([]DeadLetter, error) {
	var l letterSet
	page := max(n, latestPage)
	for end := "+"; n > 0; {
		entries, err := rdb.XRevRangeN(ctx, s.Name(events.StreamDeadLetter), end, "-", page).Result()
		if err != nil {
			return nil, fmt.Errorf("read dead letters: %w", redisError(err))
		}
		for _, d := range s.toDeadLetters(entries) {
			l.add(d, int64(len(l.letters)) == n)
		}
		next, more := "", int64(len(entries)) == page
		if more {
			next, more = before(entries[len(entries)-1].ID)
		}
		if int64(len(l.letters)) == n || !more {
			break
		}
		end = next
	}
	return l.letters, nil
}

func (s Config) toDeadLetters(entries []redis.XMessage) []DeadLetter {
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

// ReplayID replays the message of the dead letter with stream entry ID id,
// with every copy of it, whichever copy id names (see Replay).
// An id that is not a stream entry ID, "ms-seq", is ErrNoDeadLetter: XRANGE
// would refuse it, or read a range ("-", "+", a bare millisecond) instead
// of one entry.
func (s Config) ReplayID(ctx context.Context, rdb redis.UniversalClient, id string) error {
	entry, err := parseID(id)
	if _, seq, _ := strings.Cut(id, "-"); err != nil || seq == "" {
		return fmt.Errorf("%w: %q is not a stream entry id (ms-seq)", ErrNoDeadLetter, id)
	}
	id = entry.String()
	// The whole stream, not the one entry: the copies of its message
	// may be anywhere in it.
	letters, err := s.DeadLetters(ctx, rdb)
	if err != nil {
		return fmt.Errorf("replay %s: %w", id, err)
	}
	for _, d := range letters {
		if d.Holds(id) {
			return s.Replay(ctx, rdb, d)
		}
	}
	return fmt.Errorf("%w: %s", ErrNoDeadLetter, id)
}

// ErrNotReplayable means a dead letter cannot go back to a stream: it
// never was an event, or could not be read.
var ErrNotReplayable = errors.New("dead letter cannot be replayed")

// Replay publishes the dead letter d to the stream it came from, once, with
// its original UUID and metadata, then deletes it from the dead-letter
// stream: its entry and its earlier copies, in one XDEL. A crash between
// the two leaves it to be replayed again, which the inbox makes harmless:
// the UUID is the deduplication key.
func (s Config) Replay(ctx context.Context, rdb redis.UniversalClient, d DeadLetter) error {
	if d.Message.Metadata.Get(events.MetadataUndecodable) != "" || !slices.Contains(s.Consumed, d.Stream) {
		return fmt.Errorf("%w: %s (from %q): %s", ErrNotReplayable, d.ID, d.Stream, d.Reason)
	}
	msg := d.Message.Copy()
	for _, k := range poisonKeys {
		delete(msg.Metadata, k)
	}
	values, err := redisstream.DefaultMarshallerUnmarshaller{}.Marshal(d.Stream, msg)
	if err != nil { // its metadata holds a key the marshaller reserves
		return fmt.Errorf("%w: %s: %v", ErrNotReplayable, d.ID, err)
	}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.Name(d.Stream), Values: values}).Err(); err != nil {
		return fmt.Errorf("replay %s: %w", d.ID, redisError(err))
	}
	if err := rdb.XDel(ctx, s.Name(events.StreamDeadLetter), d.IDs()...).Err(); err != nil {
		return fmt.Errorf("replay %s: delete dead letter: %w", d.ID, redisError(err))
	}
	return nil
}

// ErrStreamsUnavailable means Redis could not be reached, went away, or
// cannot serve for now: a condition that passes, not a fault of the
// request.
var ErrStreamsUnavailable = errors.New("redis unavailable")

// redisError marks err with ErrStreamsUnavailable when it says Redis is
// away rather than that the command was wrong.
func redisError(err error) error {
	var netErr net.Error
	switch {
	case errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted), errors.Is(err, redis.ErrClosed),
		errors.Is(err, context.DeadlineExceeded),
		redis.IsLoadingError(err), redis.IsMasterDownError(err), redis.IsTryAgainError(err),
		redis.IsClusterDownError(err), redis.IsMaxClientsError(err), redis.HasErrorPrefix(err, "BUSY"):
		return fmt.Errorf("%w: %w", ErrStreamsUnavailable, err)
	}
	return err
}

// undecodableNamespace names the UUIDs of stream entries that carry none
// (the name-based UUID of "https://github.com/orderstream/orderstream/undecodable-entry"
// in the URL namespace).
var undecodableNamespace = uuid.MustParse("0358dec3-daed-5bf7-a657-0211fab33cb5")

// contentUUID is a name-based (SHA-1) UUID of a stream entry's fields and
// values, byte for byte: the same entry, however often it is delivered,
// always gets the same UUID. (The unmarshaller sees the entry's values
// only, not its stream or ID.)
func contentUUID(values map[string]any) string {
	keys := slices.Sorted(maps.Keys(values))
	var name []byte
	for _, k := range keys {
		v, ok := values[k].(string)
		if !ok { // Redis gives strings; anything else by its Go syntax
			v = fmt.Sprintf("%#v", values[k])
		}
		name = binary.AppendUvarint(name, uint64(len(k)))
		name = append(name, k...)
		name = binary.AppendUvarint(name, uint64(len(v)))
		name = append(name, v...)
	}
	return uuid.NewSHA1(undecodableNamespace, name).String()
}
