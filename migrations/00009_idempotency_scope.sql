-- +goose Up

-- An Idempotency-Key is its customer's: the same key from two customers
-- names two requests (package orders). The customer of a key stored
-- before is its order's: every key names an order (order_id is NOT NULL,
-- and the key goes with its order). created_at (00001) is when the key
-- was stored; a key older than the service's TTL no longer counts, and the
-- clean-up deletes it by the index on created_at.
--
-- In one transaction, under the table's exclusive lock: a request with a
-- key waits until it commits. A process of the version before cannot store
-- a key once it has (its insert names no customer, and its ON CONFLICT no
-- primary key): its requests with a key fail until it is replaced.
ALTER TABLE idempotency_keys ADD COLUMN customer_id text;
UPDATE idempotency_keys k SET customer_id = o.customer_id FROM orders o WHERE o.id = k.order_id;
ALTER TABLE idempotency_keys
    ALTER COLUMN customer_id SET NOT NULL,
    DROP CONSTRAINT idempotency_keys_pkey,
    ADD PRIMARY KEY (customer_id, key);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- +goose Down
-- A key that two customers hold is kept for the one who stored it last.
DROP INDEX idempotency_keys_created_at;
DELETE FROM idempotency_keys k USING idempotency_keys newer
WHERE newer.key = k.key
  AND (newer.created_at, newer.customer_id) > (k.created_at, k.customer_id);
ALTER TABLE idempotency_keys
    DROP CONSTRAINT idempotency_keys_pkey,
    ADD PRIMARY KEY (key),
    DROP COLUMN customer_id;
