#!/usr/bin/env bash
# bench/pop3.sh - POP3 retrieval benchmark: RETR of every message of a 1,000 x 10 KB maildrop,
# one command at a time and pipelined, from tern and then from a private Dovecot instance
# serving the same message files; prints messages/s side by side, and the memory an idle
# logged-in POP3 session costs each server.
# A benchmark, not a test: it fails (exit 1) only when something is broken (a wrong size, an
# -ERR, a stall, a server that does not start), never because a number is low.
#
# Run with `make bench-pop3` (builds ./tern first). Knobs (environment):
#   BENCH_MSGS=1000        messages in the maildrop
#   BENCH_SIZE=10240       message payload in bytes (smtp-source -l)
#   BENCH_RUNS=3           runs per mode; the best (shortest) counts
#   BENCH_BATCH=50         RETR commands written at once in the pipelined mode
#   BENCH_IDLE=50          idle logged-in sessions for the memory figure (0: skip it)
#   BENCH_IDLE_MSGS=       messages in each idle session's maildrop (default: BENCH_MSGS)
#   BENCH_WORKERS=2        tern worker processes
#   BENCH_TIMEOUT=120      seconds allowed for one client run (and for the SMTP fill)
#   BENCH_DOVECOT=1        0: skip the Dovecot half
#   BENCH_KEEP=0           1: keep the temporary directory (configs, logs, mail) at the end
#   TMPDIR                 where the temporary directory is made
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TERN=$ROOT/tern
CLIENT=$ROOT/bench/pop3_client.py
MSGS=${BENCH_MSGS:-1000}
SIZE=${BENCH_SIZE:-10240}
RUNS=${BENCH_RUNS:-3}
BATCH=${BENCH_BATCH:-50}
IDLE=${BENCH_IDLE:-50}
IDLE_MSGS=${BENCH_IDLE_MSGS:-$MSGS}
WORKERS=${BENCH_WORKERS:-2}
RUN_TIMEOUT=${BENCH_TIMEOUT:-120}
DO_DOVECOT=${BENCH_DOVECOT:-1}
KEEP=${BENCH_KEEP:-0}
SENDER=sender@example.org
USER_ADDR=bench@example.test
PASS=pw
MODES="one pipe"

say() { printf '%s\n' "$*"; }
warn() { printf 'bench: %s\n' "$*" >&2; }
die() {
	warn "FAILED: $*"
	exit 1
}

"$ROOT/scripts/bench-deps.sh"
SMTP_SOURCE=/usr/sbin/smtp-source
[ -x "$SMTP_SOURCE" ] || die "$SMTP_SOURCE missing (scripts/bench-deps.sh installs postfix)"
[ -x "$TERN" ] || die "$TERN missing: run 'make bench-pop3' (or 'make tern') first"
command -v python3 >/dev/null || die "python3 missing"
[ "$IDLE_MSGS" -le "$MSGS" ] || die "BENCH_IDLE_MSGS ($IDLE_MSGS) > BENCH_MSGS ($MSGS)"

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1
RUN_USER=$(id -un)
[ "$IS_ROOT" -eq 1 ] && RUN_USER=nobody

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tern-bench-pop3.XXXXXX")
chmod 755 "$TMP"	# the unprivileged server processes must reach their data below it

TERN_PID=""
DV_PID=""
IDLE_PID=""

