package main

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// report is everything a run measured; a nil result was not measured.
type report struct {
	opts              options
	machine           machine
	started, finished time.Time

	raw        *rawResult
	pipeline   *pipelineResult
	placement  *placementResult
	auth       *authResult
	before     *beforeFigures    // placement before tokens, from an earlier report
	latency    []*openLoopResult // at latencyFractions of the raw pipeline
	single     *singleResult
	durable    *durableResult
	httpDrains []*drainResult // backlogs placed over HTTP, by -http-drain-shards
	// httpDurable is the drain of the fastest of httpDrains's shard counts
	// again, against the durable Redis.
	httpDurable *drainResult
	capacity    *capacityResult
	drains      []*drainResult
	scale       []*workerResult // 1, 2, 3 worker processes
	worker      *workerResult
	idle        *idleResult
	pages       *pagesResult
	failures    []string
}

// markdown renders the report: the figures against their targets (what a
// reader wants first), the machine and versions, then the raw numbers
// behind them.
func (r *report) markdown() string {
	var b strings.Builder
	m := r.machine
	kind := "full run"
	if r.opts.quick {
		kind = "QUICK smoke run: small loads, not comparable with a full run"
	}
	fmt.Fprintf(&b, "# orderstream benchmarks\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (`tools/bench`) on %s UTC, %s, in %s, on %d cores shared by "+
		"PostgreSQL, Redis, orderstream and the load (the machine below).\n\n",
		r.started.UTC().Format("2006-01-02 15:04"), kind, r.finished.Sub(r.started).Round(time.Second), m.nproc)
	var rows [][]string
	for _, t := range r.targets() {
		rows = append(rows, []string{t.what, t.target, t.measured, t.verdict})
	}
	table(&b, []string{"what", "target", "measured", "verdict"}, rows)

	fmt.Fprintf(&b, "\n## The machine and versions\n\n")
	table(&b, []string{"", ""}, [][]string{
		{"CPU", fmt.Sprintf("%d × %s (nproc %d)", m.nproc, m.cpuModel, m.nproc)},
		{"memory", m.memory},
		{"OS", m.kernel},
		{"before the run", fmt.Sprintf("CPU %.0f%% busy, load average %.2f", 100*m.busy, m.load1)},
		{"Go", m.goVersion},
		{"commit", m.commit},
		{"PostgreSQL", m.postgres + " (" + m.pgConfig + ")"},
		{"Redis", m.redis},
		{"application settings", knobs(m.knobs)},
	})

	fmt.Fprintf(&b, "\n## Raw numbers\n\n")
	table(&b, []string{"measurement", "figures"}, r.rawRows())
	r.authSection(&b)
	if len(r.failures) > 0 {
		fmt.Fprintf(&b, "\nFailed measurements:\n\n")
		for _, f := range r.failures {
			fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(f, "\n", " "))
		}
	}
	fmt.Fprintf(&b, "\n%s", method)
	return b.String()
}

func knobs(k []string) string {
	if len(k) == 0 {
		return "the defaults (docs/operating.md)"
	}
	return strings.Join(k, ", ")
}

