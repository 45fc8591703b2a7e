package main

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/orderstream/orderstream/events"
	"github.com/orderstream/orderstream/internal/testenv"
)

// metric reads one sample, such as `orderstream_outbox_pending_messages` or
// `orderstream_http_requests_total{code="201",method="POST",route="/orders"}`,
// from a /metrics page; -1 when it is absent.
func metric(t *testing.T, base, sample string) float64 {
	t.Helper()
	return metricSum(t, base, func(name string) bool { return name == sample })
}

// metricSum adds up the samples whose name and labels match; -1 when none.
func metricSum(t *testing.T, base string, match func(string) bool) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sum, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if ok && match(name) {
			v, _ := strconv.ParseFloat(value, 64)
			sum, found = sum+v, true
		}
	}
	if !found {
		return -1
	}
	return sum
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func TestRun_metrics(t *testing.T) {
	t.Parallel()
	addr, opsAddr, workerAddr, forwarderAddr := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	base := env(t, addr)
	getenv := with(base, map[string]string{"METRICS_INTERVAL": "50ms", "OPS_ADDR": opsAddr})
	// The metrics are on each process's operations listener.
	api, worker := "http://"+opsAddr, "http://"+workerAddr
	start(t, getenv, "api")
	c := client{t, "http://" + addr}
	c.waitHealthy()

	sku := testenv.Unique("SKU")
	c.do("PUT", "/inventory/"+sku, `{"available":5}`, nil)
	o := c.place(`{"customer_id":"c","items":[{"sku":"` + sku + `","quantity":1}]}`)

	// No forwarder yet: the event waits in the outbox, and ages.
	waitFor(t, "the outbox backlog to show", func() bool {
		return metric(t, api, "orderstream_outbox_pending_messages") == 1 &&
			metric(t, api, "orderstream_outbox_oldest_pending_age_seconds") > 0
	})
	if n := metric(t, api, `orderstream_http_requests_total{code="201",method="POST",route="/orders"}`); n != 1 {
		t.Errorf("POST /orders 201 counted %v times, want 1", n)
	}
	if n := metric(t, api, "orderstream_orders_placed_total"); n != 1 {
		t.Errorf("orders placed = %v, want 1", n)
	}

	start(t, with(base, map[string]string{"OPS_ADDR": forwarderAddr}), "forwarder")
	start(t, with(base, map[string]string{"OPS_ADDR": workerAddr}), "worker")
	if got := c.settled(o.ID); got.Status != "confirmed" {
		t.Fatalf("order = %+v", got)
	}
	waitFor(t, "the outbox backlog to drain", func() bool {
		return metric(t, api, "orderstream_outbox_pending_messages") == 0 &&
			metric(t, api, `orderstream_stream_consumer_lag{group="inventory",stream="orders.placed"}`) == 0
	})
	waitFor(t, "the settle time to be observed", func() bool {
		return metric(t, worker, "orderstream_order_settle_seconds_count") == 1
	})
	published := func(name string) bool {
		return strings.HasPrefix(name, `orderstream_watermill_publish_time_seconds_count{handler_name="outbox_forwarder"`)
	}
	waitFor(t, "the forwarder's 2 publishes to be timed", func() bool {
		return metricSum(t, "http://"+forwarderAddr, published) >= 2
	})
	dup := `orderstream_inbox_duplicates_total{handler="inventory.reserve_stock"}`
	if n := metric(t, worker, dup); n != 0 {
		t.Errorf("duplicates = %v before any, want 0", n)
	}

	// The same OrderPlaced entry once more: the inbox skips it, and counts.
	rdb := redisOf(t, getenv("REDIS_URL"))
	defer rdb.Close()
	key := getenv("STREAM_PREFIX") + events.StreamOrdersPlaced
	entries, err := rdb.XRange(context.Background(), key, "-", "+").Result()
	if err != nil || len(entries) != 1 {
		t.Fatalf("%s holds %d entries (%v), want 1", key, len(entries), err)
	}
	if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: key, Values: entries[0].Values}).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the duplicate to be counted", func() bool { return metric(t, worker, dup) == 1 })
	var st struct{ Available, Reserved int }
	c.do("GET", "/inventory/"+sku, "", &st)
	if st.Available != 4 || st.Reserved != 1 {
		t.Errorf("stock = %+v after the duplicate, want 4 available and 1 reserved", st)
	}
	if n := metric(t, api, "orderstream_deadletter_messages"); n != 0 {
		t.Errorf("dead letters = %v, want 0", n)
	}
}