# --- cleanup: everything started here is stopped by pid -------------------------------------
# descendants PID - every process below PID (children, grandchildren, ...)
descendants() {
	local st s ppid pid
	declare -A parent=()
	for st in /proc/[0-9]*/stat; do
		{ s=$(<"$st"); } 2>/dev/null || continue
		pid=${s%% *}
		s=${s##*) }	# past "(comm)", which may hold blanks
		read -r _ ppid _ <<<"$s"
		parent[$pid]=$ppid
	done
	local todo=("$1") p
	while [ "${#todo[@]}" -gt 0 ]; do
		p=${todo[0]}
		todo=("${todo[@]:1}")
		for pid in "${!parent[@]}"; do
			if [ "${parent[$pid]}" = "$p" ]; then
				printf '%s ' "$pid"
				todo+=("$pid")
			fi
		done
	done
	return 0
}

# stop_pid PID NAME - SIGTERM, wait up to 10 s, SIGKILL; then SIGKILL what was below it
stop_pid() {
	local pid=$1 name=$2 kids k i
	kids=$(descendants "$pid")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			warn "$name $pid did not exit on SIGTERM within 10 s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
	for k in $kids; do
		kill -KILL "$k" 2>/dev/null || true
	done
}

stop_idle() {
	[ -n "$IDLE_PID" ] || return 0
	kill -TERM "$IDLE_PID" 2>/dev/null || true
	wait "$IDLE_PID" 2>/dev/null || true
	IDLE_PID=""
}
stop_tern() {
	[ -n "$TERN_PID" ] || return 0
	stop_pid "$TERN_PID" "tern master"
	TERN_PID=""
}
stop_dovecot() {
	[ -n "$DV_PID" ] || return 0
	stop_pid "$DV_PID" "dovecot master"
	DV_PID=""
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_idle
	stop_tern
	stop_dovecot
	if [ "$KEEP" = 1 ] || [ "$rc" -ne 0 ]; then
		warn "kept $TMP (configs, logs, mail)"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ----------------------------------------------------------------------------------
rate() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "inf" }'; }
json_field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

count_files() {
	local f n=0
	shopt -s nullglob dotglob
	for f in "$1"/*; do
		[ -f "$f" ] && n=$((n + 1))
	done
	shopt -u nullglob dotglob
	echo "$n"
}

# first_files DIR N - the paths of the first N files of DIR (by name)
first_files() {
	local f n=0
	shopt -s nullglob
	for f in "$1"/*; do
		[ "$n" -lt "$2" ] || break
		printf '%s\n' "$f"
		n=$((n + 1))
	done
	shopt -u nullglob
}

# wait_greeting PORT PREFIX TIMEOUT_S PID_TO_WATCH - poll until the port greets with PREFIX
wait_greeting() {
	local port=$1 want=$2 deadline=$(($(date +%s) + $3)) pid=$4 line quit=QUIT
	while [ "$(date +%s)" -lt "$deadline" ]; do
		kill -0 "$pid" 2>/dev/null || return 1
		if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
			line=""
			read -r -t 2 line <&3 || true
			printf '%s\r\n' "$quit" >&3 2>/dev/null || true
			exec 3<&- 3>&-
			case $line in "$want"*) return 0 ;; esac
		fi
		sleep 0.05
	done
	return 1
}

# mem_sum [comm=NAME] PID... - "RSS PSS N": VmRSS and Pss in kB summed over the PIDs (only
# those whose comm is NAME when the first argument is comm=NAME), N of them; no fork
mem_sum() {
	local want="" pid comm k v rss pss trss=0 tpss=0 n=0
	case ${1:-} in comm=*) want=${1#comm=}; shift ;; esac
	for pid in "$@"; do
		if [ -n "$want" ]; then
			comm=""
			{ read -r comm <"/proc/$pid/comm"; } 2>/dev/null || continue
			[ "$comm" = "$want" ] || continue
		fi
		rss=""
		pss=0
		{ while read -r k v _; do
			[ "$k" = "VmRSS:" ] && rss=$v
		done <"/proc/$pid/status"; } 2>/dev/null || true
		{ while read -r k v _; do
			[ "$k" = "Pss:" ] && pss=$v
		done <"/proc/$pid/smaps_rollup"; } 2>/dev/null || true
		[ -n "$rss" ] || continue
		trss=$((trss + rss))
		tpss=$((tpss + pss))
		n=$((n + 1))
	done
	echo "$trss $tpss $n"
}

# retr_run PORT MODE OUTFILE - one client run, bounded; returns its status
retr_run() {
	timeout "$RUN_TIMEOUT" python3 "$CLIENT" retr --port "$1" --user "$USER_ADDR" --password "$PASS" \
		--mode "$2" --batch "$BATCH" --expect "$MSGS" --timeout 30 >"$3" 2>&1
}

# idle_warm PORT - log every idle account in and out again, one session at a time: the
# first-login work (indexing the maildrop) is done before measuring, and a server's heap has
# not grown for many sessions at once (freed memory would hide the cost of the next ones)
idle_warm() {
	[ "$IDLE" -gt 0 ] || return 0
	timeout "$RUN_TIMEOUT" python3 "$CLIENT" logins --port "$1" --users-file "$TMP/idle-users" \
		--password "$PASS" </dev/null >"$TMP/idle-warm.out" 2>&1
}

# idle_measure IMPL PORT BEFORE_CMD AFTER_CMD - hold IDLE sessions; the commands print
# "RSS PSS N" lines for the processes to compare (before: no idle session, after: all)
IDLE_LINES=()
idle_measure() {
	local impl=$1 port=$2 before=$3 after=$4 b a line
	[ "$IDLE" -gt 0 ] || return 0
	sleep 0.5
	b=$($before)
	mkfifo "$TMP/idle-in"
	timeout "$RUN_TIMEOUT" python3 "$CLIENT" idle --port "$port" --users-file "$TMP/idle-users" \
		--password "$PASS" <"$TMP/idle-in" >"$TMP/idle-$impl.out" 2>&1 &
	IDLE_PID=$!
	exec 4>"$TMP/idle-in"	# the client's stdin stays open until we close this
	local deadline=$(($(date +%s) + RUN_TIMEOUT)) ok=0
	while [ "$(date +%s)" -lt "$deadline" ]; do
		if grep -q '^READY' "$TMP/idle-$impl.out" 2>/dev/null; then
			ok=1
			break
		fi
		kill -0 "$IDLE_PID" 2>/dev/null || break
		sleep 0.1
	done
	if [ "$ok" -ne 1 ]; then
		exec 4>&-
		cat "$TMP/idle-$impl.out" >&2
		die "$impl: $IDLE idle sessions could not all log in"
	fi
	sleep 1	# let the servers finish whatever follows a login
	a=$($after)
	echo >&4
	exec 4>&-
	wait "$IDLE_PID" || { cat "$TMP/idle-$impl.out" >&2; die "$impl: idle client failed"; }
	IDLE_PID=""
	rm -f "$TMP/idle-in"
	grep -q '^DONE' "$TMP/idle-$impl.out" || die "$impl: idle sessions did not end cleanly"
	IDLE_LINES+=("$impl|$b|$a")
}

RESULTS=()	# "impl|mode|messages|seconds|rate|octets"
# bench_server IMPL PORT - warm-up run, then RUNS runs of each mode; the best run counts
bench_server() {
	local impl=$1 port=$2 mode r out rc best sec oct cpu
	out=$TMP/$impl-warmup.out
	retr_run "$port" pipe "$out" || { cat "$out" >&2; die "$impl: warm-up run failed"; }
	for mode in $MODES; do
		best=""
		for ((r = 1; r <= RUNS; r++)); do
			out=$TMP/$impl-$mode-$r.out
			rc=0
			retr_run "$port" "$mode" "$out" || rc=$?
			if [ "$rc" -ne 0 ]; then
				cat "$out" >&2
				[ "$rc" -eq 124 ] && die "$impl, $mode: run $r did not finish within ${RUN_TIMEOUT}s"
				die "$impl, $mode: run $r failed (status $rc)"
			fi
			sec=$(json_field "$(cat "$out")" seconds)
			oct=$(json_field "$(cat "$out")" octets)
			cpu=$(json_field "$(cat "$out")" client_cpu)
			say "$(printf '%-8s %-5s run %d: %d messages (%d octets) in %ss (client CPU %ss)' \
				"$impl" "$mode" "$r" "$MSGS" "$oct" "$sec" "$cpu")"
			if [ -z "$best" ] || awk -v a="$sec" -v b="$best" 'BEGIN { exit !(a < b) }'; then
				best=$sec
			fi
		done
		RESULTS+=("$impl|$mode|$MSGS|$best|$(rate "$MSGS" "$best")|$oct")
	done
}

mode_name() { case $1 in one) echo "one-at-a-time" ;; pipe) echo "pipelined/$BATCH" ;; esac; }

say "POP3 retrieval benchmark: RETR 1..$MSGS of a $MSGS-message maildrop ($SIZE-byte payloads)," \
	"one at a time and pipelined in batches of $BATCH, best of $RUNS runs"
say "machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
	"temp dir $TMP on $(df -T "$TMP" | awk 'NR == 2 { print $2 " (" $1 ")" }')"
say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the numbers)"
say "client: bench/pop3_client.py (python $(python3 -c 'import platform; print(platform.python_version())')), one connection, plain POP3 on loopback"
say ""

# idle accounts: idle01..idleNN
: >"$TMP/idle-users"
for ((i = 1; i <= IDLE; i++)); do
	printf 'idle%02d@example.test\n' "$i" >>"$TMP/idle-users"
done

# --- tern -------------------------------------------------------------------------------------
TERN_SMTP=$(free_port)
TERN_POP3=$(free_port)
while [ "$TERN_POP3" = "$TERN_SMTP" ]; do TERN_POP3=$(free_port); done
TERN_CONF=$TMP/tern.conf
TERN_LOG=$TMP/tern.log
TERN_MAIL=$TMP/tern-data/mail/example.test
{
	echo "hostname = bench.example.test"
	echo "data_dir = $TMP/tern-data"
	echo "domains = example.test"
	echo "workers = $WORKERS"
	echo "max_connections_per_ip = 1000"
	echo "allow_plaintext_auth_loopback = yes"
	[ "$IS_ROOT" -eq 1 ] && echo "user = nobody"
	echo "[listen]"
	echo "smtp = 127.0.0.1:$TERN_SMTP"
	echo "pop3 = 127.0.0.1:$TERN_POP3"
} >"$TERN_CONF"

for u in "$USER_ADDR" $(cat "$TMP/idle-users"); do
	echo "$PASS" | "$TERN" user add "$u" -c "$TERN_CONF" >>"$TMP/user-add.log" 2>&1 ||
		{ cat "$TMP/user-add.log" >&2; die "tern user add $u failed"; }
done

"$TERN" serve -c "$TERN_CONF" </dev/null >"$TMP/tern.stdout" 2>"$TERN_LOG" &
TERN_PID=$!
if ! wait_greeting "$TERN_SMTP" 220 20 "$TERN_PID" || ! wait_greeting "$TERN_POP3" "+OK" 20 "$TERN_PID"; then
	tail -n 30 "$TERN_LOG" >&2 || true
	die "tern did not greet on 127.0.0.1:$TERN_SMTP (SMTP) and $TERN_POP3 (POP3) within 20 s"
fi
say "tern: pid $TERN_PID, $WORKERS workers, SMTP 127.0.0.1:$TERN_SMTP, POP3 127.0.0.1:$TERN_POP3"

# the maildrop: MSGS messages over SMTP
timeout "$RUN_TIMEOUT" "$SMTP_SOURCE" -s 20 -l "$SIZE" -m "$MSGS" -M bench-client.example.org \
	-f "$SENDER" -t "$USER_ADDR" "127.0.0.1:$TERN_SMTP" >"$TMP/fill.out" 2>&1 ||
	{ cat "$TMP/fill.out" >&2; tail -n 20 "$TERN_LOG" >&2; die "filling the maildrop: smtp-source failed"; }
got=$(count_files "$TERN_MAIL/bench/new")
[ "$got" -eq "$MSGS" ] || die "filling the maildrop: $got messages in $TERN_MAIL/bench/new, expected $MSGS"
say "tern: $MSGS messages delivered to $USER_ADDR over SMTP (smtp-source, 20 sessions)"

# the idle accounts' maildrops: the first IDLE_MSGS of the same files, hard-linked into new/
# as tern's own delivery to several recipients does (opening indexes them)
mapfile -t MSG_FILES < <(first_files "$TERN_MAIL/bench/new" "$IDLE_MSGS")
while read -r u; do
	d=$TERN_MAIL/${u%@*}
	mkdir -p "$d/new" "$d/cur" "$d/tmp"
	[ "${#MSG_FILES[@]}" -eq 0 ] || ln -- "${MSG_FILES[@]}" "$d/new/"
	chown -R "$RUN_USER" "$d"
	chmod 700 "$d" "$d/new" "$d/cur" "$d/tmp"
done <"$TMP/idle-users"

tern_check_log() {	# print any warning/error lines tern logged from line $1 on
	local from=$1 bad
	bad=$(tail -n +"$from" "$TERN_LOG" | grep -Eai 'warn|error|fatal|crit|exited|abort|assert|sanitizer' || true)
	if [ -n "$bad" ]; then
		warn "tern logged problems (first 20 lines):"
		printf '%s\n' "$bad" | head -n 20 >&2
		return 1
	fi
	return 0
}

bench_server tern "$TERN_POP3"
kill -0 "$TERN_PID" 2>/dev/null || die "tern master died during the runs"
idle_warm "$TERN_POP3" || { cat "$TMP/idle-warm.out" >&2; die "tern: first login of the idle accounts failed"; }
tern_mem() { mem_sum $(descendants "$TERN_PID"); }	# the workers and the queue runner
idle_measure tern "$TERN_POP3" tern_mem tern_mem
stop_tern
TERN_PROBLEMS=0
tern_check_log 1 || TERN_PROBLEMS=1

# --- Dovecot ----------------------------------------------------------------------------------
DV_SKIP=""
DV_VERSION=""
if [ "$DO_DOVECOT" != 1 ]; then
	DV_SKIP="BENCH_DOVECOT=$DO_DOVECOT"
elif [ "$IS_ROOT" -ne 1 ]; then
	DV_SKIP="needs root (its master runs as root and switches to the mail user)"
elif ! command -v dovecot >/dev/null || [ ! -x /usr/lib/dovecot/pop3 ]; then
	DV_SKIP="dovecot-pop3d not installed (scripts/bench-deps.sh installs it)"
elif ! id dovenull >/dev/null 2>&1 || ! id dovecot >/dev/null 2>&1; then
	DV_SKIP="users dovenull and dovecot missing (the package creates them)"
fi

DV=$TMP/dv
DV_CONF=$DV/dovecot.conf
DV_LOG=$DV/dovecot.log
DV_MAIL=$TMP/dv-mail
DV_PORT=""
dv_setup() {
	DV_VERSION=$(dovecot --version 2>/dev/null | awk '{ print $1 }')
	DV_PORT=$(free_port)
	mkdir -p "$DV/run" "$DV/state" "$DV_MAIL/example.test"
	local cleartext="disable_plaintext_auth = no"
	case $DV_VERSION in
	2.[0-3].*) ;;
	*) cleartext="auth_allow_cleartext = yes" ;;	# 2.4 renamed the setting
	esac
	# the same files, copied byte for byte, with any ":2,..." info stripped from the name
	local u d f
	d=$DV_MAIL/example.test/bench
	mkdir -p "$d/new" "$d/cur" "$d/tmp"
	local plain=()
	for f in "$TERN_MAIL/bench/cur/"* "$TERN_MAIL/bench/new/"*; do
		[ -f "$f" ] || continue
		u=${f##*/}
		case $u in
		*:*) cp -p -- "$f" "$d/new/${u%%:*}" ;;
		*) plain+=("$f") ;;
		esac
	done
	[ "${#plain[@]}" -eq 0 ] || cp -p -- "${plain[@]}" "$d/new/"
	[ "$(count_files "$d/new")" -eq "$MSGS" ] || { DV_SKIP="could not copy the $MSGS messages"; return 1; }
	mapfile -t MSG_FILES < <(first_files "$d/new" "$IDLE_MSGS")
	: >"$DV/passwd"
	for u in "$USER_ADDR" $(cat "$TMP/idle-users"); do
		echo "$u:{PLAIN}$PASS::::::" >>"$DV/passwd"
		[ "$u" = "$USER_ADDR" ] && continue
		mkdir -p "$DV_MAIL/example.test/${u%@*}/"{new,cur,tmp}
		[ "${#MSG_FILES[@]}" -eq 0 ] || ln -- "${MSG_FILES[@]}" "$DV_MAIL/example.test/${u%@*}/new/"
	done
	chown -R nobody:nogroup "$DV_MAIL"
	find "$DV_MAIL" -type d -exec chmod 700 {} +
	chmod 644 "$DV/passwd"
	cat >"$DV_CONF" <<-EOF
	# private instance for bench/pop3.sh; everything else is Dovecot's default
	base_dir = $DV/run
	state_dir = $DV/state
	log_path = $DV_LOG
	protocols = pop3
	listen = 127.0.0.1
	ssl = no
	$cleartext
	auth_mechanisms = plain login
	default_login_user = dovenull
	default_internal_user = dovecot
	mail_location = maildir:$DV_MAIL/%d/%n
	passdb {
	  driver = passwd-file
	  args = scheme=PLAIN username_format=%u $DV/passwd
	}
	userdb {
	  driver = static
	  args = uid=nobody gid=nogroup home=$DV_MAIL/%d/%n
	}
	service pop3-login {
	  inet_listener pop3 {
	    address = 127.0.0.1
	    port = $DV_PORT
	  }
	}
	EOF
	if ! doveconf -n -c "$DV_CONF" >"$DV/doveconf.out" 2>&1; then
		DV_SKIP="doveconf rejects the config: $(tail -n 3 "$DV/doveconf.out" | tr '\n' ' ')"
		return 1
	fi
	dovecot -c "$DV_CONF" -F </dev/null >"$DV/stdout" 2>&1 &
	DV_PID=$!
	if ! wait_greeting "$DV_PORT" "+OK" 20 "$DV_PID"; then
		DV_SKIP="private instance did not start: $(cat "$DV/stdout" 2>/dev/null; tail -n 3 "$DV_LOG" 2>/dev/null | tr '\n' ' ')"
		stop_dovecot
		return 1
	fi
	return 0
}

