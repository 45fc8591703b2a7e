package main

// method says how the figures were obtained, for whoever compares them.
const method = `## How they are measured

Each measurement starts from a fresh, migrated database and streams of its
own; PostgreSQL, Redis, the application and the load generator share the
machine's cores. The placement and open-loop loads are preceded by an
unmeasured warm-up (so is pgbench).

- **raw limit**: pgbench (simple protocol) runs the statements
  POST /orders commits, with an Idempotency-Key: BEGIN; the outbox
  writers' lock; the key, the order and its two items in one statement;
  the OrderPlaced envelope into watermill_outbox; COMMIT. (The
  notification that wakes the forwarder is sent after commits, at most
  every 5 ms per process, and is left out.)
- **raw pipeline**: pgbench runs, from the same clients in equal numbers,
  the three business transactions of an order: the placement above, the
  reservation (as for the worker's raw limit below) and the settlement
  (the writers' lock; the inbox row; the order from pending to confirmed;
  COMMIT) of one of 100,000 pending orders placed beforehand. Orders/s is
  its tps ÷ 3: what this design could settle on this machine if nothing
  but its business transactions ran. Forwarding, polls, notifications,
  Redis and HTTP are the application's overhead over it.
- **placement**: orders/s of HTTP 201s from closed-loop clients against
  ` + "`orderstream all`" + ` (API, forwarder and workers in one process),
  each order with two SKUs and its own Idempotency-Key; the ratio is to the
  raw limit.
- **commit -> settled**: an open loop sends at a fraction of the raw
  pipeline's orders/s, on a fixed schedule whatever the answers, to a
  fresh ` + "`orderstream all`" + `; latency is updated_at - created_at of
  each order, by the database clock, once none is pending. HTTP latency
  counts from when a send was due.
- **single order**: orders placed one at a time against a fresh
  ` + "`orderstream all`" + ` with the defaults, after an unmeasured
  warm-up of the same: each is sent 20 ms after the one before has settled
  (a PL/pgSQL loop in the database looks every millisecond), so that it
  meets no other; commit -> settled as above.
- **durable Redis**: the open loop at 25% of the raw pipeline, the
  single orders and the drain of an HTTP-built backlog at the recommended
  shard count again, each against a redis-server the bench starts on a free
  port with its files in a temp directory (--appendonly yes --appendfsync
  always --no-appendfsync-on-rewrite no --save ''), which answers a write
  only once it is on disk; the machine table's Redis is the one of every
  other figure.
- **cost per order**: over the open loop at half the raw pipeline, from
  the first send until no order is pending, divided by the orders placed:
  the bench database's xact_commit + xact_rollback in pg_stat_database
  (read once the process has stopped, so that every backend has reported;
  the bench's own queries taken off), the CPU time of every PostgreSQL
  process and of orderstream, and the calls of every command in Redis's
  INFO commandstats (the server's: nothing else should use it meanwhile).
- **capacity**: open loops of -step each, at 0.3, 0.4, … of the raw
  pipeline, each against a fresh process and database, until one is not
  kept up with: every order sent placed and settled, commit -> settled p99
  at most 100 ms, none pending at the end. The capacity is the highest
  step kept up with.
- **forwarder drain**: outbox rows inserted in transactions of 10,000 while
  no forwarder ran (then VACUUM ANALYZE, as autovacuum would), then
  ` + "`orderstream forwarder`" + ` alone; the rate counts from the first
  entry on the stream to the last, so process start-up is left out (and
  reported).
- **forwarder drain of an HTTP-built backlog**: for each of 1, 4 and 16
  outbox shards (-http-drain-shards), ` + "`orderstream api`" + ` alone
  with OUTBOX_SHARDS set to it takes 22,000 orders (-http-backlog) from
  the placement load's clients, each order its own transaction spread over
  the shards by the writers' hash; then the outbox is vacuumed as above and
  one ` + "`orderstream forwarder`" + ` drains it, timed as above until
  every OrderPlaced is on the stream. The target is the fastest shard
  count's, recommended. At that count a backlog of the same size is then
  built and drained once more, the same way, against the durable Redis
  below (-http-drain-durable): the target's second row.
- **worker**: OrderPlaced entries added to the stream in
  watermill-redisstream's format, then ` + "`orderstream worker`" + ` alone
  until its inventory group has read and acknowledged every one. Its raw
  limit: pgbench (simple protocol) then runs the handler's transaction for
  an order it can reserve (the writers' lock; the inbox row; the order's
  lock; the check for its release with the two stock rows locked in SKU
  order; the update with the reservations; the StockReserved envelope into
  watermill_outbox; COMMIT) at WORKER_CONCURRENCY clients: one
  transaction per event, with none of the application around it.
- **idle**: xact_commit + xact_rollback of the bench database in
  pg_stat_database, after the process has run for 12 s (so that the
  statistics of its start-up are in before the window opens).
- **pages**: the same count on an idle ` + "`orderstream all`" + ` with 0,
  then 1, then 10 live pages open (event streams on GET /events, each from
  a loopback address of its own), 12 s after each change; the target is
  what 10 pages add over none, divided by what one adds.
- **authentication and rate limiting**: the placement load, each order
  with the JWT of its customer (one of 1,000, minted before the load), twice
  against a fresh ` + "`orderstream all`" + `: the rate limiter off
  (RATE_LIMIT_PER_S=0, as in every other measurement), then on at a limit
  that refuses nothing, so that the difference is what the limiter costs a
  request: the process's CPU time (/proc) and Redis's commands (INFO
  commandstats, the server's) over the measured load, divided by the orders
  placed. Before: the placement figures of a report from before tokens
  were required (-before), carried from report to report; its CPU per
  order is its rounded CPU share × cores ÷ orders/s.
- **memory**: VmHWM of ` + "`orderstream all`" + ` after the placement load;
  MB are 10^6 bytes.
- **CPU**: shares of the whole machine (100% = every core busy) from /proc:
  orderstream, every PostgreSQL process, Redis, the bench itself with
  pgbench, and the rest ("other": anything else running meanwhile).
`
