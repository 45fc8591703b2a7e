package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// summary is the distribution of a set of latencies.
type summary struct {
	n                        int
	p50, p95, p99, max, mean time.Duration
}

// summarize sorts d and returns its percentiles by the nearest-rank method:
// p99 is the smallest value that at least 99% of the values do not exceed.
func summarize(d []time.Duration) summary {
	if len(d) == 0 {
		return summary{}
	}
	slices.Sort(d)
	rank := func(p float64) time.Duration {
		i := int(float64(len(d))*p+0.999999) - 1
		return d[min(max(i, 0), len(d)-1)]
	}
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	return summary{
		n: len(d), p50: rank(0.50), p95: rank(0.95), p99: rank(0.99),
		max: d[len(d)-1], mean: sum / time.Duration(len(d)),
	}
}

func (s summary) String() string {
	if s.n == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s, p95 %s, p99 %s, max %s (n=%s)",
		ms(s.p50), ms(s.p95), ms(s.p99), ms(s.max), thousands(int64(s.n)))
}

// ms formats d in milliseconds with a precision that suits its size.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return thousands(int64(v+0.5)) + " ms"
	}
}

// thousands formats n with commas between groups of three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// rate formats a per-second figure: whole numbers with commas from 100 up.
func rate(v float64) string {
	if v >= 100 {
		return thousands(int64(v + 0.5))
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// megabytes formats bytes in MB of 10^6 bytes.
func megabytes(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }
