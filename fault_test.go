package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/postgres"
)

const asProcessEnv = "ORDERSTREAM_TEST_AS_PROCESS"

// process is an orderstream process run from the test binary, so that it
// can be killed without warning and started again.
type process struct {
	t      *testing.T
	args   string
	env    []string
	logs   *testenv.Buffer
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func newProcess(t *testing.T, getenv func(string) string, args string, vars ...string) *process {
	env := os.Environ()
	for _, k := range vars {
		env = append(env, k+"="+getenv(k))
	}
	p := &process{t: t, args: args, env: append(env, asProcessEnv+"="+args), logs: &testenv.Buffer{}}
	p.start()
	t.Cleanup(func() {
		p.kill(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("logs of %s:\n%s", args, p.logs.String())
		}
	})
	return p
}

func (p *process) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.args, err)
	}
	fmt.Fprintf(p.logs, "--- started %s as pid %d\n", p.args, cmd.Process.Pid)
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.cmd, p.exited = cmd, exited
}

// kill sends sig and waits for the process to end.
func (p *process) kill(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.cmd.Process.Signal(sig)
	<-p.exited
	fmt.Fprintf(p.logs, "--- %s: %v\n", p.args, sig)
}

// TestRun_survivesKilledProcesses places orders while forwarder and worker
// processes are killed with SIGKILL at random moments and started again: in
// the middle of a batch, between a handler's commit and its ack, between a
// publish to Redis and the outbox ack. Every order must still settle once.
func TestRun_survivesKilledProcesses(t *testing.T) {
	t.Parallel()
	addr := testenv.FreeAddr(t)
	base := env(t, addr)
	vars := map[string]string{
		// Short, so that entries a killed worker held are claimed soon.
		"HANDLER_TIMEOUT":     "500ms",
		"HANDLER_MAX_RETRIES": "0",
		"STREAM_CLAIM_IDLE":   "1500ms",
		// Attempts that time out under load are parked: this test is about
		// kills, so a parked message is tried again soon.
		"PARK_BACKOFF_INITIAL": "200ms",
		"PARK_BACKOFF_MAX":     "1s",
		"LOG_LEVEL":            "info",
	}
	getenv := with(base, vars)
	start(t, getenv, "api")
	c := client{t, "http://" + addr}
	c.waitHealthy()

	names := []string{"DATABASE_URL", "REDIS_URL", "STREAM_PREFIX", "HTTP_ADDR", "OPS_ADDR", "OUTBOX_POLL_INTERVAL",
		"HANDLER_TIMEOUT", "HANDLER_MAX_RETRIES", "STREAM_CLAIM_IDLE", "PARK_BACKOFF_INITIAL", "PARK_BACKOFF_MAX", "LOG_LEVEL"}
	procs := []*process{
		newProcess(t, getenv, "forwarder", names...),
		newProcess(t, getenv, "worker", names...),
		newProcess(t, getenv, "worker", names...),
	}

	skus, list := c.stockUp(4, 40)

	// Kill until the orders are placed and at least minKills happened.
	const minKills = 10
	ctx, stopKilling := context.WithCancel(context.Background())
	killed := make(chan int)
	go func() {
		kills := 0
		defer func() { killed <- kills }()
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-ctx.Done():
				if kills >= minKills {
					return
				}
			default:
			}
			time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
			p := procs[rng.IntN(len(procs))]
			p.kill(syscall.SIGKILL)
			kills++
			p.start()
		}
	}()

	const orders = 120
	var wg sync.WaitGroup
	for i := range orders {
		wg.Go(func() { c.place(orderBody(i, list)) })
		if i%8 == 7 { // a steady flow, so that kills land in the middle of it
			wg.Wait()
			time.Sleep(100 * time.Millisecond)
		}
	}
	wg.Wait()
	stopKilling()
	t.Logf("%d processes killed", <-killed)

	db, err := postgres.Open(context.Background(), getenv("DATABASE_URL"), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	waitSettled(t, db, orders)
	checkLedger(t, db, skus, orders)

	// Kills and timeouts are no fault of the messages': none is dead-lettered.
	noDeadLetters(t, getenv)
}

