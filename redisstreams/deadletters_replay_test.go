package redisstreams_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/redisstreams"
)

// TestStreams_replay: dead letters are listed, oldest first or the newest
// first, with where they came from and why; a replay puts one back on its
// stream with its UUID and metadata, without the dead-letter middleware's,
// and removes it from the dead-letter stream; one that was never an event,
// or comes from a stream nobody consumes, is not replayable and stays.
func TestStreams_replay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	streams := testenv.Streams(t)
	streams.Consumed = []string{events.StreamOrdersPlaced}
	rdb := streams.NewClient()
	defer rdb.Close()
	deadLetter := func(from, reason string, meta message.Metadata) (id, uuid string) {
		t.Helper()
		msg := message.NewMessage(testenv.Unique("m"), []byte(`{"order_id":"o"}`))
		for k, v := range meta {
			msg.Metadata.Set(k, v)
		}
		msg.Metadata.Set(middleware.PoisonedTopicKey, streams.Name(from))
		msg.Metadata.Set(middleware.PoisonedHandlerKey, "inventory.reserve_stock")
		msg.Metadata.Set(middleware.PoisonedSubscriberKey, "sub")
		msg.Metadata.Set(middleware.ReasonForPoisonedKey, reason)
		values, err := redisstream.DefaultMarshallerUnmarshaller{}.Marshal(events.StreamDeadLetter, msg)
		if err != nil {
			t.Fatal(err)
		}
		id, err = rdb.XAdd(ctx, &redis.XAddArgs{Stream: streams.Name(events.StreamDeadLetter), Values: values}).Result()
		if err != nil {
			t.Fatal(err)
		}
		return id, msg.UUID
	}
	good, goodUUID := deadLetter(events.StreamOrdersPlaced, "unknown sku", message.Metadata{events.MetadataCorrelationID: "corr-1"})
	undecodable, _ := deadLetter(events.StreamOrdersPlaced, "cannot decode", message.Metadata{events.MetadataUndecodable: "bad json"})
	unconsumed, _ := deadLetter("nobody.reads.this", "whatever", nil)

	all, err := streams.DeadLetters(ctx, rdb)
	if err != nil || len(all) != 3 || all[0].ID != good || all[2].ID != unconsumed {
		t.Fatalf("DeadLetters() = %+v, %v; want the three, oldest first", all, err)
	}
	if d := all[0]; d.Stream != events.StreamOrdersPlaced || d.Handler != "inventory.reserve_stock" || d.Reason != "unknown sku" ||
		d.Message.UUID != goodUUID || d.At.IsZero() {
		t.Errorf("dead letter %+v: want its stream without the prefix, its handler, reason, UUID and time", d)
	}
	latest, err := streams.LatestDeadLetters(ctx, rdb, 2)
	if err != nil || len(latest) != 2 || latest[0].ID != unconsumed || latest[1].ID != undecodable {
		t.Errorf("LatestDeadLetters(2) = %+v, %v; want the two newest, newest first", latest, err)
	}

	for _, id := range []string{undecodable, unconsumed} {
		if err := streams.ReplayID(ctx, rdb, id); !errors.Is(err, redisstreams.ErrNotReplayable) {
			t.Errorf("ReplayID(%s) = %v, want ErrNotReplayable", id, err)
		}
	}
	if err := streams.ReplayID(ctx, rdb, good); err != nil {
		t.Fatalf("ReplayID(%s) = %v", good, err)
	}
	if err := streams.ReplayID(ctx, rdb, good); !errors.Is(err, redisstreams.ErrNoDeadLetter) {
		t.Errorf("ReplayID(%s) again = %v, want ErrNoDeadLetter", good, err)
	}
	left, err := streams.DeadLetters(ctx, rdb)
	if err != nil || len(left) != 2 {
		t.Errorf("DeadLetters() after the replay = %+v, %v; want the two not replayable", left, err)
	}
	back, err := rdb.XRange(ctx, streams.Name(events.StreamOrdersPlaced), "-", "+").Result()
	if err != nil || len(back) != 1 {
		t.Fatalf("%s holds %v (%v), want the replayed entry", events.StreamOrdersPlaced, back, err)
	}
	msg, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(back[0].Values)
	if err != nil {
		t.Fatal(err)
	}
	if msg.UUID != goodUUID || msg.Metadata.Get(events.MetadataCorrelationID) != "corr-1" || string(msg.Payload) != `{"order_id":"o"}` {
		t.Errorf("replayed %s %v %s: want the original UUID, metadata and payload", msg.UUID, msg.Metadata, msg.Payload)
	}
	for _, k := range []string{middleware.PoisonedTopicKey, middleware.PoisonedHandlerKey, middleware.PoisonedSubscriberKey, middleware.ReasonForPoisonedKey} {
		if msg.Metadata.Get(k) != "" {
			t.Errorf("replayed message keeps the dead-letter metadata %s", k)
		}
	}
}

