package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/orderstream/orderstream/postgres"
)

// options are the command-line flags, and the servers from the environment.
type options struct {
	bin    string
	out    string
	before string // a report with placement figures from before tokens
	quick  bool
	only   []string

	duration      time.Duration // each load: pgbench, placement, the open loops of the latency
	step          time.Duration // each open loop of the capacity search
	warmup        time.Duration // before each load, not measured
	clients       int           // pgbench clients and HTTP clients for placement
	pipelineRate  int           // the raw pipeline's orders/s, when given instead of measured
	profile       string        // where to write the profiles of the load the cost is measured at
	maxInFlight   int           // requests of the open loop outstanding at once
	backlogSmall  int           // outbox rows of the first drain
	backlogLarge  int           // outbox rows of the second drain
	drainShards   []int         // the outbox shards each backlog is spread over, one drain each
	drainProcs    []int         // the forwarder processes of each drain
	workerEvents  int           // stream entries for the worker
	idleWindow    time.Duration // how long idle transactions are counted
	drainTimeout  time.Duration // the most one drain or worker run may take
	settleTimeout time.Duration // the most to wait for orders to settle
	skus          int           // SKUs the orders draw from
	singleOrders  int           // orders placed one at a time (single, durable)
	httpBacklog   int           // orders placed over HTTP for each HTTP-built drain
	httpShards    []int         // the OUTBOX_SHARDS of each HTTP-built drain
	httpDurable   bool          // drain once more at the fastest of httpShards, on a durable Redis

	// workerConcurrency is the application's WORKER_CONCURRENCY (it passes
	// through to the processes): the pgbench clients of the worker's raw
	// limit.
	workerConcurrency int

	databaseURL string
	redisURL    string
}

// phaseNames are the names of the measurements, in the order they run.
func phaseNames() []string {
	names := make([]string, len(phases))
	for i, p := range phases {
		names[i] = p.name
	}
	return names
}

func (o options) selected(phase string) bool { return slices.Contains(o.only, phase) }

