package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/postgres"
)

// TestRun_gracefulStop sends SIGTERM to each kind of process (worker,
// forwarder, api, then all) while orders flow, each at its worst moment,
// and starts it again. A graceful stop must finish what it started:
//
//   - worker: its handlers are held in flight (the test holds the stock row
//     every order needs) when the stop comes; they must finish and ack;
//   - forwarder: its batch is held half forwarded (the test pauses Redis
//     writes) when the stop comes; it must be saved once, not rolled back
//     and forwarded again;
//   - api: requests in flight finish; the clients' retries with the same
//     Idempotency-Key find their orders.
//
// Then: every order settled, each handler ran once per event (no
// redelivery, no duplicate skipped), each event is on its stream once, and
// no stopped consumer is left in its group, with or without entries pending.
func TestRun_gracefulStop(t *testing.T) {
	t.Parallel()
	addr := testenv.FreeAddr(t)
	vars := map[string]string{
		"DATABASE_URL":         ownPostgres(t),
		"REDIS_URL":            ownRedis(t),
		"STREAM_PREFIX":        "graceful:",
		"HTTP_ADDR":            addr,
		"ADMIN_TOKEN":          testAdminToken,
		"AUTH_JWT_SECRET":      testJWTSecret,
		"OPS_ADDR":             "off",
		"RATE_LIMIT_PER_S":     "0",
		"LOG_LEVEL":            "info",
		"OUTBOX_POLL_INTERVAL": "200ms",
		// Long enough for a handler waiting on the held row; whatever a
		// stop left pending is claimed after STREAM_CLAIM_IDLE, so that
		// everything still settles (and the checks below say what went
		// wrong) when the stop is not graceful.
		// The handlers wait on the held row for up to DB_LOCK_TIMEOUT.
		"HANDLER_TIMEOUT":     "10s",
		"DB_LOCK_TIMEOUT":     "9s",
		"HANDLER_MAX_RETRIES": "0",
		"STREAM_CLAIM_IDLE":   "21s",
		"WORKER_CONCURRENCY":  "4",
		"SHUTDOWN_TIMEOUT":    "30s",
		// Shorter than the Redis pauses below: a forwarder's poll sits
		// idle in its transaction while its batch waits for Redis, and
		// must outlive them (its own limit is the stop's time).
		"DB_IDLE_IN_TRANSACTION_TIMEOUT": "1500ms",
	}
	names := make([]string, 0, len(vars))
	for k := range vars {
		names = append(names, k)
	}
	getenv := func(k string) string { return vars[k] }
	g := &graceful{t: t, base: "http://" + addr, prefix: vars["STREAM_PREFIX"], host: hostname(t)}
	g.rdb = redisOf(t, vars["REDIS_URL"])
	defer g.rdb.Close()

	procs := map[string]*process{}
	for _, kind := range []string{"api", "forwarder", "worker"} {
		procs[kind] = newProcess(t, getenv, kind, names...)
	}
	c := client{t, g.base}
	g.waitReady()
	db, err := postgres.Open(context.Background(), vars["DATABASE_URL"], 4)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	g.db = db
	// Every order takes one unit of held (the row the test locks) and one
	// of another SKU: plenty, so that the outcome is the handlers' alone.
	held := "HELD"
	skus := []string{held, "A", "B", "C"}
	for _, sku := range skus {
		if code := c.do("PUT", "/inventory/"+sku, `{"available":100000}`, nil); code != 200 {
			t.Fatalf("PUT /inventory/%s = %d", sku, code)
		}
	}

	stopLoad := g.load(held, skus[1:])
	g.waitPlaced(100)

	// The worker, with every handler of its inventory consumer in flight.
	g.holdRow(held, 4, func() func() { return g.terminate(procs["worker"], true) })
	g.waitPlaced(100)

	// The forwarder, in the middle of a batch.
	g.pauseWrites(func() func() { return g.terminate(procs["forwarder"], true) })()
	g.waitPlaced(100)

	// The API, with requests in flight.
	g.terminate(procs["api"], true)()
	g.waitPlaced(100)

	// All in one process, with both.
	for _, kind := range []string{"worker", "forwarder", "api"} {
		g.terminate(procs[kind], false)()
	}
	all := newProcess(t, getenv, "all", names...)
	g.waitPlaced(100)
	g.holdRow(held, 4, func() func() {
		return g.pauseWrites(func() func() { return g.terminate(all, true) })
	})
	g.waitPlaced(100)
	placed := stopLoad()

	waitSettled(t, db, placed)
	g.checkOnce(placed)
	g.checkNoStoppedConsumers()
	if n, err := g.rdb.XLen(context.Background(), g.prefix+events.StreamDeadLetter).Result(); err != nil || n != 0 {
		t.Errorf("dead-letter stream holds %d entries (%v), want none", n, err)
	}
}

