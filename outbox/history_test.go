package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
)

// historyEnv is an outbox and a Redis that the subtests of one test share,
// each with a stream of its own.
type historyEnv struct {
	db      *sql.DB
	streams redisstreams.Config
	rdb     redis.UniversalClient
	base    time.Time // an hour ago, to the millisecond: the tests' times are after it
}

func newHistoryEnv(t *testing.T) historyEnv {
	t.Helper()
	streams := testenv.Streams(t)
	rdb := streams.NewClient()
	t.Cleanup(func() { rdb.Close() })
	return historyEnv{testenv.OwnDB(t), streams, rdb, time.Now().Add(-time.Hour).Truncate(time.Millisecond).UTC()}
}

// event is a new message as events.NewMessage makes them.
func event(name string) *message.Message {
	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"order_id":"`+name+`"}`))
	msg.Metadata.Set(events.MetadataEventType, "OrderPlaced")
	return msg
}

// writeRow writes msg to outbox shard as the forwarder's publisher does,
// bound for stream, as if written at at.
func (h historyEnv) writeRow(t *testing.T, shard int, stream string, msg *message.Message, at time.Time) {
	t.Helper()
	tx, err := h.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	pub, err := wsql.NewPublisher(tx, wsql.PublisherConfig{SchemaAdapter: wsql.DefaultPostgreSQLSchema{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := forwarder.NewPublisher(pub, forwarder.PublisherConfig{ForwarderTopic: postgres.OutboxTopic(shard)})
	if err := out.Publish(stream, msg); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`UPDATE watermill_`+postgres.OutboxTopic(shard)+` SET created_at = $1::timestamptz
		WHERE payload->>'uuid' = $2`, at, msg.UUID); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// addEntry adds msg to the stream as the forwarder's publisher does, as if
// at at (entries must be added in the order of their times).
func (h historyEnv) addEntry(t *testing.T, stream string, msg *message.Message, at time.Time) {
	t.Helper()
	values, err := redisstream.DefaultMarshallerUnmarshaller{}.Marshal(stream, msg)
	if err != nil {
		t.Fatal(err)
	}
	h.addValues(t, stream, values, at)
}

func (h historyEnv) addValues(t *testing.T, stream string, values map[string]any, at time.Time) {
	t.Helper()
	err := h.rdb.XAdd(context.Background(), &redis.XAddArgs{
		Stream: h.streams.Name(stream), ID: fmt.Sprintf("%d-*", at.UnixMilli()), Values: values,
	}).Err()
	if err != nil {
		t.Fatal(err)
	}
}

// history returns what History yields, reading page rows and entries at a
// time, and the error it returns.
func (h historyEnv) history(t *testing.T, stream string, since time.Time, page int) ([]outbox.HistoryEvent, error) {
	t.Helper()
	var got []outbox.HistoryEvent
	err := outbox.HistoryPaged(context.Background(), h.db, h.rdb, h.streams, stream, since, page, func(e outbox.HistoryEvent) error {
		got = append(got, e)
		return nil
	})
	return got, err
}

// step is what one HistoryEvent should be.
type step struct {
	msg  *message.Message
	at   time.Time
	from string
}

func checkHistory(t *testing.T, got []outbox.HistoryEvent, want []step) {
	t.Helper()
	show := func(es []outbox.HistoryEvent) (s []string) {
		for _, e := range es {
			s = append(s, fmt.Sprintf("%s %s %s", e.From, e.At.Format(time.RFC3339Nano), e.Message.Payload))
		}
		return s
	}
	if len(got) != len(want) {
		t.Fatalf("History yielded %d events, want %d:\n%q", len(got), len(want), show(got))
	}
	for i, w := range want {
		g := got[i]
		if g.Message.UUID != w.msg.UUID || string(g.Message.Payload) != string(w.msg.Payload) ||
			!g.At.Equal(w.at) || g.From != w.from {
			t.Errorf("event %d = %s %s %s %s, want %s %s %s %s", i, g.From, g.At.Format(time.RFC3339Nano), g.Message.UUID, g.Message.Payload,
				w.from, w.at.Format(time.RFC3339Nano), w.msg.UUID, w.msg.Payload)
		}
		if g.Message.Metadata.Get(events.MetadataEventType) != "OrderPlaced" {
			t.Errorf("event %d metadata = %v, want the event's", i, g.Message.Metadata)
		}
	}
}

func TestHistory(t *testing.T) {
	t.Parallel()
	h := newHistoryEnv(t)
	ms := func(n int) time.Time { return h.base.Add(time.Duration(n) * time.Millisecond) }

	t.Run("yields_events_only_in_the_outbox", func(t *testing.T) {
		t.Parallel()
		stream := testenv.Unique(events.StreamOrdersPlaced) // not in Redis at all
		a, b, c := event("a"), event("b"), event("c")
		h.writeRow(t, 7, stream, b, ms(20))
		h.writeRow(t, 0, stream, a, ms(10))
		h.writeRow(t, 15, stream, c, ms(30))
		got, err := h.history(t, stream, h.base, 500)
		if err != nil {
			t.Fatal(err)
		}
		checkHistory(t, got, []step{{a, ms(10), "outbox"}, {b, ms(20), "outbox"}, {c, ms(30), "outbox"}})
	})

	t.Run("yields_events_only_on_the_stream", func(t *testing.T) {
		t.Parallel()
		stream := testenv.Unique(events.StreamOrdersPlaced) // their rows deleted
		a, b := event("a"), event("b")
		h.addEntry(t, stream, a, ms(10))
		h.addEntry(t, stream, b, ms(10))
		got, err := h.history(t, stream, h.base, 500)
		if err != nil {
			t.Fatal(err)
		}
		checkHistory(t, got, []step{{a, ms(10), "stream"}, {b, ms(10), "stream"}})
	})

	t.Run("yields_an_event_in_both_once_at_its_first_copy", func(t *testing.T) {
		t.Parallel()
		stream := testenv.Unique(events.StreamOrdersPlaced)
		a, b := event("a"), event("b")
		h.writeRow(t, 3, stream, a, ms(10))
		h.writeRow(t, 3, stream, b, ms(11))
		h.addEntry(t, stream, a, ms(12))
		h.addEntry(t, stream, b, ms(13))
		h.addEntry(t, stream, a, ms(40)) // a dead letter replayed
		got, err := h.history(t, stream, h.base, 500)
		if err != nil {
			t.Fatal(err)
		}
		checkHistory(t, got, []step{{a, ms(10), "outbox"}, {b, ms(11), "outbox"}})
	})

	t.Run("leaves_out_what_was_written_before_since", func(t *testing.T) {
		t.Parallel()
		stream := testenv.Unique(events.StreamOrdersPlaced)
		old, oldEntry, edge, row, entry := event("old"), event("old-entry"), event("edge"), event("row"), event("entry")
		h.writeRow(t, 1, stream, old, ms(10))
		h.addEntry(t, stream, oldEntry, ms(19))
		h.writeRow(t, 2, stream, edge, ms(20))
		h.addEntry(t, stream, entry, ms(20))
		h.writeRow(t, 4, stream, row, ms(25))
		got, err := h.history(t, stream, ms(20), 500)
		if err != nil {
			t.Fatal(err)
		}
		checkHistory(t, got, []step{{edge, ms(20), "outbox"}, {entry, ms(20), "stream"}, {row, ms(25), "outbox"}})
	})

	t.Run("merges_the_outbox_and_the_stream_by_time", func(t *testing.T) {
		t.Parallel()
		stream := testenv.Unique(events.StreamOrdersPlaced)
		e := []*message.Message{event("1"), event("2"), event("3"), event("4"), event("5")}
		h.writeRow(t, 9, stream, e[0], ms(10))
		h.addEntry(t, stream, e[1], ms(20))
		h.writeRow(t, 0, stream, e[2], ms(30).Add(500*time.Microsecond))
		h.addEntry(t, stream, e[3], ms(31))
		h.writeRow(t, 12, stream, e[4], ms(40))
		got, err := h.history(t, stream, h.base, 500)
		if err != nil {
			t.Fatal(err)
		}
		checkHistory(t, got, []step{
			{e[0], ms(10), "outbox"}, {e[1], ms(20), "stream"}, {e[2], ms(30).Add(500 * time.Microsecond), "outbox"},
			{e[3], ms(31), "stream"}, {e[4], ms(40), "outbox"},
		})
	})

	t.Run("leaves_out_the_events_of_other_streams", func(t *testing.T) {
		t.Parallel()
		stream, other := testenv.Unique(events.StreamOrdersPlaced), testenv.Unique(events.StreamReservations)
		mine, theirs, theirEntry := event("mine"), event("theirs"), event("their-entry")
		h.writeRow(t, 5, other, theirs, ms(10))
		h.addEntry(t, other, theirEntry, ms(10))
		h.writeRow(t, 5, stream, mine, ms(20))
		got, err := h.history(t, stream, h.base, 500)
		if err != nil {
			t.Fatal(err)
		}
		checkHistory(t, got, []step{{mine, ms(20), "outbox"}})
	})

	t.Run("reads_page_after_page_in_order", func(t *testing.T) {
		t.Parallel()
		stream := testenv.Unique(events.StreamOrdersPlaced)
		var want []step
		// Rows of one time in several shards, and in one shard: the pages
		// break ties by shard, then by offset.
		shards := []int{6, 2, 2, 11, 0}
		rows := make([]*message.Message, len(shards))
		for i, shard := range shards {
			rows[i] = event(fmt.Sprint("row-", i))
			h.writeRow(t, shard, stream, rows[i], ms(10))
		}
		for _, i := range []int{4, 1, 2, 0, 3} { // by shard, then offset
			want = append(want, step{rows[i], ms(10), "outbox"})
		}
		for i := range 5 {
			msg := event(fmt.Sprint("entry-", i))
			h.addEntry(t, stream, msg, ms(20+i/2))
			want = append(want, step{msg, ms(20 + i/2), "stream"})
		}
		got, err := h.history(t, stream, h.base, 2)
		if err != nil {
			t.Fatal(err)
		}
		checkHistory(t, got, want)
	})

	t.Run("skips_what_it_cannot_decode_and_reports_it", func(t *testing.T) {
		t.Parallel()
		stream := testenv.Unique(events.StreamOrdersPlaced)
		a, b := event("a"), event("b")
		h.addEntry(t, stream, a, ms(10))
		h.addValues(t, stream, map[string]any{"payload": "no uuid"}, ms(11))
		h.addValues(t, stream, map[string]any{redisstream.UUIDHeaderKey: "u", "metadata": "not msgpack"}, ms(12))
		h.addEntry(t, stream, b, ms(13))
		if _, err := h.db.Exec(`INSERT INTO watermill_outbox_8 (uuid, payload, transaction_id, created_at)
			VALUES ('not-an-envelope', $1, pg_current_xact_id(), $2::timestamptz)`,
			`{"destination_topic":"`+stream+`","uuid":"u","payload":"not base64!"}`, ms(5)); err != nil {
			t.Fatal(err)
		}
		got, err := h.history(t, stream, h.base, 500)
		if !errors.Is(err, outbox.ErrUndecodableEvents) {
			t.Errorf("History() = %v, want ErrUndecodableEvents", err)
		}
		checkHistory(t, got, []step{{a, ms(10), "stream"}, {b, ms(13), "stream"}})
	})

	t.Run("stops_with_the_error_of_fn", func(t *testing.T) {
		t.Parallel()
		stream := testenv.Unique(events.StreamOrdersPlaced)
		for i := range 3 {
			h.writeRow(t, 0, stream, event(fmt.Sprint(i)), ms(10+i))
		}
		stop := errors.New("stop")
		calls := 0
		err := outbox.History(context.Background(), h.db, h.rdb, h.streams, stream, h.base, func(outbox.HistoryEvent) error {
			calls++
			return stop
		})
		if !errors.Is(err, stop) || calls != 1 {
			t.Errorf("History() = %v after %d calls, want fn's error after 1", err, calls)
		}
	})

	t.Run("stops_when_the_context_ends", func(t *testing.T) {
		t.Parallel()
		stream := testenv.Unique(events.StreamOrdersPlaced)
		for i := range 3 {
			h.addEntry(t, stream, event(fmt.Sprint(i)), ms(10+i))
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		calls := 0
		err := outbox.History(ctx, h.db, h.rdb, h.streams, stream, h.base, func(outbox.HistoryEvent) error {
			calls++
			cancel()
			return nil
		})
		if !errors.Is(err, context.Canceled) || calls != 1 {
			t.Errorf("History() = %v after %d calls, want context.Canceled after 1", err, calls)
		}
	})
}

// TestHistory_yieldsEachEventOnce: events published through the outbox and
// forwarded are in both; History yields each once, from the outbox, and
// from the stream once their rows are deleted.
func TestHistory_yieldsEachEventOnce(t *testing.T) {
	t.Parallel()
	db := testenv.OwnDB(t)
	streams := testenv.Streams(t)
	rdb := streams.NewClient()
	defer rdb.Close()
	ctx := postgres.WithOutboxShards(context.Background(), postgres.MaxOutboxShards)
	since := time.Now().Add(-time.Minute)
	var placed []string
	for i := range 6 {
		publish(t, db, ctx, events.OrderPlaced{OrderID: fmt.Sprint("once-", i), CustomerID: "c"})
		e := testenv.OutboxEvents(t, db, "order_id", fmt.Sprint("once-", i))
		placed = append(placed, e[0].UUID)
	}
	publish(t, db, ctx, events.StockReserved{OrderID: "once-0"}) // another stream
	runForwarder(t, db, streams, outbox.ForwarderConfig{PollInterval: 20 * time.Millisecond, BatchSize: 100})
	entries(t, rdb, streams.Name(events.StreamOrdersPlaced), 6)

	read := func(from string) {
		t.Helper()
		var got []string
		err := outbox.History(context.Background(), db, rdb, streams, events.StreamOrdersPlaced, since, func(e outbox.HistoryEvent) error {
			if e.From != from {
				t.Errorf("event %s from %s, want from %s", e.Message.UUID, e.From, from)
			}
			if _, err := events.Decode[events.OrderPlaced](e.Message); err != nil {
				t.Errorf("event %s: %v", e.Message.UUID, err)
			}
			got = append(got, e.Message.UUID)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(placed))) {
			t.Errorf("History yielded %v, want each of %v once", got, placed)
		}
	}
	read("outbox")
	for shard := range postgres.MaxOutboxShards {
		if _, err := db.Exec(`DELETE FROM watermill_` + postgres.OutboxTopic(shard)); err != nil {
			t.Fatal(err)
		}
	}
	read("stream")
}

// TestHistory_readsAStreamOnARedisCluster: the stream is one key, on
// whichever master holds its slot.
func TestHistory_readsAStreamOnARedisCluster(t *testing.T) {
	t.Parallel()
	cluster := testenv.StartRedisCluster(t)
	opts, err := redisstreams.ParseURL(cluster.URL)
	if err != nil {
		t.Fatal(err)
	}
	h := historyEnv{testenv.OwnDB(t), testenv.StreamsOn(t, opts, testenv.Unique("history")+":"), nil, time.Now().Add(-time.Hour).Truncate(time.Millisecond).UTC()}
	h.rdb = h.streams.NewClient()
	defer h.rdb.Close()
	a, b := event("a"), event("b")
	h.writeRow(t, 4, events.StreamOrdersPlaced, a, h.base.Add(time.Millisecond))
	h.addEntry(t, events.StreamOrdersPlaced, b, h.base.Add(2*time.Millisecond))
	got, err := h.history(t, events.StreamOrdersPlaced, h.base, 500)
	if err != nil {
		t.Fatal(err)
	}
	checkHistory(t, got, []step{{a, h.base.Add(time.Millisecond), "outbox"}, {b, h.base.Add(2 * time.Millisecond), "stream"}})
}
