package redisstreams_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/redisstreams"
)

// TestSubscriber_closeFinishesMessagesInHand: a stopped subscriber has read
// no more entries than it was handling, lets those finish (their contexts
// live on), acks them after the stop, and leaves its group with nothing
// pending; the entries it did not read stay for the next consumer.
func TestSubscriber_closeFinishesMessagesInHand(t *testing.T) {
	t.Parallel()
	streams := testenv.Streams(t)
	streams.Consumers = 2
	log := &testenv.Buffer{}
	streams.Logger = watermill.NewSlogLogger(slog.New(slog.NewTextHandler(log, nil)))
	stream := streams.Name("graceful")
	publish(t, streams, "graceful", 4)
	sub, err := streams.Subscriber("g")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs, err := sub.Subscribe(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	inHand := []*message.Message{<-msgs, <-msgs}

	cancel() // the router ends the subscription's context as it stops
	closed := make(chan error, 1)
	go func() { closed <- sub.Close() }()
	for _, msg := range inHand {
		if err := msg.Context().Err(); err != nil {
			t.Fatalf("message context ended by the stop: %v", err)
		}
		msg.Ack()
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close() = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, ok := <-msgs; ok {
		t.Error("a message was handed out after the messages in hand")
	}

	rdb := streams.NewClient()
	defer rdb.Close()
	groups, err := rdb.XInfoGroups(context.Background(), stream).Result()
	if err != nil || len(groups) != 1 {
		t.Fatalf("groups %v (%v)", groups, err)
	}
	if g := groups[0]; g.Pending != 0 || g.Consumers != 0 || g.EntriesRead != 2 {
		t.Errorf("group after the stop: %d pending, %d consumers, %d entries read; want 0, 0, 2", g.Pending, g.Consumers, g.EntriesRead)
	}
	// Their acks ended their handling: the stop did not wait out its
	// drain timeout for them.
	if strings.Contains(log.String(), "still in hand") {
		t.Errorf("the stop waited for its drain timeout:\n%s", log)
	}
}

// TestSubscriber_claimsWhatAConsumerLeftUnacked: entries another consumer
// of the group read and never acked are claimed once idle for ClaimIdle and
// handed out, each once, with the entries no one has read.
func TestSubscriber_claimsWhatAConsumerLeftUnacked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	streams := testenv.Streams(t)
	streams.ClaimIdle = 200 * time.Millisecond
	streams.Consumers = 4
	stream := streams.Name("claim")
	rdb := streams.NewClient()
	defer rdb.Close()
	pub, err := streams.Publisher()
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	want := map[string]bool{}
	for range 3 {
		msg := message.NewMessage(testenv.Unique("m"), []byte("{}"))
		want[msg.UUID] = true
		if err := pub.Publish("claim", msg); err != nil {
			t.Fatal(err)
		}
	}
	// A consumer that reads two entries and is gone.
	if err := rdb.XGroupCreate(ctx, stream, "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	read, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "gone", Streams: []string{stream, ">"}, Count: 2}).Result()
	if err != nil || len(read) != 1 || len(read[0].Messages) != 2 {
		t.Fatalf("XREADGROUP = %v, %v; want two entries", read, err)
	}

	sub, err := streams.Subscriber("g")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, err := sub.Subscribe(subCtx, stream)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	timeout := time.After(15 * time.Second)
	for len(got) < len(want) {
		select {
		case msg := <-msgs:
			got[msg.UUID]++
			msg.Ack()
		case <-timeout:
			t.Fatalf("handed out %v, want each of %v", got, want)
		}
	}
	// Nothing more: a claimed entry is not handed out again.
	select {
	case msg := <-msgs:
		t.Errorf("message %s handed out again", msg.UUID)
	case <-time.After(3 * streams.ClaimIdle):
	}
	for uuid := range want {
		if got[uuid] != 1 {
			t.Errorf("message %s handed out %d times, want once", uuid, got[uuid])
		}
	}
	pending, err := rdb.XPending(ctx, stream, "g").Result()
	if err != nil || pending.Count != 0 {
		t.Errorf("group pending %+v (%v), want nothing once all are acked", pending, err)
	}
}

// TestSubscriber_closeAcksEveryMessageInHand: with every slot taken and
// every message acked at once, Close sends all their XACKs before the
// consumer leaves its group, which it does with nothing pending.
func TestSubscriber_closeAcksEveryMessageInHand(t *testing.T) {
	t.Parallel()
	const n = 20
	streams := testenv.Streams(t)
	streams.Consumers = n
	stream := streams.Name("acks")
	publish(t, streams, "acks", n)
	sub, err := streams.Subscriber("g")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs, err := sub.Subscribe(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	var inHand []*message.Message
	timeout := time.After(30 * time.Second)
	for len(inHand) < n {
		select {
		case msg := <-msgs:
			inHand = append(inHand, msg)
		case <-timeout:
			t.Fatalf("%d messages handed out, want %d", len(inHand), n)
		}
	}
	for _, msg := range inHand {
		msg.Ack()
	}
	cancel()
	if err := sub.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	rdb := streams.NewClient()
	defer rdb.Close()
	groups, err := rdb.XInfoGroups(context.Background(), stream).Result()
	if err != nil || len(groups) != 1 {
		t.Fatalf("groups %v (%v)", groups, err)
	}
	if g := groups[0]; g.Pending != 0 || g.Consumers != 0 || g.EntriesRead != n {
		t.Errorf("group after the stop: %d pending, %d consumers, %d entries read; want 0, 0, %d", g.Pending, g.Consumers, g.EntriesRead, n)
	}
}

// publish publishes n messages to topic.
func publish(t *testing.T, streams redisstreams.Config, topic string, n int) {
	t.Helper()
	pub, err := streams.Publisher()
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for range n {
		if err := pub.Publish(topic, message.NewMessage(testenv.Unique("m"), []byte("{}"))); err != nil {
			t.Fatal(err)
		}
	}
}
