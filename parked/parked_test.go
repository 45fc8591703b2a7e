package parked

import (
	"context"
	"errors"
	"log/slog"
	"slices"
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

	// putBack puts store's due messages back on stream and returns the one
	// with uuid as it came back, or nil.
	putBack := func(store *Store, uuid string) *message.Message {
		t.Helper()
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
			if m, err := (redisstream.DefaultMarshallerUnmarshaller{}).Unmarshal(e.Values); err == nil && m.UUID == uuid {
				back = m
			}
		}
		return back
	}

	newMessage := func() *message.Message {
		msg := message.NewMessage(uuid.NewString(), []byte(`{"order_id":"o-1"}`))
		msg.Metadata.Set("event_type", "OrderPlaced")
		return msg
	}

	t.Run("puts_a_due_message_back_with_its_uuid_marked_for_its_handler", func(t *testing.T) {
		msg := newMessage()
		p, err := store.Park(ctx, "inventory.reserve_stock", stream, msg, cause, nil)
		if err != nil {
			t.Fatal(err)
		}
		if p.Attempts != 1 || p.Overdue {
			t.Fatalf("first park = %+v, want attempt 1, not overdue", p)
		}
		time.Sleep(5 * time.Millisecond) // its 1 ms backoff
		back := putBack(store, msg.UUID)
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
		again, err := store.Park(ctx, "inventory.reserve_stock", stream, back, cause, nil)
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
		p, err := store.Park(ctx, "inventory.reserve_stock", stream, msg, cause, nil)
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

	t.Run("tries_one_message_per_held_keys_and_its_success_wakes_the_rest", func(t *testing.T) {
		const handler = "inventory.probe_test"
		held := NewStore(db, Backoff{Initial: 50 * time.Millisecond, Max: time.Hour}, time.Hour)
		park := func(keys ...string) (*message.Message, Parked) {
			t.Helper()
			msg := newMessage()
			p, err := held.Park(ctx, handler, stream, msg, cause, keys)
			if err != nil {
				t.Fatal(err)
			}
			return msg, p
		}
		due := func(msg *message.Message) bool {
			t.Helper()
			var ok bool
			if err := db.QueryRow(`SELECT next_attempt_at <= now() FROM parked_messages WHERE handler = $1 AND message_uuid = $2`,
				handler, msg.UUID).Scan(&ok); err != nil {
				t.Fatal(err)
			}
			return ok
		}
		_, probe := park("SKU-B", "SKU-A", "SKU-A")
		follower1, f1 := park("SKU-A", "SKU-B")
		follower2, f2 := park("SKU-B", "SKU-A")
		wider, w := park("SKU-A", "SKU-B", "SKU-C")
		if probe.NextAttemptIn > time.Second || w.NextAttemptIn > time.Second {
			t.Errorf("the first message waiting for its keys waits %s and %s, want Initial (50 ms)", probe.NextAttemptIn, w.NextAttemptIn)
		}
		if f1.NextAttemptIn < 30*time.Minute || f2.NextAttemptIn < 30*time.Minute {
			t.Errorf("the messages behind the probe wait %s and %s, want Max (1 h)", f1.NextAttemptIn, f2.NextAttemptIn)
		}

		// Another handler's success, or one over other keys, wakes nothing.
		if err := held.Wake(ctx, "orders.settle", []string{"SKU-A", "SKU-B"}); err != nil {
			t.Fatal(err)
		}
		if err := held.Wake(ctx, handler, []string{"SKU-A"}); err != nil {
			t.Fatal(err)
		}
		if due(follower1) || due(follower2) {
			t.Fatal("woken by another handler's keys or by a subset of theirs")
		}
		// One of them on its way back (leased, as the republisher leaves
		// it until Redis took it) is not woken: it would go back twice.
		if _, err := db.Exec(`UPDATE parked_messages SET leased_until = now() + interval '10 seconds',
			next_attempt_at = now() + interval '10 seconds' WHERE handler = $1 AND message_uuid = $2`, handler, follower2.UUID); err != nil {
			t.Fatal(err)
		}
		if err := held.Wake(ctx, handler, []string{"SKU-B", "SKU-A"}); err != nil {
			t.Fatal(err)
		}
		if !due(follower1) {
			t.Error("the message waiting for SKU-A and SKU-B is not due once a message waiting for both succeeded")
		}
		if due(follower2) {
			t.Error("a message on its way back was woken: it would be put back twice")
		}
		time.Sleep(100 * time.Millisecond) // the wider probe's own wait

		// Put back, a message says what it waited for; parked again, it
		// keeps its place.
		m := putBack(held, wider.UUID)
		if m == nil {
			t.Fatal("the message waiting for three SKUs is not back on its stream")
		}
		if got := WaitedOn(m); !slices.Equal(got, []string{"SKU-A", "SKU-B", "SKU-C"}) {
			t.Errorf("put back waiting on %q, want the sorted keys", got)
		}
		if p, err := held.Park(ctx, handler, stream, m, cause, []string{"SKU-C", "SKU-B", "SKU-A"}); err != nil || p.NextAttemptIn > time.Second {
			t.Errorf("the probe parked again waits %s (%v), want Initial: it is still the first", p.NextAttemptIn, err)
		}
	})
}
