#!/usr/bin/env bash
# bench/relay.sh - outbound relay benchmark, end to end: authenticated submission to tern,
# durably queued, delivered by tern's queue runner to Postfix's smtp-sink on loopback
# ([routes] sink.test = 127.0.0.1:PORT), removed from the queue; then the same load relayed by
# a private Postfix (clients in mynetworks, relayhost = the same smtp-sink), alternating.
# Prints messages/s from the first submission until the queue is empty, the submission-only
# rate, and the drain time.
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
#   BENCH_RUNS=1           rounds; each round runs tern (every mode), then Postfix
#   BENCH_WARMUP=200       messages relayed (and not counted) before the runs; 0: none
#   BENCH_TIMEOUT=300      seconds allowed for the submission, and again for the drain
#   BENCH_POSTFIX=1        0: skip the Postfix half
#   BENCH_KEEP=0           1: keep the temporary directory (config, logs, mail) at the end
#   BENCH_RESULTS=         a file to append "relay.tern.MODE|relay.postfix MSG_PER_S" lines to
#   BENCH_TERN=./tern      the tern binary to run
#   TMPDIR                 where the temporary directory is made (the disk under test)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TERN=${BENCH_TERN:-$ROOT/tern}
MSGS=${BENCH_MSGS:-5000}
SIZE=${BENCH_SIZE:-10240}
SESSIONS=${BENCH_SESSIONS:-20}
MODES=${BENCH_MODES:-"plain tls"}
WORKERS=${BENCH_WORKERS:-2}
CONCURRENCY=${BENCH_CONCURRENCY:-40}
PER_DOMAIN=${BENCH_PER_DOMAIN:-20}
RUNS=${BENCH_RUNS:-1}
WARMUP=${BENCH_WARMUP:-200}
DO_POSTFIX=${BENCH_POSTFIX:-1}
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
CLIENT=$(bench_tool smtp_load)
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

bench_tmp bench-relay stop_tern stop_postfix stop_sink

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
say "client: bench/smtp_load.c (one poll loop, PIPELINING); sink: smtp-sink" \
	"($(dpkg-query -W -f='postfix ${Version}' postfix 2>/dev/null || echo '?'))"
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
	tern_conf_inbound
} >"$TERN_CONF"

tern_user_add "$USER_ADDR" "$PASS"

tern_start "$SMTP_PORT" 220 "$SUB_PORT" 220
say "tern: pid $TERN_PID, $WORKERS workers, submission 127.0.0.1:$SUB_PORT, [queue] concurrency" \
	"$CONCURRENCY ($PER_DOMAIN per domain), [routes] sink.test = 127.0.0.1:$SINK_PORT"

# --- Postfix ----------------------------------------------------------------------------------
# The private instance of bench/lib.sh relaying everything not local to the same smtp-sink:
# relayhost = [127.0.0.1]:SINK_PORT, clients in mynetworks (127.0.0.0/8) relay without AUTH.
PF_SUBMIT=""
if postfix_usable && postfix_start "$(free_port "$SINK_PORT" "$SMTP_PORT" "$SUB_PORT")" \
	"relayhost=[127.0.0.1]:$SINK_PORT" mynetworks=127.0.0.0/8; then
	PF_SUBMIT=$PF_PORT
	say "postfix: private instance $(postconf -h -c "$PF_CONF" mail_version), config $PF_CONF," \
		"smtpd 127.0.0.1:$PF_PORT, relayhost [127.0.0.1]:$SINK_PORT, mynetworks 127.0.0.0/8 (no AUTH)"
else
	say "postfix: skipped ($PF_SKIP)"
fi

# --- runs -------------------------------------------------------------------------------------
RESULTS=()	# "impl|mode|messages|submit s|submit rate|drain s|e2e s|e2e rate|client cpu s"
PROBLEMS=0
SINK_TOTAL=0	# messages smtp-sink should have counted so far

# pf_log_count FROM REGEX - lines of Postfix's log from line FROM on that match REGEX
pf_log_count() { tail -n +"$1" "$PF_LOG" | grep -Ec "$2" || true; }

