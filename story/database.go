package story

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/lib/pq"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/outbox"
	"github.com/orderstream/orderstream/postgres"
)

// record is what the database holds about one order, read in one snapshot.
type record struct {
	order Order
	now   time.Time // the database's clock at the read
	rows  []outboxRow
	// misaligned, when set, says that the outbox was copied from another
	// cluster: whether the forwarder passed a row cannot be told.
	misaligned error
	inbox      []inboxRow
	parked     []parkedRow
	redrive    *redrive
	reserved   []reservation
	released   time.Time // zero when no release is recorded
}

// outboxRow is one outbox row of the order's.
type outboxRow struct {
	shard     int
	at        time.Time // created_at: when its transaction began
	forwarded bool      // the forwarder has passed it
	env       outbox.Envelope
	eventType string
	readable  bool // its payload is a forwarder envelope
}

type inboxRow struct {
	handler, uuid string
	at            time.Time
}

type parkedRow struct {
	handler, uuid       string
	attempts            int
	firstFailed, nextAt time.Time
	lastError           string
}

type redrive struct {
	attempts          int
	first, last, next time.Time
	outcome           string
}

type reservation struct {
	sku      string
	quantity int
	at       time.Time
}

// orderRows finds the outbox rows of the key $1 in every shard, as
// outbox.Resend does: the rows carry the order id in their metadata
// (postgres.OutboxKeyMetadata), which no index holds.
var orderRows = `SELECT o.shard, o.transaction_id::text, o."offset", o.created_at::timestamptz, o.payload
	FROM ` + outbox.AllRows + ` AS o
	WHERE o.metadata->>'` + postgres.OutboxKeyMetadata + `' = $1
	ORDER BY o.created_at, o.shard, o.transaction_id, o."offset"`

// readDatabase reads the order id and what the database holds of it, in
// one read-only snapshot; the inbox and parked messages of handlers.
func readDatabase(ctx context.Context, db *sql.DB, id string, handlers []string) (record, error) {
	tx, err := postgres.BeginTx(ctx, db, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return record{}, fmt.Errorf("read order %s: %w", id, err)
	}
	defer tx.Rollback() //nolint:errcheck // read only: nothing to keep
	rec := record{order: Order{ID: id}}
	o := &rec.order
	var cancelled sql.NullTime
	err = tx.QueryRowContext(ctx, `
		SELECT customer_id, status, COALESCE(reason, ''), created_at, updated_at, cancelled_at, now()
		FROM orders WHERE id = $1`, id).
		Scan(&o.CustomerID, &o.Status, &o.Reason, &o.CreatedAt, &o.UpdatedAt, &cancelled, &rec.now)
	if errors.Is(err, sql.ErrNoRows) {
		return record{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return record{}, fmt.Errorf("read order %s: %w", id, err)
	}
	o.CreatedAt, o.UpdatedAt, rec.now = o.CreatedAt.UTC(), o.UpdatedAt.UTC(), rec.now.UTC()
	if cancelled.Valid {
		t := cancelled.Time.UTC()
		o.CancelledAt = &t
	}
	if err := readOutbox(ctx, tx, &rec); err != nil {
		return record{}, err
	}
	uuids := make([]string, 0, len(rec.rows))
	for _, r := range rec.rows {
		uuids = append(uuids, r.env.UUID)
	}
	// Each through its table's primary key.
	for _, q := range []struct {
		sql  string
		args []any
		scan func(*sql.Rows) error
	}{
		{`SELECT handler, message_uuid, processed_at FROM inbox WHERE handler = ANY($1) AND message_uuid = ANY($2)`,
			[]any{pq.Array(handlers), pq.Array(uuids)}, func(rows *sql.Rows) error {
				var r inboxRow
				err := rows.Scan(&r.handler, &r.uuid, &r.at)
				r.at = r.at.UTC()
				rec.inbox = append(rec.inbox, r)
				return err
			}},
		{`SELECT handler, message_uuid, attempts, first_failed_at, next_attempt_at, last_error
			FROM parked_messages WHERE handler = ANY($1) AND message_uuid = ANY($2)`,
			[]any{pq.Array(handlers), pq.Array(uuids)}, func(rows *sql.Rows) error {
				var p parkedRow
				err := rows.Scan(&p.handler, &p.uuid, &p.attempts, &p.firstFailed, &p.nextAt, &p.lastError)
				p.firstFailed, p.nextAt = p.firstFailed.UTC(), p.nextAt.UTC()
				rec.parked = append(rec.parked, p)
				return err
			}},
		{`SELECT attempts, first_at, last_at, next_at, last_outcome FROM order_redrives WHERE order_id = $1`,
			[]any{id}, func(rows *sql.Rows) error {
				var d redrive
				err := rows.Scan(&d.attempts, &d.first, &d.last, &d.next, &d.outcome)
				d.first, d.last, d.next = d.first.UTC(), d.last.UTC(), d.next.UTC()
				rec.redrive = &d
				return err
			}},
		{`SELECT sku, quantity, created_at FROM reservations WHERE order_id = $1 ORDER BY sku`,
			[]any{id}, func(rows *sql.Rows) error {
				var r reservation
				err := rows.Scan(&r.sku, &r.quantity, &r.at)
				r.at = r.at.UTC()
				rec.reserved = append(rec.reserved, r)
				return err
			}},
		{`SELECT released_at FROM stock_releases WHERE order_id = $1`,
			[]any{id}, func(rows *sql.Rows) error {
				err := rows.Scan(&rec.released)
				rec.released = rec.released.UTC()
				return err
			}},
	} {
		if err := query(ctx, tx, q.sql, q.scan, q.args...); err != nil {
			return record{}, fmt.Errorf("read order %s: %w", id, err)
		}
	}
	return rec, nil
}

// readOutbox reads the order's outbox rows, and whether the forwarder has
// passed each: its position in the row's shard (outbox.Outbox) is at or
// after the row's.
func readOutbox(ctx context.Context, tx *sql.Tx, rec *record) error {
	st, err := outbox.Outbox(ctx, tx)
	if err != nil {
		return err
	}
	if st.Misalignment != nil {
		rec.misaligned = st.Misalignment
	}
	return query(ctx, tx, orderRows, func(rows *sql.Rows) error {
		var r outboxRow
		var txid string
		var offset int64
		var payload []byte
		if err := rows.Scan(&r.shard, &txid, &offset, &r.at, &payload); err != nil {
			return err
		}
		r.at = r.at.UTC()
		r.readable = json.Unmarshal(payload, &r.env) == nil && r.env.UUID != ""
		r.eventType = r.env.Metadata[events.MetadataEventType]
		if r.eventType == "" {
			r.eventType = r.env.Metadata[events.MetadataCQRSName]
		}
		for _, sh := range st.Shards {
			if sh.Shard == r.shard && sh.HasForwarded {
				r.forwarded = passed(txid, offset, sh)
			}
		}
		rec.rows = append(rec.rows, r)
		return nil
	}, rec.order.ID)
}

// passed reports whether the forwarder's position in a shard is at or
// after the row (transaction id txid, offset).
func passed(txid string, offset int64, sh outbox.ShardStatus) bool {
	row, err1 := strconv.ParseUint(txid, 10, 64)
	pos, err2 := strconv.ParseUint(sh.Transaction, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	return row < pos || row == pos && offset <= sh.OffsetAcked
}

// query runs a query and calls scan for each row.
func query(ctx context.Context, tx *sql.Tx, q string, scan func(*sql.Rows) error, args ...any) error {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
