package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// beforeFigures are the placement figures of a report written before the
// application required tokens: the "before" of the comparison with
// authentication and rate limiting, which no run can measure any more.
type beforeFigures struct {
	label         string // "before: ...", with where the figures come from
	perSecond     float64
	p50, p95, p99 time.Duration
	cpu           time.Duration // orderstream CPU per order, from a rounded share; 0: not known
}

// beforePrefix starts the label, and so the table row, of the figures.
const beforePrefix = "before: "

func (bf *beforeFigures) row() []string {
	cpu := "–"
	if bf.cpu > 0 {
		cpu = "≈ " + cpuMS(bf.cpu)
	}
	return []string{bf.label, rate(bf.perSecond), "–", ms(bf.p50), ms(bf.p95), ms(bf.p99), cpu, "–", "–"}
}

// readBefore finds the figures from before tokens in the report at path:
// its before row, carried from report to report, or else, in a report
// written before the comparison existed (without its section), the
// placement row. It returns nil when there are none: no report, or one
// written with tokens that has no before row.
func readBefore(path string) (*beforeFigures, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the figures from before: %w", err)
	}
	lines := strings.Split(string(b), "\n")
	if line, ok := lineWith(lines, "| "+beforePrefix); ok {
		bf, err := parseBeforeRow(line)
		if err != nil {
			return nil, fmt.Errorf("%s: before row: %w", path, err)
		}
		return bf, nil
	}
	if strings.Contains(string(b), "\n"+authHeading+"\n") {
		return nil, nil
	}
	line, ok := lineWith(lines, "| placement: POST /orders, ")
	if !ok {
		return nil, nil
	}
	bf, err := parsePlacementRow(line)
	if err != nil {
		return nil, fmt.Errorf("%s: placement row: %w", path, err)
	}
	source := filepath.Base(path)
	written, _ := lineWith(lines, "Written by ")
	if m := writtenAt.FindStringSubmatch(written); m != nil {
		source += fmt.Sprintf(" written %s UTC, %s", m[1], m[2])
		cores, _ := strconv.Atoi(m[3])
		if cpu, ok := lineWith(lines, "| CPU during placement | "); ok && cores > 0 && bf.perSecond > 0 {
			if m := appShare.FindStringSubmatch(cpu); m != nil {
				share, _ := strconv.ParseFloat(m[1], 64)
				bf.cpu = time.Duration(share / 100 * float64(cores) * float64(time.Second) / bf.perSecond)
			}
		}
	}
	if commit, ok := lineWith(lines, "| commit | "); ok {
		source += ", commit " + strings.Fields(strings.TrimPrefix(commit, "| commit | "))[0]
	}
	bf.label = fmt.Sprintf("%sno tokens, %s (%s)", beforePrefix, bf.label, source)
	return bf, nil
}

var (
	// writtenAt is the report's first line: when, which kind of run, cores.
	writtenAt = regexp.MustCompile(`on (\d{4}-\d\d-\d\d \d\d:\d\d) UTC, ([^,]+), .* on (\d+) cores`)
	appShare  = regexp.MustCompile(`orderstream (\d+(?:\.\d+)?)%`)
	// placementFigures are the placement row's: orders/s, then HTTP.
	placementFigures = regexp.MustCompile(`^([\d,.]+) orders/s .*HTTP p50 ([\d,.]+) ms, p95 ([\d,.]+) ms, p99 ([\d,.]+) ms`)
)

// parsePlacementRow reads "| placement: POST /orders, 32 clients, closed
// loop, 15s | 447 orders/s (...); HTTP p50 59.9 ms, p95 124 ms, p99 222
// ms, ... |"; the label is the load ("32 clients, closed loop, 15s").
func parsePlacementRow(line string) (*beforeFigures, error) {
	cells := cellsOf(line)
	if len(cells) != 2 {
		return nil, fmt.Errorf("want 2 cells, found %d", len(cells))
	}
	m := placementFigures.FindStringSubmatch(cells[1])
	if m == nil {
		return nil, fmt.Errorf("figures %q: want orders/s and HTTP percentiles", cells[1])
	}
	bf := &beforeFigures{label: strings.TrimPrefix(cells[0], "placement: POST /orders, ")}
	var errs []error
	bf.perSecond, errs = parseNumber(m[1], errs)
	bf.p50, errs = parseMS(m[2]+" ms", errs)
	bf.p95, errs = parseMS(m[3]+" ms", errs)
	bf.p99, errs = parseMS(m[4]+" ms", errs)
	return bf, errors.Join(errs...)
}

// parseBeforeRow reads the row beforeFigures.row wrote.
func parseBeforeRow(line string) (*beforeFigures, error) {
	cells := cellsOf(line)
	if len(cells) != 9 {
		return nil, fmt.Errorf("want 9 cells, found %d", len(cells))
	}
	bf := &beforeFigures{label: cells[0]}
	var errs []error
	bf.perSecond, errs = parseNumber(cells[1], errs)
	bf.p50, errs = parseMS(cells[3], errs)
	bf.p95, errs = parseMS(cells[4], errs)
	bf.p99, errs = parseMS(cells[5], errs)
	if cpu, ok := strings.CutPrefix(cells[6], "≈ "); ok {
		bf.cpu, errs = parseMS(cpu, errs)
	}
	return bf, errors.Join(errs...)
}

// cellsOf splits a Markdown table row into its cells ("\|" is a "|" inside
// one).
func cellsOf(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
	parts := strings.Split(strings.ReplaceAll(line, `\|`, "\x00"), "|")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(strings.TrimSpace(p), "\x00", "|")
	}
	return parts
}

func lineWith(lines []string, prefix string) (string, bool) {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return l, true
		}
	}
	return "", false
}

// parseNumber reads a figure as rate and thousands write it.
func parseNumber(s string, errs []error) (float64, []error) {
	v, err := strconv.ParseFloat(strings.ReplaceAll(s, ",", ""), 64)
	if err != nil {
		return 0, append(errs, fmt.Errorf("%q is not a number", s))
	}
	return v, errs
}

// parseMS reads a duration as ms writes it ("59.9 ms", "2,292 ms").
func parseMS(s string, errs []error) (time.Duration, []error) {
	v, errs := parseNumber(strings.TrimSuffix(s, " ms"), errs)
	return time.Duration(v * float64(time.Millisecond)), errs
}
