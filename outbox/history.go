package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/redisstreams"
)

// HistoryEvent is one event of a stream's retained history (History).
type HistoryEvent struct {
	Message *message.Message // UUID, payload and metadata as the worker would receive them
	At      time.Time        // when it was written: the outbox row's created_at, or the entry id's milliseconds
	From    string           // FromOutbox or FromStream
}

// Where a HistoryEvent was read.
const (
	FromOutbox = "outbox"
	FromStream = "stream"
)

// ErrUndecodableEvents means History skipped rows or entries it could not decode.
var ErrUndecodableEvents = errors.New("undecodable events skipped")

// historyPage is how many outbox rows, and stream entries, History reads at once.
const historyPage = 500

// History calls fn with each event retained for stream (a contract stream name such as events.StreamOrdersPlaced)
// written at or after since, oldest first, each message UUID once: the outbox rows
// of every shard whose destination is stream, and the entries of the stream in Redis
// (streams.Name(stream)), merged by time: what the outbox clean-up
// (OUTBOX_RETENTION) and the stream's trim (STREAM_RETENTION) have kept.
//
// Both are read in pages of 500 as the merge needs them. Memory is two pages
// plus the set of UUIDs yielded, which tells an event's later copies (a
// forwarded event is in both; a resent or replayed one twice on the stream):
// about 40 bytes an event, some 40 MB per million.
//
// An event comes at its first copy, usually its outbox row: created_at is
// when the writing transaction began, by the database's clock (read in this
// session's time zone, as the status and clean-up read it); an entry's time
// is when the forwarder added it, to the millisecond, by Redis's. An event
// written just before since but forwarded after it comes from the stream: a
// backfill may get a little more than it asked for, never less.
//
// History stops at what was written when it began: the stream's last entry
// then, the database's clock then (a transaction begun before and committed
// during the read may be missed). Each page is a statement of its own, with
// no transaction held between them: fn may take its time, and nothing the
// forwarder needs is locked. With no index on created_at, each outbox page
// scans the retained rows.
//
// A row that is not an envelope, or an entry that the worker cannot decode
// either (it dead-letters those), is skipped; once every other event has
// been yielded, History returns an error wrapping ErrUndecodableEvents that
// counts them and names the first. fn's error stops History and is
// returned, and so does ctx's end.
func History(ctx context.Context, db *sql.DB, rdb redis.UniversalClient, streams redisstreams.Config, stream string, since time.Time, fn func(HistoryEvent) error) error {
	return history(ctx, db, rdb, streams.Name(stream), stream, since, historyPage, fn)
}