func waitSettled(t *testing.T, db *sql.DB, orders int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var total, pending int
		err := db.QueryRow(`SELECT count(*), count(*) FILTER (WHERE status = 'pending') FROM orders`).Scan(&total, &pending)
		if err == nil && total == orders && pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d orders, %d still pending (%v)%s", total, pending, err, stuckAt(t, db))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stuckAt says, for some pending orders, which events of theirs the outbox
// holds: whether the inventory handler had run.
func stuckAt(t *testing.T, db *sql.DB) string {
	rows, err := db.Query(`SELECT id FROM orders WHERE status = 'pending' ORDER BY id LIMIT 5`)
	if err != nil {
		return ": " + err.Error()
	}
	defer rows.Close()
	var out strings.Builder
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return ": " + err.Error()
		}
		fmt.Fprintf(&out, "\n  order %s, events in the outbox:", id)
		for _, e := range testenv.OutboxEvents(t, db, "order_id", id) {
			fmt.Fprintf(&out, " %s(%s)", e.Metadata[events.MetadataEventType], e.UUID)
		}
	}
	return out.String()
}

// stockUp sets n new SKUs to units each, and returns their stock and
// names.
func (c client) stockUp(n, units int) (map[string]int, []string) {
	c.t.Helper()
	skus := map[string]int{}
	var list []string
	for i := range n {
		sku := testenv.Unique(fmt.Sprintf("SKU%d", i))
		if code := c.do("PUT", "/inventory/"+sku, fmt.Sprintf(`{"available":%d}`, units), nil); code != 200 {
			c.t.Fatalf("PUT /inventory = %d", code)
		}
		skus[sku] = units
		list = append(list, sku)
	}
	return skus, list
}

// orderBody is the i-th order of a load over the SKUs of list: one to
// three of one SKU and one of the next, so that the orders compete for
// stock and some are rejected.
func orderBody(i int, list []string) string {
	a, b := list[i%len(list)], list[(i+1)%len(list)]
	return fmt.Sprintf(`{"customer_id":"c-%d","items":[{"sku":%q,"quantity":%d},{"sku":%q,"quantity":1}]}`, i, a, 1+i%3, b)
}

// checkLedger checks that stock, reservations and order outcomes agree, and
// that each handler took effect once per order.
func checkLedger(t *testing.T, db *sql.DB, stockSet map[string]int, orders int) {
	t.Helper()
	for sku, set := range stockSet {
		var available, reserved, confirmedQty, reservationQty int
		err := db.QueryRow(`
			SELECT s.available, s.reserved,
			  (SELECT coalesce(sum(i.quantity), 0) FROM order_items i JOIN orders o ON o.id = i.order_id
			   WHERE i.sku = s.sku AND o.status = 'confirmed'),
			  (SELECT coalesce(sum(quantity), 0) FROM reservations r WHERE r.sku = s.sku)
			FROM stock s WHERE s.sku = $1`, sku).Scan(&available, &reserved, &confirmedQty, &reservationQty)
		if err != nil {
			t.Fatal(err)
		}
		if available+reserved != set || reserved != confirmedQty || reservationQty != confirmedQty || available < 0 {
			t.Errorf("%s: available %d reserved %d, confirmed %d, reservations %d, set %d",
				sku, available, reserved, confirmedQty, reservationQty, set)
		}
	}
	for _, handler := range []string{"inventory.reserve_stock", "orders.settle"} {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM inbox WHERE handler = $1`, handler).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != orders {
			t.Errorf("%s took effect for %d messages, want one per order: %d", handler, n, orders)
		}
	}
	var outcomes int
	if err := db.QueryRow(`SELECT count(*) FROM (SELECT order_id FROM reservations GROUP BY order_id) r`).Scan(&outcomes); err != nil {
		t.Fatal(err)
	}
	var confirmed int
	db.QueryRow(`SELECT count(*) FROM orders WHERE status = 'confirmed'`).Scan(&confirmed)
	if outcomes != confirmed || confirmed == 0 || confirmed == orders {
		t.Errorf("%d orders hold reservations, %d confirmed of %d: want equal, and some rejected", outcomes, confirmed, orders)
	}
}
