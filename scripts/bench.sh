#!/usr/bin/env bash
# Runs the Go benchmarks of the hot paths (decoding and validating an order,
# placing it with its outbox event, reserving its stock) against the real
# PostgreSQL, then summarises them with benchstat. Given the file of an
# earlier run, benchstat compares the two, so a change can be judged by
# its numbers.
#
#   scripts/bench.sh [OLD.txt]
#
# BENCH_COUNT (default 6) runs of each benchmark, written to BENCH_OUT
# (default .run/go-bench.txt). `make bench` measures the whole application
# instead (tools/bench, BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${BENCH_OUT:-.run/go-bench.txt}
count=${BENCH_COUNT:-6}
mkdir -p "$(dirname "$out")"

./scripts/services.sh
go test -run '^$' -bench . -count "$count" ./httpapi ./orders ./inventory | tee "$out"

benchstat=(go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da)
if [[ $# -gt 0 ]]; then
	"${benchstat[@]}" "$1" "$out"
else
	"${benchstat[@]}" "$out"
fi
