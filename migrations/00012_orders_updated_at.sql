-- +goose NO TRANSACTION
-- +goose Up

-- The live page charts the orders settled per second and their
-- commit-to-settled p50 and p99 (orders.ReadFlow): the orders whose
-- updated_at falls in the last interval, a range of this index however
-- many orders the table holds. Built CONCURRENTLY, as 00005's are, so as
-- not to block the writes of a table that may hold millions of orders.
DROP INDEX CONCURRENTLY IF EXISTS orders_updated_at;
CREATE INDEX CONCURRENTLY orders_updated_at ON orders (updated_at);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS orders_updated_at;
