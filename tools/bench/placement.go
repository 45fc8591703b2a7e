package main

import (
	"context"
	"errors"
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
}

// measurePlacement places orders from opts.clients clients, each sending
// the next order as soon as the last one is answered, for opts.duration.
// The process runs everything (API, forwarder, workers), so the events the
// orders produce are forwarded and handled on the same cores meanwhile, as
// they would be.
func measurePlacement(ctx context.Context, st *stage, rep *report) error {
	db, err := st.freshDatabase(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	prefix := st.streamPrefix("placement")
	defer func() { _ = st.clearStreams(context.WithoutCancel(ctx), prefix) }()
	app, base, err := st.startAPI(ctx, "all", prefix)
	if err != nil {
		return err
	}
	defer func() { _ = app.stop() }()

	clients := st.opts.clients
	l := newLoader(base, st.opts.skus, clients)
	defer l.close()
	if err := l.setStock(ctx); err != nil {
		return err
	}
	if st.opts.warmup > 0 {
		l.closedLoop(ctx, "warmup", clients, st.opts.warmup)
	}
	before := sampleCPU(app)
	load := l.closedLoop(ctx, "placement", clients, st.opts.duration)
	cpu := sampleCPU(app).usageSince(before)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	peak, now, err := app.memory()
	if err != nil {
		return err
	}
	if load.ok == 0 {
		return errors.New("no order was placed: " + describeFailures(load.failures))
	}
	rep.placement = &placementResult{
		load:      load,
		http:      summarize(load.latencies),
		perSecond: float64(load.ok) / load.elapsed.Seconds(),
		clients:   clients,
		peakRSS:   peak,
		endRSS:    now,
		cpu:       cpu,
	}
	return app.stop()
}
