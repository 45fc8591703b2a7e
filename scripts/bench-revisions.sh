#!/usr/bin/env bash
# Measures orderstream at several revisions with one make bench measurement,
# taking turns (ROUNDS rounds, default 3), so that the machine's drift
# falls on every revision alike, and prints each run's rows of the
# measurement: how a change was judged lever by lever (BENCHMARKS.md).
#
#   scripts/bench-revisions.sh PHASES REV... [-- BENCH_FLAGS...]
#
# PHASES is bin/bench's -only (say single, or e2e); each REV (a commit, a
# branch) is built into .run/revisions/. The bench itself is this
# checkout's.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -lt 2 ]]; then
	echo "usage: $0 PHASES REV... [-- BENCH_FLAGS...]" >&2
	exit 2
fi
phases=$1
shift
revs=()
while [[ $# -gt 0 && $1 != -- ]]; do
	revs+=("$(git rev-parse --short "$1")")
	shift
done
[[ ${1:-} == -- ]] && shift

./scripts/services.sh
mkdir -p .run/revisions
(cd tools && go build -o ../bin/bench ./bench)
for rev in "${revs[@]}"; do
	if [[ ! -x .run/revisions/$rev ]]; then
		tree=$(mktemp -d)
		git worktree add -q --detach "$tree" "$rev"
		(cd "$tree" && go build -o "$OLDPWD/.run/revisions/$rev" .)
		git worktree remove --force "$tree"
	fi
done
for round in $(seq "${ROUNDS:-3}"); do
	for rev in "${revs[@]}"; do
		echo "== round $round, $rev"
		# The measured rows: the target table's and the raw numbers, not
		# the machine's table nor what was not measured.
		bin/bench -bin ".run/revisions/$rev" -only "$phases" -before '' -out '' "$@" 2>/dev/null |
			grep -E '^\| ' | grep -vE '^\| (---|what |measurement )|^\|  \||not measured \|$' |
			grep -vE '^\| (CPU|memory|OS|before the run|Go|commit|PostgreSQL|Redis|application settings) \|'
	done
done
