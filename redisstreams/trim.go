package redisstreams

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// TrimStream deletes the entries of stream that every consumer group has
// acknowledged and that are older than retention. It never trims by length
// (MAXLEN), which can drop entries not yet consumed; a stream without
// consumer groups, such as the dead-letter stream, is left whole.
func TrimStream(ctx context.Context, rdb redis.UniversalClient, key string, retention time.Duration) (int64, error) {
	groups, err := rdb.XInfoGroups(ctx, key).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return 0, nil
		}
		return 0, fmt.Errorf("trim %s: %w", key, err)
	}
	if len(groups) == 0 {
		return 0, nil
	}
	// Everything below minID is acknowledged by every group: below what
	// each has been handed, and below the oldest entry it still holds.
	minID := entryID{ms: uint64(time.Now().Add(-retention).UnixMilli())}
	for _, g := range groups {
		keep := g.LastDeliveredID
		if g.Pending > 0 {
			p, err := rdb.XPending(ctx, key, g.Name).Result()
			if err != nil {
				return 0, fmt.Errorf("trim %s: %w", key, err)
			}
			keep = p.Lower
		}
		id, err := parseID(keep)
		if err != nil {
			return 0, fmt.Errorf("trim %s: %w", key, err)
		}
		if id.less(minID) {
			minID = id
		}
	}
	n, err := rdb.XTrimMinID(ctx, key, minID.String()).Result()
	if err != nil {
		return 0, fmt.Errorf("trim %s: %w", key, err)
	}
	return n, nil
}

// entryID is a stream entry ID, "ms-seq".
type entryID struct{ ms, seq uint64 }

func parseID(id string) (entryID, error) {
	m, s, _ := strings.Cut(id, "-")
	ms, err := strconv.ParseUint(m, 10, 64)
	if err != nil {
		return entryID{}, fmt.Errorf("stream entry id %q: %w", id, err)
	}
	var seq uint64
	if s != "" {
		if seq, err = strconv.ParseUint(s, 10, 64); err != nil {
			return entryID{}, fmt.Errorf("stream entry id %q: %w", id, err)
		}
	}
	return entryID{ms, seq}, nil
}

func (a entryID) less(b entryID) bool { return a.ms < b.ms || (a.ms == b.ms && a.seq < b.seq) }

func (a entryID) String() string { return fmt.Sprintf("%d-%d", a.ms, a.seq) }
