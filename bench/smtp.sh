#!/usr/bin/env bash
# bench/smtp.sh - SMTP delivery benchmark: Postfix's smtp-source drives tern, then a private
# Postfix instance delivering to Maildir on the same machine; prints messages/s side by side.
# A benchmark, not a test: it fails (exit 1) only when something is broken (lost mail, a
# server that does not start, smtp-source errors), never because a number is low.
#
# Run with `make bench-smtp` (builds ./tern first). Knobs (environment):
#   BENCH_MSGS=5000        messages per run
#   BENCH_SIZE=10240       message payload in bytes (smtp-source -l)
#   BENCH_SESSIONS="1 20"  parallel SMTP sessions, one run each
#   BENCH_WORKERS=2        tern worker processes
#   BENCH_TIMEOUT=300      seconds allowed for one run (smtp-source, or Postfix's delivery)
#   BENCH_WARMUP=200       messages sent (and discarded) before measuring each server; 0: none
#   BENCH_POSTFIX=1        0: skip the Postfix half
#   BENCH_KEEP=0           1: keep the temporary directory (configs, logs, mail) at the end
#   BENCH_RESULTS=         a file to append "smtp.sN.tern|postfix|postfix250 MSG_PER_S" lines to
#   TMPDIR                 where the temporary directory is made (the disk under test)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TERN=$ROOT/tern
MSGS=${BENCH_MSGS:-5000}
SIZE=${BENCH_SIZE:-10240}
SESSIONS_LIST=${BENCH_SESSIONS:-"1 20"}
WORKERS=${BENCH_WORKERS:-2}
RUN_TIMEOUT=${BENCH_TIMEOUT:-300}
WARMUP=${BENCH_WARMUP:-200}
DO_POSTFIX=${BENCH_POSTFIX:-1}
KEEP=${BENCH_KEEP:-0}
SENDER=sender@example.org
RCPT=bench@example.test
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

"$ROOT/scripts/bench-deps.sh"
SMTP_SOURCE=/usr/sbin/smtp-source
[ -x "$SMTP_SOURCE" ] || die "$SMTP_SOURCE missing (scripts/bench-deps.sh installs postfix)"
[ -x "$TERN" ] || die "$TERN missing: run 'make bench-smtp' (or 'make tern') first"

bench_identity
bench_tmp bench stop_tern stop_postfix

# --- helpers ----------------------------------------------------------------------------------
clear_dir() { [ -d "$1" ] && find "$1" -mindepth 1 -maxdepth 1 -type f -delete; return 0; }

# rss_report LABEL - VmRSS / VmHWM of every process below the tern master (its children)
TERN_RSS_LINES=()
rss_report() {
	local label=$1 pid rss hwm total=0 parts=""
	for pid in $(descendants "$TERN_PID"); do
		rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
		hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
		[ -n "$rss" ] || continue
		total=$((total + rss))
		parts="$parts pid $pid ${rss} kB (peak ${hwm} kB);"
	done
	TERN_RSS_LINES+=("$(printf '%-7s total %6d kB:%s' "$label" "$total" "$parts")")
}

# run_source SESSIONS COUNT PORT OUTFILE - smtp-source, bounded; returns its status. Its CPU
# time (user + system, /usr/bin/time) goes to OUTFILE.cpu
run_source() {
	timeout "$RUN_TIMEOUT" /usr/bin/time -f '%U %S' -o "$4.cpu" "$SMTP_SOURCE" -s "$1" -l "$SIZE" -m "$2" \
		-M bench-client.example.org -f "$SENDER" -t "$RCPT" "127.0.0.1:$3" >"$4" 2>&1
}

# source_cpu OUTFILE - smtp-source's CPU seconds in that run
source_cpu() { awk 'NF == 2 { printf "%.3f", $1 + $2 }' "$1.cpu"; }

RESULTS=()	# "impl|sessions|messages|seconds|rate"
add_result() { RESULTS+=("$1|$2|$3|$4|$5"); }

say "tern SMTP benchmark: $MSGS messages of $SIZE bytes per run, sessions: $SESSIONS_LIST"
bench_header
say "smtp-source: $(dpkg-query -W -f='postfix ${Version}' postfix 2>/dev/null || echo '?'); one connection per message"
say ""

