package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// gracefulScenario checks guarantee 7: a graceful stop (SIGTERM) finishes
// what is in flight. It places orders while every few seconds one process
// after another (api, forwarders, workers, in shuffled rounds: each at least
// once) is stopped with SIGTERM and started again. Then:
//
//   - each stopped process exited by itself, with status 0, in time;
//   - right after it exited, none of its consumers is left in its groups,
//     with entries pending (they would wait for STREAM_CLAIM_IDLE, then be
//     delivered again) or without;
//   - no event reached its stream twice (a batch forwarded twice; a
//     parked message put back does not count);
//   - no handler saw a message it had already handled (the inbox's
//     duplicate_skipped);
//   - every order settled.
type gracefulScenario struct {
	orders indices
}

// stopLimit is how long a process may take to stop after SIGTERM: its
// SHUTDOWN_TIMEOUT (30 s by default), which bounds the drain, and 15 s to
// close the rest and exit.
func stopLimit() time.Duration { return knob("SHUTDOWN_TIMEOUT", 30*time.Second) + 15*time.Second }

func (s *gracefulScenario) prepare(h *harness) {
	s.orders = h.plan.addOrders("graceful", h.opts.gracefulOrders, skuNames("CHAOS-GRACEFUL", 10)...)
}

func (s *gracefulScenario) run(ctx context.Context, h *harness) error {
	rdb := h.redis.client()
	defer rdb.Close()
	h.quiet(ctx, "graceful")
	// What is added to the streams and logs from now on is this scenario's.
	streams := []string{streamPlaced, streamReservations}
	from := map[string]string{}
	for _, st := range streams {
		id, err := lastID(ctx, rdb, st)
		if err != nil {
			return err
		}
		from[st] = id
	}
	logs := map[string]int64{}
	for _, p := range h.cluster.named("worker") {
		if fi, err := os.Stat(p.logPath); err == nil {
			logs[p.logPath] = fi.Size()
		}
	}

	loadDone, done := make(chan struct{}), make(chan struct{})
	go func() { defer close(done); s.stopUntil(ctx, h, rdb, loadDone) }()
	began := time.Now()
	err := h.load.run(ctx, s.orders, h.opts.clients, h.opts.rate, h.opts.seed)
	close(loadDone)
	<-done
	if err != nil {
		return err
	}
	h.loadProblems("graceful")
	ids := h.load.idsOf(s.orders)
	if err := waitAllUp(ctx, h.cluster, h.client); err != nil {
		h.found.add("graceful", "not every process came back: %v", err)
	}
	if err := waitSettled(ctx, h.db, ids, h.opts.settleTimeout); err != nil {
		h.found.add("graceful", "the orders did not settle: %v", err)
	}

	twice := 0
	for _, st := range streams {
		es, err := entriesAfter(ctx, rdb, st, from[st])
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, e := range es {
			// A message parked after a passing failure (a lock wait under
			// this load) comes back by design, not from the forwarder.
			if e.putBack {
				continue
			}
			if seen[e.uuid] {
				twice++
			}
			seen[e.uuid] = true
		}
	}
	if twice > 0 {
		h.found.add("graceful", "%d events reached their stream more than once", twice)
	}
	skipped := 0
	for path, off := range logs {
		n, err := countLines(path, off, `"duplicate_skipped"`)
		if err != nil {
			return err
		}
		skipped += n
	}
	if skipped > 0 {
		h.found.add("graceful", "the handlers were given %d messages they had already handled (outcome=duplicate_skipped)", skipped)
	}
	h.logger.Info("chaos: graceful load done", "orders", len(s.orders), "took", time.Since(began).Round(time.Millisecond),
		"sigterms", h.faults.count(faultSIGTERM), "forwarded_twice", twice, "handled_twice", skipped)
	return nil
}

