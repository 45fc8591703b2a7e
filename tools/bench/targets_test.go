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
	if opts.singleOrders != 50 || opts.httpBacklog != 2_000 || !slices.Equal(opts.httpShards, []int{1, 4, 16}) {
		t.Fatalf("quick options: %d single orders, %d HTTP backlog, shards %v", opts.singleOrders, opts.httpBacklog, opts.httpShards)
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
}
