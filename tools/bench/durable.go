package main

import (
	"context"
	"fmt"
)

// durableResult is the target's latency measured again against a Redis
// that fsyncs every write before it answers (durableRedis).
type durableResult struct {
	quarter *openLoopResult // the open loop at durableFraction of the raw pipeline
	single  *singleResult
}

// durableFraction is the share of the raw pipeline of the open loop on the
// durable Redis: that of the target "commit -> settled at 25%".
const durableFraction = 0.25

// measureDurable runs the open loop at durableFraction and the single
// orders against a durable Redis of the bench's own, stopped afterwards.
// PostgreSQL commits synchronously already; with Redis durable too, an
// order's every hop is on disk before the next begins, and the difference
// from the e2e and single figures is what that costs.
func measureDurable(ctx context.Context, st *stage, rep *report) error {
	pipeline, err := pipelineRate(ctx, st, rep)
	if err != nil {
		return err
	}
	return onDurableRedis(ctx, st, func(on *stage) (err error) {
		r := &durableResult{}
		rep.durable = r
		if r.quarter, err = runOpenLoop(ctx, on, durableFraction, pipeline, st.opts.duration, false); err != nil {
			return fmt.Errorf("open loop at %.0f%%: %w", 100*durableFraction, err)
		}
		if r.single, err = runSingle(ctx, on, "durable-single"); err != nil {
			return fmt.Errorf("single orders: %w", err)
		}
		return nil
	})
}