func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	var only string
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.bin, "bin", "bin/orderstream", "the orderstream binary to measure")
	fs.StringVar(&o.out, "out", "BENCHMARKS.md", "where to write the report (with -quick: only when given)")
	fs.StringVar(&o.before, "before", "BENCHMARKS.md",
		"a report whose placement figures are the 'before' of the authentication and rate limiting comparison: its before row, "+
			"or the placement row of one written before tokens were required; read before -out is written; \"\": none")
	fs.BoolVar(&o.quick, "quick", false, "a short smoke run: small loads and backlogs, unless set by the flags below")
	fs.StringVar(&only, "only", strings.Join(phaseNames(), ","), "measurements to run, comma-separated")
	fs.DurationVar(&o.duration, "duration", 15*time.Second, "length of each load (pgbench, placement, open loop)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load before each measured one")
	fs.IntVar(&o.clients, "clients", 32, "concurrent clients of pgbench and of the placement load")
	fs.DurationVar(&o.step, "step", 10*time.Second, "length of each open loop of the capacity search")
	fs.StringVar(&o.profile, "profile", "", "a directory: write the CPU and allocation profiles of orderstream during the load the cost is measured at there")
	fs.IntVar(&o.pipelineRate, "pipeline", 0, "the raw pipeline's orders/s that the open loops take fractions of (0: measure it)")
	fs.IntVar(&o.maxInFlight, "max-in-flight", 2000, "most open-loop requests outstanding at once; beyond it a send is counted as skipped")
	fs.IntVar(&o.backlogSmall, "backlog-small", 20_000, "outbox rows of the first drain")
	fs.IntVar(&o.backlogLarge, "backlog-large", 1_000_000, "outbox rows of the second drain")
	drainShards, drainProcs := "1,2,4", "1,2"
	fs.StringVar(&drainShards, "drain-shards", drainShards, "outbox shards to spread each drain's backlog over, comma-separated")
	fs.StringVar(&drainProcs, "drain-procs", drainProcs, "forwarder processes of each drain, comma-separated")
	httpShards := "1,4,16"
	fs.StringVar(&httpShards, "http-drain-shards", httpShards, "OUTBOX_SHARDS of each drain of a backlog placed over HTTP, comma-separated")
	fs.IntVar(&o.httpBacklog, "http-backlog", 22_000, "orders placed over HTTP, with no forwarder running, for each of those drains")
	fs.BoolVar(&o.httpDurable, "http-drain-durable", true,
		"build and drain one more such backlog, in the shards that drained fastest, against a Redis of the bench's own with appendfsync always (needs redis-server)")
	fs.IntVar(&o.singleOrders, "single-orders", 300, "orders placed one at a time, each once the last has settled")
	fs.IntVar(&o.workerEvents, "worker-events", 50_000, "OrderPlaced entries waiting for the worker")
	fs.DurationVar(&o.idleWindow, "idle-window", 30*time.Second, "how long transactions of the idle process are counted")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 4*time.Minute, "the most one drain or worker run may take; past it the rate so far is reported")
	fs.DurationVar(&o.settleTimeout, "settle-timeout", time.Minute, "the most to wait after the open loop for every order to settle")
	fs.IntVar(&o.skus, "skus", 100, "SKUs the orders draw from (two different ones per order)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		o.applyQuick(set)
	}
	for _, p := range strings.Split(only, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !slices.Contains(phaseNames(), p) {
			return o, fmt.Errorf("-only: unknown measurement %q (known: %s)", p, strings.Join(phaseNames(), ", "))
		}
		o.only = append(o.only, p)
	}
	var err error
	if o.drainShards, err = counts("-drain-shards", drainShards, 1, postgres.MaxOutboxShards); err != nil {
		return o, err
	}
	if o.drainProcs, err = counts("-drain-procs", drainProcs, 1, 8); err != nil {
		return o, err
	}
	if o.httpShards, err = counts("-http-drain-shards", httpShards, 1, postgres.MaxOutboxShards); err != nil {
		return o, err
	}
	o.databaseURL = getenv("DATABASE_URL")
	o.redisURL = getenv("REDIS_URL")
	o.workerConcurrency = 8 // the application's default
	if v := getenv("WORKER_CONCURRENCY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return o, fmt.Errorf("WORKER_CONCURRENCY=%q: want a positive number", v)
		}
		o.workerConcurrency = n
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	case o.duration <= 0 || o.step <= 0 || o.idleWindow <= 0 || o.drainTimeout <= 0 || o.settleTimeout <= 0 || o.warmup < 0:
		return o, errors.New("durations must be positive")
	case o.pipelineRate < 0:
		return o, errors.New("-pipeline must not be negative")
	case o.clients < 1 || o.maxInFlight < 1 || o.backlogSmall < 1 || o.backlogLarge < 1 || o.workerEvents < 1 ||
		o.singleOrders < 1 || o.httpBacklog < 1:
		return o, errors.New("counts and rates must be at least 1")
	case o.skus < 2 || o.skus > 1000:
		return o, errors.New("-skus must be 2 to 1000: each order holds two different SKUs, named SKU-000 to SKU-999")
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return o, fmt.Errorf("locate -bin %s: %w", o.bin, err)
	}
	o.bin = bin
	return o, nil
}

// counts parses a comma-separated list of whole numbers from lo to hi.
func counts(flag, list string, lo, hi int) ([]int, error) {
	var ns []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < lo || n > hi {
			return nil, fmt.Errorf("%s: %q is not a whole number from %d to %d", flag, f, lo, hi)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

// applyQuick scales the run down to a smoke test of a minute or two,
// leaving alone what the command line set. It writes no report unless -out
// was given: a smoke run must not replace the figures of a full one.
func (o *options) applyQuick(set map[string]bool) {
	quick := map[string]func(){
		"out":           func() { o.out = "" },
		"duration":      func() { o.duration = 3 * time.Second },
		"step":          func() { o.step = 3 * time.Second },
		"warmup":        func() { o.warmup = time.Second },
		"backlog-small": func() { o.backlogSmall = 2_000 },
		"backlog-large": func() { o.backlogLarge = 20_000 },
		"worker-events": func() { o.workerEvents = 5_000 },
		"http-backlog":  func() { o.httpBacklog = 2_000 },
		"single-orders": func() { o.singleOrders = 50 },
		"idle-window":   func() { o.idleWindow = 5 * time.Second },
		"drain-timeout": func() { o.drainTimeout = time.Minute },
	}
	for name, apply := range quick {
		if !set[name] {
			apply()
		}
	}
}