# pf_wait_empty - poll every 100 ms until Postfix's queue directories hold no message; prints
# the time (ns); 1 after RUN_TIMEOUT seconds or at a deferral
pf_wait_empty() {
	local deadline=$(($(date +%s) + RUN_TIMEOUT))
	while :; do
		if [ "$(postfix_queued)" -eq 0 ]; then
			now_ns
			return 0
		fi
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		[ "$(pf_log_count "$1" 'status=deferred')" -eq 0 ] || return 1
		sleep 0.1
	done
}

# relay_run IMPL LABEL MODE COUNT - one measured run; adds a RESULTS row unless LABEL is warmup
relay_run() {
	local impl=$1 label=$2 mode=$3 n=$4 out rc args=() json start first last auth cpu t_empty
	local sink0 sink_sub got deferred bounced sent sub_s e2e_s drain_s log_from
	out=$TMP/client-$impl-$label.out
	sink0=$SINK_TOTAL
	if [ "$impl" = tern ]; then
		args=(--port "$SUB_PORT" --user "$USER_ADDR" --password "$PASS")
		[ "$mode" = tls ] && args+=(--tls)
		log_from=$(($(wc -l <"$TERN_LOG") + 1))
	else
		args=(--port "$PF_SUBMIT")
		log_from=$(($(wc -l <"$PF_LOG") + 1))
	fi
	rc=0
	timeout "$RUN_TIMEOUT" "$CLIENT" "${args[@]}" --from "$USER_ADDR" --to "$RCPT" --messages "$n" \
		--sessions "$SESSIONS" --size "$SIZE" --tag "$impl-$label" >"$out" 2>&1 || rc=$?
	if [ "$rc" -ne 0 ]; then
		cat "$out" >&2
		[ "$impl" = tern ] && tail -n 30 "$TERN_LOG" >&2
		[ "$impl" = postfix ] && tail -n 30 "$PF_LOG" >&2
		[ "$rc" -eq 124 ] && die "$impl $label: the submission did not finish within ${RUN_TIMEOUT}s"
		die "$impl $label: smtp_load failed (status $rc)"
	fi
	# first the clock: poll the queue at once (the JSON is read afterwards)
	sink_sub=$(($(sink_count) - sink0))
	if [ "$impl" = tern ]; then
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
	else
		if ! t_empty=$(pf_wait_empty "$log_from"); then
			tail -n +"$log_from" "$PF_LOG" | grep -E 'status=deferred|fatal|error' | head -n 10 >&2
			die "postfix $label: the queue was not empty ${RUN_TIMEOUT}s after the submission, or a deferral ($(postfix_queued) left)"
		fi
	fi
	SINK_TOTAL=$((SINK_TOTAL + n))
	# the clock also waits for smtp-sink to have counted every message (a queue file may go an
	# instant before the sink's counter is written): the end is whichever came last
	if [ "$(sink_count)" -lt "$SINK_TOTAL" ]; then
		wait_sink_count "$SINK_TOTAL" || true
		t_empty=$(now_ns)
	fi
	json=$(tail -n 1 "$out")
	start=$(json_field "$json" start_ns)
	last=$(json_field "$json" last_ns)
	auth=$(json_field "$json" auth_seconds)
	first=$(json_field "$json" first_ns)
	cpu=$(json_field "$json" client_cpu)
	sleep 0.2	# a duplicate delivery would show up now
	got=$(($(sink_count) - sink0))
	[ "$got" -eq "$n" ] || die "$impl $label: smtp-sink received $got messages, expected $n (queue empty)"
	if [ "$impl" = tern ]; then
		kill -0 "$TERN_PID" 2>/dev/null || die "$label: tern master died during the run"
		sent=$(log_count "$log_from" 'status=sent')
		deferred=$(log_count "$log_from" 'status=deferred')
		bounced=$(log_count "$log_from" 'status=bounced')
	else
		sent=$(pf_log_count "$log_from" 'status=sent')
		deferred=$(pf_log_count "$log_from" 'status=deferred')
		bounced=$(pf_log_count "$log_from" 'status=bounced')
	fi
	if [ "$deferred" -ne 0 ] || [ "$bounced" -ne 0 ]; then
		warn "$impl $label: $deferred deferral(s) and $bounced bounce(s) logged"
		PROBLEMS=1
	fi
	[ "$bounced" -eq 0 ] || die "$impl $label: $bounced message(s) bounced"
	if [ "$impl" = tern ]; then
		[ "$(count_files "$TERN_INBOX")" -eq 0 ] || die "$label: bounces in the sender's mailbox $TERN_INBOX"
		tern_check_log "$log_from" || PROBLEMS=1
	fi
	[ "$sent" -eq "$n" ] || { warn "$impl $label: $sent status=sent lines logged, expected $n"; PROBLEMS=1; }
	sub_s=$(secs "$start" "$last")
	e2e_s=$(secs "$start" "$t_empty")
	drain_s=$(secs "$last" "$t_empty")
	say "$(printf '%-7s %-7s %d messages: submitted in %ss (%d of them delivered by then),' \
		"$impl" "$label" "$n" "$sub_s" "$sink_sub") all delivered and queue empty after ${e2e_s}s;" \
		"sessions ready within ${auth}s, first MAIL at $(secs "$start" "$first")s; client CPU ${cpu}s"
	[ "$label" = warmup ] && return 0
	RESULTS+=("$impl|$mode|$n|$sub_s|$(rate "$n" "$sub_s")|$drain_s|$e2e_s|$(rate "$n" "$e2e_s")|$cpu")
	if [ "$impl" = tern ]; then
		result "relay.tern.$mode" "$(rate "$n" "$e2e_s")"
		result "relay.tern.$mode.submit" "$(rate "$n" "$sub_s")"
	else
		result "relay.postfix" "$(rate "$n" "$e2e_s")"
		result "relay.postfix.submit" "$(rate "$n" "$sub_s")"
	fi
	result "relay.$impl.$mode.client" "$cpu/$sub_s"
}

