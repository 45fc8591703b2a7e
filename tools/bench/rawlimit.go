package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/postgres"
)

// rawResult is a raw limit: a transaction of the application's (POST
// /orders, or the inventory handler's) run by pgbench, with none of the
// application around it.
type rawResult struct {
	tps          float64
	transactions int64
	failed       int64
	latency      string // pgbench's average
	clients      int
	duration     time.Duration
	cpu          cpuUsage
	pgbench      string // its version line
}

// rawScript is the transaction orders.Service.Place commits for an order
// of two items with an Idempotency-Key, statement for statement: the outbox
// writers' lock, the key (inserted first, its foreign key checked at
// commit) with the order and its items in one statement, the OrderPlaced
// envelope into the outbox, and the commit. (The notification that wakes the forwarder follows the commit,
// from a statement of its own that a busy process sends at most every 5 ms
// for all its commits: it is left out.) The order id,
// like the application's UUIDv7, starts with the time in milliseconds, so
// the primary key grows at its right edge as it does under the application.
// %[1]d is the number of SKUs, %[2]s the envelope's base64 event, %[3]d
// the writers' lock.
const rawScript = `\set r random(1, 4611686018427387903)
\set a random(0, %[1]d - 1)
\set b random(1, %[1]d - 1)
\set qa random(1, 3)
\set qb random(1, 3)
\set c random(0, 999)
BEGIN;
SELECT pg_advisory_xact_lock_shared(%[3]d);
WITH k AS (
    INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id)
    SELECT 'raw-' || :c, 'pgbench-' || :r, '\x9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'::bytea,
           (lpad(to_hex((extract(epoch from now()) * 1000)::bigint), 12, '0') || lpad(to_hex(:r), 20, '0'))::uuid
    WHERE 'pgbench-' || :r <> ''
    ON CONFLICT (customer_id, key) DO UPDATE
    SET request_hash = EXCLUDED.request_hash, order_id = EXCLUDED.order_id, created_at = now()
    WHERE idempotency_keys.created_at < now() - 86400000::bigint * interval '1 millisecond'
    RETURNING true),
fresh AS (
    SELECT 'pgbench-' || :r = '' OR EXISTS (SELECT FROM k) AS ok),
o AS (
    INSERT INTO orders (id, customer_id)
    SELECT (lpad(to_hex((extract(epoch from now()) * 1000)::bigint), 12, '0') || lpad(to_hex(:r), 20, '0'))::uuid, 'raw-' || :c
    FROM fresh WHERE ok
    RETURNING created_at, updated_at),
i AS (
    INSERT INTO order_items (order_id, position, sku, quantity)
    SELECT (lpad(to_hex((extract(epoch from now()) * 1000)::bigint), 12, '0') || lpad(to_hex(:r), 20, '0'))::uuid,
           t.position, t.sku, t.quantity
    FROM fresh, unnest(ARRAY['SKU-' || lpad(:a::text, 3, '0'), 'SKU-' || lpad(((:a + :b) %% %[1]d)::text, 3, '0')]::text[],
                ARRAY[:qa, :qb]::int[]) WITH ORDINALITY AS t(sku, quantity, position)
    WHERE fresh.ok)
SELECT created_at, updated_at FROM o;
INSERT INTO watermill_outbox (uuid, payload, metadata, transaction_id)
  VALUES (gen_random_uuid()::text,
          ('{"destination_topic":"orders.placed","uuid":"' || gen_random_uuid() || '","payload":"%[2]s","metadata":{"correlation_id":"' || gen_random_uuid() || '","event_type":"OrderPlaced"}}')::json,
          '{}', pg_current_xact_id());
COMMIT;
`

// reserveScript is the transaction the inventory handler commits for an
// OrderPlaced of two items that it can reserve, statement for statement:
// the outbox writers' lock, the inbox row, the order's lock, the check for
// its release with the stock rows locked in SKU order, the stock update
// with the reservations in one statement, the StockReserved envelope into
// the outbox, and the commit. It is the worker's raw limit: one
// transaction per event. %[1]d is the number of SKUs, %[2]s the envelope's
// base64 event, %[3]d the writers' lock, %[4]d the orders' lock class.
const reserveScript = `\set r random(1, 4611686018427387903)
\set a random(0, %[1]d - 1)
\set b random(1, %[1]d - 1)
BEGIN;
SELECT pg_advisory_xact_lock_shared(%[3]d);
INSERT INTO inbox (handler, message_uuid) VALUES ('inventory.reserve_stock', gen_random_uuid()::text)
  ON CONFLICT DO NOTHING;
SELECT pg_advisory_xact_lock(%[4]d, hashtext(lpad(to_hex(:r), 32, '0')::uuid::text));
SELECT EXISTS (SELECT 1 FROM stock_releases WHERE order_id = lpad(to_hex(:r), 32, '0')::uuid),
       COALESCE(array_agg(s.sku ORDER BY s.sku), '{}'), COALESCE(array_agg(s.available ORDER BY s.sku), '{}')
  FROM (SELECT sku, available FROM stock
        WHERE sku = ANY (ARRAY['SKU-' || lpad(:a::text, 3, '0'), 'SKU-' || lpad(((:a + :b) %% %[1]d)::text, 3, '0')])
        ORDER BY sku FOR UPDATE) AS s;
WITH r AS (
    SELECT * FROM unnest(ARRAY['SKU-' || lpad(:a::text, 3, '0'), 'SKU-' || lpad(((:a + :b) %% %[1]d)::text, 3, '0')]::text[],
                         ARRAY[1, 1]::int[]) AS r(sku, quantity)),
upd AS (
    UPDATE stock
    SET available = stock.available - r.quantity,
        reserved = stock.reserved + r.quantity,
        updated_at = now()
    FROM r WHERE stock.sku = r.sku)
INSERT INTO reservations (order_id, sku, quantity)
SELECT lpad(to_hex(:r), 32, '0')::uuid, sku, quantity FROM r;
INSERT INTO watermill_outbox (uuid, payload, metadata, transaction_id)
  VALUES (gen_random_uuid()::text,
          ('{"destination_topic":"inventory.reservations","uuid":"' || gen_random_uuid() || '","payload":"%[2]s","metadata":{"correlation_id":"' || gen_random_uuid() || '","event_type":"StockReserved"}}')::json,
          '{}', pg_current_xact_id());
COMMIT;
`

