package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/netfault"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/postgres"
)

// TestRun_survivesNetworkFaults runs the api, a forwarder and two workers
// with their PostgreSQL and Redis links through Toxiproxy, and places
// orders while those links are slow, reset mid-stream and then, for Redis,
// dark for a few seconds. Once the faults are gone every order must settle
// exactly once, nothing may be dead-lettered, and no process may have
// exited (start reports one that did).
func TestRun_survivesNetworkFaults(t *testing.T) {
	t.Parallel()
	addr := testenv.FreeAddr(t)
	base := env(t, addr)

	tp := netfault.NewServer()
	t.Cleanup(func() { tp.Close() })
	pg := proxyFor(t, tp, "postgres", base("DATABASE_URL"))
	rd := proxyFor(t, tp, "redis", base("REDIS_URL"))
	pgURL, err := pg.Rewrite(base("DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	redisURL, err := rd.Rewrite(base("REDIS_URL"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"DATABASE_URL": pgURL,
		"REDIS_URL":    redisURL,
		// Short, so that an entry whose ack was lost is claimed soon; a
		// failed attempt is delivered again after HANDLER_TIMEOUT/10.
		"HANDLER_TIMEOUT":     "1s",
		"HANDLER_MAX_RETRIES": "0",
		"STREAM_CLAIM_IDLE":   "3s",
		"LOG_LEVEL":           "info",
		// The server is shared: four processes, few connections each,
		// and so few consumers that a handler never waits for one.
		"DB_MAX_CONNS":       "10",
		"WORKER_CONCURRENCY": "2",
	}
	getenv := with(base, vars)
	for _, cmd := range []string{"api", "forwarder", "worker", "worker"} {
		start(t, getenv, cmd)
	}
	c := client{t, "http://" + addr}
	c.waitHealthy()

	skus, list := c.stockUp(3, 30)
	const orders = 60
	var wg sync.WaitGroup
	placeRange := func(from, to int) {
		for i := from; i < to; i++ {
			wg.Go(func() { placeRetrying(t, c.base, fmt.Sprintf("net-%d", i), orderBody(i, list)) })
			time.Sleep(100 * time.Millisecond) // a steady flow for the faults to hit
		}
	}

	// Slow links both ways, with jitter, for the whole first part. The
	// database's is slow enough that some handler attempts run out of
	// HANDLER_TIMEOUT in the middle of their transaction.
	slowPG := fault(t)(pg.Latency(60*time.Millisecond, 50*time.Millisecond))
	slowRedis := fault(t)(rd.Latency(15*time.Millisecond, 10*time.Millisecond))
	// Connections reset mid-stream, in short bursts, on both links.
	stopResets := make(chan struct{})
	resetsDone := make(chan int)
	go func() {
		n := 0
		defer func() { resetsDone <- n }()
		for i := 0; ; i++ {
			select {
			case <-stopResets:
				return
			case <-time.After(300 * time.Millisecond):
			}
			p := pg
			if i%2 == 1 {
				p = rd
			}
			f := fault(t)(p.Reset(time.Duration(i%3) * 20 * time.Millisecond))
			time.Sleep(150 * time.Millisecond)
			if err := f.Remove(); err != nil {
				t.Error(err)
			}
			n++
		}
	}()
	placeRange(0, orders/2)
	close(stopResets)
	t.Logf("%d bursts of connection resets", <-resetsDone)

	// Redis dark while orders keep coming: the api places them (it needs
	// only PostgreSQL), the forwarder and the workers wait for Redis.
	// (One toxic per direction of a proxy at a time: see netfault.)
	if err := slowRedis.Remove(); err != nil {
		t.Error(err)
	}
	dark := fault(t)(rd.Blackhole(netfault.Both...))
	placeRange(orders/2, orders)
	time.Sleep(3 * time.Second)
	for _, f := range []*netfault.Fault{dark, slowPG} {
		if err := f.Remove(); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()

	db, err := postgres.Open(context.Background(), base("DATABASE_URL"), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	waitSettled(t, db, orders)
	checkLedger(t, db, skus, orders)
	rdb := redisOf(t, base("REDIS_URL"))
	defer rdb.Close()
	if n, err := rdb.XLen(context.Background(), base("STREAM_PREFIX")+events.StreamDeadLetter).Result(); err != nil || n != 0 {
		t.Errorf("dead-letter stream holds %d entries (%v), want none: a network fault is no fault of the message's", n, err)
	}
}

// proxyFor starts a proxy in front of the server of rawURL.
func proxyFor(t *testing.T, tp *netfault.Server, name, rawURL string) *netfault.Proxy {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tp.Proxy(name, u.Host)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fault fails t when a fault could not be put in place.
func fault(t *testing.T) func(*netfault.Fault, error) *netfault.Fault {
	return func(f *netfault.Fault, err error) *netfault.Fault {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
}

// placeRetrying places an order with an Idempotency-Key, as a careful
// client does: a failed attempt (an error, a timeout, a 5xx) is sent again
// with the same key and body until the api accepts (201) or replays (200)
// it. Any other answer fails the test.
func placeRetrying(t *testing.T, base, key, body string) {
	hc := &http.Client{Timeout: 15 * time.Second}
	admin := mint(t, "network-admin", true)
	deadline := time.Now().Add(time.Minute)
	for {
		req, _ := http.NewRequest("POST", base+"/orders", bytes.NewReader([]byte(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := hc.Do(req)
		var last string
		if err == nil {
			var o order
			_ = json.NewDecoder(resp.Body).Decode(&o)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK:
				return
			case resp.StatusCode < 500:
				t.Errorf("POST /orders (key %s) = %d", key, resp.StatusCode)
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Errorf("POST /orders (key %s) not accepted within a minute: %s", key, last)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
