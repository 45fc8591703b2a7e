package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// orderCost is what one order cost each server and the application over an
// open-loop load: its placement, forwarding, reservation and settlement,
// with every poll and notification around them.
type orderCost struct {
	orders       int
	transactions float64       // PostgreSQL transactions of the bench database, per order
	postgresCPU  time.Duration // every PostgreSQL process, per order
	appCPU       time.Duration // the orderstream process, per order
	redis        float64       // Redis commands, per order
	redisTop     map[string]float64
	// The application's own counts, per order: forwarder polls by
	// outcome, and NOTIFY statements.
	polls         map[string]float64
	notifications float64
}

// costSample is the counters a cost is the difference of.
type costSample struct {
	cpu     cpuSample
	redis   map[string]int64   // calls by command, from INFO commandstats
	metrics map[string]float64 // the application's counters, by series
}

func (s *stage) sampleCost(ctx context.Context, app *proc) (costSample, error) {
	calls, err := s.redisCalls(ctx)
	if err != nil {
		return costSample{}, err
	}
	m, err := scrapeCounters(ctx, "http://"+app.ops)
	return costSample{cpu: sampleCPU(app), redis: calls, metrics: m}, err
}

// countedSeries are the application's counters a cost reports.
var countedSeries = []string{
	`orderstream_outbox_polls_total{outcome="rows"}`,
	`orderstream_outbox_polls_total{outcome="empty"}`,
	`orderstream_outbox_polls_total{outcome="error"}`,
	`orderstream_outbox_notifications_total`,
}

// shardLabel is the shard label of a series, last of its labels.
var shardLabel = regexp.MustCompile(`,shard="[0-9]+"`)

// scrapeCounters reads countedSeries from /metrics of the process's
// operations listener at ops, summed over the outbox shards; a series it
// does not show counts 0.
func scrapeCounters(ctx context.Context, ops string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ops+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read metrics at %s: status %d", ops, resp.StatusCode)
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		line = shardLabel.ReplaceAllString(line, "")
		for _, series := range countedSeries {
			if v, ok := strings.CutPrefix(line, series+" "); ok {
				n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				m[series] += n
			}
		}
	}
	return m, nil
}

// redisCalls reads how often Redis has run each command since its start
// (or its last CONFIG RESETSTAT). The count is the server's: whatever else
// uses this Redis meanwhile counts too.
func (s *stage) redisCalls(ctx context.Context) (map[string]int64, error) {
	text, err := s.rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("read Redis command statistics: %w", err)
	}
	calls := map[string]int64{}
	for _, line := range strings.Split(text, "\n") {
		// cmdstat_xadd:calls=12,usec=34,usec_per_call=2.83,...
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(stats, ",") {
			if n, ok := strings.CutPrefix(kv, "calls="); ok {
				calls[strings.TrimPrefix(name, "cmdstat_")], _ = strconv.ParseInt(n, 10, 64)
			}
		}
	}
	return calls, nil
}

// costOf divides what was spent from before to after among orders. The
// transactions are counted apart (xacts): PostgreSQL reports them late.
// ownQueries are the bench's own transactions in the window, taken off.
func costOf(before, after costSample, orders int, xacts, ownQueries int64) *orderCost {
	if orders == 0 {
		return nil
	}
	per := func(d time.Duration) time.Duration { return d / time.Duration(orders) }
	c := &orderCost{
		orders:       orders,
		transactions: float64(xacts-ownQueries) / float64(orders),
		postgresCPU:  per(after.cpu.postgres - before.cpu.postgres),
		appCPU:       per(after.cpu.app - before.cpu.app),
		redisTop:     map[string]float64{},
	}
	var total int64
	for name, n := range after.redis {
		d := n - before.redis[name]
		if name == "info" {
			d-- // the sample's own
		}
		if d > 0 {
			total += d
			c.redisTop[name] = float64(d) / float64(orders)
		}
	}
	c.redis = float64(total) / float64(orders)
	delta := func(series string) float64 { return (after.metrics[series] - before.metrics[series]) / float64(orders) }
	c.polls = map[string]float64{}
	for _, outcome := range []string{"rows", "empty", "error"} {
		c.polls[outcome] = delta(`orderstream_outbox_polls_total{outcome="` + outcome + `"}`)
	}
	c.notifications = delta(`orderstream_outbox_notifications_total`)
	return c
}

func (c *orderCost) String() string {
	names := slices.Collect(maps.Keys(c.redisTop))
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(c.redisTop[b], c.redisTop[a]), strings.Compare(a, b))
	})
	var top []string
	for i, n := range names {
		if i == 5 {
			break
		}
		top = append(top, fmt.Sprintf("%s %.2f", n, c.redisTop[n]))
	}
	return fmt.Sprintf("%.2f PostgreSQL transactions (of which forwarder polls %.2f finding rows, %.2f finding none, %.2f failed; "+
		"notifications %.2f), PostgreSQL CPU %s, orderstream CPU %s, %.1f Redis commands (%s); over %s orders",
		c.transactions, c.polls["rows"], c.polls["empty"], c.polls["error"], c.notifications,
		cpuMS(c.postgresCPU), cpuMS(c.appCPU), c.redis, strings.Join(top, ", "), thousands(int64(c.orders)))
}

// cpuMS formats a CPU time per order.
func cpuMS(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}
