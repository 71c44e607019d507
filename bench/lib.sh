# bench/lib.sh - what the benchmark scripts share: messages, a temporary directory with a
# cleanup trap, free ports, waiting for a greeting, stopping process trees by pid, tern started
# and stopped with a config, a private Dovecot instance, the memory (PSS) of a process tree.
# Sourced by bench/*.sh (bash, set -euo pipefail), never run. Functions that start or stop a
# server work on globals the script sets first; each function says which.
#
# The script sets before sourcing: ROOT (the repository), TERN (the tern binary), KEEP (1 keeps
# the temporary directory at the end).

say() { printf '%s\n' "$*"; }
warn() { printf 'bench: %s\n' "$*" >&2; }
die() {
	warn "FAILED: $*"
	exit 1
}

now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "inf" }'; }
json_field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# bench_identity - IS_ROOT (1 when run as root), RUN_USER and RUN_GROUP: who the servers'
# unprivileged processes run as (nobody when root, else the caller)
bench_identity() {
	IS_ROOT=0
	[ "$(id -u)" -eq 0 ] && IS_ROOT=1
	RUN_USER=$(id -un)
	RUN_GROUP=$(id -gn)
	if [ "$IS_ROOT" -eq 1 ]; then
		RUN_USER=nobody
		RUN_GROUP=$(id -gn nobody)
	fi
	return 0
}

# bench_tmp NAME STOP_FN... - TMP, a new directory under $TMPDIR (or /tmp), reachable by the
# unprivileged server processes; on exit (or INT/TERM) the STOP_FNs run in order, then TMP is
# removed unless KEEP=1 or the script failed (then its path is printed)
BENCH_STOPS=()
bench_tmp() {
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/tern-$1.XXXXXX")
	chmod 755 "$TMP"
	shift
	BENCH_STOPS=("$@")
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}
bench_cleanup() {
	local rc=$? fn
	trap - EXIT INT TERM
	for fn in "${BENCH_STOPS[@]}"; do "$fn" || true; done
	if [ "$KEEP" = 1 ] || [ "$rc" -ne 0 ]; then
		warn "kept $TMP (configs, logs, mail, client outputs)"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}

# stop_idle - stop the background client IDLE_PID (when there is one) and reap it
IDLE_PID=""
stop_idle() {
	[ -n "$IDLE_PID" ] || return 0
	kill -TERM "$IDLE_PID" 2>/dev/null || true
	wait "$IDLE_PID" 2>/dev/null || true
	IDLE_PID=""
}

# bench_finish - the end of a report: a note when tern logged problems (TERN_PROBLEMS=1; the
# temporary directory is then kept), and each of FAILURES ("what: how"), then exit 1 when
# there are any
FAILURES=()
TERN_PROBLEMS=0
bench_finish() {
	local f
	if [ "$TERN_PROBLEMS" -eq 1 ]; then
		say ""
		say "NOTE: tern logged warnings or errors during the benchmark; see above (log kept in $TMP)."
		KEEP=1
	fi
	if [ "${#FAILURES[@]}" -gt 0 ]; then
		say ""
		for f in "${FAILURES[@]}"; do warn "broken: $f"; done
		die "${#FAILURES[@]} part(s) of the benchmark failed (see above)"
	fi
	return 0
}

# bench_header - the machine, the temporary directory's file system, the load average
bench_header() {
	say "machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
		"temp dir $TMP on $(df -T "$TMP" | awk 'NR == 2 { print $2 " (" $1 ")" }')${1:+, $1}"
	say "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the numbers)"
}

# free_port [TAKEN...] - a free TCP port on 127.0.0.1, none of TAKEN
free_port() {
	local p t again=1
	while [ "$again" -eq 1 ]; do
		p=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
		again=0
		for t in "$@"; do [ "$p" = "$t" ] && again=1; done
	done
	echo "$p"
}

