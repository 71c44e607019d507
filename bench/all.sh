#!/usr/bin/env bash
# bench/all.sh - `make bench`: every benchmark against its peer (Postfix, Dovecot), then tern
# alone with workers = 1 and 2, back to back, for the scaling figures; one table of medians and ratios at the end,
# also written to bench/results/latest.md. Each script runs with sizes that fit the whole in
# about 20 minutes on a 2-core machine and appends its figures ("KEY VALUE" lines) to a results
# file (BENCH_RESULTS); this script reads only those files, never the scripts' human output.
# A benchmark, not a test: it fails (exit 1) when a script failed (something broken), never
# because a target is missed; the table says which are met.
#
# Knobs (environment): BENCH_ROUNDS_SMTP=2, BENCH_ROUNDS_POP3=2 (runs of smtp.sh / pop3.sh;
# each round runs tern, then the peer), BENCH_SCALING=1 (0 skips the scaling runs),
# BENCH_ONLY="smtp relay pop3 imap" (the parts to run), BENCH_OUT=bench/results.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${BENCH_OUT:-$ROOT/bench/results}
ROUNDS_SMTP=${BENCH_ROUNDS_SMTP:-2}
ROUNDS_POP3=${BENCH_ROUNDS_POP3:-2}
SCALING=${BENCH_SCALING:-1}
ONLY=${BENCH_ONLY:-"smtp relay pop3 imap"}
STAMP=$(date -u +%Y%m%d-%H%M%S)
RUN_DIR=$OUT/$STAMP
mkdir -p "$RUN_DIR"
T0=$SECONDS
FAILED=()

"$ROOT/scripts/bench-deps.sh" || { echo "bench: scripts/bench-deps.sh failed" >&2; exit 1; }
make -C "$ROOT" --no-print-directory -s bench-tools || { echo "bench: make bench-tools failed" >&2; exit 1; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "make bench: results in $RUN_DIR (one log and one results file per step)"
echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo);" \
	"load average at start: $LOAD_START"
echo ""

# step NAME SCRIPT [VAR=VALUE...] - run bench/SCRIPT with the variables, its output in
# RUN_DIR/NAME.log, its figures appended to RUN_DIR/NAME.res; a failure is recorded, not fatal
step() {
	local name=$1 script=$2 t=$SECONDS rc=0
	shift 2
	printf '%-22s ' "$name"
	env "$@" BENCH_RESULTS="$RUN_DIR/$name.res" "$ROOT/bench/$script" >"$RUN_DIR/$name.log" 2>&1 || rc=$?
	if [ "$rc" -eq 0 ]; then
		echo "done in $((SECONDS - t)) s"
	else
		echo "FAILED (status $rc) after $((SECONDS - t)) s: see $RUN_DIR/$name.log"
		tail -n 5 "$RUN_DIR/$name.log" | sed 's/^/    /'
		FAILED+=("$name")
	fi
}

want() { [[ " $ONLY " == *" $1 "* ]]; }

# --- against the peers (tern with workers = 2, each script's default) -------------------------
if want smtp; then
	for ((r = 1; r <= ROUNDS_SMTP; r++)); do
		step "smtp-$r" smtp.sh BENCH_MSGS=1500 BENCH_SESSIONS="1 20" BENCH_WARMUP=200
	done
fi
if want relay; then
	step relay relay.sh BENCH_MSGS=1500 BENCH_RUNS=3 BENCH_MODES="plain tls" BENCH_WARMUP=200
fi
if want pop3; then
	for ((r = 1; r <= ROUNDS_POP3; r++)); do
		step "pop3-$r" pop3.sh BENCH_MSGS=1000 BENCH_RUNS=5 BENCH_IDLE=50 BENCH_PAR=10
	done
fi
if want imap; then
	step imap imap.sh BENCH_CLIENTS="10 50" BENCH_SECONDS=10 BENCH_RUNS=2 BENCH_IDLE=300 \
		BENCH_IDLE_TLS=1 BENCH_WAKE=20
