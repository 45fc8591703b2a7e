package outbox

import (
	"context"
	"fmt"

	"github.com/lib/pq"

	"github.com/orderstream/orderstream/postgres"
)

// Resent is what Resend found of one key.
type Resent struct {
	Key string
	// Rows is how many of the key's outbox rows it wrote again: those the
	// forwarder had passed.
	Rows int
	// InFlight is how many it left: rows the forwarder has not passed yet,
	// which are still on their way.
	InFlight int
}

// resendFind lists, for every shard, the rows of the keys in $1 with
// whether the forwarder group $2 has passed them. A read: it gives the
// transaction no id, so the forwarder does not wait for it while it scans.
var resendFind = eachShard(" UNION ALL ", func(shard int) string {
	return fmt.Sprintf(`
		SELECT %d, o.metadata->>'%s', o.transaction_id::text, o."offset",
		       (o.transaction_id, o."offset") <= (SELECT last_processed_transaction_id, offset_acked FROM %s WHERE consumer_group = $2)
		FROM %s o WHERE o.metadata->>'%s' = ANY($1)`,
		shard, postgres.OutboxKeyMetadata, offsetsTable(shard), messagesTable(shard), postgres.OutboxKeyMetadata)
}) + ` ORDER BY 1, 3, 4`

// Resend writes again, in tx, every retained outbox row of keys (the
// order ids their events were written with, postgres.OutboxKeyMetadata)
// that the forwarder has passed: each row a copy, in its shard, in the
// order of the originals, so that the forwarder puts each event on its
// stream once more with its UUID. Each consumer's inbox drops what it
// handled already; what was lost takes effect. Rows the forwarder has not
// passed are left alone (they are on their way) and counted.
//
// What is past OUTBOX_RETENTION, or was written before the outbox rows
// carried their key, is not found: Resend reports no row for such a key.
// The scan reads every shard's rows (no index holds the key), in a
// statement that gives tx no transaction id; only the copies, found again
// by primary key, do.
func Resend(ctx context.Context, tx *postgres.Tx, keys []string) ([]Resent, error) {
	rows, err := tx.QueryContext(ctx, resendFind, pq.Array(keys), forwarderGroup)
	if err != nil {
		return nil, fmt.Errorf("find events to resend: %w", err)
	}
	type position struct {
		txs     []string
		offsets []int64
	}
	byShard := map[int]*position{}
	found := map[string]*Resent{}
	for rows.Next() {
		var shard int
		var key, txid string
		var offset int64
		var passed bool
		if err := rows.Scan(&shard, &key, &txid, &offset, &passed); err != nil {
			rows.Close()
			return nil, fmt.Errorf("find events to resend: %w", err)
		}
		r := found[key]
		if r == nil {
			r = &Resent{Key: key}
			found[key] = r
		}
		if !passed {
			r.InFlight++
			continue
		}
		r.Rows++
		p := byShard[shard]
		if p == nil {
			p = &position{}
			byShard[shard] = p
		}
		p.txs, p.offsets = append(p.txs, txid), append(p.offsets, offset)
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("find events to resend: %w", err)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find events to resend: %w", err)
	}
	for shard, p := range byShard {
		table := messagesTable(shard)
		_, err := tx.ExecContext(ctx, `
			INSERT INTO `+table+` (uuid, payload, metadata, transaction_id)
			SELECT o.uuid, o.payload, o.metadata, pg_current_xact_id()
			FROM `+table+` o JOIN unnest($1::xid8[], $2::bigint[]) AS r(tx, "offset")
			  ON o.transaction_id = r.tx AND o."offset" = r."offset"
			ORDER BY o.transaction_id, o."offset"`,
			pq.Array(p.txs), pq.Array(p.offsets))
		if err != nil {
			return nil, fmt.Errorf("resend events: %w", err)
		}
		tx.Rewrote(ctx, shard)
	}
	out := make([]Resent, 0, len(keys))
	for _, k := range keys {
		if r := found[k]; r != nil {
			out = append(out, *r)
		} else {
			out = append(out, Resent{Key: k})
		}
	}
	return out, nil
}
