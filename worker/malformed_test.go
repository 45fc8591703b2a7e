package worker_test

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/worker"
)

// A message that no retry can help (ErrMalformed) is dead-lettered after
// its first attempt, without the retries a failure of its own gets.
func TestMessages_deadLettersAMalformedMessageWithoutRetrying(t *testing.T) {
	t.Parallel()
	w := startWorker(t, func(c *worker.MessagesConfig) { c.MaxRetries = 3 })
	bad := message.NewMessage(uuid.NewString(), []byte("not json"))
	bad.Metadata.Set(events.MetadataEventType, "OrderPlaced")
	w.publish(events.StreamOrdersPlaced, bad)
	w.drained(events.StreamOrdersPlaced, "inventory")

	if n := w.deadLetters(); n != 1 {
		t.Fatalf("dead-letter stream holds %d entries, want 1", n)
	}
	if n := w.failedAttempts("inventory.reserve_stock"); n != 1 {
		t.Errorf("%d failed attempts, want 1: a malformed message is not retried", n)
	}
}
