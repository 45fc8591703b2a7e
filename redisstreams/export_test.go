package redisstreams

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// SubscriberOn is Subscriber's group subscriber on client, for the tests
// that watch its commands with a hook of their own.
func (s Config) SubscriberOn(group string, client redis.UniversalClient) *groupSubscriber {
	return s.subscriber(group, client)
}

// HandBuilt is a subscription whose reads, handlers and acker the test
// runs itself, one step at a time.
type HandBuilt struct{ c *subscription }

// HandBuilt is a subscription of s to stream, not running: it claims
// nothing for an hour.
func (s *groupSubscriber) HandBuilt(stream string) *HandBuilt {
	c := s.subscription(context.Background(), stream)
	c.claimDue, c.nextClaim = false, time.Now().Add(time.Hour)
	return &HandBuilt{c}
}

// Read reads up to n entries, as the subscription's reads do.
func (h *HandBuilt) Read(n int) ([]redis.XMessage, error) { return h.c.next(int64(n)) }

// Handle hands xm to a handler in a slot of its own, as a read does.
func (h *HandBuilt) Handle(xm redis.XMessage) {
	h.c.slots <- struct{}{}
	h.c.inHand.Add(1)
	go h.c.handle(xm)
}

// Out is where the handlers hand their messages out.
func (h *HandBuilt) Out() <-chan *message.Message { return h.c.out }

// Wait waits for every handler to end.
func (h *HandBuilt) Wait() { h.c.inHand.Wait() }

// FreeSlots is how many more entries the subscription may take in hand.
func (h *HandBuilt) FreeSlots() int { return cap(h.c.slots) - len(h.c.slots) }

// QueueAck queues the XACK of id, as a handler does once its message is
// acked.
func (h *HandBuilt) QueueAck(id string) { h.c.queueAck(id) }

// Flush runs the acker as a stopping subscription does once no message is
// in hand: it sends what is queued and returns.
func (h *HandBuilt) Flush() {
	finished := make(chan struct{})
	close(finished)
	h.c.acker(finished)
}

// Cancel ends the handlers' context, as the drain deadline does.
func (h *HandBuilt) Cancel() { h.c.cancel() }