if [ -z "$DV_SKIP" ] && dv_setup; then
	say ""
	say "dovecot: private instance $DV_VERSION, pid $DV_PID, config $DV_CONF, POP3 127.0.0.1:$DV_PORT"
	bench_server dovecot "$DV_PORT"
	kill -0 "$DV_PID" 2>/dev/null || die "dovecot master died during the runs"
	idle_warm "$DV_PORT" || { cat "$TMP/idle-warm.out" >&2; die "dovecot: first login of the idle accounts failed"; }
	sleep 0.5	# the pop3 processes of the warm-up logins exit after QUIT
	dv_mem_all() { mem_sum $(descendants "$DV_PID"); }
	dv_mem_pop3() { mem_sum comm=pop3 $(descendants "$DV_PID"); }
	dv_mem() { echo "$(dv_mem_all) $(dv_mem_pop3)"; }
	idle_measure dovecot "$DV_PORT" dv_mem dv_mem
	bad=$(grep -Eai 'error|fatal|panic|warning' "$DV_LOG" | grep -v 'ssl = no' || true)
	[ -z "$bad" ] || { warn "dovecot logged problems (first 10 lines):"; printf '%s\n' "$bad" | head -n 10 >&2; }
	stop_dovecot
fi
[ -n "$DV_SKIP" ] && { say ""; say "dovecot: skipped ($DV_SKIP)"; }

