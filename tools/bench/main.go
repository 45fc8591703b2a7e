// Command bench measures orderstream on the machine it runs on and compares
// each figure with its target: the raw limits of the order transaction and
// of the whole pipeline (pgbench), placing orders over HTTP,
// commit-to-settled latency and the cost of an order under open-loop loads
// at fractions of the raw pipeline and of orders placed one at a time, the
// same latencies with a Redis that fsyncs every write, the highest open-loop
// load carried, the forwarder draining a backlog inserted by SQL and one
// placed over HTTP (that one also with the Redis that fsyncs), worker
// throughput, the database cost of an idle process and its peak memory, and
// what authentication and the rate limiter cost a placement, against the
// figures of a report from before tokens were required. It prints one table
// and writes it, with the machine and the versions measured, to -out.
//
// Every measurement starts from a fresh database (orderstream_bench, dropped
// and created again on the server of DATABASE_URL) and a stream prefix of its
// own on the Redis of REDIS_URL, removed afterwards (durable, and the last
// drain of httpdrain, start a redis-server of their own instead, and stop
// it). Both servers must be on this machine: the run drops a database, and
// all its traffic stays on 127.0.0.1. The binary given with -bin runs as
// child processes, which are stopped when the run ends, is interrupted, or
// dies.
//
// make bench builds it into bin/bench and runs it from the repository root:
//
//	bin/bench -bin bin/orderstream [-quick] [-out BENCHMARKS.md] [-before BENCHMARKS.md]
//	    [-only raw,pipeline,placement,auth,e2e,single,durable,capacity,worker,idle,pages,httpdrain,drain,scale]
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// phase is one measurement; it records its result in the report.
type phase struct {
	name, what string
	run        func(context.Context, *stage, *report) error
}

// phases run in this order: the drain of the large backlog takes longest,
// so it comes last and the other figures do not wait for it.
var phases = []phase{
	{"raw", "the order transaction by pgbench", measureRaw},
	{"pipeline", "the three transactions of an order by pgbench", measurePipeline},
	{"placement", "POST /orders at full speed, and memory", measurePlacement},
	{"auth", "POST /orders at full speed with customers' tokens, the rate limiter off and on", measureAuth},
	{"e2e", "commit-to-settled latency and cost per order at fractions of the raw pipeline", measureSettle},
	{"single", "commit-to-settled latency of orders placed one at a time", measureSingle},
	{"durable", "the 25% open loop and single orders with Redis appendfsync always", measureDurable},
	{"capacity", "the highest open-loop rate that settles in time", measureCapacity},
	{"worker", "inventory handler throughput", measureWorker},
	{"idle", "database transactions of an idle process", measureIdle},
	{"pages", "database transactions of an idle process with 0, 1 and 10 live pages open", measurePages},
	{"httpdrain", "forwarder drain of backlogs placed over HTTP, in each of -http-drain-shards outbox shards, and in the fastest with Redis appendfsync always", measureHTTPDrain},
	{"drain", "forwarder drain of a small and a large outbox backlog", measureDrain},
	{"scale", "the worker's load by 1, 2 and 3 worker processes", measureScale},
}

// run measures what opts select, prints the report and writes it to
// opts.out. A measurement that fails is reported as such; the others still
// run.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	opts, err := parseOptions(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	st, err := newStage(ctx, opts, logger)
	if err != nil {
		return err
	}
	defer st.close()

	rep := &report{opts: opts, started: time.Now()}
	// Before any report is written over it.
	if rep.before, err = readBefore(opts.before); err != nil {
		logger.Warn("bench: no figures from before tokens", "err", err)
	}
	rep.machine = describeMachine(ctx, st)
	if rep.machine.busy > 0.2 {
		logger.Warn("bench: the machine is busy; figures will be lower than on a quiet one",
			"cpu_busy", fmt.Sprintf("%.0f%%", 100*rep.machine.busy), "load_average", rep.machine.load1)
	}
	for _, ph := range phases {
		if !opts.selected(ph.name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		logger.Info("bench: measuring", "phase", ph.name, "what", ph.what)
		began := time.Now()
		if err := ph.run(ctx, st, rep); err != nil {
			logger.Error("bench: measurement failed", "phase", ph.name, "err", err)
			rep.failures = append(rep.failures, fmt.Sprintf("%s: %v", ph.name, err))
		}
		logger.Info("bench: measured", "phase", ph.name, "took", time.Since(began).Round(time.Second))
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	rep.finished = time.Now()

	text := rep.markdown()
	fmt.Fprint(stdout, text)
	if opts.out == "" {
		fmt.Fprintln(stderr, "bench: a -quick run writes no file unless -out is given")
	} else {
		if err := writeFile(opts.out, text+keptSections(opts.out)); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "bench: wrote %s\n", opts.out)
	}
	if len(rep.failures) > 0 {
		// What the processes logged says why.
		st.keepLogs()
		return fmt.Errorf("%d measurement(s) failed; logs kept in %s", len(rep.failures), st.dir)
	}
	return nil
}

// keptMarker starts the part of the report that make bench does not
// measure (comparisons run by hand, with their commands): a new report keeps
// it as it was.
const keptMarker = "<!-- measured by hand: make bench keeps what follows -->"

// keptSections returns what follows keptMarker in the report at path, the
// marker included, or nothing.
func keptSections(path string) string {
	old, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if i := strings.Index(string(old), keptMarker); i >= 0 {
		return "\n" + string(old[i:])
	}
	return ""
}

// writeFile replaces path with text in one step, so that an interrupted
// run never leaves half a report.
func writeFile(path, text string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
