#!/usr/bin/env bash
# bench/relay.sh - outbound relay benchmark, end to end: authenticated submission to tern,
# durably queued, delivered by tern's queue runner to Postfix's smtp-sink on loopback
# ([routes] sink.test = 127.0.0.1:PORT), removed from the queue. Prints messages/s from the
# first submission until the queue is empty, the submission-only rate, and the drain time.
# A benchmark, not a test: it fails (exit 1) only when something is broken (lost or duplicated
# mail, an SMTP error, deferrals or bounces, a server that does not start, a queue that does not
# drain in time), never because a number is low.
#
# Run with `make bench-relay` (builds ./tern first). Knobs (environment):
#   BENCH_MSGS=5000        messages per run
#   BENCH_SIZE=10240       message body size in bytes
#   BENCH_SESSIONS=20      parallel submission sessions (many messages per session)
#   BENCH_MODES="plain tls"  plain: AUTH without TLS (allow_plaintext_auth_loopback);
#                          tls: STARTTLS, then AUTH; one run each, in this order
#   BENCH_WORKERS=2        tern worker processes
#   BENCH_CONCURRENCY=40   tern [queue] concurrency
#   BENCH_PER_DOMAIN=20    tern [queue] concurrency_per_domain
#   BENCH_WARMUP=200       messages relayed (and not counted) before the runs; 0: none
#   BENCH_TIMEOUT=300      seconds allowed for the submission, and again for the drain
#   BENCH_KEEP=0           1: keep the temporary directory (config, logs, mail) at the end
#   BENCH_TERN=./tern      the tern binary to run
#   TMPDIR                 where the temporary directory is made (the disk under test)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TERN=${BENCH_TERN:-$ROOT/tern}
CLIENT=$ROOT/bench/relay_client.py
MSGS=${BENCH_MSGS:-5000}
SIZE=${BENCH_SIZE:-10240}
SESSIONS=${BENCH_SESSIONS:-20}
MODES=${BENCH_MODES:-"plain tls"}
WORKERS=${BENCH_WORKERS:-2}
CONCURRENCY=${BENCH_CONCURRENCY:-40}
PER_DOMAIN=${BENCH_PER_DOMAIN:-20}
WARMUP=${BENCH_WARMUP:-200}
RUN_TIMEOUT=${BENCH_TIMEOUT:-300}
KEEP=${BENCH_KEEP:-0}
USER_ADDR=bench@example.test	# the authenticated sender
PASS=pw
RCPT=someone@sink.test	# the remote recipient, routed to smtp-sink
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

"$ROOT/scripts/bench-deps.sh"
SMTP_SINK=/usr/sbin/smtp-sink
[ -x "$SMTP_SINK" ] || die "$SMTP_SINK missing (scripts/bench-deps.sh installs postfix)"
[ -x "$TERN" ] || die "$TERN missing: run 'make bench-relay' (or 'make tern') first"
command -v python3 >/dev/null || die "python3 missing"
for m in $MODES; do
	case $m in plain | tls) ;; *) die "BENCH_MODES: unknown mode '$m' (plain, tls)" ;; esac
done

bench_identity
SINK_PID=""
stop_sink() {
	[ -n "$SINK_PID" ] || return 0
	stop_pid "$SINK_PID" "smtp-sink"
	SINK_PID=""
}

bench_tmp bench-relay stop_tern stop_sink

# --- helpers ----------------------------------------------------------------------------------
# sink_count - messages smtp-sink has received so far: the last "mesg=N" of its -c counters
# (one "sess=.. quit=.. mesg=N" record, ended by a CR, each time a session ends or a "." or QUIT
# arrives)
sink_count() {
	awk 'BEGIN { RS = "\r"; n = 0 } /mesg=/ { sub(/.*mesg=/, ""); n = $0 + 0 } END { print n }' \
		"$SINK_OUT" 2>/dev/null || echo 0
}

# queue_first_line - the first line `tern queue list` prints ("queue is empty" when it is); the
# rest of a long listing is not read (it would cost the machine more than the poll is worth)
queue_first_line() {
	{ "$TERN" queue list -c "$TERN_CONF" 2>>"$TMP/queue-list.err" || true; } | head -n 1
}

# queued_messages - messages in the queue now (the unindented lines of `tern queue list`)
queued_messages() {
	{ "$TERN" queue list -c "$TERN_CONF" 2>>"$TMP/queue-list.err" || true; } |
		awk '/^queue is empty/ { n = 0; exit } /^[^ ]/ { n++ } END { print n + 0 }'
}

# wait_queue_empty LOG_FROM - poll `tern queue list` every 100 ms until it says "queue is
# empty"; prints the time (ns) of the first poll that did. Returns 1 after RUN_TIMEOUT seconds,
# when tern dies, or at once when tern logs a deferral (the retry would come minutes later:
# the run is void, and nothing here should ever be deferred)
wait_queue_empty() {
	local deadline=$(($(date +%s) + RUN_TIMEOUT)) first
	while :; do
		first=$(queue_first_line)
		if [ "$first" = "queue is empty" ]; then
			now_ns	# after the answer: the drain is never flattered by the poll's own time
			return 0
		fi
		kill -0 "$TERN_PID" 2>/dev/null || return 1
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		[ "$(log_count "$1" 'status=deferred')" -eq 0 ] || return 1
		sleep 0.1
	done
}

