package redisstreams_test

import (
	"context"
	"errors"
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