# count_files DIR - regular files in DIR (0 when DIR does not exist yet); no fork
count_files() {
	local f n=0
	shopt -s nullglob dotglob
	for f in "$1"/*; do
		[ -f "$f" ] && n=$((n + 1))
	done
	shopt -u nullglob dotglob
	echo "$n"
}

# wait_greeting PORT PREFIX TIMEOUT_S [PID] - poll until 127.0.0.1:PORT greets with a line
# starting with PREFIX (then QUIT, or LOGOUT for IMAP's "* OK"); 1 after TIMEOUT_S seconds
# or as soon as PID (when given) has gone
wait_greeting() {
	local port=$1 want=$2 deadline=$(($(date +%s) + $3)) pid=${4:-} line quit=QUIT
	[ "$want" = "* OK" ] && quit="z LOGOUT"
	while [ "$(date +%s)" -lt "$deadline" ]; do
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			return 1
		fi
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

# wait_for_line FILE REGEX PID TIMEOUT_S - poll (every 0.1 s) until a line of FILE matches
# REGEX (grep -E); 1 when PID has gone first, or after TIMEOUT_S seconds
wait_for_line() {
	local deadline=$(($(date +%s) + $4))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		grep -Eq "$2" "$1" 2>/dev/null && return 0
		kill -0 "$3" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# descendants PID - every process below PID (children, grandchildren, ...), in one pass over
# /proc (Dovecot runs one process per connection: thousands)
descendants() {
	local st s ppid pid
	declare -A kids=()
	for st in /proc/[0-9]*/stat; do
		{ s=$(<"$st"); } 2>/dev/null || continue
		pid=${s%% *}
		s=${s##*) }	# past "(comm)", which may hold blanks
		read -r _ ppid _ <<<"$s"
		kids[$ppid]+="$pid "
	done
	local todo=("$1") p i=0
	while [ "$i" -lt "${#todo[@]}" ]; do
		p=${todo[$i]}
		i=$((i + 1))
		for pid in ${kids[$p]:-}; do
			printf '%s ' "$pid"
			todo+=("$pid")
		done
	done
	return 0
}

# stop_pid PID NAME - SIGTERM, wait up to 10 s, SIGKILL; then SIGKILL what was below it
# (tern's children die with the master, PDEATHSIG; Dovecot's too: this makes sure)
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

# mem_tree [--below] PID [COMM...] - "RSS PSS N": VmRSS and Pss (/proc/PID/smaps_rollup) in
# kB summed over PID and every process below it (--below: without PID itself), N of them;
# then "RSS PSS N" again for each COMM, over those of them whose comm is COMM. One python3
# pass: with Dovecot's process per connection there are thousands.
mem_tree() {
	python3 - "$@" <<'EOF'
import os, sys
args = sys.argv[1:]
below = args[0] == "--below"
if below:
    args = args[1:]
root, comms = int(args[0]), args[1:]
kids = {}
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        st = open(f"/proc/{p}/stat").read()
    except OSError:
        continue
    kids.setdefault(int(st.rsplit(")", 1)[1].split()[1]), []).append(int(p))
todo, seen = [root], []
while todo:
    p = todo.pop()
    if p != root or not below:
        seen.append(p)
    todo.extend(kids.get(p, []))
tot = {None: [0, 0, 0]}
for c in comms:
    tot[c] = [0, 0, 0]
for p in seen:
    try:
        r = next(int(l.split()[1]) for l in open(f"/proc/{p}/status") if l.startswith("VmRSS:"))
        s = next((int(l.split()[1]) for l in open(f"/proc/{p}/smaps_rollup") if l.startswith("Pss:")), 0)
        c = open(f"/proc/{p}/comm").read().strip()
    except (OSError, StopIteration):
        continue
    for k in (None, c):
        if k in tot:
            t = tot[k]
            t[0], t[1], t[2] = t[0] + r, t[1] + s, t[2] + 1
print(" ".join(str(v) for k in [None] + comms for v in tot[k]))
EOF
}

# --- tern -------------------------------------------------------------------------------------
# Globals: TERN (binary), TERN_CONF, TERN_LOG (set by the script), TERN_PID (set here).
TERN_PID=""

# tern_conf_head DATA_DIR [HOSTNAME] - the top-level lines every benchmark's tern.conf starts
# with (uses WORKERS and IS_ROOT); the script adds its own lines and sections
tern_conf_head() {
	echo "hostname = ${2:-bench.example.test}"
	echo "data_dir = $1"
	echo "domains = example.test"
	echo "workers = $WORKERS"
	[ "$IS_ROOT" -eq 1 ] && echo "user = nobody"
	return 0
}

# tern_conf_inbound - the [inbound] section of every benchmark's tern.conf: no SPF/DKIM/DMARC
# checks on incoming SMTP (Postfix checks none by default; with them tern's time per message
# is the resolver's latency, which says nothing about tern)
tern_conf_inbound() {
	echo "[inbound]"
	echo "checks = no"
}

# tern_start PORT PREFIX [PORT PREFIX...] - `tern serve -c TERN_CONF` in the background (its
# log appended to TERN_LOG), until each PORT greets with its PREFIX; dies when it does not
# within 20 s
tern_start() {
	"$TERN" serve -c "$TERN_CONF" </dev/null >>"$TMP/tern.stdout" 2>>"$TERN_LOG" &
	TERN_PID=$!
	while [ "$#" -ge 2 ]; do
		if ! wait_greeting "$1" "$2" 20 "$TERN_PID"; then
			tail -n 30 "$TERN_LOG" >&2 || true
			die "tern did not greet ('$2') on 127.0.0.1:$1 within 20 s"
		fi
		shift 2
	done
}

# tern_user_add ADDRESS PASSWORD - `tern user add` with TERN_CONF (output in TMP/user-add.log);
# dies when it fails
tern_user_add() {
	echo "$2" | "$TERN" user add "$1" -c "$TERN_CONF" >>"$TMP/user-add.log" 2>&1 ||
		{ cat "$TMP/user-add.log" >&2; die "tern user add $1 failed"; }
}

stop_tern() {
	[ -n "$TERN_PID" ] || return 0
	stop_pid "$TERN_PID" "tern master"
	TERN_PID=""
}

# tern_check_log [FROM] - print the warning/error lines of TERN_LOG from line FROM (1) on;
# 1 when there are any
tern_check_log() {
	local bad
	bad=$(tail -n +"${1:-1}" "$TERN_LOG" | grep -Eai 'warn|error|fatal|crit|exited|abort|assert|sanitizer' || true)
	if [ -n "$bad" ]; then
		warn "tern logged problems (first 20 lines):"
		printf '%s\n' "$bad" | head -n 20 >&2
		return 1
	fi
	return 0
}

# servers_stop - at the end of the runs: a master (tern's, Dovecot's when it runs) that died
# meanwhile goes to FAILURES; tern is stopped and its log checked (TERN_PROBLEMS=1 when it
# logged problems), Dovecot stopped (its log stays, see dovecot_check_log)
servers_stop() {
	kill -0 "$TERN_PID" 2>/dev/null || FAILURES+=("tern master died during the benchmark")
	[ -z "$DV_PID" ] || kill -0 "$DV_PID" 2>/dev/null || FAILURES+=("dovecot master died during the benchmark")
	stop_tern
	tern_check_log || TERN_PROBLEMS=1
	stop_dovecot
}

# --- a private Dovecot instance ----------------------------------------------------------------
# Globals: DV, DV_CONF, DV_LOG, DV_MAIL (set by dovecot_vars), DV_VERSION, DV_PID, DV_SKIP.
DV_PID=""
DV_SKIP=""
DV_VERSION=""

# dovecot_vars - where the instance lives: TMP/dv (config, log, run and state dirs) and
# TMP/dv-mail (the Maildirs, DV_MAIL/<domain>/<local part>)
dovecot_vars() {
	DV=$TMP/dv
	DV_CONF=$DV/dovecot.conf
	DV_LOG=$DV/dovecot.log
	DV_MAIL=$TMP/dv-mail
}

# dovecot_usable PROTOCOL - 0 when a private Dovecot serving PROTOCOL (imap, pop3) can run
# here (BENCH_DOVECOT=1 in DO_DOVECOT, root, the package, its users); else 1 with DV_SKIP set
dovecot_usable() {
	if [ "${DO_DOVECOT:-1}" != 1 ]; then
		DV_SKIP="BENCH_DOVECOT=$DO_DOVECOT"
	elif [ "$IS_ROOT" -ne 1 ]; then
		DV_SKIP="needs root (its master runs as root and switches to the mail user)"
	elif ! command -v dovecot >/dev/null || [ ! -x "/usr/lib/dovecot/$1" ]; then
		DV_SKIP="dovecot-${1}d not installed (scripts/bench-deps.sh installs it)"
	elif ! id dovenull >/dev/null 2>&1 || ! id dovecot >/dev/null 2>&1; then
		DV_SKIP="users dovenull and dovecot missing (the package creates them)"
	fi
	[ -z "$DV_SKIP" ]
}

# dovecot_passwd ADDRESS... - DV/passwd, a passwd-file with PASS ({PLAIN}) for each address
dovecot_passwd() {
	local u
	mkdir -p "$DV"
	: >"$DV/passwd"
	for u in "$@"; do echo "$u:{PLAIN}$PASS::::::" >>"$DV/passwd"; done
	chmod 644 "$DV/passwd"
}

# dovecot_conf_head PROTOCOLS SCRIPT [SSL_LINES] - the lines every benchmark's dovecot.conf
# starts with: private base/state dirs and log, 127.0.0.1, cleartext logins allowed, the
# passwd-file DV/passwd, a static userdb (RUN_USER), Maildirs under DV_MAIL; "ssl = no" unless
# SSL_LINES say otherwise. Everything not written here or by the script is Dovecot's default.
# Sets DV_VERSION; makes DV/run and DV/state.
dovecot_conf_head() {
	DV_VERSION=$(dovecot --version 2>/dev/null | awk '{ print $1 }')
	mkdir -p "$DV/run" "$DV/state" "$DV_MAIL"
	local cleartext="disable_plaintext_auth = no"
	case $DV_VERSION in
	2.[0-3].*) ;;
	*) cleartext="auth_allow_cleartext = yes" ;;	# 2.4 renamed the setting
	esac
	cat <<-EOF
	# private instance for bench/$2; everything else is Dovecot's default
	base_dir = $DV/run
	state_dir = $DV/state
	log_path = $DV_LOG
	protocols = $1
	listen = 127.0.0.1
	${3:-ssl = no}
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
	  args = uid=$RUN_USER gid=$RUN_GROUP home=$DV_MAIL/%d/%n
	}
	EOF
}

