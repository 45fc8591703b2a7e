package parked

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/orderstream/orderstream/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestBackoff_Delay(t *testing.T) {
	t.Parallel()
	b := Backoff{Initial: time.Second, Max: time.Minute}
	for attempts, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 6: 32 * time.Second, 7: time.Minute, 50: time.Minute} {
		for range 20 {
			if got := b.Delay(attempts); got < want*8/10 || got > want*12/10 {
				t.Fatalf("Delay(%d) = %s, want %s ±20%%", attempts, got, want)
			}
		}
	}
}

func TestStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.DB(t)
	streams := testenv.Streams(t)
	rdb := streams.NewClient()
	t.Cleanup(func() { rdb.Close() })
	stream := streams.Name("orders.placed")
	store := NewStore(db, Backoff{Initial: time.Millisecond, Max: time.Millisecond}, time.Hour)
	cause := errors.New("pq: canceling statement due to lock timeout (55P03)")

	newMessage := func() *message.Message {
		msg := message.NewMessage(uuid.NewString(), []byte(`{"order_id":"o-1"}`))
		msg.Metadata.Set("event_type", "OrderPlaced")
		return msg
	}

	t.Run("puts_a_due_message_back_with_its_uuid_marked_for_its_handler", func(t *testing.T) {
		msg := newMessage()
		p, err := store.Park(ctx, "inventory.reserve_stock", stream, msg, cause)
		if err != nil {
			t.Fatal(err)
		}
		if p.Attempts != 1 || p.Overdue {
			t.Fatalf("first park = %+v, want attempt 1, not overdue", p)
		}
		time.Sleep(5 * time.Millisecond) // its 1 ms backoff
		r := store.Republisher(rdb, []string{stream}, slog.New(slog.DiscardHandler))
		if _, err := r.republishDue(ctx); err != nil {
			t.Fatal(err)
		}
		entries, err := rdb.XRange(ctx, stream, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		var back *message.Message
		for _, e := range entries {
			if m, err := (redisstream.DefaultMarshallerUnmarshaller{}).Unmarshal(e.Values); err == nil && m.UUID == msg.UUID {
				back = m
			}
		}
		if back == nil {
			t.Fatal("the parked message is not back on its stream")
		}
		if string(back.Payload) != string(msg.Payload) || back.Metadata.Get("event_type") != "OrderPlaced" ||
			back.Metadata.Get(MetadataHandler) != "inventory.reserve_stock" || back.Metadata.Get(MetadataAttempts) != "1" {
			t.Errorf("put back as %s %v, want the payload, its metadata, the handler and 1 attempt", back.Payload, back.Metadata)
		}
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM parked_messages WHERE message_uuid = $1`, msg.UUID).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d rows left for the message put back (%v), want none", n, err)
		}

		// Failing again, it carries its attempts and first failure on.
		again, err := store.Park(ctx, "inventory.reserve_stock", stream, back, cause)
		if err != nil {
			t.Fatal(err)
		}
		if again.Attempts != 2 {
			t.Errorf("second park = %+v, want attempt 2", again)
		}
	})

	t.Run("reports_a_message_failing_for_longer_than_the_bound_overdue", func(t *testing.T) {
		msg := newMessage()
		msg.Metadata.Set(MetadataAttempts, "9")
		msg.Metadata.Set(MetadataSince, time.Now().Add(-2*time.Hour).Format(time.RFC3339Nano))
		p, err := store.Park(ctx, "inventory.reserve_stock", stream, msg, cause)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Overdue || p.Attempts != 10 || p.Failing < 2*time.Hour-time.Minute {
			t.Errorf("park = %+v, want overdue, attempt 10, failing for 2 h", p)
		}
		var stored string
		if err := db.QueryRow(`SELECT metadata->>'`+MetadataAttempts+`' IS NULL AND last_error = $2 FROM parked_messages WHERE message_uuid = $1`,
			msg.UUID, cause.Error()).Scan(&stored); err != nil || stored != strconv.FormatBool(true) {
			t.Errorf("stored row: %q, %v; want the error, without the parking metadata", stored, err)
		}
	})
}