# --- report -----------------------------------------------------------------------------------
say ""
printf '%-15s %-16s %9s %9s %9s %9s\n' implementation mode messages seconds msg/s MB/s
printf '%-15s %-16s %9s %9s %9s %9s\n' --------------- ---------------- --------- --------- --------- ---------
for r in "${RESULTS[@]}"; do
	IFS='|' read -r impl mode n sec rt oct <<<"$r"
	printf '%-15s %-16s %9s %9s %9s %9s\n' "$impl" "$(mode_name "$mode")" "$n" "$sec" "$rt" \
		"$(awk -v o="$oct" -v s="$sec" 'BEGIN { printf "%.1f", o / s / 1e6 }')"
done
say ""
if [ -z "$DV_SKIP" ]; then
	for mode in $MODES; do
		t=""; d=""
		for r in "${RESULTS[@]}"; do
			IFS='|' read -r impl m _ _ rt _ <<<"$r"
			[ "$m" = "$mode" ] || continue
			case $impl in tern) t=$rt ;; dovecot) d=$rt ;; esac
		done
		say "ratio tern/dovecot, $(mode_name "$mode"): $(awk -v t="$t" -v d="$d" 'BEGIN { printf "%.2f", t / d }')x"
	done
	say ""
fi
if [ "$IDLE" -gt 0 ]; then
	say "memory per idle logged-in POP3 session ($IDLE sessions, $IDLE_MSGS messages in each maildrop;" \
		"RSS, and PSS which shares the shared pages out):"
	per() { awk -v a="$1" -v b="$2" -v n="$IDLE" 'BEGIN { printf "%.1f", (b - a) / n }'; }
	for l in "${IDLE_LINES[@]}"; do
		IFS='|' read -r impl b a <<<"$l"
		read -r brss bpss bn _ <<<"$b"
		read -r arss apss an arss2 apss2 an2 <<<"$a"
		case $impl in
		tern)
			say "  tern     $(per "$brss" "$arss") kB RSS, $(per "$bpss" "$apss") kB PSS per session" \
				"(growth of its $an child processes: RSS $brss -> $arss kB, PSS $bpss -> $apss kB)"
			;;
		dovecot)
			say "  dovecot  $(per 0 "$arss2") kB RSS, $(per 0 "$apss2") kB PSS per session" \
				"(its $an2 pop3 processes, one per session, summed: RSS $arss2 kB, PSS $apss2 kB)"
			say "           all Dovecot processes: $bn -> $an, RSS $brss -> $arss kB" \
				"($(per "$brss" "$arss") kB per session), PSS $bpss -> $apss kB ($(per "$bpss" "$apss") kB per session)"
			;;
		esac
	done
fi
if [ "$TERN_PROBLEMS" -eq 1 ]; then
	say ""
	say "NOTE: tern logged warnings or errors during the benchmark; see above (log kept in $TMP)."
	KEEP=1
fi
