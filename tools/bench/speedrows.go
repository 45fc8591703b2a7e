package main

import (
	"fmt"
	"time"
)

// durableLabel ends the labels of the figures measured with the bench's
// durable Redis, so that no one reads them as the machine's Redis's.
const durableLabel = ", durable Redis (appendfsync always)"

// singleRows adds the figures of orders placed one at a time, where after
// each label.
func singleRows(addRow func(what, figures string), x *singleResult, where string) {
	add := func(what, figures string) { addRow(what+where, figures) }
	add(fmt.Sprintf("single orders: %s placed one at a time, each %s after the last had settled", thousands(int64(x.orders)), singleGap),
		fmt.Sprintf("HTTP %s; %s confirmed, %s rejected, %s still pending",
			x.http, thousands(int64(x.confirmed)), thousands(int64(x.rejected)), thousands(int64(x.pending))))
	add("commit -> settled of a single order (updated_at - created_at)", x.settle.String())
	add("the two hops of a single order: commit -> reservation begins; reservation begins -> settled",
		fmt.Sprintf("p50 %s, p99 %s; p50 %s, p99 %s", ms(x.toReserve.p50), ms(x.toReserve.p99), ms(x.toSettle.p50), ms(x.toSettle.p99)))
}

// drainFigures are the rates of one drain and how long it took to start.
func drainFigures(x *drainResult) string {
	secs := func(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }
	return fmt.Sprintf("%s msgs/s from the first entry on the stream (%s in %s); %s msgs/s from the process start "+
		"(first entry after %s)", drainText(x), thousands(x.forwarded), secs(x.drain), rate(x.overall), secs(x.startup))
}

// httpDrainRows adds the figures of the drain of a backlog that clients
// placed over HTTP, and of its placing, where after each label.
func httpDrainRows(addRow func(what, figures string), x *drainResult, clients int, where string) {
	add := func(what, figures string) { addRow(what+where, figures) }
	placing := ""
	if p := x.placed; p != nil && p.elapsed > 0 {
		placing = fmt.Sprintf(" by %d clients at %s orders/s (%s)", clients, rate(float64(p.ok)/p.elapsed.Seconds()), failed(*p))
	}
	add(fmt.Sprintf("forwarder drain, %s orders placed over HTTP with OUTBOX_SHARDS=%d, 1 forwarder process",
		thousands(int64(x.backlog)), x.shards),
		fmt.Sprintf("%s; backlog built (the API started, the orders placed%s, the outbox vacuumed) in %s", drainFigures(x), placing, x.insert.Round(10*time.Millisecond)))
	add(fmt.Sprintf("CPU during the drain of orders placed over HTTP (%s)", shardCount(x.shards)), x.cpu.String())
}

// shardCount is "1 shard" or "n shards".
func shardCount(n int) string {
	if n == 1 {
		return "1 shard"
	}
	return fmt.Sprintf("%d shards", n)
}
