-- +goose NO TRANSACTION
-- +goose Up

-- GET /orders lists orders newest first, by (created_at, id) descending, a
-- page at a time from a keyset cursor. Each of its query shapes is a range
-- of one of these indexes, read in order and stopped after a page: no sort,
-- and a page costs the same on the first or the millionth order.
--
--   no filter              orders_created_at_id
--   customer_id            orders_customer_id_created_at_id
--   status                 orders_status_created_at_id
--   customer_id and status orders_customer_id_status_created_at_id
--
-- The last is not redundant: read from either of the two before it, a
-- customer's orders of a status they rarely have would be found by
-- walking past all their others (or all the others of that status).
--
-- CONCURRENTLY builds an index without blocking the writes of a table that
-- may already hold millions of orders; it cannot run in a transaction,
-- hence NO TRANSACTION. goose runs the statements one by one on the
-- connection that holds the migration's advisory lock (a session lock, no
-- transaction), so other processes still wait for the schema. A build that
-- fails leaves an invalid index behind and the version unrecorded: the
-- DROP before each CREATE lets the next start build it again.
DROP INDEX CONCURRENTLY IF EXISTS orders_created_at_id;
CREATE INDEX CONCURRENTLY orders_created_at_id
    ON orders (created_at DESC, id DESC);

DROP INDEX CONCURRENTLY IF EXISTS orders_customer_id_created_at_id;
CREATE INDEX CONCURRENTLY orders_customer_id_created_at_id
    ON orders (customer_id, created_at DESC, id DESC);

DROP INDEX CONCURRENTLY IF EXISTS orders_status_created_at_id;
CREATE INDEX CONCURRENTLY orders_status_created_at_id
    ON orders (status, created_at DESC, id DESC);

DROP INDEX CONCURRENTLY IF EXISTS orders_customer_id_status_created_at_id;
CREATE INDEX CONCURRENTLY orders_customer_id_status_created_at_id
    ON orders (customer_id, status, created_at DESC, id DESC);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS orders_customer_id_status_created_at_id;
DROP INDEX CONCURRENTLY IF EXISTS orders_status_created_at_id;
DROP INDEX CONCURRENTLY IF EXISTS orders_customer_id_created_at_id;
DROP INDEX CONCURRENTLY IF EXISTS orders_created_at_id;
