#!/usr/bin/env bash
# bench/imap.sh - IMAP benchmark, tern side by side with a private Dovecot instance serving
# the same message files: a mixed client load (bench/imap_load.c: SELECT, FETCH, STORE,
# SEARCH, APPEND, EXPUNGE, NOOP) with 10 and 50 clients, runs alternating tern / dovecot;
# the memory one more idle connection (logged in, INBOX selected, in IDLE) costs each server,
# over plain TCP and over implicit TLS (tern's imaps port, Dovecot's imaps listener);
# and, when both servers take APPEND, the delay from an APPEND on one connection to the
# "* n EXISTS" on another connection idling on the same INBOX.
# A benchmark, not a test: it fails (exit 1) only when something is broken (a NO/BAD, a lost
# connection, a server that does not start), never because a number is low.
#
# Run with `make bench-imap` (builds ./tern first). Knobs (environment):
#   BENCH_MSGS=200         messages in each user's INBOX
#   BENCH_SIZE=10240       approximate size of each message in bytes
#   BENCH_CLIENTS="10 50"  client counts of the mixed load, one set of runs each
#   BENCH_SECONDS=10       seconds per mixed run
#   BENCH_RUNS=2           runs per server and client count (alternating); the best counts
#   BENCH_IDLE=2000        idle connections for the memory figure (0: skip it)
#   BENCH_IDLE_HOLD=2      seconds from the last connection entering IDLE to the measure
#   BENCH_IDLE_TLS=1       1: measure idle memory over TLS too (0: plaintext only)
#   BENCH_WAKE=50          APPEND -> EXISTS wake-ups measured per server (0: skip)
#   BENCH_WORKERS=2        tern worker processes
#   BENCH_TIMEOUT=600      seconds allowed for one client run (the 2,000 logins included)
#   BENCH_DOVECOT=1        0: skip the Dovecot half
#   BENCH_KEEP=0           1: keep the temporary directory (configs, logs, mail) at the end
#   BENCH_RESULTS=         a file to append "imap.IMPL.mixedN OPS_PER_S" and "imap.IMPL.idle_plain|tls KB"
#                          lines to
#   BENCH_TERN=./tern      the tern binary
#   TMPDIR                 where the temporary directory is made
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TERN=${BENCH_TERN:-$ROOT/tern}
MSGS=${BENCH_MSGS:-200}
SIZE=${BENCH_SIZE:-10240}
CLIENTS=${BENCH_CLIENTS:-10 50}
SECONDS_RUN=${BENCH_SECONDS:-10}
RUNS=${BENCH_RUNS:-2}
IDLE=${BENCH_IDLE:-2000}
IDLE_HOLD=${BENCH_IDLE_HOLD:-2}
IDLE_TLS=${BENCH_IDLE_TLS:-1}
WAKE=${BENCH_WAKE:-50}
WORKERS=${BENCH_WORKERS:-2}
RUN_TIMEOUT=${BENCH_TIMEOUT:-600}
DO_DOVECOT=${BENCH_DOVECOT:-1}
KEEP=${BENCH_KEEP:-0}
PASS=bench-pw
USERFMT='bench%d@example.test'
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

"$ROOT/scripts/bench-deps.sh"
[ -x "$TERN" ] || die "$TERN missing: run 'make bench-imap' (or 'make tern') first"
command -v python3 >/dev/null || die "python3 missing"
command -v cc >/dev/null || die "cc missing"
[ "$IDLE" -gt 0 ] || IDLE_TLS=0
if [ "$IDLE_TLS" = 1 ]; then
	command -v openssl >/dev/null || die "openssl missing (BENCH_IDLE_TLS=0 skips the TLS measure)"
fi
[ "$MSGS" -ge 50 ] || die "BENCH_MSGS must be at least 50 (the mixed load fetches 1:50)"

# users bench1 .. benchN: N is the largest client count (the idle connections included)
NUSERS=$IDLE
for c in $CLIENTS; do [ "$c" -gt "$NUSERS" ] && NUSERS=$c; done
[ "$NUSERS" -ge 2 ] || NUSERS=2	# the wake-up measure uses bench1 and bench2

# every connection is a descriptor in the client and in the server
need_fd=$((NUSERS * 2 + 1024))
if [ "$(ulimit -n)" -lt "$need_fd" ]; then
	ulimit -n "$need_fd" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