// graceful is the state of TestRun_gracefulStop.
type graceful struct {
	t      *testing.T
	base   string
	prefix string
	host   string
	db     *sql.DB
	rdb    redis.UniversalClient

	mu      sync.Mutex
	placed  int
	stopped []int // pids
	logs    []*process
}

// load places orders, one every 20 ms, each with its own Idempotency-Key,
// retried with it until the API answers; it returns a function that stops
// the load and returns how many orders were placed.
func (g *graceful) load(held string, others []string) func() int {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 30 * time.Second}
	admin := mint(g.t, "graceful-admin", true)
	place := func(i int) {
		defer wg.Done()
		body := fmt.Sprintf(`{"customer_id":"c-%d","items":[{"sku":%q,"quantity":1},{"sku":%q,"quantity":1}]}`,
			i, held, others[i%len(others)])
		key := fmt.Sprintf("graceful-%d", i)
		for {
			req, _ := http.NewRequest("POST", g.base+"/orders", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", key)
			req.Header.Set("Authorization", "Bearer "+admin)
			resp, err := hc.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK {
					g.mu.Lock()
					g.placed++
					g.mu.Unlock()
					return
				}
				if resp.StatusCode < 500 {
					g.t.Errorf("POST /orders = %d", resp.StatusCode)
					return
				}
			}
			time.Sleep(50 * time.Millisecond) // the API is stopping or starting
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			wg.Add(1)
			go place(i)
		}
	}()
	return func() int {
		cancel()
		wg.Wait()
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.placed
	}
}

