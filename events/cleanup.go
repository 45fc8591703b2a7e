package events

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/postgres"
)

// CleanOutbox deletes outbox rows that every consumer group of the outbox
// has passed and that are older than retention. watermill-sql never deletes
// a row it forwarded, and the table would grow without end.
//
// On a misaligned outbox (see Misalignment) it deletes nothing and returns
// the *Misalignment: the rows written since the copy sort below the
// forwarder's position, as if it had passed them, and are not forwarded.
func CleanOutbox(ctx context.Context, db *sql.DB, retention time.Duration) (int64, error) {
	if err := CheckOutboxAlignment(ctx, db); err != nil {
		return 0, fmt.Errorf("clean outbox: %w", err)
	}
	// A group's reads return only rows of transactions at or after its
	// last_processed_transaction_id, so the rows of earlier transactions
	// are behind every group. No group yet: nothing is deleted. Each batch
	// checks the alignment again (two primary key reads), should the
	// database be swapped for a copy under a running clean-up.
	n, err := postgres.DeleteInBatches(ctx, db, postgres.LockOutboxCleanup, 1000, `
		DELETE FROM watermill_outbox WHERE ctid = ANY(ARRAY(
			SELECT ctid FROM watermill_outbox
			WHERE transaction_id < (SELECT min(last_processed_transaction_id) FROM watermill_offsets_outbox)
			  AND created_at < LOCALTIMESTAMP - make_interval(secs => $1)
			  AND (SELECT max(last_processed_transaction_id) FROM watermill_offsets_outbox) < pg_snapshot_xmax(pg_current_snapshot())
			  AND (SELECT max(transaction_id) FROM watermill_outbox) < pg_snapshot_xmax(pg_current_snapshot())
			LIMIT $2))`, retention.Seconds())
	if err != nil {
		return n, fmt.Errorf("clean outbox: %w", err)
	}
	return n, nil
}

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