[ "$(ulimit -n)" -ge $((NUSERS + 256)) ] || die "ulimit -n is $(ulimit -n), too low for $NUSERS connections (hard limit $(ulimit -Hn))"

bench_identity
bench_tmp bench-imap stop_idle stop_tern stop_dovecot

# --- helpers ----------------------------------------------------------------------------------
# tern_mem, dv_mem - "RSS PSS N IMAP LOGIN" over all of the server's processes (lib.sh's
# mem_tree): the sums, the count of them, of Dovecot's "imap" and "imap-login" processes
tern_mem() { mem_tree "$TERN_PID" | awk '{ print $1, $2, $3, 0, 0 }'; }
dv_mem() { mem_tree "$DV_PID" imap imap-login | awk '{ print $1, $2, $3, $6, $9 }'; }

say "IMAP benchmark: mixed load (clients: $CLIENTS; ${SECONDS_RUN}s per run, $RUNS runs per server," \
	"alternating), $IDLE idle connections, $NUSERS users with $MSGS messages of ~$SIZE bytes each"
bench_header "ulimit -n $(ulimit -n)"

# --- the load generator -----------------------------------------------------------------------
LOAD=$(bench_tool imap_load)

# --- one certificate for both servers' TLS listeners: self-signed P-256, as tern makes its own
if [ "$IDLE_TLS" = 1 ]; then
	mkdir -p "$TMP/tls"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
		-subj /CN=bench.example.test -keyout "$TMP/tls/key.pem" -out "$TMP/tls/cert.pem" \
		>"$TMP/tls/openssl.out" 2>&1 || { cat "$TMP/tls/openssl.out" >&2; die "making the TLS certificate failed"; }
	chmod 600 "$TMP/tls/key.pem"
fi

# --- the messages: MSGS files, one set per server, hard-linked into every user's new/ --------
# Realistic headers, a text/plain body of lines of words, CRLF line ends (as tern stores mail).
python3 - "$TMP/msgs" "$MSGS" "$SIZE" <<'EOF' || die "making the messages failed"
import os, random, sys, time
from email.utils import formatdate
d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(d)
rnd = random.Random(1)
words = ("the quick brown fox jumps over lazy dog mail server imap message report meeting "
         "budget project schedule review draft attached please thanks regards tomorrow "
         "monday update status release notes question answer").split()