// TestStreams_replayCopies: a message dead-lettered twice (its worker died
// between the dead letter and the ack of the original entry, which was
// delivered again and failed again) is listed once, by its newest entry,
// with its copies; a replay by either entry's ID, or of the listed dead
// letter, puts it back on its stream once and leaves no copy behind.
func TestStreams_replayCopies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		replay func(ctx context.Context, streams redisstreams.Config, rdb redis.UniversalClient, first, second string) error
	}{
		{"by_the_newest_entry_id", func(ctx context.Context, streams redisstreams.Config, rdb redis.UniversalClient, _, second string) error {
			return streams.ReplayID(ctx, rdb, second)
		}},
		{"by_the_earlier_entry_id", func(ctx context.Context, streams redisstreams.Config, rdb redis.UniversalClient, first, _ string) error {
			return streams.ReplayID(ctx, rdb, first)
		}},
		{"as_listed", func(ctx context.Context, streams redisstreams.Config, rdb redis.UniversalClient, _, _ string) error {
			letters, err := streams.DeadLetters(ctx, rdb) // as `deadletters replay --all` does
			if err != nil {
				return err
			}
			var errs []error
			for _, d := range letters {
				if d.Stream == events.StreamOrdersPlaced {
					errs = append(errs, streams.Replay(ctx, rdb, d))
				}
			}
			return errors.Join(errs...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			streams := testenv.Streams(t)
			streams.Consumed = []string{events.StreamOrdersPlaced}
			rdb := streams.NewClient()
			defer rdb.Close()
			msg := message.NewMessage(testenv.Unique("m"), []byte(`{"order_id":"o"}`))
			msg.Metadata.Set(events.MetadataCorrelationID, "corr-1")
			first := writeDeadLetter(t, streams, rdb, events.StreamOrdersPlaced, "first failure", msg)
			other := writeDeadLetter(t, streams, rdb, "nobody.reads.this", "whatever",
				message.NewMessage(testenv.Unique("other"), []byte(`{}`)))
			second := writeDeadLetter(t, streams, rdb, events.StreamOrdersPlaced, "second failure", msg)

			all, err := streams.DeadLetters(ctx, rdb)
			if err != nil || len(all) != 2 || all[0].ID != other || all[1].ID != second {
				t.Fatalf("DeadLetters() = %+v, %v; want %s then the message once, as its newest entry %s", all, err, other, second)
			}
			if d := all[1]; d.Message.UUID != msg.UUID || d.Reason != "second failure" || d.Copies() != 2 ||
				!slices.Equal(d.Earlier, []string{first}) || !slices.Equal(d.IDs(), []string{first, second}) || !d.Holds(first) {
				t.Errorf("dead letter %+v (copies %d): want the newest failure, with the earlier copy %s", d, d.Copies(), first)
			}
			if all[0].Copies() != 1 || all[0].Holds(first) {
				t.Errorf("dead letter %+v: want one copy, not holding %s", all[0], first)
			}
			latest, err := streams.LatestDeadLetters(ctx, rdb, 10)
			if err != nil || len(latest) != 2 || latest[0].ID != second || latest[1].ID != other ||
				!slices.Equal(latest[0].Earlier, []string{first}) {
				t.Errorf("LatestDeadLetters(10) = %+v, %v; want the message once, as %s with its copy %s, then %s", latest, err, second, first, other)
			}
			if latest, err := streams.LatestDeadLetters(ctx, rdb, 1); err != nil || len(latest) != 1 || latest[0].ID != second {
				t.Errorf("LatestDeadLetters(1) = %+v, %v; want the message as %s", latest, err, second)
			}

			if err := tc.replay(ctx, streams, rdb, first, second); err != nil {
				t.Fatalf("replay: %v", err)
			}
			back, err := rdb.XRange(ctx, streams.Name(events.StreamOrdersPlaced), "-", "+").Result()
			if err != nil || len(back) != 1 {
				t.Fatalf("%s holds %v (%v), want the message once", events.StreamOrdersPlaced, back, err)
			}
			if m, err := (redisstream.DefaultMarshallerUnmarshaller{}).Unmarshal(back[0].Values); err != nil || m.UUID != msg.UUID ||
				m.Metadata.Get(events.MetadataCorrelationID) != "corr-1" || m.Metadata.Get(middleware.ReasonForPoisonedKey) != "" {
				t.Errorf("replayed %+v (%v): want the message with its UUID and metadata, without the dead letter's", m, err)
			}
			left, err := rdb.XRange(ctx, streams.Name(events.StreamDeadLetter), "-", "+").Result()
			if err != nil || len(left) != 1 || left[0].ID != other {
				t.Errorf("the dead-letter stream holds %v (%v), want %s alone: no copy of the replayed message", left, err, other)
			}
			for _, id := range []string{first, second} {
				if err := streams.ReplayID(ctx, rdb, id); !errors.Is(err, redisstreams.ErrNoDeadLetter) {
					t.Errorf("ReplayID(%s) after the replay = %v, want ErrNoDeadLetter", id, err)
				}
			}
		})
	}
}

