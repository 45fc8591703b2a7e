package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
	"github.com/orderstream/orderstream/postgres"
	"github.com/orderstream/orderstream/redisstreams"
)

// TestRun_onRedisSentinel runs the parts on a master that a Sentinel
// watches, with a replica that every entry waits for
// (REDIS_WAIT_REPLICAS=1), and fails the master over while orders are
// placed: every order settles once, as on one server, and nothing is
// dead-lettered.
func TestRun_onRedisSentinel(t *testing.T) {
	t.Parallel()
	set := testenv.StartSentinelSet(t, 1, 1)
	addr := testenv.FreeAddr(t)
	getenv := with(env(t, addr), map[string]string{
		"REDIS_URL":           set.URL,
		"REDIS_WAIT_REPLICAS": "1",
		// Short, so that what a worker read from the old master and
		// could not ack there is claimed soon on the new one.
		"HANDLER_TIMEOUT":     "500ms",
		"HANDLER_MAX_RETRIES": "0",
		"STREAM_CLAIM_IDLE":   "1500ms",
		"LOG_LEVEL":           "info",
	})
	for _, cmd := range []string{"api", "forwarder", "worker", "worker"} {
		start(t, getenv, cmd)
	}
	c := client{t, "http://" + addr}
	c.waitHealthy()
	db, err := postgres.Open(context.Background(), getenv("DATABASE_URL"), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	skus, list := c.stockUp(3, 30)
	const orders = 60
	placed := make(chan struct{})
	go func() {
		defer close(placed)
		var wg sync.WaitGroup
		for i := range orders {
			wg.Go(func() { c.place(orderBody(i, list)) })
			time.Sleep(50 * time.Millisecond) // a steady flow for the failover to hit
		}
		wg.Wait()
	}()
	// Once events flow through the first master.
	for settled := 0; settled < orders/4; time.Sleep(20 * time.Millisecond) {
		if err := db.QueryRow(`SELECT count(*) FROM orders WHERE status <> 'pending'`).Scan(&settled); err != nil {
			t.Fatal(err)
		}
	}
	old, err := set.MasterAddr(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failed over from %s to %s", old, set.Failover(t))
	<-placed

	waitSettled(t, db, orders)
	checkLedger(t, db, skus, orders)
	noDeadLetters(t, getenv)
}

// TestRun_onRedisCluster runs the parts on a Redis Cluster of three
// masters, under a stream prefix that puts each stream on another master:
// the flow, the dead letters and their replay, and the operator commands
// work as on one server.
func TestRun_onRedisCluster(t *testing.T) {
	t.Parallel()
	cluster := testenv.StartRedisCluster(t)
	addr := testenv.FreeAddr(t)
	getenv := with(env(t, addr), map[string]string{
		"REDIS_URL":     cluster.URL,
		"STREAM_PREFIX": spreadPrefix(t, cluster.URL),
	})
	for _, cmd := range []string{"api", "forwarder", "worker"} {
		start(t, getenv, cmd)
	}
	c := client{t, "http://" + addr}
	c.waitHealthy()
	flow(t, c)
	noDeadLetters(t, getenv)
	// A dead letter moves from the orders' stream to the dead letters'
	// and back, each on another master.
	operatorCommands(t, getenv)
}

// spreadPrefix returns a stream prefix under which the streams of the
// events and of the dead letters are each on another master of the
// cluster at url, so that nothing works only because they share a node.
func spreadPrefix(t *testing.T, url string) string {
	t.Helper()
	opts, err := redisstreams.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClusterClient(opts.Cluster())
	defer rdb.Close()
	streams := []string{events.StreamOrdersPlaced, events.StreamReservations, events.StreamDeadLetter}
	for {
		prefix := testenv.Unique("test") + ":"
		masters := map[string]bool{}
		for _, s := range streams {
			m, err := rdb.MasterForKey(context.Background(), prefix+s)
			if err != nil {
				t.Fatal(err)
			}
			masters[m.Options().Addr] = true
		}
		if len(masters) == len(streams) {
			return prefix
		}
	}
}

// noDeadLetters checks that the dead-letter stream is empty.
func noDeadLetters(t *testing.T, getenv func(string) string) {
	t.Helper()
	rdb := redisOf(t, getenv("REDIS_URL"))
	defer rdb.Close()
	key := getenv("STREAM_PREFIX") + events.StreamDeadLetter
	if n, err := rdb.XLen(context.Background(), key).Result(); err != nil || n != 0 {
		t.Errorf("dead-letter stream holds %d entries (%v), want none", n, err)
	}
}