# --- tern -------------------------------------------------------------------------------------
TERN_PORT=$(free_port)
TERN_CONF=$TMP/tern.conf
TERN_LOG=$TMP/tern.log
TERN_NEW=$TMP/tern-data/mail/example.test/bench/new
{
	tern_conf_head "$TMP/tern-data"
	echo "max_connections_per_ip = 1000"
	echo "[listen]"
	echo "smtp = 127.0.0.1:$TERN_PORT"
	tern_conf_inbound
} >"$TERN_CONF"

tern_user_add "$RCPT" pw

tern_start "$TERN_PORT" 220
say "tern: pid $TERN_PID, $WORKERS workers, listening on 127.0.0.1:$TERN_PORT"

if [ "$WARMUP" -gt 0 ]; then
	run_source 20 "$WARMUP" "$TERN_PORT" "$TMP/tern-warmup.out" ||
		{ cat "$TMP/tern-warmup.out" >&2; tail -n 20 "$TERN_LOG" >&2; die "tern warm-up: smtp-source failed"; }
	clear_dir "$TERN_NEW"
fi
rss_report before
for s in $SESSIONS_LIST; do
	clear_dir "$TERN_NEW"
	log_from=$(($(wc -l <"$TERN_LOG") + 1))
	out=$TMP/tern-s$s.out
	t0=$(now_ns)
	rc=0
	run_source "$s" "$MSGS" "$TERN_PORT" "$out" || rc=$?
	if [ "$rc" -ne 0 ]; then
		cat "$out" >&2
		tail -n 30 "$TERN_LOG" >&2
		[ "$rc" -eq 124 ] && die "tern, $s sessions: smtp-source did not finish within ${RUN_TIMEOUT}s"
		die "tern, $s sessions: smtp-source exited with status $rc"
	fi
	t1=$(now_ns)
	# tern answers 250 only after the message is linked into new/ and fsync'd: every message
	# must be there the moment smtp-source is done, no waiting.
	got=$(count_files "$TERN_NEW")
	if [ "$got" -ne "$MSGS" ]; then
		tail -n 30 "$TERN_LOG" >&2
		die "tern, $s sessions: $got messages in $TERN_NEW after smtp-source finished, expected $MSGS"
	fi
	kill -0 "$TERN_PID" 2>/dev/null || die "tern master died during the run"
	tern_check_log "$log_from" || TERN_PROBLEMS=1
	sec=$(secs "$t0" "$t1")
	add_result tern "$s" "$MSGS" "$sec" "$(rate "$MSGS" "$sec")"
	result "smtp.s$s.tern" "$(rate "$MSGS" "$sec")"
	result "smtp.tern.s$s.client" "$(source_cpu "$out")/$sec"
	say "tern      sessions=$s: smtp-source used $(source_cpu "$out")s of CPU"
	say "tern      sessions=$s: $MSGS delivered in ${sec}s"
done
rss_report after
stop_tern
grep -Eai 'warn|error|fatal|exited' "$TERN_LOG" >/dev/null && TERN_PROBLEMS=1
[ "$TERN_PROBLEMS" -eq 1 ] && warn "tern log: $TERN_LOG (see the lines above)"

# --- Postfix ----------------------------------------------------------------------------------
PF_NEW=$TMP/pf-mail/example.test/bench/new
# pf_setup - the private Postfix of bench/lib.sh, delivering example.test by virtual(8) into
# Maildirs owned by nobody
pf_setup() {
	mkdir -p "$TMP/pf-mail"
	chown nobody:nogroup "$TMP/pf-mail"
	echo "$RCPT example.test/bench/" >"$TMP/vmailbox"
	postfix_start "$(free_port "$TERN_PORT")" \
		virtual_mailbox_domains=example.test \
		"virtual_mailbox_base=$TMP/pf-mail" \
		"virtual_mailbox_maps=texthash:$TMP/vmailbox" \
		"virtual_uid_maps=static:$(id -u nobody)" \
		"virtual_gid_maps=static:$(id -g nobody)"
}

# pf_wait_delivered COUNT - poll until COUNT files are in new/; prints the end time (ns)
pf_wait_delivered() {
	local want=$1 deadline=$(($(date +%s) + RUN_TIMEOUT)) got
	while :; do
		got=$(count_files "$PF_NEW")
		if [ "$got" -ge "$want" ]; then
			now_ns
			return 0
		fi
		[ "$(date +%s)" -ge "$deadline" ] && { echo "$got"; return 1; }
		sleep 0.02
	done
}