// rawRows are the figures behind the targets, and where the CPU went.
func (r *report) rawRows() [][]string {
	var rows [][]string
	add := func(what, figures string) { rows = append(rows, []string{what, figures}) }
	secs := func(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }
	if x := r.raw; x != nil {
		add(fmt.Sprintf("raw limit: the POST /orders transaction by pgbench, %d clients, %s", x.clients, x.duration),
			fmt.Sprintf("%s tps; %s transactions, %d failed; latency average %s; %s",
				rate(x.tps), thousands(x.transactions), x.failed, x.latency, x.pgbench))
		add("CPU during the raw limit", x.cpu.String())
	}
	if x := r.pipeline; x != nil {
		add(fmt.Sprintf("raw pipeline: placement, reservation and settlement at 1:1:1 by pgbench, %d clients, %s", x.clients, x.duration),
			fmt.Sprintf("%s orders/s (%s tps ÷ 3); %s transactions, %d failed; latency average %s",
				rate(x.perSecond), rate(x.tps), thousands(x.transactions), x.failed, x.latency))
		add("CPU during the raw pipeline", x.cpu.String())
	}
	if x := r.placement; x != nil {
		add(fmt.Sprintf("placement: POST /orders, %d clients, closed loop, %s", x.clients, x.load.elapsed.Round(time.Second)),
			fmt.Sprintf("%s orders/s (%s placed, %s); HTTP %s",
				rate(x.perSecond), thousands(int64(x.load.ok)), failed(x.load), x.http))
		add("CPU during placement", x.cpu.String())
		add("memory of `orderstream all`", fmt.Sprintf("peak (VmHWM) %s; %s at the end of the load",
			megabytes(x.peakRSS), megabytes(x.endRSS)))
	}
	for _, x := range r.latency {
		openLoopRows(add, x, r.opts.duration, "")
		if x.cost != nil {
			add(fmt.Sprintf("cost per order at %d orders/s", x.perSecond), x.cost.String())
		}
	}
	if x := r.single; x != nil {
		singleRows(add, x, "")
	}
	if x := r.durable; x != nil {
		if x.quarter != nil {
			openLoopRows(add, x.quarter, r.opts.duration, durableLabel)
		}
		if x.single != nil {
			singleRows(add, x.single, durableLabel)
		}
	}
	if c := r.capacity; c != nil {
		var steps []string
		for _, x := range c.steps {
			verdict := "kept up"
			if !x.keptUp() {
				verdict = "not kept up"
			}
			steps = append(steps, fmt.Sprintf("%.1f = %d/s: %s (settled p99 %s, %s pending, %s of %s placed)",
				x.fraction, x.perSecond, verdict, ms(x.settle.p99), thousands(int64(x.pending)),
				thousands(int64(x.load.ok)), thousands(int64(x.load.sent))))
		}
		add(fmt.Sprintf("capacity: open loops of %s at tenths of the raw pipeline (%s orders/s)", r.opts.step, rate(c.pipeline)),
			strings.Join(steps, "; "))
		if c.best != nil {
			add(fmt.Sprintf("commit -> settled at the capacity, %d orders/s", c.best.perSecond), c.best.settle.String())
			add("CPU at the capacity", c.best.cpu.String())
		}
	}
	for _, x := range r.httpDrains {
		httpDrainRows(add, x, r.opts.clients, "")
	}
	if x := r.httpDurable; x != nil {
		httpDrainRows(add, x, r.opts.clients, durableLabel)
	}
	for _, x := range r.drains {
		add(fmt.Sprintf("forwarder drain, %s outbox rows in %d shards, %d forwarder processes", thousands(int64(x.backlog)), x.shards, x.procs),
			drainFigures(x)+"; backlog built in "+secs(x.insert))
		add(fmt.Sprintf("CPU during the %s drain (%d shards, %d processes)", short(x.backlog), x.shards, x.procs), x.cpu.String())
	}
	if len(r.scale) > 0 {
		var steps []string
		for _, x := range r.scale {
			step := fmt.Sprintf("%d: %s events/s (%.2f of one)", x.procs, rate(x.perSecond), x.perSecond/r.scale[0].perSecond)
			if !x.complete {
				step += " (partial)"
			}
			steps = append(steps, step+", CPU "+x.cpu.String())
		}
		add(fmt.Sprintf("scale: worker processes over %s OrderPlaced", thousands(int64(r.scale[0].events))), strings.Join(steps, "; "))
	}
	if len(r.drains) > 0 {
		var steps []string
		for _, x := range r.drains {
			if one := r.drain(x.backlog, x.shards, 1); x.procs > 1 && one != nil && one.perSecond > 0 {
				steps = append(steps, fmt.Sprintf("%s rows in %d shards: %d processes %s msgs/s, %.2f of one",
					short(x.backlog), x.shards, x.procs, rate(x.perSecond), x.perSecond/one.perSecond))
			}
		}
		if len(steps) > 0 {
			add("scale: forwarder processes (from the drains)", strings.Join(steps, "; "))
		}
	}
	if x := r.worker; x != nil {
		add(fmt.Sprintf("worker: %s OrderPlaced waiting", thousands(int64(x.events))),
			fmt.Sprintf("%s events/s from the first acknowledgement (%s in %s); %s events/s from the process start "+
				"(first acknowledgement after %s); %s orders reserved, %d dead letters",
				rate(x.perSecond), thousands(x.acked), secs(x.handling), rate(x.overall), secs(x.startup),
				thousands(int64(x.reserved)), x.deadLetters))
		add("CPU during the worker run", x.cpu.String())
		if y := x.raw; y != nil {
			add(fmt.Sprintf("the worker's raw limit: the reserve transaction by pgbench, %d clients, %s", y.clients, y.duration),
				fmt.Sprintf("%s tps; %s transactions, %d failed; latency average %s",
					rate(y.tps), thousands(y.transactions), y.failed, y.latency))
			add("CPU during the worker's raw limit", y.cpu.String())
		}
	}
	if x := r.idle; x != nil {
		add(fmt.Sprintf("idle `orderstream all`, %s", x.window.Round(time.Second)),
			fmt.Sprintf("%s transactions, %.2f/s; the process used %.1f%% of a core; RSS %s",
				thousands(x.transactions), x.perSecond, 100*x.appCPU, megabytes(x.rss)))
	}
	if x := r.pages; x != nil {
		add(fmt.Sprintf("live pages on an idle `orderstream all`, %s each", x.window.Round(time.Second)), x.row())
	}
	return rows
}