# dovecot_start PORT PREFIX - check DV_CONF (doveconf), start the instance in the foreground of
# a background job, wait until PORT greets with PREFIX; 1 with DV_SKIP set when it does not
dovecot_start() {
	if ! doveconf -n -c "$DV_CONF" >"$DV/doveconf.out" 2>&1; then
		DV_SKIP="doveconf rejects the config: $(tail -n 3 "$DV/doveconf.out" | tr '\n' ' ')"
		return 1
	fi
	dovecot -c "$DV_CONF" -F </dev/null >>"$DV/stdout" 2>&1 &
	DV_PID=$!
	if ! wait_greeting "$1" "$2" 20 "$DV_PID"; then
		DV_SKIP="private instance did not start: $(cat "$DV/stdout" 2>/dev/null; tail -n 3 "$DV_LOG" 2>/dev/null | tr '\n' ' ')"
		stop_dovecot
		return 1
	fi
	return 0
}

# dovecot_started [DETAILS] - say how the instance runs (DETAILS: its ports) or why it was
# skipped; SERVERS: "tern dovecot", or "tern" alone
dovecot_started() {
	if [ -n "$DV_PID" ]; then
		say "dovecot: private instance $DV_VERSION, pid $DV_PID, config $DV_CONF${1:+, $1}"
		SERVERS="tern dovecot"
	else
		say "dovecot: skipped ($DV_SKIP)"
		SERVERS="tern"
	fi
}

