package main

import (
	"fmt"
	"time"
)

// verdict of a figure against its target.
const (
	met         = "met"
	notMet      = "not met"
	notMeasured = "not measured"
)

// row is one line of the table: a figure next to its target.
type row struct {
	what, target, measured, verdict string
}

func judged(ok bool) string {
	if ok {
		return met
	}
	return notMet
}

// targets compares each figure with its target. A figure whose measurement
// did not run, or failed, is "not measured".
func (r *report) targets() []row {
	var rows []row
	add := func(what, target string, measured func() (string, bool), available bool) {
		if !available {
			rows = append(rows, row{what, target, "–", notMeasured})
			return
		}
		text, ok := measured()
		rows = append(rows, row{what, target, text, judged(ok)})
	}

	add("placement vs raw limit", ">= 0.6", func() (string, bool) {
		ratio := r.placement.perSecond / r.raw.tps
		return fmt.Sprintf("%.2f (%s orders/s ÷ %s tps)", ratio, rate(r.placement.perSecond), rate(r.raw.tps)), ratio >= 0.6
	}, r.placement != nil && r.raw != nil && r.raw.tps > 0)

	add(fmt.Sprintf("commit -> settled p99 at %d/s", r.opts.rate), "<= 20 ms", func() (string, bool) {
		s := r.settle
		text := ms(s.settle.p99)
		ok := s.settle.p99 <= 20*time.Millisecond && s.pending == 0 && s.settle.n > 0
		if s.pending > 0 {
			text += fmt.Sprintf(" (%s orders never settled)", thousands(int64(s.pending)))
		}
		return text, ok
	}, r.settle != nil)

	add("idle transactions/s", "<= 2", func() (string, bool) {
		return fmt.Sprintf("%.2f", r.idle.perSecond), r.idle.perSecond <= 2
	}, r.idle != nil)

	small, large := r.drain(0), r.drain(1)
	add(fmt.Sprintf("forwarder drain at %s backlog", short(r.opts.backlogSmall)), ">= 15,000 msgs/s", func() (string, bool) {
		return drainText(small) + " msgs/s", small.complete && small.perSecond >= 15_000
	}, small != nil)

	add(fmt.Sprintf("drain rate at %s vs %s", short(r.opts.backlogLarge), short(r.opts.backlogSmall)), ">= 0.9", func() (string, bool) {
		ratio := large.perSecond / small.perSecond
		return fmt.Sprintf("%.2f (%s ÷ %s msgs/s)", ratio, drainText(large), drainText(small)), ratio >= 0.9
	}, small != nil && large != nil && small.perSecond > 0)

	add("worker events/s", ">= 3,000", func() (string, bool) {
		w := r.worker
		text := rate(w.perSecond) + " events/s"
		if !w.complete {
			text += fmt.Sprintf(" (partial: %s of %s acknowledged)", thousands(w.acked), thousands(int64(w.events)))
		}
		if w.raw != nil && w.raw.tps > 0 {
			text += fmt.Sprintf(" (%.2f of its raw limit, %s tps)", w.perSecond/w.raw.tps, rate(w.raw.tps))
		}
		return text, w.complete && w.perSecond >= 3_000
	}, r.worker != nil)

	add("peak RSS during placement", "<= 150 MB", func() (string, bool) {
		return megabytes(r.placement.peakRSS), r.placement.peakRSS <= 150_000_000
	}, r.placement != nil && r.placement.peakRSS > 0)
	return rows
}

func (r *report) drain(i int) *drainResult {
	if i < len(r.drains) {
		return r.drains[i]
	}
	return nil
}

func drainText(d *drainResult) string {
	text := rate(d.perSecond)
	if !d.complete {
		text += fmt.Sprintf(" (partial: %s of %s)", thousands(d.forwarded), thousands(int64(d.backlog)))
	}
	return text
}

// short formats a count the way the targets name them: 20k, 1M.
func short(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1_000 && n%1_000 == 0:
		return fmt.Sprintf("%dk", n/1_000)
	default:
		return thousands(int64(n))
	}
}
