package main

import (
	"context"
	"errors"
	"time"
)

// placementResult is POST /orders at full speed against `orderstream all`,
// and the memory that process needed meanwhile.
type placementResult struct {
	load      loadResult
	http      summary
	perSecond float64
	clients   int
	peakRSS   int64 // VmHWM of the process, from its start to the end of the load
	endRSS    int64
	cpu       cpuUsage
	appCPU    time.Duration    // the CPU time of the process during the load
	redisCPU  time.Duration    // Redis's CPU time during the load
	redis     map[string]int64 // the calls of each Redis command during the load
}

// measurePlacement places orders from opts.clients clients, each sending
// the next order as soon as the last one is answered, for opts.duration.
// The process runs everything (API, forwarder, workers), so the events the
// orders produce are forwarded and handled on the same cores meanwhile, as
// they would be.
func measurePlacement(ctx context.Context, st *stage, rep *report) error {
	r, err := runPlacement(ctx, st, "placement")
	if err != nil {
		return err
	}
	rep.placement = r
	return nil
}

// runPlacement is the placement load against a fresh database and a fresh
// `orderstream all` with env added to its environment; name labels its
// streams and its customers.
func runPlacement(ctx context.Context, st *stage, name string, env ...string) (*placementResult, error) {
	db, err := st.freshDatabase(ctx)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	prefix := st.streamPrefix(name)
	defer func() { _ = st.clearStreams(context.WithoutCancel(ctx), prefix) }()
	app, base, err := st.startAPI(ctx, "all", prefix, env...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = app.stop() }()

	clients := st.opts.clients
	l := newLoader(base, st.opts.skus, clients, st.creds)
	defer l.close()
	if err := l.setStock(ctx); err != nil {
		return nil, err
	}
	if st.opts.warmup > 0 {
		l.closedLoop(ctx, "warmup", clients, st.opts.warmup)
	}
	redisBefore, err := st.redisCalls(ctx)
	if err != nil {
		return nil, err
	}
	before := sampleCPU(app)
	load := l.closedLoop(ctx, name, clients, st.opts.duration)
	after := sampleCPU(app)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	redisAfter, err := st.redisCalls(ctx)
	if err != nil {
		return nil, err
	}
	peak, now, err := app.memory()
	if err != nil {
		return nil, err
	}
	if load.ok == 0 {
		return nil, errors.New("no order was placed: " + describeFailures(load.failures))
	}
	r := &placementResult{
		load:      load,
		http:      summarize(load.latencies),
		perSecond: float64(load.ok) / load.elapsed.Seconds(),
		clients:   clients,
		peakRSS:   peak,
		endRSS:    now,
		cpu:       after.usageSince(before),
		appCPU:    after.app - before.app,
		redisCPU:  after.redis - before.redis,
		redis:     map[string]int64{},
	}
	for cmd, n := range redisAfter {
		if d := n - redisBefore[cmd]; d > 0 {
			r.redis[cmd] = d
		}
	}
	// The first sample's own INFO is in the second's count.
	if r.redis["info"]--; r.redis["info"] <= 0 {
		delete(r.redis, "info")
	}
	return r, app.stop()
}
