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
#   BENCH_PAR=10           sessions at once in the parallel mode, one account each (of the idle
#                          accounts, so at most BENCH_IDLE; 0: skip it)
#   BENCH_IDLE_MSGS=       messages in each idle session's maildrop (default: BENCH_MSGS)
#   BENCH_WORKERS=2        tern worker processes
#   BENCH_TIMEOUT=120      seconds allowed for one client run (and for the SMTP fill)
#   BENCH_DOVECOT=1        0: skip the Dovecot half
#   BENCH_KEEP=0           1: keep the temporary directory (configs, logs, mail) at the end
#   BENCH_RESULTS=         a file to append "pop3.IMPL.MODE MSG_PER_S" and "pop3.IMPL.idle_kb KB"
#                          lines to
#   TMPDIR                 where the temporary directory is made
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TERN=$ROOT/tern
MSGS=${BENCH_MSGS:-1000}
SIZE=${BENCH_SIZE:-10240}
RUNS=${BENCH_RUNS:-3}
BATCH=${BENCH_BATCH:-50}
IDLE=${BENCH_IDLE:-50}
IDLE_MSGS=${BENCH_IDLE_MSGS:-$MSGS}
PAR=${BENCH_PAR:-10}
WORKERS=${BENCH_WORKERS:-2}
RUN_TIMEOUT=${BENCH_TIMEOUT:-120}
DO_DOVECOT=${BENCH_DOVECOT:-1}
KEEP=${BENCH_KEEP:-0}
SENDER=sender@example.org
USER_ADDR=bench@example.test
PASS=pw
MODES="one pipe"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

"$ROOT/scripts/bench-deps.sh"
SMTP_SOURCE=/usr/sbin/smtp-source
[ -x "$SMTP_SOURCE" ] || die "$SMTP_SOURCE missing (scripts/bench-deps.sh installs postfix)"
[ -x "$TERN" ] || die "$TERN missing: run 'make bench-pop3' (or 'make tern') first"
CLIENT=$(bench_tool pop3_load)
[ "$IDLE_MSGS" -le "$MSGS" ] || die "BENCH_IDLE_MSGS ($IDLE_MSGS) > BENCH_MSGS ($MSGS)"
[ "$PAR" -le "$IDLE" ] || die "BENCH_PAR ($PAR) > BENCH_IDLE ($IDLE): the parallel sessions use the idle accounts"
[ "$PAR" -eq 0 ] || [ "$IDLE_MSGS" -gt 0 ] || die "BENCH_PAR needs BENCH_IDLE_MSGS > 0"

bench_identity
bench_tmp bench-pop3 stop_idle stop_tern stop_dovecot

# --- helpers ----------------------------------------------------------------------------------
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

# retr_run PORT MODE OUTFILE - one client run, bounded; returns its status. MODE one, pipe
# (one session of USER_ADDR) or par (PAR sessions of idle01.., pipelined, at once)
retr_run() {
	if [ "$2" = par ]; then
		timeout "$RUN_TIMEOUT" "$CLIENT" retr --port "$1" --user 'idle%02d@example.test' --sessions "$PAR" \
			--password "$PASS" --mode pipe --batch "$BATCH" --expect "$IDLE_MSGS" --timeout 30 >"$3" 2>&1
		return
	fi
	timeout "$RUN_TIMEOUT" "$CLIENT" retr --port "$1" --user "$USER_ADDR" --password "$PASS" \
		--mode "$2" --batch "$BATCH" --expect "$MSGS" --timeout 30 >"$3" 2>&1
}

