-- The orders of BENCHMARKS.md "Listing orders": see there how to run it.
\timing on
CREATE TABLE orders (
    id          uuid        PRIMARY KEY,
    customer_id text        NOT NULL,
    status      text        NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'confirmed', 'rejected')),
    reason      text        CHECK (reason IN ('insufficient_stock', 'unknown_sku')),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((status = 'rejected') = (reason IS NOT NULL))
);
CREATE TABLE order_items (
    order_id uuid    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    position int     NOT NULL,
    sku      text    NOT NULL,
    quantity int     NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, position),
    UNIQUE (order_id, sku)
);
-- 1,000,000 orders over a year, one every 30 s: every tenth for one big
-- customer (100,000 orders), the rest spread over 20,000 customers (45 each);
-- the newest 1,000 pending, 2 % of the others rejected.
INSERT INTO orders (id, customer_id, status, reason, created_at, updated_at)
SELECT gen_random_uuid(),
       CASE WHEN g % 10 = 0 THEN 'cust-big' ELSE 'cust-' || (g % 20000) END,
       CASE WHEN g > 999000 THEN 'pending' WHEN g % 50 = 7 THEN 'rejected' ELSE 'confirmed' END,
       CASE WHEN g <= 999000 AND g % 50 = 7 THEN 'insufficient_stock' END,
       timestamptz '2025-01-01 00:00:00+00' + g * interval '30 seconds',
       timestamptz '2025-01-01 00:00:00+00' + g * interval '30 seconds' + interval '200 ms'
FROM generate_series(1, 1000000) AS g;
INSERT INTO order_items (order_id, position, sku, quantity)
SELECT o.id, p, 'SKU-' || p, 1 FROM orders o, generate_series(1, 1 + (hashtext(o.id::text) & 1)) AS p;
VACUUM ANALYZE orders;
VACUUM ANALYZE order_items;
