package orders

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/orderstream/orderstream/postgres"
)

// An Idempotency-Key belongs to a customer: the same key from two
// customers names two requests, and one customer's key neither replays nor
// refuses another's request. It counts for the Service's TTL from the
// request that stored it; after that a request with it is a new request,
// which takes the key over, and ForgetExpiredKeys deletes it.
//
// How a request claims a key (insertOrder, claimKey), in the transaction
// that writes what the key names, before it writes it:
//
//	INSERT ... ON CONFLICT (customer_id, key) DO UPDATE SET ... (the request's hash and order, created_at = now())
//	WHERE idempotency_keys.created_at < now() - ttl
//
// A new key is inserted; an expired one is taken over. Either way the
// row is this transaction's until it ends, and a concurrent request with
// the same key waits on it: when this transaction commits, the other finds
// the row with this one's created_at (its transaction's start, not
// expired unless the TTL is shorter than the time between the two
// transactions' starts), updates nothing, and replays or conflicts; when
// this one rolls back, the other finds what was there before and inserts
// or takes over itself. A key found unexpired is locked all the same (ON
// CONFLICT DO UPDATE locks the row its WHERE refuses), so keptRequest, a
// statement of its own that sees the row committed while this one waited,
// reads the very row found, which no takeover or clean-up can change
// until this transaction ends.

// DefaultIdempotencyTTL is how long an Idempotency-Key counts when
// WithIdempotencyTTL does not say otherwise.
const DefaultIdempotencyTTL = 24 * time.Hour

// WithIdempotencyTTL makes an Idempotency-Key count for d after the request
// that stored it (DefaultIdempotencyTTL without it). The database counts
// in whole milliseconds; a d under one millisecond leaves the default.
func WithIdempotencyTTL(d time.Duration) Option {
	return func(s *Service) {
		if d >= time.Millisecond {
			s.keyTTL = d
		}
	}
}

// lockKeyCleanup is the advisory lock of ForgetExpiredKeys: one process at
// a time deletes expired keys. It is the next after postgres's
// LockOutboxCleanup, LockInboxCleanup and LockOutboxWriters
// (0x6f7374_0001 to _0003).
const lockKeyCleanup int64 = 0x6f7374_0004

// ForgetExpiredKeys deletes the idempotency keys older than the TTL, which
// count no more, in batches, and returns how many went. When another
// process is deleting them, it leaves the work to that one. The Janitor
// runs it (outbox.Janitor's Also).
func (s *Service) ForgetExpiredKeys(ctx context.Context) (int64, error) {
	// A key taken over while its batch waits on its row lock has a new
	// row version, whose ctid is not in the batch: it stays.
	n, err := postgres.DeleteInBatches(ctx, s.db, lockKeyCleanup, 1000, `
		DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
			SELECT ctid FROM idempotency_keys
			WHERE created_at < now() - $1::bigint * interval '1 millisecond'
			LIMIT $2))`, s.keyTTL.Milliseconds())
	if err != nil {
		return n, fmt.Errorf("forget expired idempotency keys: %w", err)
	}
	return n, nil
}

// claimKey records that customer's key names order id, for the request
// hash. When the key names an order already, and has not expired, it
// returns that order's id, or ErrIdempotencyConflict if the key came with
// another request. An expired key is taken over, as if it were new.
func claimKey(ctx context.Context, tx *postgres.Tx, customer, key string, hash []byte, id string, ttl time.Duration) (earlier string, err error) {
	// The key goes in first, as the top of this file tells: a concurrent
	// request with the same key waits on its row until this transaction
	// ends. (Its foreign key to the order is checked at commit.)
	res, err := tx.ExecContext(ctx, `
		INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (customer_id, key) DO UPDATE
		SET request_hash = EXCLUDED.request_hash, order_id = EXCLUDED.order_id, created_at = now()
		WHERE idempotency_keys.created_at < now() - $5::bigint * interval '1 millisecond'`,
		customer, key, hash, id, ttl.Milliseconds())
	if err != nil {
		return "", fmt.Errorf("record idempotency key: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return "", err
	}
	return keptRequest(ctx, tx, customer, key, hash)
}

// keptRequest returns the order that customer's key names, which it was
// not recorded for just now because it was there already and unexpired,
// or ErrIdempotencyConflict if the key came with another request (hash).
// It is a statement of its own, so that it sees the row another request
// committed while this one waited on the key.
func keptRequest(ctx context.Context, tx *postgres.Tx, customer, key string, hash []byte) (earlier string, err error) {
	var storedHash []byte
	err = tx.QueryRowContext(ctx,
		`SELECT request_hash, order_id FROM idempotency_keys WHERE customer_id = $1 AND key = $2`,
		customer, key).Scan(&storedHash, &earlier)
	if err != nil {
		return "", fmt.Errorf("read idempotency key: %w", err)
	}
	if !bytes.Equal(storedHash, hash) {
		return "", ErrIdempotencyConflict
	}
	return earlier, nil
}

// checkKey returns ErrIdempotencyConflict when customer's key names a
// request other than hash's and has not expired; a key that names none,
// this one, or has expired, is no conflict.
func checkKey(ctx context.Context, tx *postgres.Tx, customer, key string, hash []byte, ttl time.Duration) error {
	var storedHash []byte
	err := tx.QueryRowContext(ctx, `
		SELECT request_hash FROM idempotency_keys
		WHERE customer_id = $1 AND key = $2 AND created_at >= now() - $3::bigint * interval '1 millisecond'`,
		customer, key, ttl.Milliseconds()).Scan(&storedHash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("read idempotency key: %w", err)
	case !bytes.Equal(storedHash, hash):
		return ErrIdempotencyConflict
	}
	return nil
}

// requestHash identifies a request body for idempotency: two bodies that
// decode to the same request have the same hash.
func requestHash(req PlaceRequest) []byte {
	b, _ := json.Marshal(req) // a struct of strings and ints always encodes
	h := sha256.Sum256(b)
	return h[:]
}

// cancelHash identifies a cancel request for its Idempotency-Key, apart
// from any request that places an order.
func cancelHash(id, reason string) []byte {
	h := sha256.Sum256([]byte("cancel\x00" + id + "\x00" + reason))
	return h[:]
}
