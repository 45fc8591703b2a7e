package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// verdict of a figure against its target.
const (
	met         = "met"
	notMet      = "not met"
	notMeasured = "not measured"
)

// row is one line of the table: a figure next to its target.
type row struct {
	what, target, measured, verdict string
}

func judged(ok bool) string {
	if ok {
		return met
	}
	return notMet
}

// targets compares each figure with its target. A figure whose measurement
// did not run, or failed, is "not measured".
func (r *report) targets() []row {
	var rows []row
	add := func(what, target string, measured func() (string, bool), available bool) {
		if !available {
			rows = append(rows, row{what, target, "–", notMeasured})
			return
		}
		text, ok := measured()
		rows = append(rows, row{what, target, text, judged(ok)})
	}

	single := r.single
	add("single order, commit -> settled (idle)", "p50 <= 5 ms", func() (string, bool) {
		return singleText(single), single.settle.n > 0 && single.pending == 0 && single.settle.p50 <= 5*time.Millisecond
	}, single != nil)

	quarter, half := r.latencyAt(0.25), r.latencyAt(costFraction)
	add("commit -> settled at 25%", "p50 <= 6 ms, p99 <= 15 ms", func() (string, bool) {
		return quarterText(quarter)
	}, quarter != nil)
	var durableQuarter *openLoopResult
	if r.durable != nil {
		durableQuarter = r.durable.quarter
	}
	add("commit -> settled at 25%, durable Redis", "p50 <= 6 ms, p99 <= 15 ms", func() (string, bool) {
		return quarterText(durableQuarter)
	}, durableQuarter != nil)

	c := r.capacity
	add("capacity ÷ raw pipeline", ">= 0.8", func() (string, bool) {
		if c.best == nil {
			return fmt.Sprintf("below 0.1 (not even %d of %s orders/s kept up with)",
				c.steps[len(c.steps)-1].perSecond, rate(c.pipeline)), false
		}
		ratio := c.best.fraction
		return fmt.Sprintf("%.1f (%s of %s orders/s)", ratio, rate(float64(c.best.perSecond)), rate(c.pipeline)), ratio >= 0.8
	}, c != nil && len(c.steps) > 0)

	add("orderstream CPU per order at 50%", "<= 1.5 ms", func() (string, bool) {
		return cpuMS(half.cost.appCPU), half.cost.appCPU <= 1500*time.Microsecond
	}, half != nil && half.cost != nil)

	add("PostgreSQL transactions per order at 50%", "<= 3.3", func() (string, bool) {
		return fmt.Sprintf("%.2f", half.cost.transactions), half.cost.transactions <= 3.3
	}, half != nil && half.cost != nil)

	add("placement ÷ raw placement limit", ">= 0.6", func() (string, bool) {
		ratio := r.placement.perSecond / r.raw.tps
		return fmt.Sprintf("%.2f (%s orders/s ÷ %s tps)", ratio, rate(r.placement.perSecond), rate(r.raw.tps)), ratio >= 0.6
	}, r.placement != nil && r.raw != nil && r.raw.tps > 0)

	add("worker ÷ its raw limit", ">= 0.9", func() (string, bool) {
		w := r.worker
		ratio := w.perSecond / w.raw.tps
		text := fmt.Sprintf("%.2f (%s events/s ÷ %s tps)", ratio, rate(w.perSecond), rate(w.raw.tps))
		if !w.complete {
			text += fmt.Sprintf(" (partial: %s of %s acknowledged)", thousands(w.acked), thousands(int64(w.events)))
		}
		return text, w.complete && ratio >= 0.9
	}, r.worker != nil && r.worker.raw != nil && r.worker.raw.tps > 0)

	add("idle transactions/s", "<= 2", func() (string, bool) {
		return fmt.Sprintf("%.2f", r.idle.perSecond), r.idle.perSecond <= 2
	}, r.idle != nil)

	add("database cost of 10 live pages ÷ 1 page", "<= 1.1", func() (string, bool) {
		ratio, ok := r.pages.tenOverOne()
		if !ok {
			return "one page added nothing to compare with", false
		}
		return fmt.Sprintf("%.2f (%s)", ratio, r.pages.row()), ratio <= 1.1
	}, r.pages != nil)

	// The shard count that drained fastest: the one to recommend.
	best, shards := r.bestHTTPDrain(), "N shards"
	if best != nil {
		shards = shardCount(best.shards)
	}
	add(fmt.Sprintf("forwarder drain of an HTTP-built backlog (%s, 1 process)", shards), ">= 15,000 msgs/s", func() (string, bool) {
		return fmt.Sprintf("%s msgs/s (recommended: %s; by shards %s)", drainText(best), shards, r.httpDrainRates()),
			best.complete && best.perSecond >= 15_000
	}, best != nil)
	// The same at those shards, against the durable Redis.
	durable := r.httpDurable
	add(fmt.Sprintf("forwarder drain of an HTTP-built backlog (%s, 1 process), durable Redis", shards), ">= 15,000 msgs/s", func() (string, bool) {
		text := drainText(durable) + " msgs/s"
		if best != nil && best.perSecond > 0 {
			text += fmt.Sprintf(" (%.2f of the machine's Redis's %s msgs/s)", durable.perSecond/best.perSecond, drainText(best))
		}
		return text, durable.complete && durable.perSecond >= 15_000
	}, durable != nil)

	// At the most shards measured, by one process.
	most := slices.Max(r.opts.drainShards)
	small, large := r.drain(r.opts.backlogSmall, most, 1), r.drain(r.opts.backlogLarge, most, 1)
	add(fmt.Sprintf("drain rate at %s vs %s", short(r.opts.backlogLarge), short(r.opts.backlogSmall)), ">= 0.9", func() (string, bool) {
		ratio := large.perSecond / small.perSecond
		return fmt.Sprintf("%.2f (%s ÷ %s msgs/s)", ratio, drainText(large), drainText(small)), ratio >= 0.9
	}, small != nil && large != nil && small.perSecond > 0)

	add("peak RSS during placement", "<= 150 MB", func() (string, bool) {
		return megabytes(r.placement.peakRSS), r.placement.peakRSS <= 150_000_000
	}, r.placement != nil && r.placement.peakRSS > 0)
	return rows
}