// openLoopRows adds the figures of one open-loop load, where after each
// label.
func openLoopRows(addRow func(what, figures string), x *openLoopResult, d time.Duration, where string) {
	add := func(what, figures string) { addRow(what+where, figures) }
	add(fmt.Sprintf("open loop: %d orders/s (%.2f of the raw pipeline) for %s", x.perSecond, x.fraction, d),
		fmt.Sprintf("%s sent, %s placed, %s, %s skipped (at most %s in flight); sent at most %s late; HTTP %s",
			thousands(int64(x.load.sent)), thousands(int64(x.load.ok)), failed(x.load),
			thousands(int64(x.load.skipped)), thousands(int64(x.maxInFlight)), ms(x.load.maxLag), x.http))
	add(fmt.Sprintf("commit -> settled at %d orders/s (updated_at - created_at)", x.perSecond),
		fmt.Sprintf("%s; %s confirmed, %s rejected, %s still pending; all settled %s after the last answer",
			x.settle, thousands(int64(x.confirmed)), thousands(int64(x.rejected)), thousands(int64(x.pending)),
			x.tail.Round(10*time.Millisecond)))
	add(fmt.Sprintf("the two hops at %d orders/s: commit -> reservation begins; reservation begins -> settled", x.perSecond),
		fmt.Sprintf("p50 %s, p99 %s; p50 %s, p99 %s", ms(x.toReserve.p50), ms(x.toReserve.p99), ms(x.toSettle.p50), ms(x.toSettle.p99)))
	add(fmt.Sprintf("CPU during the open loop at %d orders/s", x.perSecond), x.cpu.String())
}

// failed counts the requests of a load that failed, and says why.
func failed(l loadResult) string {
	n := l.sent - l.ok
	if n == 0 {
		return "0 failed"
	}
	return fmt.Sprintf("%s failed: %s", thousands(int64(n)), describeFailures(l.failures))
}

// describeFailures lists the failures of a load, the most frequent first.
func describeFailures(f map[string]int) string {
	if len(f) == 0 {
		return "none"
	}
	msgs := slices.Collect(maps.Keys(f))
	slices.SortFunc(msgs, func(a, b string) int { return cmp.Or(f[b]-f[a], strings.Compare(a, b)) })
	var parts []string
	for i, m := range msgs {
		if i == 3 {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, thousands(int64(f[m]))+"× "+m)
	}
	return strings.Join(parts, ", ")
}

// table writes a Markdown table; a "|" inside a cell is escaped.
func table(b *strings.Builder, header []string, rows [][]string) {
	line := func(cells []string) {
		b.WriteString("|")
		for _, c := range cells {
			b.WriteString(" " + strings.ReplaceAll(c, "|", `\|`) + " |")
		}
		b.WriteString("\n")
	}
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = "---"
	}
	line(sep)
	for _, r := range rows {
		line(r)
	}
}
