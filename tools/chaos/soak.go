package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// soakScenario places orders at a steady rate for a long time, with no
// fault, against a PostgreSQL that syncs its commits and runs autovacuum
// (as deployed) and the Redis of appendfsync always, and takes a sample
// every -soak-every of what could grow or slow down over hours: each
// process's resident memory and goroutines (from its /metrics), the rows of
// the outbox, inbox, idempotency keys, stock releases and parked messages,
// the entries of the streams, and the commit-to-settled p50 and p99 of the
// orders settled since the sample before. The processes run with the
// default retentions, so what the tables hold is what a deployment holds in
// its first hours. The checks over every order (0 lost, 0 doubled, stock
// that adds up) run at the end, as after every scenario.
//
// It runs alone (make soak), and writes its tables into -soak-out between
// soakBegin and soakEnd.
type soakScenario struct {
	orders indices
}

// soakSKUs are the SKUs the soak's orders draw from, as many as make bench's
// (-skus): the load of the raw pipeline it takes a share of.
const soakSKUs = 100

const (
	soakBegin = "<!-- soak: begin (written by make soak) -->"
	soakEnd   = "<!-- soak: end -->"
)

// soakResult is what the soak saw, one sample per interval.
type soakResult struct {
	ran     bool
	rate    float64
	samples []soakSample
}

// soakSample is one interval of the soak.
type soakSample struct {
	at              time.Duration // since the load began
	placed, settled int64         // orders committed and settled within the interval
	p50, p99        time.Duration // commit → settled of the orders settled within it
	outbox, inbox   int64         // rows
	keys, releases  int64
	parked          int64
	autovacuums     int64 // autovacuum and autoanalyze runs so far, over every table
	dbBytes         int64
	streamEntries   int64
	redisBytes      int64
	procs           []procSample // in the cluster's order
	clock           time.Time    // the database's at the sample; zero when unread
	final           bool         // taken after the load, once every order settled
}

// procSample is one process's resident memory and goroutines.
type procSample struct {
	name       string
	rss        int64
	goroutines int64
}

func (s *soakScenario) prepare(h *harness) {
	n := int(h.opts.soakFor.Seconds() * h.opts.soakRate)
	s.orders = h.plan.addRandomOrders(rand.New(rand.NewPCG(h.opts.seed, 5)), "soak", n, soakSKUs)
}

func (s *soakScenario) run(ctx context.Context, h *harness) error {
	h.quiet(ctx, "soak")
	res := soakResult{ran: true, rate: h.opts.soakRate}
	began := time.Now()
	prev, err := h.soakSample(ctx, began, soakSample{})
	if err != nil {
		return err
	}

	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	loaded := make(chan error, 1)
	go func() { loaded <- h.load.run(loadCtx, s.orders, h.opts.clients, h.opts.soakRate, h.opts.seed) }()
	tick := time.NewTicker(h.opts.soakEvery)
	defer tick.Stop()
sampling:
	for {
		select {
		case err := <-loaded:
			if err != nil {
				return err
			}
			break sampling
		case <-tick.C:
		}
		smp, err := h.soakSample(ctx, began, prev)
		if err != nil {
			return err
		}
		res.samples = append(res.samples, smp)
		prev = smp
		h.logger.Info("chaos: soak", "at", smp.at.Round(time.Second), "placed", smp.placed, "settled", smp.settled,
			"p50", smp.p50, "p99", smp.p99, "outbox", smp.outbox, "inbox", smp.inbox, "stream_entries", smp.streamEntries,
			"rss_mib", mib(sumRSS(smp.procs)), "goroutines", sumGoroutines(smp.procs))
	}
	h.loadProblems("soak")
	h.quiet(ctx, "soak")
	last, err := h.soakSample(ctx, began, prev)
	if err != nil {
		return err
	}
	last.final = true
	res.samples = append(res.samples, last)
	h.soak = res
	if h.opts.soakOut != "" {
		if err := writeSoak(h.opts.soakOut, res.markdown(h.opts)); err != nil {
			return err
		}
		h.logger.Info("chaos: soak written", "file", h.opts.soakOut)
	}
	return nil
}