if postfix_usable && pf_setup; then
	say "postfix: private instance $(postconf -h -c "$PF_CONF" mail_version), config $PF_CONF, 127.0.0.1:$PF_PORT"
	if [ "$WARMUP" -gt 0 ]; then
		run_source 20 "$WARMUP" "$PF_PORT" "$TMP/pf-warmup.out" ||
			{ cat "$TMP/pf-warmup.out" >&2; tail -n 20 "$PF_LOG" >&2; die "postfix warm-up: smtp-source failed"; }
		pf_wait_delivered "$WARMUP" >/dev/null || die "postfix warm-up: mail not delivered within ${RUN_TIMEOUT}s"
		sleep 1	# let the queue manager finish its bookkeeping
	fi
	for s in $SESSIONS_LIST; do
		clear_dir "$PF_NEW"
		log_from=$(($(wc -l <"$PF_LOG") + 1))
		out=$TMP/pf-s$s.out
		t0=$(now_ns)
		rc=0
		run_source "$s" "$MSGS" "$PF_PORT" "$out" || rc=$?
		if [ "$rc" -ne 0 ]; then
			cat "$out" >&2
			tail -n 30 "$PF_LOG" >&2
			die "postfix, $s sessions: smtp-source exited with status $rc"
		fi
		t1=$(now_ns)
		if ! t2=$(pf_wait_delivered "$MSGS"); then
			tail -n 30 "$PF_LOG" >&2
			die "postfix, $s sessions: only $t2 of $MSGS messages delivered within ${RUN_TIMEOUT}s"
		fi
		sleep 0.5	# anything beyond the expected count would show up now
		got=$(count_files "$PF_NEW")
		[ "$got" -eq "$MSGS" ] || die "postfix, $s sessions: $got messages in $PF_NEW, expected $MSGS"
		bad=$(tail -n +"$log_from" "$PF_LOG" | grep -Ec 'status=(deferred|bounced)|fatal|panic' || true)
		[ "$bad" -eq 0 ] || warn "postfix logged $bad deferrals/bounces/fatal errors: $PF_LOG"
		sec1=$(secs "$t0" "$t1")
		sec2=$(secs "$t0" "$t2")
		add_result "postfix (250 only)" "$s" "$MSGS" "$sec1" "$(rate "$MSGS" "$sec1")"
		add_result "postfix (delivered)" "$s" "$MSGS" "$sec2" "$(rate "$MSGS" "$sec2")"
		result "smtp.s$s.postfix" "$(rate "$MSGS" "$sec2")"
		result "smtp.s$s.postfix250" "$(rate "$MSGS" "$sec1")"
		result "smtp.postfix.s$s.client" "$(source_cpu "$out")/$sec1"
		say "postfix   sessions=$s: $MSGS accepted in ${sec1}s, all in Maildir after ${sec2}s"
	done
	stop_postfix
fi
[ -n "$PF_SKIP" ] && say "postfix: skipped ($PF_SKIP)"

# --- report -----------------------------------------------------------------------------------
say ""
printf '%-22s %8s %9s %9s %9s\n' implementation sessions messages seconds msg/s
printf '%-22s %8s %9s %9s %9s\n' ---------------------- -------- --------- --------- ---------
for r in "${RESULTS[@]}"; do
	IFS='|' read -r impl s n sec rt <<<"$r"
	printf '%-22s %8s %9s %9s %9s\n' "$impl" "$s" "$n" "$sec" "$rt"
done
say ""
if [ -z "$PF_SKIP" ]; then
	for s in $SESSIONS_LIST; do
		t=""; p=""; a=""
		for r in "${RESULTS[@]}"; do
			IFS='|' read -r impl rs _ _ rt <<<"$r"
			[ "$rs" = "$s" ] || continue
			case $impl in
			tern) t=$rt ;;
			"postfix (delivered)") p=$rt ;;
			"postfix (250 only)") a=$rt ;;
			esac
		done
		say "ratio tern/postfix, $s session(s): $(awk -v t="$t" -v p="$p" 'BEGIN { printf "%.2f", t / p }')x end to end" \
			"($(awk -v t="$t" -v a="$a" 'BEGIN { printf "%.2f", t / a }')x against Postfix's 250 replies alone)"
	done
	say ""
fi
say "tern child processes (workers + queue runner), resident memory:"
for l in "${TERN_RSS_LINES[@]}"; do say "  $l"; done
bench_finish
