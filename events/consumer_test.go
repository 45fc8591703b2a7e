package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderstream/orderstream/internal/testenv"
)

// TestSubscriber_closeFinishesMessagesInHand: a stopped subscriber has read
// no more entries than it was handling, lets those finish (their contexts
// live on), acks them after the stop, and leaves its group with nothing
// pending; the entries it did not read stay for the next consumer.
func TestSubscriber_closeFinishesMessagesInHand(t *testing.T) {
	t.Parallel()
	streams := testenv.Streams(t)
	streams.Consumers = 2
	stream := streams.Name("graceful")
	pub, err := streams.Publisher()
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for range 4 {
		if err := pub.Publish("graceful", message.NewMessage(testenv.Unique("m"), []byte("{}"))); err != nil {
			t.Fatal(err)
		}
	}
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

	rdb := streams.Client()
	defer rdb.Close()
	groups, err := rdb.XInfoGroups(context.Background(), stream).Result()
	if err != nil || len(groups) != 1 {
		t.Fatalf("groups %v (%v)", groups, err)
	}
	if g := groups[0]; g.Pending != 0 || g.Consumers != 0 || g.EntriesRead != 2 {
		t.Errorf("group after the stop: %d pending, %d consumers, %d entries read; want 0, 0, 2", g.Pending, g.Consumers, g.EntriesRead)
	}
}
