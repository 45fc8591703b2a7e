package redisstreams_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/redisstreams"
)

func TestTrimStream(t *testing.T) {
	t.Parallel()
	streams := testenv.Streams(t)
	rdb := streams.NewClient()
	defer rdb.Close()
	ctx := context.Background()
	key := streams.Name("trim")
	length := func() int64 { return rdb.XLen(ctx, key).Val() }
	trim := func(retention time.Duration) int64 {
		n, err := redisstreams.TrimStream(ctx, rdb, key, retention)
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
	// With retention 0, what was added in the current millisecond stays:
	// the clock must be past the entries' millisecond first.
	ms, _, _ := strings.Cut(ids[len(ids)-1], "-")
	lastMs, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	for time.Now().UnixMilli() <= lastMs {
		time.Sleep(time.Millisecond)
	}
	if n := trim(0); n != 2 || length() != 3 {
		t.Errorf("trimmed %d, %d left; want the 2 entries every group acked trimmed", n, length())
	}
}

// TestTrimStream_keepsWhatAGroupHoldsUnacked: an entry handed to a group
// and not acked stays, though the group has been handed later entries.
func TestTrimStream_keepsWhatAGroupHoldsUnacked(t *testing.T) {
	t.Parallel()
	streams := testenv.Streams(t)
	rdb := streams.NewClient()
	defer rdb.Close()
	ctx := context.Background()
	key := streams.Name("trim-pending")
	// IDs of long ago: with retention 0, TrimStream keeps what was added in
	// the current millisecond, which entries added just now can share.
	ids := []string{"1-1", "1-2", "1-3", "1-4"}
	for _, id := range ids {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: id, Values: map[string]any{"k": "v"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.XGroupCreate(ctx, key, "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	// Handed all four; acked all but the second.
	read, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{key, ">"}, Count: 4}).Result()
	if err != nil || len(read) != 1 || len(read[0].Messages) != 4 {
		t.Fatalf("XREADGROUP = %v, %v; want the four entries", read, err)
	}
	if err := rdb.XAck(ctx, key, "g", ids[0], ids[2], ids[3]).Err(); err != nil {
		t.Fatal(err)
	}

	n, err := redisstreams.TrimStream(ctx, rdb, key, 0)
	if err != nil {
		t.Fatal(err)
	}
	left, _ := rdb.XRange(ctx, key, "-", "+").Result()
	if n != 1 || len(left) != 3 || left[0].ID != ids[1] {
		t.Errorf("trimmed %d, left %v; want only the entry before the unacked one trimmed", n, left)
	}
	if n, err := redisstreams.TrimStream(ctx, rdb, streams.Name("no-such-stream"), 0); err != nil || n != 0 {
		t.Errorf("TrimStream(missing stream) = %d, %v, want 0, nil", n, err)
	}
}

// TestTrimStream_comparesEntriesOfOneMillisecondBySequence: entries added in
// the same millisecond differ only by their sequence number, and the
// lowest position of the groups still wins.
func TestTrimStream_comparesEntriesOfOneMillisecondBySequence(t *testing.T) {
	t.Parallel()
	streams := testenv.Streams(t)
	rdb := streams.NewClient()
	defer rdb.Close()
	ctx := context.Background()
	key := streams.Name("trim-seq")
	for _, id := range []string{"1-1", "1-2", "1-3", "1-4"} {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: id, Values: map[string]any{"k": "v"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Groups are listed by name: "a" (handed up to 1-3) comes before "b"
	// (handed up to 1-2), so the lower position is met second.
	rdb.XGroupCreate(ctx, key, "a", "1-3")
	rdb.XGroupCreate(ctx, key, "b", "1-2")
	n, err := redisstreams.TrimStream(ctx, rdb, key, 0)
	if err != nil {
		t.Fatal(err)
	}
	left, _ := rdb.XRange(ctx, key, "-", "+").Result()
	if n != 1 || len(left) != 3 || left[0].ID != "1-2" {
		t.Errorf("trimmed %d, left %v; want only 1-1 trimmed", n, left)
	}
}