// TestStreams_LatestDeadLetters_copies: the newest dead letters are n
// messages, however many copies of them lie between (more than one read's
// worth), and a replay of one deletes every copy, however many.
func TestStreams_LatestDeadLetters_copies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	streams := testenv.Streams(t)
	streams.Consumed = []string{events.StreamOrdersPlaced}
	rdb := streams.NewClient()
	defer rdb.Close()
	oldest := writeDeadLetter(t, streams, rdb, events.StreamOrdersPlaced, "unknown sku",
		message.NewMessage(testenv.Unique("oldest"), []byte(`{}`)))
	msg := message.NewMessage(testenv.Unique("m"), []byte(`{}`))
	const copies = 250
	var ids []string
	for range copies {
		ids = append(ids, writeDeadLetter(t, streams, rdb, events.StreamOrdersPlaced, "unknown sku", msg))
	}
	newest := ids[len(ids)-1]

	latest, err := streams.LatestDeadLetters(ctx, rdb, 2)
	if err != nil || len(latest) != 2 || latest[0].ID != newest || latest[1].ID != oldest || latest[0].Copies() != copies {
		t.Fatalf("LatestDeadLetters(2) = %d dead letters, %v; want %s (with its %d copies) and %s", len(latest), err, newest, copies, oldest)
	}
	if !slices.Equal(latest[0].IDs(), ids) {
		t.Errorf("copies %v, want %v, oldest first", latest[0].IDs(), ids)
	}
	if latest, err := streams.LatestDeadLetters(ctx, rdb, 1); err != nil || len(latest) != 1 || latest[0].ID != newest {
		t.Errorf("LatestDeadLetters(1) = %+v, %v; want the message as %s", latest, err, newest)
	}
	all, err := streams.DeadLetters(ctx, rdb)
	if err != nil || len(all) != 2 || all[1].ID != newest || all[1].Copies() != copies {
		t.Fatalf("DeadLetters() = %d dead letters, %v; want %s and %s with its %d copies", len(all), err, oldest, newest, copies)
	}
	if err := streams.ReplayID(ctx, rdb, ids[copies/2]); err != nil {
		t.Fatalf("ReplayID(%s) = %v", ids[copies/2], err)
	}
	if n, err := rdb.XLen(ctx, streams.Name(events.StreamOrdersPlaced)).Result(); err != nil || n != 1 {
		t.Errorf("%s holds %d entries (%v), want the message once", events.StreamOrdersPlaced, n, err)
	}
	left, err := rdb.XRange(ctx, streams.Name(events.StreamDeadLetter), "-", "+").Result()
	if err != nil || len(left) != 1 || left[0].ID != oldest {
		t.Errorf("the dead-letter stream holds %d entries (%v), want %s alone", len(left), err, oldest)
	}
}

// writeDeadLetter writes msg to the dead-letter stream as the dead-letter
// middleware does, as failed on stream from for reason, and returns its
// entry ID.
func writeDeadLetter(t *testing.T, streams redisstreams.Config, rdb redis.UniversalClient, from, reason string, msg *message.Message) string {
	t.Helper()
	msg = msg.Copy()
	msg.Metadata.Set(middleware.PoisonedTopicKey, streams.Name(from))
	msg.Metadata.Set(middleware.PoisonedHandlerKey, "inventory.reserve_stock")
	msg.Metadata.Set(middleware.PoisonedSubscriberKey, "sub")
	msg.Metadata.Set(middleware.ReasonForPoisonedKey, reason)
	values, err := redisstream.DefaultMarshallerUnmarshaller{}.Marshal(events.StreamDeadLetter, msg)
	if err != nil {
		t.Fatal(err)
	}
	id, err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: streams.Name(events.StreamDeadLetter), Values: values}).Result()
	if err != nil {
		t.Fatal(err)
	}
	return id
}
