package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/activity"
	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/logging"
	"github.com/orderstream/orderstream/parked"
	"github.com/orderstream/orderstream/worker"
)

// scripted is a handler of OrderPlaced that fails as its order id says:
// "flaky" once with an error of its own, "broken" always, "held" twice
// with a passing error; it notes the order and "done" when it succeeds.
type scripted struct {
	mu    sync.Mutex
	calls map[string]int
}

func (s *scripted) handle(ctx context.Context, e *events.OrderPlaced) error {
	s.mu.Lock()
	s.calls[e.OrderID]++
	n := s.calls[e.OrderID]
	s.mu.Unlock()
	switch kind, _, _ := strings.Cut(e.OrderID, "-"); {
	case kind == "flaky" && n == 1, kind == "broken":
		return errors.New(kind)
	case kind == "held" && n <= 2:
		return fmt.Errorf("held: %w", context.DeadlineExceeded)
	}
	logging.Note(ctx, "order_id", e.OrderID, "outcome", "done")
	return nil
}

// shown is an entry as the test compares it: attempt, outcome, marks.
func shown(e activity.Entry) string {
	s := fmt.Sprintf("%d %s", e.Attempt, e.Outcome)
	for mark, on := range map[string]bool{"retried": e.Retried, "parked": e.Parked, "dead_lettered": e.DeadLettered} {
		if on {
			s += " " + mark
		}
	}
	return s
}

func TestMessages_activity(t *testing.T) {
	t.Parallel()

	t.Run("records_each_attempt_with_what_came_of_it", func(t *testing.T) {
		t.Parallel()
		name := "test.activity"
		s := &scripted{calls: map[string]int{}}
		w := startWorker(t, func(c *worker.MessagesConfig) {
			c.Subscriptions = []worker.Subscription{{Name: name, Stream: events.StreamOrdersPlaced, Group: "activity",
				Handlers: handlers(cqrs.NewGroupEventHandler(s.handle))}}
			c.MaxRetries, c.RetryInitial = 1, 10*time.Millisecond
			c.ParkBackoff = parked.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond}
			c.Activity = activity.NewRecorder(c.Streams, activity.RecorderConfig{})
		})
		want := map[string][]string{ // by order, oldest first
			"ok":     {"1 done"},
			"flaky":  {"1 failed retried", "2 done"},
			"broken": {"1 failed retried", "2 failed dead_lettered"},
			"held":   {"1 failed retried", "2 failed parked", "1 done"},
		}
		orders := map[string]string{} // order id → its kind
		uuids := map[string]string{}  // order id → message uuid
		for kind := range want {
			id := kind + "-" + uuid.NewString()
			msg, err := events.NewMessage(w.ctx, events.OrderPlaced{OrderID: id, CustomerID: "c"})
			if err != nil {
				t.Fatal(err)
			}
			orders[id], uuids[id] = kind, msg.UUID
			w.publish(events.StreamOrdersPlaced, msg)
		}

		var got map[string][]activity.Entry
		eventually(t, func() bool {
			entries, err := activity.Latest(w.ctx, w.rdb, w.streams, 100)
			if err != nil {
				t.Fatal(err)
			}
			got = map[string][]activity.Entry{}
			for i := len(entries) - 1; i >= 0; i-- { // oldest first
				got[orders[entries[i].OrderID]] = append(got[orders[entries[i].OrderID]], entries[i])
			}
			for kind, attempts := range want {
				if len(got[kind]) != len(attempts) {
					return false
				}
			}
			return len(entries) == 8
		}, "an entry for each of the 8 attempts")
		for kind, attempts := range want {
			for i, e := range got[kind] {
				if shown(e) != attempts[i] {
					t.Errorf("%s: attempt %d shown as %q, want %q (%+v)", kind, i+1, shown(e), attempts[i], e)
				}
				if e.Handler != name || e.EventType != "OrderPlaced" || uuids[e.OrderID] != e.MessageUUID || e.At.IsZero() ||
					e.DurationMS <= 0 {
					t.Errorf("%s: attempt %d = %+v, want handler %s, OrderPlaced, the message's uuid, a time and a duration",
						kind, i+1, e, name)
				}
				if failed := e.Outcome == "failed"; failed != (e.Error != "") {
					t.Errorf("%s: attempt %d outcome %s with error %q", kind, i+1, e.Outcome, e.Error)
				}
			}
		}
		if n := w.deadLetters(); n != 1 {
			t.Errorf("%d dead letters, want the broken order's", n)
		}
	})

	t.Run("handles_messages_while_the_feed_cannot_be_written", func(t *testing.T) {
		t.Parallel()
		away := testenv.FreeAddr(t) // nothing listens there
		var rec *activity.Recorder
		w := startWorker(t, func(c *worker.MessagesConfig) {
			rec = activity.NewRecorder(testenv.StreamsOn(t, &redis.UniversalOptions{Addrs: []string{away}}, c.Streams.Prefix),
				activity.RecorderConfig{})
			c.Activity = rec
		})
		sku := testenv.Unique("SKU")
		if _, err := w.inventory.Set(w.ctx, sku, 10); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			w.placed(sku)
		}
		eventually(t, func() bool { return w.reserved(sku) == 3 }, "the orders to be reserved")
		w.drained(events.StreamOrdersPlaced, "inventory")
		eventually(t, func() bool { return rec.Dropped() >= 3 }, "the 3 entries to be dropped")
	})
}