# dovecot_check_log [REGEX] - print the errors and warnings of DV_LOG but for the expected
# ones ("ssl = no", the SIGTERM that stopped it, and those matching REGEX)
dovecot_check_log() {
	local bad
	[ -f "$DV_LOG" ] || return 0
	bad=$(grep -Eai 'error|fatal|panic|warning' "$DV_LOG" |
		grep -Ev "ssl = no|Killed with signal 15${1:+|$1}" || true)
	[ -z "$bad" ] || { warn "dovecot logged problems (first 10 lines):"; printf '%s\n' "$bad" | head -n 10 >&2; }
	return 0
}

stop_dovecot() {
	[ -n "$DV_PID" ] || return 0
	stop_pid "$DV_PID" "dovecot master"
	DV_PID=""
}

# --- load generators and results ---------------------------------------------------------------

# bench_tool NAME - the path of the C load generator build/bench/NAME (from bench/NAME.c),
# built with `make bench-tools` when it is missing or older than its source
bench_tool() {
	local bin=$ROOT/build/bench/$1
	if [ ! -x "$bin" ] || [ "$ROOT/bench/$1.c" -nt "$bin" ]; then
		make -C "$ROOT" --no-print-directory -s bench-tools >&2 || die "building $1 (make bench-tools) failed"
	fi
	echo "$bin"
}

# result KEY VALUE - one machine-readable result: "KEY VALUE" appended to BENCH_RESULTS when the
# caller (bench/all.sh) set it; otherwise nothing
result() {
	[ -n "${BENCH_RESULTS:-}" ] || return 0
	printf '%s %s\n' "$1" "$2" >>"$BENCH_RESULTS"
}

# --- a private Postfix instance ----------------------------------------------------------------
# Globals: PF (TMP/pf), PF_CONF, PF_LOG, PF_PORT (set by postfix_start), PF_STARTED, PF_SKIP.
PF_STARTED=0
PF_SKIP=""
PF_PORT=""

# postfix_usable - 0 when a private Postfix can run here (BENCH_POSTFIX=1 in DO_POSTFIX, root,
# the package); else 1 with PF_SKIP set
postfix_usable() {
	if [ "${DO_POSTFIX:-1}" != 1 ]; then
		PF_SKIP="BENCH_POSTFIX=$DO_POSTFIX"
	elif [ "$IS_ROOT" -ne 1 ]; then
		PF_SKIP="needs root (Postfix's master runs as root and delivers as another uid)"
	elif ! command -v postfix >/dev/null || ! id postfix >/dev/null 2>&1 || ! getent group postdrop >/dev/null; then
		PF_SKIP="postfix package incomplete (postfix command, user postfix, group postdrop)"
	fi
	[ -z "$PF_SKIP" ]
}