# wait_sink_count N - poll (20 ms, up to 5 s) until smtp-sink has counted at least N messages;
# its counters are written as they change, so once the queue is empty this returns at once
wait_sink_count() {
	local i
	for ((i = 0; i < 250; i++)); do
		[ "$(sink_count)" -ge "$1" ] && return 0
		sleep 0.02
	done
	return 1
}

# log_count FROM REGEX - lines of tern's log from line FROM on that match REGEX
log_count() { tail -n +"$1" "$TERN_LOG" | grep -Ec "$2" || true; }

say "tern relay benchmark: $MSGS messages of $SIZE bytes per run over $SESSIONS authenticated" \
	"submission sessions, relayed to smtp-sink; modes: $MODES"
bench_header
say "client: bench/relay_client.py (python $(python3 -c 'import platform; print(platform.python_version())')," \
	"asyncio, PIPELINING); sink: smtp-sink ($(dpkg-query -W -f='postfix ${Version}' postfix 2>/dev/null || echo '?'))"
say ""

# --- smtp-sink --------------------------------------------------------------------------------
SINK_PORT=$(free_port)
SINK_OUT=$TMP/sink.out
sink_args=(-c)
[ "$IS_ROOT" -eq 1 ] && sink_args+=(-u nobody)	# it refuses to run as root without -u
"$SMTP_SINK" "${sink_args[@]}" "127.0.0.1:$SINK_PORT" 1000 </dev/null >"$SINK_OUT" 2>"$TMP/sink.err" &
SINK_PID=$!
if ! wait_greeting "$SINK_PORT" 220 20 "$SINK_PID"; then
	cat "$TMP/sink.err" >&2 || true
	die "smtp-sink did not answer 220 on 127.0.0.1:$SINK_PORT within 20 s"
fi
say "smtp-sink: pid $SINK_PID, 127.0.0.1:$SINK_PORT (answers 250 to everything, counts messages)"

# --- tern -------------------------------------------------------------------------------------
SMTP_PORT=$(free_port "$SINK_PORT")
SUB_PORT=$(free_port "$SMTP_PORT" "$SINK_PORT")
TERN_CONF=$TMP/tern.conf
TERN_LOG=$TMP/tern.log
TERN_INBOX=$TMP/tern-data/mail/example.test/bench/new	# bounces to the sender would land here
{
	tern_conf_head "$TMP/tern-data" relay.example.test
	echo "max_connections_per_ip = 1000"
	echo "allow_plaintext_auth_loopback = yes"
	echo "[listen]"
	echo "smtp = 127.0.0.1:$SMTP_PORT"
	echo "submission = 127.0.0.1:$SUB_PORT"
	echo "[routes]"
	echo "sink.test = 127.0.0.1:$SINK_PORT"
	echo "[queue]"
	echo "concurrency = $CONCURRENCY"
	echo "concurrency_per_domain = $PER_DOMAIN"
} >"$TERN_CONF"

tern_user_add "$USER_ADDR" "$PASS"

tern_start "$SMTP_PORT" 220 "$SUB_PORT" 220
say "tern: pid $TERN_PID, $WORKERS workers, submission 127.0.0.1:$SUB_PORT, [queue] concurrency" \
	"$CONCURRENCY ($PER_DOMAIN per domain), [routes] sink.test = 127.0.0.1:$SINK_PORT"

# --- runs -------------------------------------------------------------------------------------
RESULTS=()	# "mode|messages|submit s|submit rate|drain s|e2e s|e2e rate|delivered during submission"
PROBLEMS=0
SINK_TOTAL=0	# messages smtp-sink should have counted so far

