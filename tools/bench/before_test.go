package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A report of before tokens, cut to the lines readBefore reads.
const reportWithoutTokens = "# orderstream benchmarks\n\n" +
	"Written by `make bench` (`tools/bench`) on 2026-12-02 15:51 UTC, full run, in 8m22s, on 2 cores shared by PostgreSQL.\n\n" +
	"| commit | e355cb3f10af (HEAD of the checkout; the binary has no VCS stamp) |\n" +
	"| placement: POST /orders, 32 clients, closed loop, 15s | 447 orders/s (6,707 placed, 0 failed); " +
	"HTTP p50 59.9 ms, p95 124 ms, p99 222 ms, max 2,292 ms (n=6,707) |\n" +
	"| CPU during placement | machine 96%: orderstream 26%, postgres 61%, redis 3%, load generator 4%, other 1% |\n"

func TestReadBefore(t *testing.T) {
	write := func(t *testing.T, text string) string {
		path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	t.Run("reads_the_placement_row_of_a_report_without_tokens", func(t *testing.T) {
		bf, err := readBefore(write(t, reportWithoutTokens))
		if err != nil || bf == nil {
			t.Fatalf("readBefore: %v, %v", bf, err)
		}
		want := "before: no tokens, 32 clients, closed loop, 15s (BENCHMARKS.md written 2026-12-02 15:51 UTC, full run, commit e355cb3f10af)"
		if bf.label != want {
			t.Errorf("label %q, want %q", bf.label, want)
		}
		if bf.perSecond != 447 || bf.p50 != 59900*time.Microsecond || bf.p95 != 124*time.Millisecond || bf.p99 != 222*time.Millisecond {
			t.Errorf("figures %+v", bf)
		}
		// 26% of 2 cores ÷ 447 orders/s
		if got, want := bf.cpu.Round(time.Microsecond), 1163*time.Microsecond; got != want {
			t.Errorf("CPU per order %s, want %s", got, want)
		}
	})
	t.Run("carries_the_before_row_of_a_report_with_tokens", func(t *testing.T) {
		first, err := readBefore(write(t, reportWithoutTokens))
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		b.WriteString("# orderstream benchmarks\n\n" + authHeading + "\n\n")
		table(&b, []string{"placement", "orders/s", "HTTP mean", "p50", "p95", "p99", "cpu", "redis cpu", "redis"}, [][]string{first.row()})
		again, err := readBefore(write(t, b.String()))
		if err != nil || again == nil {
			t.Fatalf("readBefore: %v, %v", again, err)
		}
		if again.label != first.label || again.row()[1] != first.row()[1] || again.p99 != first.p99 ||
			again.cpu.Round(10*time.Microsecond) != first.cpu.Round(10*time.Microsecond) {
			t.Errorf("carried %+v, want %+v", again, first)
		}
	})
	t.Run("finds_none_in_a_report_with_tokens_without_a_before_row", func(t *testing.T) {
		bf, err := readBefore(write(t, reportWithoutTokens+"\n"+authHeading+"\n\nno before\n"))
		if err != nil || bf != nil {
			t.Errorf("readBefore: %+v, %v; want none", bf, err)
		}
	})
	t.Run("finds_none_without_a_report", func(t *testing.T) {
		bf, err := readBefore(filepath.Join(t.TempDir(), "missing.md"))
		if err != nil || bf != nil {
			t.Errorf("readBefore: %+v, %v; want none", bf, err)
		}
	})
}
