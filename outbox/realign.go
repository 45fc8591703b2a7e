package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/orderstream/orderstream/postgres"
)

// The forwarder's position and the outbox rows carry transaction ids (xid8)
// of the cluster that wrote them. A logical copy into another cluster
// (pg_dump and restore; logical replication for a major upgrade, whereas
// pg_upgrade keeps the counter) copies those ids as data, while the new
// cluster counts its own from where it is, typically far below. Then the
// rows written in the new cluster sort before the forwarder's position and
// are never read; the restored rows it had not forwarded stay hidden, above
// every snapshot's horizon, until the counter reaches them; and the clean-up, which
// deletes what is below the position, deletes the new rows unforwarded.
//
// The forwarder therefore refuses to start and the clean-up to delete
// while any of those ids is ahead of the database's own, until an operator
// runs RealignOutbox (orderstream outbox realign).

// ErrOutboxMisaligned is what a *Misalignment is.
var ErrOutboxMisaligned = errors.New("the outbox is misaligned with the database's transaction ids")

// Misalignment describes an outbox whose transaction ids are ahead of the
// database's: ids that no transaction of this cluster has had yet.
type Misalignment struct {
	Position uint64 // the forwarder's stored transaction id; 0 when it never ran
	Newest   uint64 // the highest transaction id of an outbox row
	Next     uint64 // the database's next transaction id
}

func (m *Misalignment) Error() string {
	return fmt.Sprintf("%s: %s, as after a pg_dump/restore or a logical copy into another cluster; "+
		"events written here would not be forwarded and the clean-up would delete them. "+
		"Run `orderstream outbox realign` (see docs/operating.md: Restoring or migrating the database)",
		ErrOutboxMisaligned, m.Summary())
}

// Summary says which ids are ahead.
func (m *Misalignment) Summary() string {
	what := fmt.Sprintf("the forwarder's position (transaction %d) is", m.Position)
	if m.Position < m.Next {
		what = fmt.Sprintf("outbox rows (transaction ids up to %d) are", m.Newest)
	}
	return fmt.Sprintf("%s ahead of this database's transaction ids (next %d)", what, m.Next)
}

func (m *Misalignment) Unwrap() error { return ErrOutboxMisaligned }

// alignment returns the outbox's misalignment, nil when there is none,
// and the forwarder's position in each shard. A transaction of this
// cluster has an id below the next one of the snapshot, and so has every
// row it wrote: ids at or above it come from elsewhere. Every read goes
// through a primary key.
func alignment(ctx context.Context, q postgres.Queryer) (*Misalignment, []position, error) {
	var m Misalignment
	rows, err := q.QueryContext(ctx, alignmentQuery, forwarderGroup)
	if err != nil {
		return nil, nil, fmt.Errorf("read outbox alignment: %w", err)
	}
	defer rows.Close()
	positions := make([]position, 0, postgres.MaxOutboxShards)
	for rows.Next() {
		var shard int
		var next, newest string
		var pos sql.NullString
		var acked sql.NullInt64
		if err := rows.Scan(&shard, &next, &newest, &pos, &acked); err != nil {
			return nil, nil, fmt.Errorf("read outbox alignment: %w", err)
		}
		var p position
		var errs [3]error
		var n uint64
		m.Next, errs[0] = strconv.ParseUint(next, 10, 64)
		n, errs[1] = strconv.ParseUint(newest, 10, 64)
		if pos.Valid {
			p.tx, errs[2] = strconv.ParseUint(pos.String, 10, 64)
		}
		if err := errors.Join(errs[:]...); err != nil {
			return nil, nil, fmt.Errorf("read outbox alignment: %w", err)
		}
		p.offset = acked.Int64
		m.Newest, m.Position = max(m.Newest, n), max(m.Position, p.tx)
		positions = append(positions, p)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read outbox alignment: %w", err)
	}
	if m.Position < m.Next && m.Newest < m.Next {
		return nil, positions, nil
	}
	return &m, positions, nil
}

// alignmentQuery reads, shard by shard, the highest transaction id of a
// row and the forwarder's position, with the next transaction id of the
// statement's snapshot, the one all of them are read in.
var alignmentQuery = eachShard(" UNION ALL ", func(shard int) string {
	return fmt.Sprintf(`(SELECT %d AS shard, pg_snapshot_xmax(pg_current_snapshot())::text,
		       COALESCE((SELECT max(transaction_id) FROM %s), '0')::text,
		       o.last_processed_transaction_id::text, o.offset_acked
		FROM (SELECT) AS one
		LEFT JOIN %s o ON o.consumer_group = $1)`, shard, messagesTable(shard), offsetsTable(shard))
}) + ` ORDER BY shard`

// position is where the forwarder is: the transaction id and the offset
// last acked within it.
type position struct {
	tx     uint64
	offset int64
}

// CheckOutboxAlignment returns a *Misalignment when the outbox's
// transaction ids are ahead of the database's, nil when they are not.
func CheckOutboxAlignment(ctx context.Context, db *sql.DB) error {
	m, _, err := alignment(ctx, db)
	if err != nil {
		return err
	}
	if m != nil {
		return m
	}
	return nil
}

// Transaction ids RealignOutbox gives the rows it moves: below every id a
// transaction gets (the first is 3), so the forwarder reads them at once
// and before every row written in this cluster.
const (
	realignedPassed  = 1 // rows the forwarder had passed
	realignedPending = 2 // rows it had not: its position becomes (2, 0)
)

// Realigned is what RealignOutbox did.
type Realigned struct {
	// Misalignment is what was found, over all shards; Position is the
	// highest of the shards' positions. Nil when the outbox was aligned and
	// nothing was changed.
	Misalignment *Misalignment
	// Passed rows came from the old cluster and the forwarder had passed
	// them: they keep their offsets under transaction id 1, behind the
	// new position, and are not forwarded again.
	Passed int64
	// Pending rows came from the old cluster and the forwarder had not
	// passed them: they keep their offsets under transaction id 2, and are
	// forwarded first, in offset (that is, insertion) order.
	Pending int64
	// Local rows were written in this cluster: they keep their ids and are
	// forwarded after the pending ones, as is everything written from now
	// on.
	Local int64
}

// RealignOutbox makes a misaligned outbox (see Misalignment) readable again,
// in one transaction under the lock of the forwarder's offsets: every row
// whose transaction id is ahead of the database's came from the old
// cluster; those at or behind the forwarder's position there move to
// transaction id 1, the others to 2, and the position becomes (2, 0).
//
// Nothing is lost: rows of this cluster, committed or still being written,
// keep ids above 2 and so come after the position. Nothing forwarded in the
// old cluster is forwarded again. Only when this cluster's counter had
// already overtaken the old position (restored rows ahead of it remaining)
// can rows be forwarded twice: those with ids of this cluster below the old
// position, which the forwarder may or may not have moved; the consumers'
// inbox drops the duplicates.
//
// On an aligned outbox it changes nothing: the position would go back
// before everything already forwarded.
func RealignOutbox(ctx context.Context, db *sql.DB) (Realigned, error) {
	var r Realigned
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return r, fmt.Errorf("realign outbox: %w", err)
	}
	defer tx.Rollback()
	// Before the snapshot (the first query takes it): wait for a forwarder
	// in the middle of a poll, and hold the next ones off. One snapshot for
	// all that follows: a transaction that gets its id after it has an id
	// at or above its next id but is invisible to it, and so is not taken
	// for a restored row.
	if _, err := tx.ExecContext(ctx, `LOCK TABLE `+eachShard(", ", offsetsTable)+` IN EXCLUSIVE MODE`); err != nil {
		return r, fmt.Errorf("realign outbox: lock the forwarder's offsets: %w", err)
	}
	m, positions, err := alignment(ctx, tx)
	if err != nil || m == nil {
		return r, err
	}
	r.Misalignment = m
	for shard, pos := range positions {
		if err := realignShard(ctx, tx, shard, pos, m.Next, &r); err != nil {
			return r, err
		}
	}
	if err := tx.Commit(); err != nil {
		return r, fmt.Errorf("realign outbox: %w", err)
	}
	return r, nil
}

// realignShard moves the restored rows of shard, whose forwarder had
// reached pos in the old cluster, and the position to (2, 0).
func realignShard(ctx context.Context, tx *sql.Tx, shard int, pos position, next uint64, r *Realigned) error {
	rows, offsets := messagesTable(shard), offsetsTable(shard)
	var passed, pending, local int64
	err := tx.QueryRowContext(ctx, `
		WITH moved AS (
			UPDATE `+rows+`
			SET transaction_id = CASE WHEN (transaction_id, "offset") <= ($1::text::xid8, $2::bigint)
			                          THEN $4 ELSE $5 END::text::xid8
			WHERE transaction_id >= $3::text::xid8 OR transaction_id <= $5::text::xid8
			RETURNING transaction_id)
		SELECT count(*) FILTER (WHERE transaction_id = $4::text::xid8),
		       count(*) FILTER (WHERE transaction_id = $5::text::xid8)
		FROM moved`,
		strconv.FormatUint(pos.tx, 10), pos.offset, strconv.FormatUint(next, 10),
		strconv.Itoa(realignedPassed), strconv.Itoa(realignedPending)).Scan(&passed, &pending)
	if err != nil {
		return fmt.Errorf("realign outbox shard %d: move the restored rows: %w", shard, err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+rows+` WHERE transaction_id > $1::text::xid8`,
		strconv.Itoa(realignedPending)).Scan(&local); err != nil {
		return fmt.Errorf("realign outbox shard %d: count the local rows: %w", shard, err)
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO `+offsets+` (consumer_group, offset_acked, last_processed_transaction_id)
		VALUES ($1, 0, $2::text::xid8)
		ON CONFLICT (consumer_group) DO UPDATE
		SET offset_acked = excluded.offset_acked, last_processed_transaction_id = excluded.last_processed_transaction_id`,
		forwarderGroup, strconv.Itoa(realignedPending)); err != nil {
		return fmt.Errorf("realign outbox shard %d: move the forwarder's position: %w", shard, err)
	}
	r.Passed, r.Pending, r.Local = r.Passed+passed, r.Pending+pending, r.Local+local
	return nil
}