# relay_run LABEL MODE COUNT - one measured run; adds a RESULTS row unless LABEL is warmup
relay_run() {
	local label=$1 mode=$2 n=$3 out rc tls=() json start first last auth t_empty
	local sink0 sink_sub got deferred bounced sent sub_s e2e_s drain_s log_from
	[ "$mode" = tls ] && tls=(--tls)
	out=$TMP/client-$label.out
	sink0=$SINK_TOTAL
	log_from=$(($(wc -l <"$TERN_LOG") + 1))
	rc=0
	timeout "$RUN_TIMEOUT" python3 "$CLIENT" --port "$SUB_PORT" --user "$USER_ADDR" --password "$PASS" \
		--from "$USER_ADDR" --to "$RCPT" --messages "$n" --sessions "$SESSIONS" --size "$SIZE" \
		--tag "$label" "${tls[@]}" >"$out" 2>&1 || rc=$?
	if [ "$rc" -ne 0 ]; then
		cat "$out" >&2
		tail -n 30 "$TERN_LOG" >&2
		[ "$rc" -eq 124 ] && die "$label: the submission did not finish within ${RUN_TIMEOUT}s"
		die "$label: relay_client.py failed (status $rc)"
	fi
	# first the clock: poll the queue at once (the JSON is read afterwards)
	sink_sub=$(($(sink_count) - sink0))
	if ! t_empty=$(wait_queue_empty "$log_from"); then
		kill -0 "$TERN_PID" 2>/dev/null || die "$label: tern master died"
		"$TERN" queue list -c "$TERN_CONF" 2>&1 | head -n 20 >&2
		if [ "$(log_count "$log_from" 'status=deferred')" -ne 0 ]; then
			tail -n +"$log_from" "$TERN_LOG" | grep -E 'status=deferred' | head -n 10 >&2
			die "$label: tern deferred deliveries to smtp-sink ($(queued_messages) messages still queued)"
		fi
		tail -n 30 "$TERN_LOG" >&2
		die "$label: the queue was not empty ${RUN_TIMEOUT}s after the submission ($(queued_messages) messages left)"
	fi
	json=$(tail -n 1 "$out")
	start=$(json_field "$json" start_ns)
	last=$(json_field "$json" last_ns)
	auth=$(json_field "$json" auth_seconds)
	first=$(json_field "$json" first_ns)
	SINK_TOTAL=$((SINK_TOTAL + n))
	wait_sink_count "$SINK_TOTAL" || true
	sleep 0.2	# a duplicate delivery would show up now
	got=$(($(sink_count) - sink0))
	[ "$got" -eq "$n" ] || die "$label: smtp-sink received $got messages, expected $n (queue empty)"
	kill -0 "$TERN_PID" 2>/dev/null || die "$label: tern master died during the run"
	sent=$(log_count "$log_from" 'status=sent')
	deferred=$(log_count "$log_from" 'status=deferred')
	bounced=$(log_count "$log_from" 'status=bounced')
	if [ "$deferred" -ne 0 ] || [ "$bounced" -ne 0 ]; then
		warn "$label: tern logged $deferred deferral(s) and $bounced bounce(s); first ones:"
		tail -n +"$log_from" "$TERN_LOG" | grep -E 'status=(deferred|bounced)' | head -n 10 >&2
		PROBLEMS=1
	fi
	[ "$bounced" -eq 0 ] || die "$label: $bounced message(s) bounced"
	[ "$(count_files "$TERN_INBOX")" -eq 0 ] || die "$label: bounces in the sender's mailbox $TERN_INBOX"
	[ "$sent" -eq "$n" ] || { warn "$label: tern logged $sent status=sent lines, expected $n"; PROBLEMS=1; }
	tern_check_log "$log_from" || PROBLEMS=1
	sub_s=$(secs "$start" "$last")
	e2e_s=$(secs "$start" "$t_empty")
	drain_s=$(secs "$last" "$t_empty")
	say "$(printf '%-7s %d messages: submitted in %ss (%d of them delivered by then),' \
		"$label" "$n" "$sub_s" "$sink_sub") queue empty after ${e2e_s}s; smtp-sink got $got;" \
		"sessions authenticated within ${auth}s, first MAIL at $(secs "$start" "$first")s"
	[ "$label" = warmup ] && return 0
	RESULTS+=("$mode|$n|$sub_s|$(rate "$n" "$sub_s")|$drain_s|$e2e_s|$(rate "$n" "$e2e_s")|$sink_sub")
}

if [ "$WARMUP" -gt 0 ]; then
	relay_run warmup plain "$WARMUP"
fi
for m in $MODES; do
	relay_run "$m" "$m" "$MSGS"
done
kill -0 "$TERN_PID" 2>/dev/null || die "tern master died"
stop_tern
tern_check_log 1 || PROBLEMS=1	# shutdown included

# --- report -----------------------------------------------------------------------------------
say ""
printf '%-8s %8s %8s %11s %9s %11s %9s %10s\n' mode sessions messages "submit s" "submit/s" \
	"drain s" "e2e s" "e2e msg/s"
printf '%-8s %8s %8s %11s %9s %11s %9s %10s\n' -------- -------- -------- ----------- --------- \
	----------- --------- ----------
for r in "${RESULTS[@]}"; do
	IFS='|' read -r m n sub subr drain e2e e2er _ <<<"$r"
	printf '%-8s %8s %8s %11s %9s %11s %9s %10s\n' "$m" "$SESSIONS" "$n" "$sub" "$subr" "$drain" "$e2e" "$e2er"
done
say ""
say "submit: first connection to the last 250 (the client's own clock); drain: last 250 to the"
say "first 'tern queue list' that said 'queue is empty' (polled every 100 ms); e2e = both:"
say "accepted, queued durably, delivered to smtp-sink, removed from the queue."
if [ "$PROBLEMS" -eq 1 ]; then
	say ""
	say "NOTE: tern logged warnings, errors or deferrals; see above (log kept in $TMP)."
	KEEP=1
fi
