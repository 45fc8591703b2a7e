package redisstreams_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/redisstreams"
)

// A publisher closed while it publishes (a forwarder's, closed after its
// router, which may still be running a handler it handed a message during
// its close) waits for the publishes under way and fails those after it.
// Without that, the race detector finds watermill-redisstream's Publish
// reading the closed flag its Close writes.
func TestPublisher_closesBetweenPublishes(t *testing.T) {
	t.Parallel()
	pub, err := testenv.Streams(t).Publisher()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	closedErrs := 0
	start := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for range 200 {
				err := pub.Publish("close-race", message.NewMessage(testenv.Unique("uuid"), []byte("{}")))
				if errors.Is(err, redisstreams.ErrPublisherClosed) {
					mu.Lock()
					closedErrs++
					mu.Unlock()
					return
				}
				if err != nil {
					t.Errorf("publish before the close: %v", err)
					return
				}
			}
		}()
	}
	close(start)
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := pub.Publish("close-race", message.NewMessage(testenv.Unique("uuid"), nil)); !errors.Is(err, redisstreams.ErrPublisherClosed) {
		t.Errorf("publish after the close: %v, want ErrPublisherClosed", err)
	}
	if err := pub.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}