names = ["Alice Martin", "Bob Dupont", "Carol Weber", "Dave Rossi", "Eve Novak", "Frank Li"]
t0 = int(time.time()) - 86400 * 30
for i in range(1, n + 1):
    who = rnd.choice(names)
    frm = who.lower().replace(" ", ".") + "@example.org"
    subj = " ".join(rnd.choice(words) for _ in range(rnd.randint(3, 8))).capitalize()
    ts = t0 + i * 600
    hdr = [
        f"Return-Path: <{frm}>",
        f"Received: from mx.example.org (mx.example.org [192.0.2.10]) by bench.example.test"
        f" with ESMTPS id b{i:06d}; {formatdate(ts)}",
        f"From: {who} <{frm}>",
        "To: Bench User <bench@example.test>",
        f"Subject: {subj} #{i}",
        f"Date: {formatdate(ts)}",
        f"Message-ID: <{ts}.{i}.bench@example.org>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    body, blen = [], 0
    head_len = sum(len(h) + 2 for h in hdr) + 2
    while head_len + blen < size:
        line = " ".join(rnd.choice(words) for _ in range(12))
        body.append(line)
        blen += len(line) + 2
    data = ("\r\n".join(hdr) + "\r\n\r\n" + "\r\n".join(body) + "\r\n").encode()
    with open(os.path.join(d, f"{ts}.M{i:06d}P1.bench.example.test"), "wb") as f:
        f.write(data)
EOF

# fill_maildirs SRC BASE - BASE/bench1 .. BASE/benchN, each a Maildir whose new/ holds
# hard links to the files of SRC (a copy of them, so the two servers share no inode)
fill_maildirs() {
	python3 - "$1" "$2" "$NUSERS" <<'EOF'
import os, shutil, sys
src, base, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
own = base + ".files"
shutil.copytree(src, own)
files = sorted(os.listdir(own))
for k in range(1, n + 1):
    d = os.path.join(base, f"bench{k}")
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    for f in files:
        os.link(os.path.join(own, f), os.path.join(d, "new", f))
EOF
	chown -R "$RUN_USER:$RUN_GROUP" "$2" "$2.files"
	find "$2" -type d -exec chmod 700 {} +
}

RESULTS=()	# "impl|clients|run|ops|seconds|ops_per_s|p50|p99|output file"
FAILURES=()
# mixed_run IMPL PORT CLIENTS RUN - one mixed run; appends to RESULTS, or to FAILURES
mixed_run() {
	local impl=$1 port=$2 n=$3 r=$4 out rc=0 line
	out=$TMP/$impl-mixed-$n-$r.out
	timeout "$RUN_TIMEOUT" "$LOAD" 127.0.0.1 "$port" "$USERFMT" "$PASS" "$n" "$SECONDS_RUN" mixed \
		>"$out" 2>&1 || rc=$?
	line=$(grep '^ops ' "$out" || true)
	if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
		warn "$impl, $n clients, run $r: imap_load failed (status $rc):"
		sort "$out" | uniq -c | sort -rn | head -n 5 >&2
		FAILURES+=("$impl mixed $n clients: $(grep -m1 -- '->' "$out" || head -n1 "$out")")
		return 1
	fi
	local cpu
	cpu=$(awk '/^client_cpu / { print $2 "/" $4 }' "$out")
	# ops N seconds S ops_per_s R p50_ms A p99_ms B
	set -- $line
	say "$(printf '%-8s %3d clients run %d: %7d ops in %5ss = %6s ops/s, p50 %s ms, p99 %s ms, client CPU/wall %ss' \
		"$impl" "$n" "$r" "$2" "$4" "$6" "$8" "${10}" "$cpu")"
	result "imap.$impl.mixed$n.client" "$cpu"
	RESULTS+=("$impl|$n|$r|$2|$4|$6|$8|${10}|$out")
}

# warm IMPL PORT - every user logs in, SELECTs INBOX (the first open indexes it) and logs out
warm() {
	local t0=$SECONDS out=$TMP/$1-warm.out
	timeout "$RUN_TIMEOUT" "$LOAD" 127.0.0.1 "$2" "$USERFMT" "$PASS" "$NUSERS" 0 warm >"$out" 2>&1 ||
		{ head -n 5 "$out" >&2; die "$1: warm-up (login + SELECT of $NUSERS users) failed"; }
	say "$1: warm-up: $NUSERS users logged in and selected INBOX once ($((SECONDS - t0)) s)"
}

IDLE_LINES=()	# "impl|plain or tls|before: RSS PSS N ..|after: RSS PSS N ..|seconds to log in|extra"
# idle_measure IMPL PORT MEMCMD [plain|tls] - IDLE connections in IDLE; MEMCMD prints
# "RSS PSS N IMAP LOGIN" for all of the server's processes
idle_measure() {
	local impl=$1 port=$2 memcmd=$3 tls=${4:-plain} b a out=$TMP/$1-idle-${4:-plain}.out t0 ok=0
	local extra=""
	[ "$IDLE" -gt 0 ] || return 0
	sleep 1
	b=$($memcmd)
	t0=$(date +%s.%N)
	# held far longer than needed: stopped (SIGTERM) once measured
	"$LOAD" 127.0.0.1 "$port" "$USERFMT" "$PASS" "$IDLE" "$RUN_TIMEOUT" idle "$tls" >"$out" 2>&1 &
	IDLE_PID=$!
	wait_for_line "$out" '^idle ' "$IDLE_PID" "$RUN_TIMEOUT" && ok=1
	local took
	took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	if [ "$ok" -ne 1 ] || ! grep -q "^idle $IDLE\$" "$out"; then
		stop_idle
		sort "$out" | uniq -c | sort -rn | head -n 5 >&2
		FAILURES+=("$impl idle ($tls): $IDLE connections did not all reach IDLE: $(grep -m1 -v '^idle' "$out" || true)")
		warn "$impl: $IDLE connections ($tls) did not all reach IDLE"
		return 1
	fi
	sleep "$IDLE_HOLD"	# let the server finish whatever follows the last login
	a=$($memcmd)
	if ! kill -0 "$IDLE_PID" 2>/dev/null || grep -v '^idle ' "$out" | grep -q .; then
		wait "$IDLE_PID" 2>/dev/null || true
		IDLE_PID=""
		FAILURES+=("$impl idle ($tls): connections failed while idling: $(grep -m1 -v '^idle' "$out" || true)")
		return 1
	fi
	stop_idle
	read -r _ _ _ extra <<<"$a"
	[ "$impl" = dovecot ] || extra=""
	say "$impl: $IDLE connections ($tls) idling after ${took}s; memory of the server's processes before:" \
		"$b, while idling: $a (RSS kB, PSS kB, processes, imap processes, imap-login processes)"
	IDLE_LINES+=("$impl|$tls|$b|$a|$took|$extra")
}

# wake IMPL PORT - BENCH_WAKE APPENDs on one connection, the EXISTS seen on another in IDLE
WAKE_LINES=()
wake() {
	local impl=$1 port=$2 out=$TMP/$1-wake.out
	[ "$WAKE" -gt 0 ] || return 0
	if timeout 120 python3 "$ROOT/bench/imap_wake.py" --port "$port" --user bench1@example.test \
		--password "$PASS" --count "$WAKE" >"$out" 2>&1; then
		WAKE_LINES+=("$impl|$(tail -n 1 "$out")")
		say "$impl: IDLE wake-up: $(tail -n 1 "$out")"
	else
		warn "$impl: IDLE wake-up measure failed: $(tail -n 1 "$out")"
		FAILURES+=("$impl wake-up: $(tail -n 1 "$out")")
	fi
}

# --- tern -------------------------------------------------------------------------------------
TERN_IMAP=$(free_port)
TERN_IMAPS=""
[ "$IDLE_TLS" = 1 ] && TERN_IMAPS=$(free_port "$TERN_IMAP")
TERN_CONF=$TMP/tern.conf
TERN_LOG=$TMP/tern.log
TERN_DATA=$TMP/tern-data
{
	tern_conf_head "$TERN_DATA"
	echo "max_connections_per_ip = $((NUSERS + 100))"
	# 2,000 logins at once: the default queue of 64 password checks per worker would
	# answer the rest "try again later"
	echo "login_queue = $((NUSERS + 100))"
	# and the cap on password checks in flight over all workers (256 by default) likewise
	echo "login_max_inflight = $((NUSERS + 100))"
	echo "allow_plaintext_auth_loopback = yes"
	echo "[listen]"
	echo "imap = 127.0.0.1:$TERN_IMAP"
	if [ -n "$TERN_IMAPS" ]; then
		echo "imaps = 127.0.0.1:$TERN_IMAPS"
		echo "[tls]"
		echo "cert = $TMP/tls/cert.pem"
		echo "key = $TMP/tls/key.pem"
	fi
} >"$TERN_CONF"

tern_user_add bench1@example.test "$PASS"
# bench2..N get bench1's row with its hash (the same password, the same salt): one `tern user
# add` each would spend a yescrypt hash (~0.1 s of CPU) and a process per user
python3 - "$TERN_DATA/tern.db" "$NUSERS" <<'EOF' || die "adding the users to tern.db failed"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
(h,) = db.execute("SELECT hash FROM users WHERE address = 'bench1@example.test'").fetchone()
db.executemany("INSERT INTO users (address, hash) VALUES (?, ?)",
               [(f"bench{k}@example.test", h) for k in range(2, int(sys.argv[2]) + 1)])
db.commit()
EOF
[ "$("$TERN" user list -c "$TERN_CONF" | grep -c '^bench')" -eq "$NUSERS" ] || die "tern user list does not show $NUSERS users"
mkdir -p "$TERN_DATA/mail/example.test"
fill_maildirs "$TMP/msgs" "$TERN_DATA/mail/example.test" || die "filling tern's Maildirs failed"
say "tern: $NUSERS users, $MSGS messages each in new/ ($(du -sh "$TMP/msgs" | cut -f1) of mail, hard-linked)"

tern_start "$TERN_IMAP" "* OK"
say "tern: pid $TERN_PID, $WORKERS workers, IMAP 127.0.0.1:$TERN_IMAP${TERN_IMAPS:+, IMAPS 127.0.0.1:$TERN_IMAPS}"

# --- Dovecot ----------------------------------------------------------------------------------
dovecot_vars
DV_PORT=""
DV_IMAPS=""
dv_setup() {
	DV_PORT=$(free_port "$TERN_IMAP" "$TERN_IMAPS")
	local ssl="ssl = no" imaps="port = 0"
	if [ "$IDLE_TLS" = 1 ]; then
		DV_IMAPS=$(free_port "$TERN_IMAP" "$TERN_IMAPS" "$DV_PORT")
		# the TLS measure needs it; the plaintext listener then offers STARTTLS too
		ssl="ssl = yes
	ssl_cert = <$TMP/tls/cert.pem
	ssl_key = <$TMP/tls/key.pem"
		imaps="address = 127.0.0.1
	    port = $DV_IMAPS"
	fi
	mkdir -p "$DV_MAIL"
	fill_maildirs "$TMP/msgs" "$DV_MAIL/example.test" || { DV_SKIP="filling its Maildirs failed"; return 1; }
	dovecot_passwd $(seq -f 'bench%.0f@example.test' 1 "$NUSERS")
	local lim=$((NUSERS + 100))
	dovecot_conf_head imap imap.sh "$ssl" >"$DV_CONF"
	cat >>"$DV_CONF" <<-EOF
	# $NUSERS connections at once: the default limits (100 processes per service, 1000
	# clients per process) are raised, nothing else
	default_process_limit = $lim
	default_client_limit = $((lim * 3))
	service imap-login {
	  inet_listener imap {
	    address = 127.0.0.1
	    port = $DV_PORT
	  }
	  inet_listener imaps {
	    $imaps
	  }
	  process_limit = $lim
	  client_limit = $((lim * 3))
	}
	service imap {
	  process_limit = $lim
	  client_limit = 1
	}
	EOF
	dovecot_start "$DV_PORT" "* OK"
}
dovecot_usable imap && dv_setup || true
dovecot_started "IMAP 127.0.0.1:$DV_PORT${DV_IMAPS:+, IMAPS 127.0.0.1:$DV_IMAPS}"
port_of() { case $1 in tern) echo "$TERN_IMAP" ;; dovecot) echo "$DV_PORT" ;; esac; }
say ""

