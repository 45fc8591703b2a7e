package redisstreams_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderstream/orderstream/internal/netfault"
	"github.com/orderstream/orderstream/internal/testenv"
)

// TestSubscriber_subscribesOnceRedisAnswers: a Subscribe made while the
// link to Redis is cut (patientSubscriber) retries instead of failing, as
// the router would give up on the handler and the worker exit; once Redis
// answers, the subscription is made and delivers.
func TestSubscriber_subscribesOnceRedisAnswers(t *testing.T) {
	t.Parallel()
	streams := testenv.Streams(t)
	srv := netfault.NewServer()
	defer srv.Close()
	proxy, err := srv.Proxy("redis", streams.Redis.Addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	down, err := proxy.Reset(0)
	if err != nil {
		t.Fatal(err)
	}
	log := &testenv.Buffer{}
	cut := streams
	opts := *streams.Redis
	opts.Addrs = []string{proxy.Addr()}
	cut.Redis = &opts
	cut.Logger = watermill.NewSlogLogger(slog.New(slog.NewTextHandler(log, nil)))
	sub, err := cut.Subscriber("patient")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	type subscribed struct {
		msgs <-chan *message.Message
		err  error
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan subscribed, 1)
	go func() {
		msgs, err := sub.Subscribe(ctx, streams.Name("patient"))
		done <- subscribed{msgs, err}
	}()
	// Wait for two retries (the second waits the backoff doubled), or for
	// Subscribe to give up.
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(log.String(), "Cannot subscribe yet") < 2 {
		select {
		case s := <-done:
			t.Fatalf("Subscribe() = %v while Redis was unreachable, want it to retry", s.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not two retries logged:\n%s", log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := down.Remove(); err != nil {
		t.Fatal(err)
	}
	var s subscribed
	select {
	case s = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Subscribe did not return once Redis answered")
	}
	if s.err != nil {
		t.Fatalf("Subscribe() = %v once Redis answered", s.err)
	}

	pub, err := streams.Publisher()
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sent := message.NewMessage(testenv.Unique("m"), []byte("{}"))
	if err := pub.Publish("patient", sent); err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-s.msgs:
		msg.Ack()
		if msg.UUID != sent.UUID {
			t.Errorf("delivered %s, want %s", msg.UUID, sent.UUID)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the subscription delivered nothing")
	}
}
