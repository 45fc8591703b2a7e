package main

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The rate limit of the measurement with the limiter on: far above what
// one customer of the load asks (the load's orders spread over
// customersPerGroup customers), so that it refuses nothing and what it
// costs is its bookkeeping alone.
const (
	authRatePerS  = 1_000_000
	authRateBurst = 1_000_000
)

// authResult is the placement load twice, one run after the other on this
// machine, each customer with its token: the rate limiter off, then on.
type authResult struct {
	off, on *placementResult
}

// measureAuth measures what authentication and the rate limiter cost a
// request: the placement load with customers' tokens (verified by the
// process, as every request now is) and the rate limiter off, then the
// same with the rate limiter on, counting in Redis, at a limit it never
// reaches. What a request cost without a token is the previous report's
// (report.before): the application no longer takes a request without one.
func measureAuth(ctx context.Context, st *stage, rep *report) error {
	off, err := runPlacement(ctx, st, "auth-off", "RATE_LIMIT_PER_S=0")
	if err != nil {
		return fmt.Errorf("rate limiter off: %w", err)
	}
	on, err := runPlacement(ctx, st, "auth-on",
		"RATE_LIMIT_PER_S="+strconv.Itoa(authRatePerS), "RATE_LIMIT_BURST="+strconv.Itoa(authRateBurst))
	if err != nil {
		return fmt.Errorf("rate limiter on: %w", err)
	}
	rep.auth = &authResult{off: off, on: on}
	return nil
}

// cpuPerOrder is the process's CPU time per order placed.
func (p *placementResult) cpuPerOrder() time.Duration {
	return p.appCPU / time.Duration(max(p.load.ok, 1))
}

// redisCPUPerOrder is Redis's CPU time per order placed.
func (p *placementResult) redisCPUPerOrder() time.Duration {
	return p.redisCPU / time.Duration(max(p.load.ok, 1))
}

// redisPerOrder is the Redis commands per order placed, in all and of the
// commands named (all of them when none is).
func (p *placementResult) redisPerOrder(names ...string) float64 {
	var n int64
	for cmd, calls := range p.redis {
		if len(names) == 0 || slices.Contains(names, cmd) {
			n += calls
		}
	}
	return float64(n) / float64(max(p.load.ok, 1))
}

// redisText is the Redis commands per order, the most frequent first.
func (p *placementResult) redisText() string {
	names := slices.Collect(maps.Keys(p.redis))
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(p.redis[b], p.redis[a]), strings.Compare(a, b)) })
	var top []string
	for i, cmd := range names {
		if i == 6 {
			break
		}
		top = append(top, fmt.Sprintf("%s %.2f", cmd, p.redisPerOrder(cmd)))
	}
	return fmt.Sprintf("%.2f (%s)", p.redisPerOrder(), strings.Join(top, ", "))
}

// refused is how many of the load's requests were answered 429.
func (p *placementResult) refused() int { return p.load.failures["status 429"] }

// authHeading starts the report's section of the comparison; a report with
// it and without a before row has no figures from before tokens.
const authHeading = "## Authentication and rate limiting"