# --- warm-up, mixed load, idle, wake-up -------------------------------------------------------
for impl in $SERVERS; do warm "$impl" "$(port_of "$impl")"; done
say ""

for n in $CLIENTS; do
	declare -A broken=()
	for ((r = 1; r <= RUNS; r++)); do
		for impl in $SERVERS; do
			[ -n "${broken[$impl]:-}" ] && continue
			mixed_run "$impl" "$(port_of "$impl")" "$n" "$r" || broken[$impl]=1
		done
	done
	unset broken
done
say ""

if [ "$IDLE" -gt 0 ]; then
	idle_measure tern "$TERN_IMAP" tern_mem plain || true
	[ -n "$DV_PID" ] && { idle_measure dovecot "$DV_PORT" dv_mem plain || true; }
	if [ "$IDLE_TLS" = 1 ]; then
		# each server restarted first: tern's workers keep the heap the plaintext sessions
		# freed, and sessions reusing it would show no growth
		stop_tern
		tern_start "$TERN_IMAP" "* OK"
		say "tern: restarted for the TLS measure (pid $TERN_PID)"
		idle_measure tern "$TERN_IMAPS" tern_mem tls || true
		if [ -n "$DV_PID" ]; then
			stop_dovecot
			if dovecot_start "$DV_PORT" "* OK"; then
				say "dovecot: restarted for the TLS measure (pid $DV_PID)"
				idle_measure dovecot "$DV_IMAPS" dv_mem tls || true
			else
				FAILURES+=("dovecot did not start again for the TLS measure: $DV_SKIP")
			fi
		fi
	fi
	say ""
