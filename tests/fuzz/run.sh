#!/bin/sh
# run.sh - replay the regression inputs and fuzz each libFuzzer target for a bounded time.
#
#   tests/fuzz/run.sh [-t SECONDS] [-k] [NAME...]
#
# For each target build/fuzz/fuzz_NAME (all of them when no NAME is given):
#  1. every file in tests/fuzz/regressions/NAME/ is run once through the target (inputs
#     that crashed it once: they must pass now);
#  2. the target fuzzes for SECONDS (default 10) starting from the seed corpus
#     tests/fuzz/corpus/NAME/, which is only read: new inputs go to a temporary directory
#     (with -k to build/fuzz/corpus/NAME/, kept for the next run).
# Options a target needs (a dictionary, -close_fd_mask=2 for one that logs) are read from
# tests/fuzz/fuzz_NAME.options, one per line. A crash, leak, sanitizer report or timeout
# leaves its input in build/fuzz/artifacts/NAME/ and makes the script exit 1 after all
# targets ran; to keep it as a test, copy it into tests/fuzz/regressions/NAME/.
# Runs under nice; the targets run one after the other, with TMPDIR set to a temporary
# directory removed at the end (the session targets make their data dir there).
set -u
cd "$(dirname "$0")/../.." || exit 2

seconds=10
keep=""
while getopts "t:k" opt; do
	case $opt in
	t) seconds=$OPTARG ;;
	k) keep=1 ;;
	*) echo "usage: $0 [-t SECONDS] [-k] [NAME...]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))

if [ $# -eq 0 ]; then
	set --
	for b in build/fuzz/fuzz_*; do
		[ -x "$b" ] && [ -f "tests/fuzz/$(basename "$b").c" ] && set -- "$@" "$(basename "$b" | sed 's/^fuzz_//')"
	done
fi
[ $# -gt 0 ] || { echo "run.sh: no targets in build/fuzz (run make fuzz)" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tern-fuzz.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM HUP

failed=""
start_all=$(date +%s)
for name in "$@"; do
	bin=build/fuzz/fuzz_$name
	[ -x "$bin" ] || { echo "run.sh: $bin missing (make fuzz)" >&2; failed="$failed $name"; continue; }
	art=build/fuzz/artifacts/$name
	mkdir -p "$art"
	opts=""
	[ -f "tests/fuzz/fuzz_$name.options" ] && opts=$(grep -v '^#' "tests/fuzz/fuzz_$name.options" | tr '\n' ' ')
	log=$tmp/$name.log

	# 1. regressions: each file once (libFuzzer runs file arguments and exits)
	reg=tests/fuzz/regressions/$name
	if [ -d "$reg" ] && [ -n "$(ls -A "$reg")" ]; then
		# shellcheck disable=SC2086
		if ! TMPDIR=$tmp nice "$bin" $opts -rss_limit_mb=2048 -timeout=10 "$reg"/* >"$log" 2>&1; then
			echo "FAIL $name: a regression input crashes again:" >&2
			tail -n 40 "$log" >&2
			failed="$failed $name"
			continue
		fi
	fi

	# 2. bounded fuzzing
	if [ -n "$keep" ]; then
		out=build/fuzz/corpus/$name
	else
		out=$tmp/corpus-$name
	fi
	mkdir -p "$out"
	seeds=tests/fuzz/corpus/$name
	[ -d "$seeds" ] || seeds=""
	t0=$(date +%s)
	# shellcheck disable=SC2086
	TMPDIR=$tmp nice "$bin" $opts -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
		-print_final_stats=1 -artifact_prefix="$art/" \
		"$out" $seeds >"$log" 2>&1
	rc=$?
	t1=$(date +%s)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
	if [ $rc -ne 0 ]; then
		echo "FAIL $name after $((t1 - t0)) s (input in $art/):" >&2
		tail -n 60 "$log" >&2
		failed="$failed $name"
	else
		echo "ok   $name: ${execs:-?} runs in $((t1 - t0)) s, ${cov:-cov: ?}, $(ls "$out" | wc -l) new inputs"
	fi
done
echo "fuzzing took $(($(date +%s) - start_all)) s"
if [ -n "$failed" ]; then
	echo "fuzz targets failed:$failed" >&2
	exit 1
fi
exit 0