// waitReady waits for the API to be ready, longer than waitHealthy: on a
// busy machine, four processes start at once here.
func (g *graceful) waitReady() {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(g.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("the API did not become ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitPlaced waits until n more orders have been placed.
func (g *graceful) waitPlaced(n int) {
	g.mu.Lock()
	target := g.placed + n
	g.mu.Unlock()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		g.mu.Lock()
		placed := g.placed
		g.mu.Unlock()
		if placed >= target {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%d orders placed, waiting for %d", placed, target)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// holdRow locks the stock row of sku until n handlers wait on it, then
// calls stop, lets the row go shortly after, and calls what stop returned.
//
// The handlers must all come to wait within the handlers' lock timeout,
// or the first would give up, and its message be parked and put back on
// its stream: an event twice there, and handled twice. So Redis writes,
// the workers' reads included, pause while orders gather in the outbox,
// the lock is taken, and the pause ends: a burst of the SKU's orders meets
// the lock at once.
func (g *graceful) holdRow(sku string, n int, stop func() func()) {
	g.t.Helper()
	if err := g.rdb.Do(context.Background(), "CLIENT", "PAUSE", 1000, "WRITE").Err(); err != nil {
		g.t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	tx, err := g.db.Begin()
	if err != nil {
		g.t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // releases the row
	if _, err := tx.Exec(`SELECT 1 FROM stock WHERE sku = $1 FOR UPDATE`, sku); err != nil {
		g.t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var waiting int
		err := g.db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'`).Scan(&waiting)
		if err == nil && waiting >= n {
			break
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%d handlers waiting on %s (%v), want %d", waiting, sku, err, n)
		}
		time.Sleep(25 * time.Millisecond)
	}
	then := stop()
	// Long enough for a stop that is not graceful to have cancelled them.
	time.Sleep(300 * time.Millisecond)
	if err := tx.Rollback(); err != nil {
		g.t.Fatal(err)
	}
	then()
}

// pauseWrites pauses every write to Redis for a while, so that the
// forwarder is stuck in the middle of a batch, and calls stop meanwhile.
func (g *graceful) pauseWrites(stop func() func()) func() {
	g.t.Helper()
	if err := g.rdb.Do(context.Background(), "CLIENT", "PAUSE", 2000, "WRITE").Err(); err != nil {
		g.t.Fatal(err)
	}
	// Orders are committed all the while: the forwarder has read some and
	// waits on Redis to take the first.
	time.Sleep(300 * time.Millisecond)
	return stop()
}

// terminate sends SIGTERM to p and returns a function that waits for p to
// end, checks that it stopped cleanly and left nothing in the consumer
// groups, and starts it again if restart.
func (g *graceful) terminate(p *process, restart bool) func() {
	p.mu.Lock()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	exited := p.exited
	p.mu.Unlock()
	return func() {
		g.t.Helper()
		<-exited
		fmt.Fprintf(p.logs, "--- %s: SIGTERM\n", p.args)
		g.checkStopped(p)
		if restart {
			p.start()
		}
	}
}

// groups is the consumer group of each stream, as the subscriptions
// register them.
var groups = func() map[string]string {
	m := map[string]string{}
	for _, s := range (&app{}).subscriptions() {
		m[s.Stream] = s.Group
	}
	return m
}()

// checkStopped checks that p exited with status 0 and that no consumer of
// its remains in the groups, and remembers p for the final checks.
func (g *graceful) checkStopped(p *process) {
	g.t.Helper()
	p.mu.Lock()
	pid, state := p.cmd.Process.Pid, p.cmd.ProcessState
	p.mu.Unlock()
	if state == nil || !state.Success() {
		g.t.Errorf("%s (pid %d) after SIGTERM: %v, want exit status 0", p.args, pid, state)
	}
	g.stopped = append(g.stopped, pid)
	if !contains(g.logs, p) {
		g.logs = append(g.logs, p)
	}
	g.checkConsumersOf(pid, p.args)
}

func contains(ps []*process, p *process) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// checkConsumersOf fails for every consumer of pid still in a group.
func (g *graceful) checkConsumersOf(pid int, args string) {
	g.t.Helper()
	prefix := fmt.Sprintf("%s-%d-", g.host, pid)
	for stream, group := range groups {
		consumers, err := g.rdb.XInfoConsumers(context.Background(), g.prefix+stream, group).Result()
		if err != nil {
			g.t.Fatalf("XINFO CONSUMERS %s %s: %v", stream, group, err)
		}
		for _, c := range consumers {
			if strings.HasPrefix(c.Name, prefix) {
				g.t.Errorf("stopped %s (pid %d): consumer %s still in group %s of %s with %d entries pending",
					args, pid, c.Name, group, stream, c.Pending)
			}
		}
	}
}

func (g *graceful) checkNoStoppedConsumers() {
	g.t.Helper()
	for _, pid := range g.stopped {
		g.checkConsumersOf(pid, "process")
	}
}

var handledLine = regexp.MustCompile(`msg="message (?:handled|handling failed)".* handler=(\S+) message_uuid=(\S+)`)

// checkOnce checks that each event reached its stream once and that each
// handler ran once for it: not delivered again after a stop, nor skipped as
// a duplicate.
func (g *graceful) checkOnce(orders int) {
	g.t.Helper()
	for stream := range groups {
		// A settled order's outcome event may still be on its way to
		// orders.outcomes: wait for the stream to hold as many events.
		var entries []redis.XMessage
		var seen map[string]int
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			var err error
			entries, err = g.rdb.XRange(context.Background(), g.prefix+stream, "-", "+").Result()
			if err != nil {
				g.t.Fatal(err)
			}
			seen = map[string]int{}
			for _, e := range entries {
				uuid, _ := e.Values[redisstream.UUIDHeaderKey].(string)
				seen[uuid]++
			}
			if len(seen) >= orders || time.Now().After(deadline) {
				break
			}
		}
		twice := 0
		for _, n := range seen {
			if n > 1 {
				twice++
			}
		}
		if len(seen) != orders || twice > 0 {
			g.t.Errorf("%s: %d entries, %d events, %d of them forwarded more than once; want %d events, each once",
				stream, len(entries), len(seen), twice, orders)
		}
	}
	attempts := map[string]map[string]int{}
	duplicates := 0
	for _, p := range g.logs {
		for _, line := range strings.Split(p.logs.String(), "\n") {
			m := handledLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			if attempts[m[1]] == nil {
				attempts[m[1]] = map[string]int{}
			}
			attempts[m[1]][m[2]]++
			if strings.Contains(line, "outcome=duplicate_skipped") {
				duplicates++
			}
		}
	}
	for _, handler := range []string{"inventory.reserve_stock", "orders.settle"} {
		again := 0
		for _, n := range attempts[handler] {
			if n > 1 {
				again++
			}
		}
		if len(attempts[handler]) != orders || again > 0 {
			g.t.Errorf("%s: %d messages handled, %d of them more than once; want %d, each once",
				handler, len(attempts[handler]), again, orders)
		}
	}
	if duplicates > 0 {
		g.t.Errorf("%d redeliveries skipped as duplicates, want none", duplicates)
	}
}

func hostname(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}
