package redisstreams

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
)

// GroupStatus is where one consumer group is in a stream.
type GroupStatus struct {
	Name          string `json:"name"`
	Lag           int64  `json:"lag"`     // entries not yet handed to the group
	Pending       int64  `json:"pending"` // handed to a consumer, not yet acknowledged
	LastDelivered string `json:"last_delivered"`
}

// StreamStatus describes one stream and its consumer groups.
type StreamStatus struct {
	Stream string        `json:"stream"`
	Length int64         `json:"length"`
	Groups []GroupStatus `json:"groups"`
}

// Status describes the consumed streams and the dead-letter stream.
func (s Config) Status(ctx context.Context, rdb redis.UniversalClient) ([]StreamStatus, error) {
	var out []StreamStatus
	for _, stream := range append(slices.Clip(s.Consumed), events.StreamDeadLetter) {
		key := s.Name(stream)
		st := StreamStatus{Stream: stream}
		n, err := rdb.XLen(ctx, key).Result()
		if err != nil {
			return nil, fmt.Errorf("read stream %s: %w", key, err)
		}
		st.Length = n
		if stream != events.StreamDeadLetter {
			groups, err := rdb.XInfoGroups(ctx, key).Result()
			if err != nil && !strings.Contains(err.Error(), "no such key") {
				return nil, fmt.Errorf("read groups of %s: %w", key, err)
			}
			for _, g := range groups {
				st.Groups = append(st.Groups, GroupStatus{Name: g.Name, Lag: g.Lag, Pending: g.Pending, LastDelivered: g.LastDeliveredID})
			}
		}
		out = append(out, st)
	}
	return out, nil
}
