package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// disrupters are what does damage while the crash scenario's load runs,
// each until ctx is done (progress is the share of that load finished). A
// new source of faults adds an entry here, and its fault kinds to
// faultKinds.
//
// The network faults run here, in the crash scenario, and only there: its
// assertions (every order settles once, stock adds up, and within
// settleBound of the last fault) are what a flaky network must leave true
// too. The lock scenario measures what a held lock alone delays, and the
// graceful one asserts zero redeliveries, which a reset or dark link would
// break by design (a consumer cut off from Redis has its entries claimed,
// a forwarder that lost an XADD's answer publishes again).
func (h *harness) disrupters() []func(ctx context.Context, progress func() float64) {
	ds := []func(context.Context, func() float64){
		func(ctx context.Context, _ func() float64) {
			h.killUntil(ctx, rand.New(rand.NewPCG(h.opts.seed, 2)))
		},
		h.crashServers,
	}
	if h.net != nil {
		ds = append(ds, func(ctx context.Context, _ func() float64) {
			h.net.faultUntil(ctx, rand.New(rand.NewPCG(h.opts.seed, 5)))
		})
	}
	return ds
}

// disrupt runs every disrupter until ctx is done and returns once they all
// have.
func (h *harness) disrupt(ctx context.Context, progress func() float64) {
	var wg sync.WaitGroup
	for _, d := range h.disrupters() {
		wg.Go(func() { d(ctx, progress) })
	}
	wg.Wait()
}

// killUntil SIGKILLs a random application process every opts.killEvery
// (±1/3) until ctx is done.
func (h *harness) killUntil(ctx context.Context, rng *rand.Rand) {
	every := h.opts.killEvery
	if every <= 0 {
		return
	}
	for {
		third := int64(every / 3)
		gap := every - time.Duration(third) + time.Duration(rng.Int64N(2*third+1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap):
		}
		p := h.cluster.procs[rng.IntN(len(h.cluster.procs))]
		if pid, ok := p.kill(); ok {
			h.faults.add(faultSIGKILL)
			h.logger.Info("chaos: SIGKILL", "process", p.name, "pid", pid)
		}
	}
}

// serverCrash is one crash of a server: what is crashed, and how.
type serverCrash struct {
	kind  string
	crash func(context.Context) (time.Duration, error)
}

// crashServers crashes PostgreSQL (pg_ctl stop -m immediate) opts.pgCrashes
// times and Redis (SIGKILL) opts.redisCrashes times, alternating, spread
// evenly over the load, each started again at once on its data. It returns
// when all are done or ctx is done; the load reaches 1 by itself, so every
// crash happens in a complete run, and the waits between them mean a crash
// is over before the next begins. With -pgbouncer, PgBouncer stays up
// through each PostgreSQL crash and reconnects once it is back
// (pgbouncer.go).
func (h *harness) crashServers(ctx context.Context, progress func() float64) {
	var plan []serverCrash
	for i := range max(h.opts.pgCrashes, h.opts.redisCrashes) {
		if i < h.opts.pgCrashes {
			plan = append(plan, serverCrash{faultPostgres, h.pg.crash})
		}
		if i < h.opts.redisCrashes {
			plan = append(plan, serverCrash{faultRedis, h.redis.crash})
		}
	}
	for i, c := range plan {
		at := float64(i+1) / float64(len(plan)+1)
		for progress() < at {
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
		h.logger.Info("chaos: crashing", "fault", c.kind, "progress", fmt.Sprintf("%.0f%%", 100*progress()))
		// Once begun, a crash runs to its end, the server up again.
		took, err := c.crash(context.WithoutCancel(ctx))
		if err != nil {
			h.found.add("crash", "%s: %v", c.kind, err)
			h.logger.Error("chaos: crash and restart failed", "fault", c.kind, "err", err)
			continue
		}
		h.faults.add(c.kind)
		h.logger.Info("chaos: back after crash", "fault", c.kind, "took", took.Round(time.Millisecond))
	}
}
