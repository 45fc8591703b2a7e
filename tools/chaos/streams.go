package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"
)

// The streams and groups the application uses (no STREAM_PREFIX: the
// harness owns this Redis).
const (
	streamPlaced       = "orders.placed"
	streamReservations = "inventory.reservations"
	streamDeadLetters  = "deadletter"
)

// entry is a stream entry as the checks need it.
type entry struct {
	id, uuid, orderID string
	// putBack is set on a message that a worker parked after a passing
	// failure and put back on its stream (metadata parked_handler).
	putBack bool
}

// lastID is the id of the newest entry of stream, or "0" when there is none.
func lastID(ctx context.Context, rdb *redis.Client, stream string) (string, error) {
	es, err := rdb.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("read the end of %s: %w", stream, err)
	}
	if len(es) == 0 {
		return "0", nil
	}
	return es[0].ID, nil
}

// entriesAfter returns the entries of stream after the one with id after
// ("0": all), with the Watermill UUID and the order id of each.
func entriesAfter(ctx context.Context, rdb *redis.Client, stream, after string) ([]entry, error) {
	var out []entry
	from := "(" + after
	if after == "0" {
		from = "-"
	}
	for {
		es, err := rdb.XRangeN(ctx, stream, from, "+", 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", stream, err)
		}
		for _, e := range es {
			out = append(out, describeEntry(e))
		}
		if len(es) < 1000 {
			return out, nil
		}
		from = "(" + es[len(es)-1].ID
	}
}

func describeEntry(e redis.XMessage) entry {
	d := entry{id: e.ID}
	msg, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(e.Values)
	if err != nil {
		return d
	}
	d.uuid = msg.UUID
	d.putBack = msg.Metadata.Get("parked_handler") != ""
	var p struct {
		OrderID string `json:"order_id"`
	}
	if json.Unmarshal(msg.Payload, &p) == nil {
		d.orderID = p.OrderID
	}
	return d
}

// consumer is one consumer of a group, with the entries pending under it.
type consumer struct {
	stream, group, name string
	pending             int64
}

// consumers lists the consumers of every group of every stream whose name
// contains frag ("" for all of them).
func consumers(ctx context.Context, rdb *redis.Client, frag string) ([]consumer, error) {
	var streams []string
	iter := rdb.ScanType(ctx, 0, "*", 100, "stream").Iterator()
	for iter.Next(ctx) {
		streams = append(streams, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	var out []consumer
	for _, s := range streams {
		groups, err := rdb.XInfoGroups(ctx, s).Result()
		if err != nil {
			return nil, fmt.Errorf("list groups of %s: %w", s, err)
		}
		for _, g := range groups {
			cs, err := rdb.XInfoConsumers(ctx, s, g.Name).Result()
			if err != nil {
				return nil, fmt.Errorf("list consumers of %s/%s: %w", s, g.Name, err)
			}
			for _, c := range cs {
				if strings.Contains(c.Name, frag) {
					out = append(out, consumer{stream: s, group: g.Name, name: c.Name, pending: c.Pending})
				}
			}
		}
	}
	return out, nil
}

// deadLettersFor returns the dead letters that name one of the orders ids.
func deadLettersFor(ctx context.Context, rdb *redis.Client, ids []string) ([]entry, error) {
	all, err := entriesAfter(ctx, rdb, streamDeadLetters, "0")
	if err != nil {
		return nil, err
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	var out []entry
	for _, e := range all {
		if want[e.orderID] {
			out = append(out, e)
		}
	}
	return out, nil
}

// waitOnStream waits until an entry for each of the orders ids is on stream
// after the entry from.
func waitOnStream(ctx context.Context, rdb *redis.Client, stream, from string, ids []string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		missing, err := missingFromStream(ctx, rdb, stream, from, ids)
		if err == nil && missing == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d not there after %s (%v)", missing, len(ids), limit, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func missingFromStream(ctx context.Context, rdb *redis.Client, stream, from string, ids []string) (int, error) {
	es, err := entriesAfter(ctx, rdb, stream, from)
	if err != nil {
		return len(ids), err
	}
	seen := map[string]bool{}
	for _, e := range es {
		seen[e.orderID] = true
	}
	missing := 0
	for _, id := range ids {
		if !seen[id] {
			missing++
		}
	}
	return missing, nil
}