// soakSample takes one sample; a source that cannot be read is a finding
// and leaves its figures zero, while a done ctx is the run's end.
func (h *harness) soakSample(ctx context.Context, began time.Time, prev soakSample) (soakSample, error) {
	s := soakSample{at: time.Since(began)}
	errs := []error{h.soakDatabase(ctx, &s, prev), h.soakRedis(ctx, &s)}
	for _, p := range h.cluster.procs {
		ps := procSample{name: p.name}
		var err error
		if ps.rss, ps.goroutines, err = scrapeProcess(ctx, p.ops); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
		}
		s.procs = append(s.procs, ps)
	}
	for _, err := range errs {
		if err != nil {
			h.found.add("soak", "sample at %s: %v", s.at.Round(time.Second), err)
		}
	}
	return s, ctx.Err()
}

// outboxCount counts the rows of every outbox shard's table.
var outboxCount = func() string {
	parts := []string{"(SELECT count(*) FROM watermill_outbox)"}
	for k := 1; k <= 15; k++ {
		parts = append(parts, fmt.Sprintf("(SELECT count(*) FROM watermill_outbox_%d)", k))
	}
	return strings.Join(parts, " + ")
}()

func (h *harness) soakDatabase(ctx context.Context, s *soakSample, prev soakSample) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := h.db.QueryRowContext(ctx, `SELECT clock_timestamp()`).Scan(&s.clock); err != nil {
		return fmt.Errorf("read the database clock: %w", err)
	}
	err := h.db.QueryRowContext(ctx, `SELECT `+outboxCount+`,
		(SELECT count(*) FROM inbox), (SELECT count(*) FROM idempotency_keys),
		(SELECT count(*) FROM stock_releases), (SELECT count(*) FROM parked_messages),
		(SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) FROM pg_stat_user_tables),
		pg_database_size(current_database())`).Scan(
		&s.outbox, &s.inbox, &s.keys, &s.releases, &s.parked, &s.autovacuums, &s.dbBytes)
	if err != nil {
		return fmt.Errorf("count rows: %w", err)
	}
	if prev.clock.IsZero() {
		return nil
	}
	// Orders placed in the window, and those settled in it: confirmed or
	// rejected (a cancelled order's updated_at is its cancellation's).
	var p50, p99 sql.NullFloat64
	err = h.db.QueryRowContext(ctx, `
		SELECT (SELECT count(*) FROM orders WHERE created_at > $1 AND created_at <= $2),
		       count(*),
		       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)),
		       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at))
		  FROM orders
		 WHERE status IN ('confirmed', 'rejected') AND updated_at > $1 AND updated_at <= $2`,
		prev.clock, s.clock).Scan(&s.placed, &s.settled, &p50, &p99)
	if err != nil {
		return fmt.Errorf("read settle latency: %w", err)
	}
	s.p50 = time.Duration(p50.Float64 * float64(time.Second))
	s.p99 = time.Duration(p99.Float64 * float64(time.Second))
	return nil
}

func (h *harness) soakRedis(ctx context.Context, s *soakSample) error {
	rdb := h.redis.client()
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var cursor uint64
	for {
		keys, next, err := rdb.ScanType(ctx, cursor, "*", 100, "stream").Result()
		if err != nil {
			return fmt.Errorf("list streams: %w", err)
		}
		for _, k := range keys {
			n, err := rdb.XLen(ctx, k).Result()
			if err != nil {
				return fmt.Errorf("length of %s: %w", k, err)
			}
			s.streamEntries += n
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return fmt.Errorf("read memory info: %w", err)
	}
	s.redisBytes = infoField(info, "used_memory")
	return nil
}

// label names the sample in the tables: its time since the load began,
// and whether it was taken once everything had settled.
func (s soakSample) label() string {
	if s.final {
		return s.at.Round(time.Second).String() + ", settled"
	}
	return s.at.Round(time.Second).String()
}

// infoField is the number of field in the text of INFO, 0 when absent.
func infoField(info, field string) int64 {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// scrapeProcess reads a process's resident memory and goroutines from the
// /metrics of its operations listener.
func scrapeProcess(ctx context.Context, ops string) (rss, goroutines int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ops+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("GET /metrics: status %d", resp.StatusCode)
	}
	var found int
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var into *int64
		switch name {
		case "process_resident_memory_bytes":
			into = &rss
		case "go_goroutines":
			into = &goroutines
		default:
			continue
		}
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", name, err)
		}
		*into = int64(f)
		found++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("/metrics has no process_resident_memory_bytes or go_goroutines")
	}
	return rss, goroutines, nil
}

func sumRSS(ps []procSample) (n int64) {
	for _, p := range ps {
		n += p.rss
	}
	return n
}

func sumGoroutines(ps []procSample) (n int64) {
	for _, p := range ps {
		n += p.goroutines
	}
	return n
}

