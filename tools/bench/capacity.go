package main

import (
	"context"
	"fmt"
)

// capacityResult is the highest open-loop rate that `orderstream all` keeps
// up with (openLoopResult.keptUp), in tenths of the raw pipeline.
type capacityResult struct {
	pipeline float64           // the raw pipeline's orders/s
	steps    []*openLoopResult // in the order they ran
	best     *openLoopResult   // the highest step kept up with; nil if none
}

// firstStep is the tenth of the raw pipeline the search starts at: well
// below the capacity so far measured, so that it rarely has to step down.
const firstStep = 3

// measureCapacity steps an open loop up by tenths of the raw pipeline from
// firstStep until a step is not kept up with (or down, should firstStep
// not be), each step against a fresh process and database for opts.step.
func measureCapacity(ctx context.Context, st *stage, rep *report) error {
	pipeline, err := pipelineRate(ctx, st, rep)
	if err != nil {
		return err
	}
	c := &capacityResult{pipeline: pipeline}
	rep.capacity = c
	try := func(tenth int) (bool, error) {
		r, err := runOpenLoop(ctx, st, float64(tenth)/10, pipeline, st.opts.step, false)
		if err != nil {
			return false, fmt.Errorf("at %d0%%: %w", tenth, err)
		}
		c.steps = append(c.steps, r)
		st.logger.Info("bench: capacity step", "orders_per_second", r.perSecond, "kept_up", r.keptUp(),
			"settle_p99", ms(r.settle.p99), "pending", r.pending)
		if r.keptUp() && (c.best == nil || r.perSecond > c.best.perSecond) {
			c.best = r
		}
		return r.keptUp(), nil
	}
	ok, err := try(firstStep)
	if err != nil {
		return err
	}
	if ok {
		for tenth := firstStep + 1; tenth <= 10; tenth++ {
			if ok, err := try(tenth); err != nil || !ok {
				return err
			}
		}
		return nil
	}
	for tenth := firstStep - 1; tenth >= 1; tenth-- {
		if ok, err := try(tenth); err != nil || ok {
			return err
		}
	}
	return nil
}