# idle_warm PORT - log every idle account in and out again, one session at a time: the
# first-login work (indexing the maildrop) is done before measuring, and a server's heap has
# not grown for many sessions at once (freed memory would hide the cost of the next ones)
idle_warm() {
	[ "$IDLE" -gt 0 ] || return 0
	timeout "$RUN_TIMEOUT" "$CLIENT" logins --port "$1" --users-file "$TMP/idle-users" \
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
	timeout "$RUN_TIMEOUT" "$CLIENT" idle --port "$port" --users-file "$TMP/idle-users" \
		--password "$PASS" <"$TMP/idle-in" >"$TMP/idle-$impl.out" 2>&1 &
	IDLE_PID=$!
	exec 4>"$TMP/idle-in"	# the client's stdin stays open until we close this
	local ok=0
	wait_for_line "$TMP/idle-$impl.out" '^READY' "$IDLE_PID" "$RUN_TIMEOUT" && ok=1
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
	# the figure: tern's growth over its children; Dovecot's pop3 processes (one per session)
	local apss apss2
	read -r _ _ _ _ apss2 _ <<<"$a"
	if [ "$impl" = tern ]; then
		read -r _ bpss _ <<<"$b"
		read -r _ apss _ <<<"$a"
		result "pop3.tern.idle_kb" "$(awk -v a="$bpss" -v b="$apss" -v n="$IDLE" 'BEGIN { printf "%.1f", (b - a) / n }')"
	else
		result "pop3.dovecot.idle_kb" "$(awk -v b="$apss2" -v n="$IDLE" 'BEGIN { printf "%.1f", b / n }')"
	fi
}

RESULTS=()	# "impl|mode|messages|seconds|rate|octets"
# bench_server IMPL PORT [MODES] - warm-up run, then RUNS runs of each mode (MODES, default
# "one pipe"); the best run counts
bench_server() {
	local impl=$1 port=$2 modes=${3:-$MODES} mode r out rc best sec oct cpu bestcpu n
	if [ -z "${3:-}" ]; then
		out=$TMP/$impl-warmup.out
		retr_run "$port" pipe "$out" || { cat "$out" >&2; die "$impl: warm-up run failed"; }
	fi
	for mode in $modes; do
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
			n=$(json_field "$(cat "$out")" messages)
			say "$(printf '%-8s %-5s run %d: %d messages (%d octets) in %ss (client CPU %ss)' \
				"$impl" "$mode" "$r" "$n" "$oct" "$sec" "$cpu")"
			if [ -z "$best" ] || awk -v a="$sec" -v b="$best" 'BEGIN { exit !(a < b) }'; then
				best=$sec
				bestcpu=$cpu
			fi
		done
		RESULTS+=("$impl|$mode|$n|$best|$(rate "$n" "$best")|$oct|$bestcpu")
		result "pop3.$impl.$mode" "$(rate "$n" "$best")"
		result "pop3.$impl.$mode.client" "$bestcpu/$best"
	done
}

mode_name() {
	case $1 in
	one) echo "one-at-a-time" ;;
	pipe) echo "pipelined/$BATCH" ;;
	par) echo "${PAR}x pipelined" ;;
	esac
}

say "POP3 retrieval benchmark: RETR 1..$MSGS of a $MSGS-message maildrop ($SIZE-byte payloads)," \
	"one at a time and pipelined in batches of $BATCH, best of $RUNS runs"
bench_header
say "client: bench/pop3_load.c, one connection (${PAR} in the parallel mode, one account each), plain POP3 on loopback"
say ""

# idle accounts: idle01..idleNN
: >"$TMP/idle-users"
for ((i = 1; i <= IDLE; i++)); do
	printf 'idle%02d@example.test\n' "$i" >>"$TMP/idle-users"
done

# --- tern -------------------------------------------------------------------------------------
TERN_SMTP=$(free_port)
TERN_POP3=$(free_port "$TERN_SMTP")
TERN_CONF=$TMP/tern.conf
TERN_LOG=$TMP/tern.log
TERN_MAIL=$TMP/tern-data/mail/example.test
{
	tern_conf_head "$TMP/tern-data"
	echo "max_connections_per_ip = 1000"
	echo "allow_plaintext_auth_loopback = yes"
	echo "[listen]"
	echo "smtp = 127.0.0.1:$TERN_SMTP"
	echo "pop3 = 127.0.0.1:$TERN_POP3"
	tern_conf_inbound
} >"$TERN_CONF"