// authSection renders the comparison: before (the previous report's
// figures, without tokens), with a verified token, and with the rate
// limiter on too; then the differences, per request.
func (r *report) authSection(b *strings.Builder) {
	a, bf := r.auth, r.before
	if a == nil && bf == nil {
		return
	}
	fmt.Fprintf(b, "\n%s\n\n", authHeading)
	fmt.Fprintf(b, "The load of the placement row (%d clients, closed loop, %s, each order with its customer's token, "+
		"over %s customers) against a fresh `orderstream all`: the rate limiter off, then on, one after the other on "+
		"this machine. Before: the same load before the application required tokens, from an earlier report "+
		"(another run, maybe another machine and version: see its label).\n\n",
		r.opts.clients, r.opts.duration, thousands(customersPerGroup))
	var rows [][]string
	if bf != nil {
		rows = append(rows, bf.row())
	}
	if a != nil {
		rows = append(rows,
			placementRow("a verified token, rate limiter off (RATE_LIMIT_PER_S=0)", a.off),
			placementRow(fmt.Sprintf("a verified token, rate limiter on (RATE_LIMIT_PER_S=%s, RATE_LIMIT_BURST=%s)",
				thousands(authRatePerS), thousands(authRateBurst)), a.on))
	}
	table(b, []string{"placement", "orders/s", "HTTP mean", "p50", "p95", "p99", "orderstream CPU per order",
		"Redis CPU per order", "Redis commands per order"}, rows)
	if a == nil {
		fmt.Fprintf(b, "\nThe measurements with tokens did not run (-only auth runs them).\n")
		return
	}
	off, on := a.off, a.on
	// A script's own commands (GET, TIME, SET in the limiter's) count in
	// commandstats too: the round trips are the EVALSHAs.
	fmt.Fprintf(b, "\n- **The rate limiter, per request** (on − off): orderstream CPU %s, Redis CPU %s; "+
		"Redis round trips (evalsha, eval) %+.2f, commands run %+.2f (its script's included); "+
		"HTTP mean %s, p50 %s, p99 %s; orders/s %.2f of off. Refused (429) with it on: %s.\n",
		micros(on.cpuPerOrder()-off.cpuPerOrder()), micros(on.redisCPUPerOrder()-off.redisCPUPerOrder()),
		on.redisPerOrder("evalsha", "eval")-off.redisPerOrder("evalsha", "eval"), on.redisPerOrder()-off.redisPerOrder(),
		signedMS(on.http.mean-off.http.mean), signedMS(on.http.p50-off.http.p50), signedMS(on.http.p99-off.http.p99),
		on.perSecond/off.perSecond, thousands(int64(on.refused())))
	if p := r.placement; p != nil {
		fmt.Fprintf(b, "- **Run-to-run noise**: the placement row above is the load of \"rate limiter off\" again: "+
			"%s orders/s (%.2f of it), HTTP p50 %s, p99 %s, orderstream CPU per order %s. A difference smaller than "+
			"this one is not the limiter's.\n",
			rate(p.perSecond), p.perSecond/off.perSecond, signedMS(p.http.p50-off.http.p50), signedMS(p.http.p99-off.http.p99),
			micros(p.cpuPerOrder()-off.cpuPerOrder()))
	}
	if bf == nil {
		fmt.Fprintf(b, "- **Against before**: no figures from before tokens (-before names no report with them).\n")
		return
	}
	for _, x := range []struct {
		what string
		p    *placementResult
	}{{"a verified token", off}, {"a verified token and the rate limiter", on}} {
		cpu := "orderstream CPU per order not known before"
		if bf.cpu > 0 {
			cpu = "orderstream CPU per order " + micros(x.p.cpuPerOrder()-bf.cpu) + " (before: ≈, from a rounded CPU share)"
		}
		fmt.Fprintf(b, "- **%s, against before**: orders/s %.2f of before; HTTP p50 %s, p99 %s; %s.\n",
			x.what, x.p.perSecond/bf.perSecond, signedMS(x.p.http.p50-bf.p50), signedMS(x.p.http.p99-bf.p99), cpu)
	}
}

// placementRow is one line of the comparison table.
func placementRow(what string, p *placementResult) []string {
	if n := p.load.sent - p.load.ok; n > 0 {
		what += fmt.Sprintf("; %s of %s failed: %s", thousands(int64(n)), thousands(int64(p.load.sent)), describeFailures(p.load.failures))
	}
	return []string{what, rate(p.perSecond), ms(p.http.mean), ms(p.http.p50), ms(p.http.p95), ms(p.http.p99),
		cpuMS(p.cpuPerOrder()), cpuMS(p.redisCPUPerOrder()), p.redisText()}
}

// signedMS formats a difference of latencies, with its sign.
func signedMS(d time.Duration) string {
	if d < 0 {
		return "-" + ms(-d)
	}
	return "+" + ms(d)
}

// micros formats a difference in microseconds, with its sign.
func micros(d time.Duration) string {
	us := d.Microseconds()
	if us >= 0 {
		return "+" + thousands(us) + " µs"
	}
	return thousands(us) + " µs"
}
