package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
)

func TestCleanOutbox(t *testing.T) {
	t.Parallel()
	db := testenv.OwnDB(t)
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		publish(t, db, ctx, events.OrderPlaced{OrderID: id})
	}
	count := func() (n int) {
		if err := db.QueryRow(`SELECT count(*) FROM watermill_outbox`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	clean := func(retention time.Duration) int64 {
		n, err := events.CleanOutbox(ctx, db, retention)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	if n := clean(0); n != 0 {
		t.Errorf("deleted %d rows before any consumer group read the outbox, want 0", n)
	}
	// The forwarder has passed the first two rows' transactions: it is at
	// the third's.
	if _, err := db.Exec(`INSERT INTO watermill_offsets_outbox (consumer_group, offset_acked, last_processed_transaction_id)
		SELECT 'forwarder', "offset", transaction_id FROM watermill_outbox ORDER BY transaction_id DESC LIMIT 1`); err != nil {
		t.Fatal(err)
	}
	if n := clean(time.Hour); n != 0 {
		t.Errorf("deleted %d rows younger than the retention, want 0", n)
	}
	if n := clean(0); n != 2 || count() != 1 {
		t.Errorf("deleted %d rows, %d left; want 2 deleted and the one not passed left", n, count())
	}
}

func TestTrimStream(t *testing.T) {
	t.Parallel()
	streams := testenv.Streams(t)
	rdb := streams.Client()
	defer rdb.Close()
	ctx := context.Background()
	key := streams.Name("trim")
	length := func() int64 { return rdb.XLen(ctx, key).Val() }
	trim := func(retention time.Duration) int64 {
		n, err := events.TrimStream(ctx, rdb, key, retention)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	var ids []string
	for range 5 {
		ids = append(ids, rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: map[string]any{"k": "v"}}).Val())
	}

	if n := trim(0); n != 0 {
		t.Errorf("trimmed %d entries of a stream no group reads, want 0", n)
	}
	rdb.XGroupCreate(ctx, key, "fast", "0")
	rdb.XGroupCreate(ctx, key, "slow", "0")
	// fast was handed three entries and acked the first two; slow, nothing.
	rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "fast", Consumer: "c", Streams: []string{key, ">"}, Count: 3})
	rdb.XAck(ctx, key, "fast", ids[0], ids[1])
	if n := trim(0); n != 0 {
		t.Errorf("trimmed %d entries that a group has not read, want 0", n)
	}
	rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "slow", Consumer: "c", Streams: []string{key, ">"}, Count: 5})
	rdb.XAck(ctx, key, "slow", ids...)
	if n := trim(time.Hour); n != 0 {
		t.Errorf("trimmed %d entries younger than the retention, want 0", n)
	}
	if n := trim(0); n != 2 || length() != 3 {
		t.Errorf("trimmed %d, %d left; want the 2 entries every group acked trimmed", n, length())
	}
}
