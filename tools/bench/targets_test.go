package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

// The target table lists issue 26's rows in its order, each judged by the
// figure it names.
func TestTargets(t *testing.T) {
	opts, err := parseOptions([]string{"-quick"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if opts.singleOrders != 50 || opts.httpBacklog != 2_000 || !slices.Equal(opts.httpShards, []int{1, 4, 16}) || !opts.httpDurable {
		t.Fatalf("quick options: %d single orders, %d HTTP backlog, shards %v, durable drain %t",
			opts.singleOrders, opts.httpBacklog, opts.httpShards, opts.httpDurable)
	}
	fast := func(p50 time.Duration) settled { return settled{settle: summary{n: 10, p50: p50, p99: 2 * p50}} }
	rep := &report{
		opts:    opts,
		single:  &singleResult{orders: 10, settled: fast(4 * time.Millisecond)},
		latency: []*openLoopResult{{fraction: 0.25, perSecond: 100, settled: fast(5 * time.Millisecond)}},
		durable: &durableResult{quarter: &openLoopResult{fraction: 0.25, perSecond: 100, settled: fast(7 * time.Millisecond)}},
		httpDrains: []*drainResult{
			{shards: 1, perSecond: 9_000, complete: true},
			{shards: 4, perSecond: 16_000, complete: true},
			{shards: 16, perSecond: 20_000}, // faster, but did not finish
		},
		httpDurable: &drainResult{shards: 4, perSecond: 12_000, complete: true},
	}
	want := []struct{ what, verdict string }{
		{"single order, commit -> settled (idle)", met},
		{"commit -> settled at 25%", met},
		{"commit -> settled at 25%, durable Redis", notMet},
		{"capacity ÷ raw pipeline", notMeasured},
		{"orderstream CPU per order at 50%", notMeasured},
		{"PostgreSQL transactions per order at 50%", notMeasured},
		{"placement ÷ raw placement limit", notMeasured},
		{"worker ÷ its raw limit", notMeasured},
		{"idle transactions/s", notMeasured},
		{"database cost of 10 live pages ÷ 1 page", notMeasured},
		{"forwarder drain of an HTTP-built backlog (4 shards, 1 process)", met},
		{"forwarder drain of an HTTP-built backlog (4 shards, 1 process), durable Redis", notMet},
		{"drain rate at 20k vs 2k", notMeasured},
		{"peak RSS during placement", notMeasured},
	}
	rows := rep.targets()
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %v", len(rows), len(want), rows)
	}
	for i, w := range want {
		if rows[i].what != w.what || rows[i].verdict != w.verdict {
			t.Errorf("row %d: %q %s, want %q %s", i, rows[i].what, rows[i].verdict, w.what, w.verdict)
		}
	}
	if got := rows[10].measured; !strings.Contains(got, "recommended: 4 shards") {
		t.Errorf("HTTP-built drain: %q does not recommend 4 shards", got)
	}
	if got, want := rows[11].measured, "12,000 msgs/s (0.75 of the machine's Redis's 16,000 msgs/s)"; got != want {
		t.Errorf("HTTP-built drain, durable Redis: %q, want %q", got, want)
	}

	// The raw numbers hold the durable drain's rows after the machine
	// Redis's, labelled as the durable Redis's.
	var labels []string
	for _, r := range rep.rawRows() {
		if strings.Contains(r[0], "orders placed over HTTP") {
			labels = append(labels, r[0])
		}
	}
	wantLabels := []string{
		"forwarder drain, 0 orders placed over HTTP with OUTBOX_SHARDS=1, 1 forwarder process",
		"CPU during the drain of orders placed over HTTP (1 shard)",
		"forwarder drain, 0 orders placed over HTTP with OUTBOX_SHARDS=4, 1 forwarder process",
		"CPU during the drain of orders placed over HTTP (4 shards)",
		"forwarder drain, 0 orders placed over HTTP with OUTBOX_SHARDS=16, 1 forwarder process",
		"CPU during the drain of orders placed over HTTP (16 shards)",
		"forwarder drain, 0 orders placed over HTTP with OUTBOX_SHARDS=4, 1 forwarder process" + durableLabel,
		"CPU during the drain of orders placed over HTTP (4 shards)" + durableLabel,
	}
	if !slices.Equal(labels, wantLabels) {
		t.Errorf("HTTP-built drain rows:\n%s\nwant:\n%s", strings.Join(labels, "\n"), strings.Join(wantLabels, "\n"))
	}
}
