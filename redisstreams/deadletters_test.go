package redisstreams

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
)

func TestStreams_ReplayID(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	away := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second})
	defer away.Close()
	s := Config{Prefix: "test:replay:"}

	t.Run("refuses_what_is_not_an_entry_id_without_asking_redis", func(t *testing.T) {
		for _, id := range []string{"", "abc", "-", "+", "1", "1-", "-1", "-1-1", "+1-1", "1-1-1", " 1-1", "1-a",
			"18446744073709551616-0", "1-18446744073709551616", "99999999999999999999-1", "1\x00-1"} {
			if err := s.ReplayID(context.Background(), away, id); !errors.Is(err, ErrNoDeadLetter) {
				t.Errorf("ReplayID(%q) = %v, want ErrNoDeadLetter", id, err)
			}
		}
	})
	t.Run("says_redis_is_unavailable", func(t *testing.T) {
		if err := s.ReplayID(context.Background(), away, "1700000000000-0"); !errors.Is(err, ErrStreamsUnavailable) {
			t.Errorf("ReplayID() = %v, want ErrStreamsUnavailable", err)
		}
	})
}

// TestTolerantUnmarshaller_uuid: an undecodable entry is the same message
// each time it is delivered: same UUID, so one inbox key and one dead
// letter's identity, not one per redelivery.
func TestTolerantUnmarshaller_uuid(t *testing.T) {
	u := tolerantUnmarshaller{}
	entry := func() map[string]any { return map[string]any{"payload": "x", "metadata": "\xde\xad"} }
	first, _ := u.Unmarshal(entry())
	again, _ := u.Unmarshal(entry())
	if first.UUID != again.UUID || first.Metadata.Get(events.MetadataUndecodable) == "" {
		t.Errorf("redelivery: UUID %s then %s (metadata %v), want the same, undecodable", first.UUID, again.UUID, first.Metadata)
	}
	for _, other := range []map[string]any{
		{"payload": "y", "metadata": "\xde\xad"},
		{"payload": "x", "metadata": "\xde\xae"},
		{"payloadx": "", "metadata": "\xde\xad"},
		{"garbage": "\xff"}, {"garbage": "\xfe"}, // one JSON would write both as U+FFFD
	} {
		m, _ := u.Unmarshal(other)
		if m.UUID == first.UUID {
			t.Errorf("entry %q has the UUID of %q", other, entry())
		}
	}
	withUUID := entry()
	withUUID[redisstream.UUIDHeaderKey] = "b7a1c6b0-6d58-4c11-9a3c-5f4f2f0f8b11"
	if m, _ := u.Unmarshal(withUUID); m.UUID != "b7a1c6b0-6d58-4c11-9a3c-5f4f2f0f8b11" {
		t.Errorf("UUID = %s, want the entry's own", m.UUID)
	}
	a, _ := u.Unmarshal(map[string]any{"garbage": "\xff"})
	b, _ := u.Unmarshal(map[string]any{"garbage": "\xfe"})
	if a.UUID == b.UUID {
		t.Errorf("two entries with distinct bytes share UUID %s", a.UUID)
	}
}

// TestCompareIDs: entry IDs order by time, then sequence, as numbers;
// before is the ID just below one, across a millisecond's boundary.
func TestCompareIDs(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{{"9-0", "10-0", -1}, {"10-2", "10-10", -1}, {"10-10", "10-2", 1}, {"7-1", "7-1", 0}} {
		if got := compareIDs(c.a, c.b); got != c.want {
			t.Errorf("compareIDs(%s, %s) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
	for id, want := range map[string]string{"10-3": "10-2", "10-0": "9-18446744073709551615", "0-1": "0-0"} {
		if got, ok := before(id); !ok || got != want {
			t.Errorf("before(%s) = %s, %v; want %s", id, got, ok, want)
		}
	}
	if got, ok := before("0-0"); ok {
		t.Errorf("before(0-0) = %s, want none", got)
	}
}