fi

# --- scaling: tern alone with workers = 1, then 2, back to back (the same moment's machine) ------
if [ "$SCALING" = 1 ]; then
	for w in 1 2; do
		want smtp && step "smtp-w$w" smtp.sh BENCH_WORKERS=$w BENCH_POSTFIX=0 BENCH_MSGS=1500 \
			BENCH_SESSIONS=20 BENCH_WARMUP=200
	done
	for w in 1 2; do
		want relay && step "relay-w$w" relay.sh BENCH_WORKERS=$w BENCH_POSTFIX=0 BENCH_MSGS=1500 \
			BENCH_RUNS=1 BENCH_MODES=plain BENCH_WARMUP=200
	done
	for w in 1 2; do
		want imap && step "imap-w$w" imap.sh BENCH_WORKERS=$w BENCH_DOVECOT=0 BENCH_CLIENTS="10 50" \
			BENCH_SECONDS=10 BENCH_RUNS=1 BENCH_IDLE=0 BENCH_WAKE=0
	done
fi

TOTAL=$((SECONDS - T0))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the table ----------------------------------------------------------------------------------
python3 - "$RUN_DIR" "$TOTAL" "$LOAD_START" "$LOAD_END" "$(nproc)" >"$RUN_DIR/table.md" <<'EOF'
import glob, os, statistics, sys

run_dir, total, load0, load1, ncpu = sys.argv[1:]
vals = {}      # key -> [values] over the comparison steps (workers = 2)
w1 = {}        # key -> [values] over the scaling steps, workers = 1
w2 = {}        # and workers = 2
for path in sorted(glob.glob(os.path.join(run_dir, "*.res"))):
    base = os.path.basename(path)
    into = w1 if base.endswith("-w1.res") else w2 if base.endswith("-w2.res") else vals
    for line in open(path):
        parts = line.split()
        if len(parts) == 2:
            into.setdefault(parts[0], []).append(parts[1])

def med(d, key):
    v = [float(x) for x in d.get(key, []) if "/" not in x]
    return statistics.median(v) if v else None

def fmt(x, unit=""):
    if x is None:
        return "-"
    return f"{x:.1f}" if x < 100 else f"{x:.0f}"

# benchmark, tern key, peer key, unit, target kind, target value, target text
ROWS = [
    ("SMTP in, 1 session (msg/s)", "smtp.s1.tern", "smtp.s1.postfix", "ratio", 2.0, ">= 2x Postfix"),
    ("SMTP in, 20 sessions (msg/s)", "smtp.s20.tern", "smtp.s20.postfix", "ratio", 4.0, ">= 4x Postfix"),
    ("Relay end to end, 20 sessions (msg/s)", "relay.tern.plain", "relay.postfix", "ratio", 2.0, ">= 2x Postfix"),
    ("Relay end to end, STARTTLS (msg/s)", "relay.tern.tls", "relay.postfix", "info", None, "-"),
    ("POP3 RETR one at a time (msg/s)", "pop3.tern.one", "pop3.dovecot.one", "ratio", 1.5, ">= 1.5x Dovecot"),
    ("POP3 RETR pipelined/50 (msg/s)", "pop3.tern.pipe", "pop3.dovecot.pipe", "ratio", 1.5, ">= 1.5x Dovecot"),
    ("POP3 RETR, 10 sessions pipelined (msg/s)", "pop3.tern.par", "pop3.dovecot.par", "info", None, "-"),
    ("POP3 idle session (KB PSS)", "pop3.tern.idle_kb", "pop3.dovecot.idle_kb", "max", 100, "<= 100 KB"),
    ("IMAP mixed, 10 clients (ops/s)", "imap.tern.mixed10", "imap.dovecot.mixed10", "ratio", 1.5, ">= 1.5x Dovecot"),
    ("IMAP mixed, 50 clients (ops/s)", "imap.tern.mixed50", "imap.dovecot.mixed50", "ratio", 1.5, ">= 1.5x Dovecot"),
    ("IMAP idle, plaintext (KB PSS/conn)", "imap.tern.idle_plain", "imap.dovecot.idle_plain", "max", 10, "<= 10 KB"),
    ("IMAP idle, TLS (KB PSS/conn)", "imap.tern.idle_tls", "imap.dovecot.idle_tls", "max", 40, "<= 40 KB"),
]