// Locks the scripts take as the application does: postgres's
// LockOutboxWriters, and the class of inventory's per-order locks.
const (
	writersLock = postgres.LockOutboxWriters
	orderLock   = 0x6f73_7404
)

// sampleEvent is the base64 of an OrderPlaced as the application encodes
// it, of the same size as the events the HTTP load produces.
func sampleEvent() string {
	b, _ := json.Marshal(events.OrderPlaced{
		OrderID:    uuid.Must(uuid.NewV7()).String(),
		CustomerID: "raw-123",
		Items:      []events.Item{{SKU: sku(1), Quantity: 2}, {SKU: sku(2), Quantity: 1}},
		PlacedAt:   time.Now().UTC(),
	})
	return base64.StdEncoding.EncodeToString(b)
}

func measureRaw(ctx context.Context, st *stage, rep *report) error {
	db, err := st.freshDatabase(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	r, err := runPgbench(ctx, st, st.opts.clients, placeScript(st.opts.skus))
	if err != nil {
		return err
	}
	rep.raw = r
	return nil
}

// pgScript is one transaction for pgbench, drawn weight times in every
// sum of the scripts' weights.
type pgScript struct {
	name, text string
	weight     int
}

func placeScript(skus int) pgScript {
	return pgScript{"place_order.sql", fmt.Sprintf(rawScript, skus, sampleEvent(), writersLock), 1}
}

func reserveStockScript(skus int) pgScript {
	return pgScript{"reserve_stock.sql", fmt.Sprintf(reserveScript, skus, sampleEvent(), writersLock, orderLock), 1}
}

// runPgbench runs the scripts on the bench database at clients clients for
// the load's duration, after the same unmeasured warm-up the HTTP loads get
// (caches, and the first pages of each index).
func runPgbench(ctx context.Context, st *stage, clients int, scripts ...pgScript) (*rawResult, error) {
	pgbench, err := findPgbench()
	if err != nil {
		return nil, err
	}
	args := []string{"-n"}
	for _, s := range scripts {
		file := filepath.Join(st.dir, s.name)
		if err := os.WriteFile(file, []byte(s.text), 0o644); err != nil {
			return nil, fmt.Errorf("write pgbench script: %w", err)
		}
		args = append(args, "-f", fmt.Sprintf("%s@%d", file, s.weight))
	}
	threads := min(clients, cores())
	run := func(d time.Duration) (string, error) {
		args := append(args, "-c", strconv.Itoa(clients), "-j", strconv.Itoa(threads),
			"-T", strconv.Itoa(int(d.Round(time.Second)/time.Second)), libpqURL(st.dbURL()))
		cmd := exec.CommandContext(ctx, pgbench, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("pgbench: %w\n%s", err, out)
		}
		return string(out), nil
	}
	if st.opts.warmup >= time.Second {
		if _, err := run(st.opts.warmup); err != nil {
			return nil, err
		}
	}
	before := sampleCPU(nil)
	out, err := run(st.opts.duration)
	if err != nil {
		return nil, err
	}
	r, err := parsePgbench(out)
	if err != nil {
		return nil, err
	}
	r.cpu = sampleCPU(nil).usageSince(before)
	r.clients, r.duration = clients, st.opts.duration
	if v, err := exec.Command(pgbench, "--version").Output(); err == nil {
		r.pgbench = strings.TrimSpace(string(v))
	}
	return &r, nil
}

// libpqURL drops from a lib/pq connection URL the parameters that only
// lib/pq knows (DATABASE_URL may set them for the application), which
// libpq, and so pgbench, would refuse.
func libpqURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	for _, k := range []string{"binary_parameters", "disable_prepared_binary_result"} {
		q.Del(k)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

var (
	pgbenchTPS     = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	pgbenchTxns    = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
	pgbenchFailed  = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	pgbenchLatency = regexp.MustCompile(`(?m)^latency average = (.+)$`)
)

func parsePgbench(out string) (rawResult, error) {
	var r rawResult
	m := pgbenchTPS.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("read pgbench output: no tps line in\n%s", out)
	}
	r.tps, _ = strconv.ParseFloat(m[1], 64)
	if m := pgbenchTxns.FindStringSubmatch(out); m != nil {
		r.transactions, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := pgbenchFailed.FindStringSubmatch(out); m != nil {
		r.failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := pgbenchLatency.FindStringSubmatch(out); m != nil {
		r.latency = strings.TrimSpace(m[1])
	}
	return r, nil
}

// findPgbench looks in PATH, then in Debian's per-version directories,
// newest first.
func findPgbench() (string, error) {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	slices.Sort(dirs)
	slices.Reverse(dirs)
	for _, p := range dirs {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("pgbench not found in PATH or /usr/lib/postgresql/*/bin: install it (Debian/Ubuntu: apt-get install postgresql-contrib or postgresql-client)")
}