if [ "$WARMUP" -gt 0 ]; then
	relay_run tern warmup plain "$WARMUP"
	[ -z "$PF_SUBMIT" ] || relay_run postfix warmup plain "$WARMUP"
fi
for ((round = 1; round <= RUNS; round++)); do
	for m in $MODES; do
		relay_run tern "$m-$round" "$m" "$MSGS"
	done
	[ -z "$PF_SUBMIT" ] || relay_run postfix "plain-$round" plain "$MSGS"
done
kill -0 "$TERN_PID" 2>/dev/null || die "tern master died"
stop_tern
stop_postfix
tern_check_log 1 || PROBLEMS=1	# shutdown included

# --- report -----------------------------------------------------------------------------------
say ""
printf '%-8s %-8s %8s %8s %9s %9s %9s %9s %10s %10s\n' server mode sessions messages "submit s" "submit/s" \
	"drain s" "e2e s" "e2e msg/s" "client CPU"
printf '%-8s %-8s %8s %8s %9s %9s %9s %9s %10s %10s\n' -------- -------- -------- -------- --------- --------- \
	--------- --------- ---------- ----------
for r in "${RESULTS[@]}"; do
	IFS='|' read -r impl m n sub subr drain e2e e2er cpu <<<"$r"
	[ "$impl" = postfix ] && m="no AUTH"
	printf '%-8s %-8s %8s %8s %9s %9s %9s %9s %10s %10s\n' "$impl" "$m" "$SESSIONS" "$n" "$sub" "$subr" "$drain" "$e2e" "$e2er" "${cpu}s"
done
say ""
say "submit: first connection to the last 250 (the client's own clock); drain: last 250 to the"
say "first 'tern queue list' that said 'queue is empty' (Postfix: no file left in its queue"
say "directories), polled every 100 ms, and smtp-sink's count reached; e2e = both: accepted,"
say "queued durably, delivered to smtp-sink, removed from the queue. client CPU: smtp_load's own"
say "CPU time (getrusage), to compare with its submit seconds."
if [ "$PROBLEMS" -eq 1 ]; then
	say ""
	say "NOTE: tern logged warnings, errors or deferrals; see above (log kept in $TMP)."
	KEEP=1
fi