out = []
p = out.append
p(f"| benchmark | tern | peer | tern/peer | target | met | runs |")
p(f"|---|---:|---:|---:|---|---|---:|")
for name, tk, pk, kind, target, ttext in ROWS:
    t, q = med(vals, tk), med(vals, pk)
    # a memory growth at or below zero is noise around nothing: no ratio for it
    ratio = t / q if t is not None and q and t > 0 else None
    if kind == "ratio":
        met = "-" if ratio is None else ("yes" if ratio >= target else "no")
    elif kind == "max":
        met = "-" if t is None else ("yes" if t <= target else "no")
    else:
        met = ""
    runs = f"{len(vals.get(tk, []))}/{len(vals.get(pk, []))}"
    p(f"| {name} | {fmt(t)} | {fmt(q)} | {'-' if ratio is None else f'{ratio:.2f}x'} | {ttext} | {met} | {runs} |")
p("")
p("Medians over the runs (tern and peer alternate; each script's own best-of where it has one).")
p("Peers: Postfix " + "(SMTP in: delivered to Maildir; relay: clients in mynetworks, no AUTH), "
  "Dovecot (POP3, IMAP). Memory rows: lower is better, the target is tern's own figure.")

p("")
p("Scaling, tern alone: workers = 1, then workers = 2, run back to back")
p("")
p("| benchmark | workers = 1 | workers = 2 | growth |")
p("|---|---:|---:|---:|")
for name, key in (("SMTP in, 20 sessions (msg/s)", "smtp.s20.tern"),
                  ("Relay end to end (msg/s)", "relay.tern.plain"),
                  ("IMAP mixed, 10 clients (ops/s)", "imap.tern.mixed10"),
                  ("IMAP mixed, 50 clients (ops/s)", "imap.tern.mixed50")):
    a, b = med(w1, key), med(w2, key)
    g = f"{b / a:.2f}x" if a and b is not None else "-"
    p(f"| {name} | {fmt(a)} | {fmt(b)} | {g} |")

p("")
p("Load generators: own CPU time against wall time (the largest share of any run)")
p("")
p("| generator, run | CPU s | wall s | share |")
p("|---|---:|---:|---:|")
for d in (vals, w1, w2):
    for key in sorted(k for k in d if k.endswith(".client")):
        worst = None
        for v in d[key]:
            c, w = (float(x) for x in v.split("/"))
            if w > 0 and (worst is None or c / w > worst[0]):
                worst = (c / w, c, w)
        if worst:
            gen = {"smtp": "smtp-source", "relay": "smtp_load", "pop3": "pop3_load", "imap": "imap_load"}[key.split(".")[0]]
            label = key[:-len(".client")] + (" (workers = 1)" if d is w1 else " (workers = 2)" if d is w2 else "")
            p(f"| {gen}: {label} | {worst[1]:.3f} | {worst[2]:.3f} | {worst[0] * 100:.0f}% |")
p("")
m, s = divmod(int(total), 60)
p(f"Total time {m} min {s} s on {ncpu} CPUs; load average {load0} at the start, {load1} at the end.")
print("\n".join(out))
EOF

echo ""
cat "$RUN_DIR/table.md"
cp "$RUN_DIR/table.md" "$OUT/latest.md"
echo ""
echo "table written to $OUT/latest.md (paste it into docs/performance.md)"
if [ "${#FAILED[@]}" -gt 0 ]; then
	echo "bench: FAILED steps: ${FAILED[*]} (their logs are in $RUN_DIR)" >&2
	exit 1
fi
exit 0
