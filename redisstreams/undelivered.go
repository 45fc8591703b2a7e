package redisstreams

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// OldestUndelivered is how old the oldest entry of stream (a contract
// stream name) is that group has not been handed yet, by the entry id's
// milliseconds: the whole stream's oldest when the group does not exist
// yet, 0 when the group has been handed everything.
func (s Config) OldestUndelivered(ctx context.Context, rdb redis.UniversalClient, stream, group string) (time.Duration, error) {
	key := s.Name(stream)
	start := "-"
	groups, err := rdb.XInfoGroups(ctx, key).Result()
	if err != nil && !strings.Contains(err.Error(), "no such key") {
		return 0, fmt.Errorf("read groups of %s: %w", key, redisError(err))
	}
	for _, g := range groups {
		if g.Name == group {
			start = "(" + g.LastDeliveredID
		}
	}
	entries, err := rdb.XRangeN(ctx, key, start, "+", 1).Result()
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", key, redisError(err))
	}
	if len(entries) == 0 {
		return 0, nil
	}
	ms, err := strconv.ParseInt(strings.SplitN(entries[0].ID, "-", 2)[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read %s: entry id %q: %w", key, entries[0].ID, err)
	}
	return max(time.Since(time.UnixMilli(ms)), 0), nil
}