fi

[ -n "$DV_PID" ] || SERVERS="tern"	# (when it did not start again for the TLS measure)
for impl in $SERVERS; do wake "$impl" "$(port_of "$impl")"; done

DV_RAN=$DV_PID
servers_stop
if [ -n "$DV_RAN" ]; then
	# expected: the limit of 128 inotify instances per user (its imap processes then poll),
	# and the SIGTERM that stopped it
	ino=$(grep -c 'Inotify instance limit' "$DV_LOG" || true)
	[ "$ino" -eq 0 ] || say "dovecot: $ino imap processes logged 'Inotify instance limit for user 65534 exceeded'" \
		"(fs.inotify.max_user_instances = $(cat /proc/sys/fs/inotify/max_user_instances); they poll instead)"
	dovecot_check_log 'Inotify instance limit'
fi

# --- report -----------------------------------------------------------------------------------
say ""
say "mixed load (best of $RUNS runs of ${SECONDS_RUN}s; p50/p99: latency of one command, in the best run)"
printf '%-8s %8s %10s %10s %10s\n' server clients ops/s p50_ms p99_ms
printf '%-8s %8s %10s %10s %10s\n' -------- -------- ---------- ---------- ----------
declare -A BEST=()
BEST_FILES=()
BEST_NAMES=()
for n in $CLIENTS; do
	for impl in tern dovecot; do
		best=""
		for r in "${RESULTS[@]}"; do
			IFS='|' read -r i c _ _ _ ops p50 p99 f <<<"$r"
			[ "$i" = "$impl" ] && [ "$c" = "$n" ] || continue
			if [ -z "$best" ] || [ "$ops" -gt "${best%%|*}" ]; then best="$ops|$p50|$p99|$f"; fi
		done
		if [ -n "$best" ]; then
			IFS='|' read -r ops p50 p99 f <<<"$best"
			BEST[$impl.$n]=$ops
			result "imap.$impl.mixed$n" "$ops"
			BEST_FILES+=("$f")
			BEST_NAMES+=("$impl/$n")
			printf '%-8s %8s %10s %10s %10s\n' "$impl" "$n" "$ops" "$p50" "$p99"
		elif [[ " $SERVERS " == *" $impl "* ]]; then
			printf '%-8s %8s %10s %10s %10s\n' "$impl" "$n" FAILED - -
		fi
	done