// stopUntil stops a process with SIGTERM every opts.termEvery (±1/3) until
// loadDone is closed, going through the processes in shuffled rounds, and
// checks how each stop went. It finishes the round under way, so every
// process is stopped at least once.
func (s *gracefulScenario) stopUntil(ctx context.Context, h *harness, rdb *redis.Client, loadDone <-chan struct{}) {
	every := h.opts.termEvery
	if every <= 0 {
		return
	}
	rng := rand.New(rand.NewPCG(h.opts.seed, 4))
	var round []*proc
	for {
		if len(round) == 0 {
			select {
			case <-loadDone:
				return
			default:
			}
			round = append(round, h.cluster.procs...)
			rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		}
		third := int64(every / 3)
		gap := every - time.Duration(third) + time.Duration(rng.Int64N(2*third+1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap):
		}
		p := round[0]
		// A process that has only just started may not have joined its
		// consumer groups yet: it goes to the end of the round.
		pid, ok := p.upFor(3 * time.Second)
		if !ok {
			round = append(round[1:], p)
			continue
		}
		round = round[1:]
		s.stop(ctx, h, rdb, p, pid)
	}
}

// stop stops p (running as pid) with SIGTERM and checks that it left
// nothing behind.
func (s *gracefulScenario) stop(ctx context.Context, h *harness, rdb *redis.Client, p *proc, pid int) {
	ctx = context.WithoutCancel(ctx) // a stop, once begun, is checked to its end
	mine := fmt.Sprintf("-%d-", pid) // consumer names are host-pid-suffix
	before, err := consumers(ctx, rdb, mine)
	if err != nil {
		h.found.add("graceful", "list the consumers of %s pid %d: %v", p.name, pid, err)
		return
	}
	st, ok := p.terminate(stopLimit())
	if !ok || st.pid != pid {
		return // it had exited meanwhile: not a graceful stop
	}
	h.faults.add(faultSIGTERM)
	h.logger.Info("chaos: SIGTERM", "process", p.name, "pid", pid, "ended", st.status, "consumers", len(before))
	switch {
	case st.timedOut:
		h.found.add("graceful", "%s pid %d did not exit within %s of SIGTERM; killed", p.name, pid, stopLimit())
	case st.status != "exit status 0":
		h.found.add("graceful", "%s pid %d ended with %s after SIGTERM, want exit status 0", p.name, pid, st.status)
	}
	if strings.HasPrefix(p.name, "worker") && len(before) == 0 {
		h.found.add("graceful", "%s pid %d had no consumer whose name holds %q: the check of what it left pending cannot be made", p.name, pid, mine)
	}
	after, err := consumers(ctx, rdb, mine)
	if err != nil {
		h.found.add("graceful", "list the consumers of %s pid %d: %v", p.name, pid, err)
		return
	}
	// The subscriber finishes what it read, acks it, and leaves its group
	// (events/consumer.go: it deletes its consumer once nothing is pending
	// under it), so nothing of it is left: an entry pending would wait for
	// STREAM_CLAIM_IDLE and be delivered again, a consumer left with none
	// would only pile up names.
	var left, stayed []string
	var total int64
	for _, c := range after {
		if c.pending > 0 {
			total += c.pending
			left = append(left, fmt.Sprintf("%s/%s %s: %d", c.stream, c.group, c.name, c.pending))
		} else {
			stayed = append(stayed, fmt.Sprintf("%s/%s %s", c.stream, c.group, c.name))
		}
	}
	if total > 0 {
		h.found.add("graceful", "%s pid %d left %d entries pending under its consumers after SIGTERM (%s)", p.name, pid, total, strings.Join(left, ", "))
	}
	if len(stayed) > 0 {
		h.found.add("graceful", "%s pid %d did not leave its consumer groups after SIGTERM: %s", p.name, pid, strings.Join(stayed, ", "))
	}
}

// countLines counts the lines of the file at path, from offset on, that
// contain s.
func countLines(path string, offset int64, s string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0, err
	}
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			n++
		}
	}
	return n, sc.Err()
}