# postfix_start PORT [NAME=VALUE...] - a private instance in TMP/pf (its own config_directory,
# queue_directory, data_directory; /etc/postfix is not touched) with Debian's stock master.cf
# services (chroot off), smtpd on 127.0.0.1:PORT, its log in PF_LOG through postlogd, and
# Postfix's defaults (compatibility level 3.6) but for the NAME=VALUEs the script adds (its
# destinations); until PORT greets. 1 with PF_SKIP set when it does not start.
postfix_start() {
	PF=$TMP/pf
	PF_CONF=$PF/etc
	PF_LOG=$PF/maillog
	PF_PORT=$1
	shift
	mkdir -p "$PF_CONF" "$PF/spool" "$PF/data"
	chown postfix "$PF/data"
	cat >"$PF_CONF/master.cf" <<-EOF
	127.0.0.1:$PF_PORT inet n - n - - smtpd
	pickup    unix  n       -       n       60      1       pickup
	cleanup   unix  n       -       n       -       0       cleanup
	qmgr      unix  n       -       n       300     1       qmgr
	rewrite   unix  -       -       n       -       -       trivial-rewrite
	bounce    unix  -       -       n       -       0       bounce
	defer     unix  -       -       n       -       0       bounce
	trace     unix  -       -       n       -       0       bounce
	verify    unix  -       -       n       -       1       verify
	flush     unix  n       -       n       1000?   0       flush
	proxymap  unix  -       -       n       -       -       proxymap
	smtp      unix  -       -       n       -       -       smtp
	relay     unix  -       -       n       -       -       smtp
	showq     unix  n       -       n       -       -       showq
	error     unix  -       -       n       -       -       error
	retry     unix  -       -       n       -       -       error
	discard   unix  -       -       n       -       -       discard
	local     unix  -       n       n       -       -       local
	virtual   unix  -       n       n       -       -       virtual
	anvil     unix  -       -       n       -       1       anvil
	scache    unix  -       -       n       -       1       scache
	postlog   unix-dgram n  -       n       -       1       postlogd
	EOF
	: >"$PF_CONF/main.cf"
	postconf -c "$PF_CONF" -e \
		compatibility_level=3.6 \
		"queue_directory=$PF/spool" \
		"data_directory=$PF/data" \
		mail_owner=postfix setgid_group=postdrop \
		myhostname=pf.example.test mydomain=example.test mydestination=localhost \
		inet_interfaces=127.0.0.1 inet_protocols=ipv4 \
		alias_maps= alias_database= \
		smtpd_tls_security_level=none smtp_tls_security_level=none \
		"maillog_file=$PF_LOG" "maillog_file_prefixes=$TMP" \
		"$@"
	# postfix(1) reports its own errors only on a terminal or in maillog_file
	if ! postfix -c "$PF_CONF" check >"$TMP/pf-check.out" 2>&1; then
		PF_SKIP="'postfix check' failed: $(tail -n 3 "$PF_LOG" 2>/dev/null | tr '\n' ' ')"
		return 1
	fi
	PF_STARTED=1
	if ! postfix -c "$PF_CONF" start >"$TMP/pf-start.out" 2>&1 ||
		! wait_greeting "$PF_PORT" 220 20; then
		PF_SKIP="private instance did not start: $(grep -E 'fatal|error' "$PF_LOG" 2>/dev/null | tail -n 3 | tr '\n' ' ')"
		return 1
	fi
	return 0
}

# postfix_queued - messages in the private instance's queue now (files under maildrop,
# incoming, active, deferred, hold: the queue files; no postqueue fork, cheap to poll)
postfix_queued() {
	find "$PF/spool/maildrop" "$PF/spool/incoming" "$PF/spool/active" "$PF/spool/deferred" \
		"$PF/spool/hold" -type f 2>/dev/null | wc -l
}

stop_postfix() {
	[ "$PF_STARTED" -eq 1 ] || return 0
	PF_STARTED=0
	timeout 30 postfix -c "$PF_CONF" stop >/dev/null 2>&1 || true
	# postfix stop waits for the master; if it is still there, end it by its pid file
	local pidf=$PF/spool/pid/master.pid pid
	if [ -f "$pidf" ]; then
		pid=$(tr -dc 0-9 <"$pidf")
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
			sleep 1
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
}