done
for n in $CLIENTS; do
	if [ -n "${BEST[tern.$n]:-}" ] && [ -n "${BEST[dovecot.$n]:-}" ]; then
		say "ratio tern/dovecot, $n clients: $(awk -v t="${BEST[tern.$n]}" -v d="${BEST[dovecot.$n]}" \
			'BEGIN { printf "%.2f", t / d }')x"
	fi
done
if [ "${#BEST_FILES[@]}" -gt 0 ]; then
	say ""
	say "mean latency of each command of the cycle in those best runs, ms (server/clients)"
	{
		printf '%-28s' command
		printf ' %12s' "${BEST_NAMES[@]}"
		printf '\n'
		sed -n 's/^cmd \(.*[^ ]\) *count .*$/\1/p' "${BEST_FILES[0]}" | while IFS= read -r cmd; do
			printf '%-28s' "$cmd"
			for f in "${BEST_FILES[@]}"; do
				printf ' %12s' "$(awk -v c="cmd $cmd " 'index($0, c) == 1 {
					for (i = 1; i < NF; i++) if ($i == "mean_ms") print $(i + 1) }' "$f")"
			done
			printf '\n'
		done
	}
fi
if [ "$IDLE" -gt 0 ]; then
	say ""
	say "memory per idle connection ($IDLE connections logged in, INBOX of $MSGS messages selected, in IDLE;" \
		"growth of the sum over all the server's processes, before vs. while idling)"
	printf '%-17s %12s %12s %10s  %s\n' server "PSS kB/conn" "RSS kB/conn" "login s" "processes before -> while idling"
	per() { awk -v a="$1" -v b="$2" -v n="$IDLE" 'BEGIN { printf "%.1f", (b - a) / n }'; }
	for l in "${IDLE_LINES[@]}"; do
		IFS='|' read -r impl tls b a took extra <<<"$l"
		read -r brss bpss bn _ <<<"$b"
		read -r arss apss an _ <<<"$a"
		name="$impl $tls"
		[ "$tls" = plain ] && name="$impl plaintext"
		[ "$tls" = tls ] && name="$impl TLS"
		more=""
		if [ -n "$extra" ]; then
			read -r ni nl <<<"$extra"
			more=" ($ni imap, ${nl:-0} imap-login)"
		fi
		result "imap.$impl.idle_$tls" "$(per "$bpss" "$apss")"
		printf '%-17s %12s %12s %10s  %s\n' "$name" "$(per "$bpss" "$apss")" "$(per "$brss" "$arss")" "$took" \
			"$bn -> $an$more; PSS $bpss -> $apss kB"
	done
	[ "$IDLE_TLS" = 1 ] || printf '%-17s %12s\n' "TLS" "skipped (BENCH_IDLE_TLS=$IDLE_TLS)"
fi
if [ "${#WAKE_LINES[@]}" -gt 0 ]; then
	say ""
	say "IDLE wake-up: APPEND on a second connection -> '* n EXISTS' on the idling one"
	for l in "${WAKE_LINES[@]}"; do
		IFS='|' read -r impl rest <<<"$l"
		printf '%-8s %s\n' "$impl" "$rest"
	done
fi
bench_finish