func mib(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

// markdown is the soak's section of BENCHMARKS.md: what ran, then a table
// of the interval figures and one of each process's memory and goroutines.
func (r soakResult) markdown(o options) string {
	var b strings.Builder
	fmt.Fprintln(&b, soakBegin)
	fmt.Fprintf(&b, "Measured %s with `make soak` (`bin/chaos -scenarios soak -soak-for %s -soak-rate %g`), version %s, on %s.\n\n",
		time.Now().UTC().Format("2006-01-02"), o.soakFor, r.rate, gitDescribe(), machineLine())
	fmt.Fprintf(&b, "%s orders a second for %s, an eighth of them cancelled at once, one in fifty naming an unknown SKU, "+
		"over %d SKUs (stock for 30%% to 120%% of what the orders ask), from %d clients; one api, one forwarder and one worker process, on the application's defaults. "+
		"PostgreSQL of its own (fsync on, autovacuum on), Redis with `appendfsync always`; the retentions are the defaults "+
		"(outbox and streams 24 h, inbox 7 days, idempotency keys 24 h), so nothing is old enough to be deleted within the hour: "+
		"the sizes are what a deployment holds in its first hour. One row per %s: p50 and p99 are commit → settled of the orders "+
		"confirmed or rejected in that interval, by the database clock; rows are counts over the whole table.\n\n",
		strconv.FormatFloat(r.rate, 'f', -1, 64), o.soakFor, soakSKUs, o.clients, o.soakEvery)
	fmt.Fprintln(&b, "| at | placed | settled | p50 ms | p99 ms | outbox | inbox | keys | releases | parked | stream entries | Redis MiB | database MiB | autovacuums | RSS MiB, all | goroutines, all |")
	fmt.Fprintln(&b, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, s := range r.samples {
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %d | %d | %d | %d | %d | %d | %s | %s | %d | %s | %d |\n",
			s.label(), s.placed, s.settled, ms(s.p50), ms(s.p99), s.outbox, s.inbox, s.keys, s.releases, s.parked,
			s.streamEntries, mib(s.redisBytes), mib(s.dbBytes), s.autovacuums, mib(sumRSS(s.procs)), sumGoroutines(s.procs))
	}
	if len(r.samples) > 0 {
		fmt.Fprintln(&b, "\nEach process: resident memory in MiB / goroutines, from its `/metrics`.")
		fmt.Fprintln(&b)
		head, rule := "| at |", "| --- |"
		for _, p := range r.samples[0].procs {
			head += " " + p.name + " |"
			rule += " ---: |"
		}
		fmt.Fprintln(&b, head)
		fmt.Fprintln(&b, rule)
		for _, s := range r.samples {
			fmt.Fprintf(&b, "| %s |", s.label())
			for _, p := range s.procs {
				fmt.Fprintf(&b, " %s / %d |", mib(p.rss), p.goroutines)
			}
			fmt.Fprintln(&b)
		}
	}
	fmt.Fprintln(&b, soakEnd)
	return b.String()
}

// writeSoak puts section in place of the one between soakBegin and soakEnd
// in the file at path, or at its end when it has none.
func writeSoak(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	text := string(old)
	i, j := strings.Index(text, soakBegin), strings.Index(text, soakEnd)
	if i >= 0 && j > i {
		text = text[:i] + section + text[j+len(soakEnd)+1:]
	} else {
		if text != "" && !strings.HasSuffix(text, "\n") {
			text += "\n"
		}
		text += "\n" + section
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

// gitDescribe names the checkout measured, or "unknown" outside one.
func gitDescribe() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// machineLine is the CPU count and model of this machine.
func machineLine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%d × %s", runtime.NumCPU(), model)
}

// fields are the soak's figures for the summary line: of the first and the
// last interval, and the worst p99; nothing when the soak did not run.
func (r soakResult) fields() string {
	if !r.ran || len(r.samples) < 2 {
		return ""
	}
	// The last sample is taken after the load, once every order settled.
	first, last := r.samples[0], r.samples[len(r.samples)-2]
	var worst time.Duration
	for _, s := range r.samples {
		worst = max(worst, s.p99)
	}
	return fmt.Sprintf("soak_p99_first=%sms soak_p99_last=%sms soak_p99_max=%sms soak_rss_first=%sMiB soak_rss_last=%sMiB "+
		"soak_goroutines_first=%d soak_goroutines_last=%d ",
		ms(first.p99), ms(last.p99), ms(worst), mib(sumRSS(first.procs)), mib(sumRSS(last.procs)),
		sumGoroutines(first.procs), sumGoroutines(last.procs))
}