// quarterText is the figure of the target at 25%, and whether it is met.
func quarterText(q *openLoopResult) (string, bool) {
	s := q.settle
	text := fmt.Sprintf("p50 %s, p99 %s at %d orders/s", ms(s.p50), ms(s.p99), q.perSecond)
	if q.pending > 0 {
		text += fmt.Sprintf(" (%s orders never settled)", thousands(int64(q.pending)))
	}
	return text, s.n > 0 && q.pending == 0 && s.p50 <= 6*time.Millisecond && s.p99 <= 15*time.Millisecond
}

// singleText is the figure of single orders.
func singleText(x *singleResult) string {
	text := fmt.Sprintf("p50 %s, p99 %s over %s orders", ms(x.settle.p50), ms(x.settle.p99), thousands(int64(x.settle.n)))
	if x.pending > 0 {
		text += " (one never settled)"
	}
	return text
}

// httpDrainRates lists the rate of each HTTP-built drain, by shard count.
func (r *report) httpDrainRates() string {
	var parts []string
	for _, d := range r.httpDrains {
		parts = append(parts, fmt.Sprintf("%d: %s", d.shards, drainText(d)))
	}
	return strings.Join(parts, ", ")
}

// latencyAt is the open loop at fraction of the raw pipeline, if it ran.
func (r *report) latencyAt(fraction float64) *openLoopResult {
	for _, l := range r.latency {
		if l.fraction == fraction {
			return l
		}
	}
	return nil
}

// drain is the drain of backlog rows in shards shards by procs processes,
// if it ran.
func (r *report) drain(backlog, shards, procs int) *drainResult {
	for _, d := range r.drains {
		if d.backlog == backlog && d.shards == shards && d.procs == procs {
			return d
		}
	}
	return nil
}

func drainText(d *drainResult) string {
	text := rate(d.perSecond)
	if !d.complete {
		text += fmt.Sprintf(" (partial: %s of %s)", thousands(d.forwarded), thousands(int64(d.backlog)))
	}
	return text
}

// short formats a count the way the targets name them: 20k, 1M.
func short(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1_000 && n%1_000 == 0:
		return fmt.Sprintf("%dk", n/1_000)
	default:
		return thousands(int64(n))
	}
}