for u in "$USER_ADDR" $(cat "$TMP/idle-users"); do
	tern_user_add "$u" "$PASS"
done

tern_start "$TERN_SMTP" 220 "$TERN_POP3" "+OK"
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

bench_server tern "$TERN_POP3"
kill -0 "$TERN_PID" 2>/dev/null || die "tern master died during the runs"
idle_warm "$TERN_POP3" || { cat "$TMP/idle-warm.out" >&2; die "tern: first login of the idle accounts failed"; }
tern_mem() { mem_tree --below "$TERN_PID"; }	# the workers and the queue runner
idle_measure tern "$TERN_POP3" tern_mem tern_mem
[ "$PAR" -eq 0 ] || bench_server tern "$TERN_POP3" par
stop_tern
tern_check_log 1 || TERN_PROBLEMS=1

# --- Dovecot ----------------------------------------------------------------------------------
dovecot_vars
DV_PORT=""
dv_setup() {
	DV_PORT=$(free_port)
	mkdir -p "$DV_MAIL/example.test"
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
	dovecot_passwd "$USER_ADDR" $(cat "$TMP/idle-users")
	for u in $(cat "$TMP/idle-users"); do
		mkdir -p "$DV_MAIL/example.test/${u%@*}/"{new,cur,tmp}
		[ "${#MSG_FILES[@]}" -eq 0 ] || ln -- "${MSG_FILES[@]}" "$DV_MAIL/example.test/${u%@*}/new/"
	done
	chown -R nobody:nogroup "$DV_MAIL"
	find "$DV_MAIL" -type d -exec chmod 700 {} +
	dovecot_conf_head pop3 pop3.sh >"$DV_CONF"
	cat >>"$DV_CONF" <<-EOF
	service pop3-login {
	  inet_listener pop3 {
	    address = 127.0.0.1
	    port = $DV_PORT
	  }
	}
	EOF
	dovecot_start "$DV_PORT" "+OK"
}

if dovecot_usable pop3 && dv_setup; then
	say ""
	say "dovecot: private instance $DV_VERSION, pid $DV_PID, config $DV_CONF, POP3 127.0.0.1:$DV_PORT"
	bench_server dovecot "$DV_PORT"
	kill -0 "$DV_PID" 2>/dev/null || die "dovecot master died during the runs"
	idle_warm "$DV_PORT" || { cat "$TMP/idle-warm.out" >&2; die "dovecot: first login of the idle accounts failed"; }
	sleep 0.5	# the pop3 processes of the warm-up logins exit after QUIT
	dv_mem() { mem_tree --below "$DV_PID" pop3; }	# all of them, then the pop3 ones
	idle_measure dovecot "$DV_PORT" dv_mem dv_mem
	[ "$PAR" -eq 0 ] || bench_server dovecot "$DV_PORT" par
	dovecot_check_log
	stop_dovecot
fi
[ -n "$DV_SKIP" ] && { say ""; say "dovecot: skipped ($DV_SKIP)"; }

# --- report -----------------------------------------------------------------------------------
say ""
printf '%-15s %-16s %9s %9s %9s %9s %11s\n' implementation mode messages seconds msg/s MB/s "client CPU"
printf '%-15s %-16s %9s %9s %9s %9s %11s\n' --------------- ---------------- --------- --------- --------- --------- -----------
for r in "${RESULTS[@]}"; do
	IFS='|' read -r impl mode n sec rt oct cpu <<<"$r"
	printf '%-15s %-16s %9s %9s %9s %9s %11s\n' "$impl" "$(mode_name "$mode")" "$n" "$sec" "$rt" \
		"$(awk -v o="$oct" -v s="$sec" 'BEGIN { printf "%.1f", o / s / 1e6 }')" "${cpu}s"
done
say ""
if [ -z "$DV_SKIP" ]; then
	for mode in $MODES $([ "$PAR" -eq 0 ] || echo par); do
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
bench_finish