func history(ctx context.Context, db *sql.DB, rdb redis.UniversalClient, key, stream string, since time.Time, page int, fn func(HistoryEvent) error) error {
	var skipped skips
	rows, err := outboxHistory(ctx, db, stream, since, page, &skipped)
	if err != nil {
		return err
	}
	entries, err := streamHistory(ctx, rdb, key, since, page, &skipped)
	if err != nil {
		return err
	}
	seen := uuidSet{ids: map[uuid.UUID]struct{}{}, other: map[string]struct{}{}}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		r, err := rows.peek(ctx)
		if err != nil {
			return err
		}
		e, err := entries.peek(ctx)
		if err != nil {
			return err
		}
		next := rows
		switch {
		case r == nil && e == nil:
			return skipped.err(stream)
		case r == nil || e != nil && e.At.Before(r.At):
			next = entries
		}
		if ev := next.pop(); seen.add(ev.Message.UUID) {
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
}

// historySource is one of History's two time-ordered sequences, by pages.
type historySource struct {
	read func(ctx context.Context) (page []HistoryEvent, more bool, err error)
	page []HistoryEvent
	done bool
}

// peek returns the next event, reading pages until one holds an event (all
// of a page may have been skipped); nil at the end.
func (s *historySource) peek(ctx context.Context) (*HistoryEvent, error) {
	for len(s.page) == 0 && !s.done {
		page, more, err := s.read(ctx)
		if err != nil {
			return nil, err
		}
		s.page, s.done = page, !more
	}
	if len(s.page) == 0 {
		return nil, nil
	}
	return &s.page[0], nil
}

func (s *historySource) pop() HistoryEvent {
	e := s.page[0]
	s.page[0] = HistoryEvent{} // let the message go
	s.page = s.page[1:]
	return e
}

// historyQuery reads a page of the outbox rows bound for the stream $1 after
// the keyset ($2 created_at, $3 shard, $4 offset) and written by $6: the
// first $5 of each shard (a top-N sort), then the first $5 of them all.
var historyQuery = `SELECT shard, "offset", at, payload FROM (` + eachShard(" UNION ALL ", func(shard int) string {
	return fmt.Sprintf(`(SELECT %d AS shard, "offset", created_at::timestamptz AS at, payload FROM %s
		WHERE (created_at::timestamptz, %d, "offset") > ($2::timestamptz, $3::int, $4::bigint)
		  AND created_at::timestamptz <= $6::timestamptz
		  AND payload->>'destination_topic' = $1
		ORDER BY at, "offset" LIMIT $5)`, shard, messagesTable(shard), shard)
}) + `) AS o ORDER BY at, shard, "offset" LIMIT $5`

// outboxHistory reads the outbox rows bound for stream, written from since
// until now, by the database's clock.
func outboxHistory(ctx context.Context, db *sql.DB, stream string, since time.Time, page int, skipped *skips) (*historySource, error) {
	var until time.Time
	if err := db.QueryRowContext(ctx, `SELECT clock_timestamp()`).Scan(&until); err != nil {
		return nil, fmt.Errorf("read outbox history of %s: %w", stream, err)
	}
	// The keyset: after (since, -1, 0) is every row at or after since.
	at, shard, offset := since, -1, int64(0)
	return &historySource{read: func(ctx context.Context) ([]HistoryEvent, bool, error) {
		rows, err := db.QueryContext(ctx, historyQuery, stream, at, shard, offset, page, until)
		if err != nil {
			return nil, false, fmt.Errorf("read outbox history of %s: %w", stream, err)
		}
		defer rows.Close()
		var out []HistoryEvent
		n := 0
		for ; rows.Next(); n++ {
			var payload []byte
			if err := rows.Scan(&shard, &offset, &at, &payload); err != nil {
				return nil, false, fmt.Errorf("read outbox history of %s: %w", stream, err)
			}
			var env Envelope
			if err := json.Unmarshal(payload, &env); err != nil {
				skipped.add(fmt.Sprintf("outbox row %d of shard %d", offset, shard), err)
				continue
			}
			msg := message.NewMessage(env.UUID, env.Payload)
			if env.Metadata != nil {
				msg.Metadata = env.Metadata
			}
			out = append(out, HistoryEvent{Message: msg, At: at.UTC(), From: FromOutbox})
		}
		if err := rows.Err(); err != nil {
			return nil, false, fmt.Errorf("read outbox history of %s: %w", stream, err)
		}
		return out, n == page, nil
	}}, nil
}

// streamHistory reads the entries of the stream key from since's
// millisecond to its last entry now. A stream that does not exist has none.
func streamHistory(ctx context.Context, rdb redis.UniversalClient, key string, since time.Time, page int, skipped *skips) (*historySource, error) {
	last, err := rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
	if err != nil {
		return nil, fmt.Errorf("read stream history of %s: %w", key, err)
	}
	if len(last) == 0 {
		return &historySource{done: true}, nil
	}
	start, end := strconv.FormatInt(max(since.UnixMilli(), 0), 10), last[0].ID
	return &historySource{read: func(ctx context.Context) ([]HistoryEvent, bool, error) {
		xs, err := rdb.XRangeN(ctx, key, start, end, int64(page)).Result()
		if err != nil {
			return nil, false, fmt.Errorf("read stream history of %s: %w", key, err)
		}
		out := make([]HistoryEvent, 0, len(xs))
		for _, x := range xs {
			start = "(" + x.ID // exclusive (Redis 6.2)
			m, _, _ := strings.Cut(x.ID, "-")
			ms, _ := strconv.ParseInt(m, 10, 64) // Redis makes every id ms-seq
			// As the worker's consumer decodes it (redisstreams), which
			// dead-letters what this skips.
			msg, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(x.Values)
			if err != nil {
				skipped.add("stream entry "+x.ID, err)
				continue
			}
			out = append(out, HistoryEvent{Message: msg, At: time.UnixMilli(ms).UTC(), From: FromStream})
		}
		return out, len(xs) == page, nil
	}}, nil
}

// skips counts the rows and entries History could not decode.
type skips struct {
	n     int
	first string
}

func (s *skips) add(what string, err error) {
	if s.n == 0 {
		s.first = fmt.Sprintf("%s: %v", what, err)
	}
	s.n++
}

func (s *skips) err(stream string) error {
	if s.n == 0 {
		return nil
	}
	return fmt.Errorf("history of %s: %w: %d (first: %s)", stream, ErrUndecodableEvents, s.n, s.first)
}

// uuidSet is the UUIDs History has yielded: 16 bytes each in the canonical
// form that watermill.NewUUID makes, the string itself otherwise.
type uuidSet struct {
	ids   map[uuid.UUID]struct{}
	other map[string]struct{}
}

// add adds id and reports whether it was new.
func (s uuidSet) add(id string) bool {
	n := len(s.ids) + len(s.other)
	if u, err := uuid.Parse(id); err == nil && u.String() == id {
		s.ids[u] = struct{}{}
	} else {
		s.other[id] = struct{}{}
	}
	return len(s.ids)+len(s.other) > n
}
