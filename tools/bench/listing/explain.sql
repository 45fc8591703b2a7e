-- The statements orders.List sends, with the values inline (lib/pq sends an
-- unnamed statement, which PostgreSQL plans with its values, as here).
\set c_at '''2025-06-23 14:40:00+00'''
\set c_id '''9ad23657-c270-4f11-862c-9319ae1cb69c'''
\echo === 1 no filter, first page
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id, customer_id, status, reason, created_at, updated_at FROM orders ORDER BY created_at DESC, id DESC LIMIT 21;
\echo === 2 no filter, after the 500,000th order
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id, customer_id, status, reason, created_at, updated_at FROM orders WHERE (created_at, id) < (:c_at, :c_id) ORDER BY created_at DESC, id DESC LIMIT 21;
\echo === 3 customer with 45 orders, first page
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id, customer_id, status, reason, created_at, updated_at FROM orders WHERE customer_id = 'cust-123' ORDER BY created_at DESC, id DESC LIMIT 21;
\echo === 4 customer with 100,000 orders, after its 50,000th
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id, customer_id, status, reason, created_at, updated_at FROM orders WHERE customer_id = 'cust-big' AND (created_at, id) < (:c_at, :c_id) ORDER BY created_at DESC, id DESC LIMIT 21;
\echo === 5 status rejected (2 %), after the 500,000th order
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id, customer_id, status, reason, created_at, updated_at FROM orders WHERE status = 'rejected' AND (created_at, id) < (:c_at, :c_id) ORDER BY created_at DESC, id DESC LIMIT 21;
\echo === 6 status pending (the newest 1,000), after the 500,000th order: nothing left
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id, customer_id, status, reason, created_at, updated_at FROM orders WHERE status = 'pending' AND (created_at, id) < (:c_at, :c_id) ORDER BY created_at DESC, id DESC LIMIT 21;
\echo === 7 customer with 100,000 orders and status rejected, after its 50,000th
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id, customer_id, status, reason, created_at, updated_at FROM orders WHERE customer_id = 'cust-big' AND status = 'rejected' AND (created_at, id) < (:c_at, :c_id) ORDER BY created_at DESC, id DESC LIMIT 21;
\echo === 8 customer with 100,000 orders and status pending, after its 50,000th: nothing left
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id, customer_id, status, reason, created_at, updated_at FROM orders WHERE customer_id = 'cust-big' AND status = 'pending' AND (created_at, id) < (:c_at, :c_id) ORDER BY created_at DESC, id DESC LIMIT 21;
\echo === 9 customer with 45 orders and status rejected, first page
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT id, customer_id, status, reason, created_at, updated_at FROM orders WHERE customer_id = 'cust-123' AND status = 'rejected' ORDER BY created_at DESC, id DESC LIMIT 21;
\echo === 10 the items of a page of 20
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT order_id, sku, quantity FROM order_items WHERE order_id = ANY((SELECT array_agg(id) FROM (SELECT id FROM orders WHERE (created_at, id) < (:c_at, :c_id) ORDER BY created_at DESC, id DESC LIMIT 20) p)::uuid[]) ORDER BY order_id, position;
