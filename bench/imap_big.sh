#!/usr/bin/env bash
# bench/imap_big.sh - one account with a 100,000-message INBOX, tern side by side with a private
# Dovecot instance (a separate script from bench/imap.sh, which measures many small accounts).
# The messages (small, ~2-4 KB) are written straight into each server's Maildir (cur/ by
# default, with ":2," flags in the names, as a migrated mailbox would be), without going
# through either server: neither has indexed them when the clock starts. Then, one command at
# a time on one connection (bench/imap_big.py):
#   SELECT INBOX cold  - the first SELECT: tern picks the unindexed files up (reads each,
#                        assigns UIDs), Dovecot builds its uidlist and index
#   SELECT INBOX warm  - a later session's SELECT of the indexed mailbox
#   FETCH 1:* (UID FLAGS), UID SEARCH SUBJECT <word>, SEARCH TEXT <word>
# The cold SELECTs first (tern, then Dovecot), then BENCH_BIG_RUNS rounds of the warm commands,
# each round a new session, alternating tern / dovecot; the best round counts. Prints a table of
# seconds and the ratio tern/dovecot (above 1: tern takes longer).
# A benchmark, not a test: it fails (exit 1) only when something is broken (a NO/BAD, a lost
# connection, a timeout, a wrong count of messages or hits), never because a number is low.
#
# Run with `make bench-imap-big` (builds ./tern first). Knobs (environment):
#   BENCH_BIG_MSGS=100000   messages in the INBOX
#   BENCH_BIG_DIR=cur       where the files are written: cur (names with ":2,FLAGS") or new
#   BENCH_BIG_RUNS=3        rounds of the warm commands per server (alternating); the best counts
#   BENCH_BIG_TIMEOUT=3600  seconds allowed for one command (the cold SELECT included)
#   BENCH_WORKERS=2         tern worker processes
#   BENCH_DOVECOT=1         0: skip the Dovecot half
#   BENCH_KEEP=0            1: keep the temporary directory (configs, logs, mail) at the end
#   BENCH_TERN=./tern       the tern binary
#   TMPDIR                  where the temporary directory is made (~0.3 GB per server for 100,000)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TERN=${BENCH_TERN:-$ROOT/tern}
MSGS=${BENCH_BIG_MSGS:-100000}
BIGDIR=${BENCH_BIG_DIR:-cur}
RUNS=${BENCH_BIG_RUNS:-3}
CMD_TIMEOUT=${BENCH_BIG_TIMEOUT:-3600}
WORKERS=${BENCH_WORKERS:-2}
DO_DOVECOT=${BENCH_DOVECOT:-1}
KEEP=${BENCH_KEEP:-0}
USER_ADDR=big@example.test
PASS=bench-pw
SUBJECT_WORD=invoice	# in the subject of every 100th message
TEXT_WORD=zanzibar	# in the body of every 10,000th message (and nowhere else)
CLIENT=$ROOT/bench/imap_big.py
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

"$ROOT/scripts/bench-deps.sh"
[ -x "$TERN" ] || die "$TERN missing: run 'make bench-imap-big' (or 'make tern') first"
command -v python3 >/dev/null || die "python3 missing"
case $BIGDIR in cur | new) ;; *) die "BENCH_BIG_DIR: cur or new, not '$BIGDIR'" ;; esac
[ "$MSGS" -ge 1 ] || die "BENCH_BIG_MSGS must be at least 1"

bench_identity
bench_tmp bench-imap-big stop_tern stop_dovecot
dovecot_vars

say "IMAP big-mailbox benchmark: one INBOX of $MSGS messages (~2-4 KB) written into $BIGDIR/;" \
	"cold SELECT, then $RUNS rounds of warm SELECT, FETCH 1:* (UID FLAGS), UID SEARCH SUBJECT," \
	"SEARCH TEXT, alternating tern / dovecot"
bench_header
say "client: bench/imap_big.py (python $(python3 -c 'import platform; print(platform.python_version())')," \
	"raw socket, one command at a time; its CPU time is printed beside each command)"
say ""

# --- the messages: written once per server (no inode shared), in the same pass ----------------
TERN_DATA=$TMP/tern-data
TERN_BOX=$TERN_DATA/mail/example.test/big
DV_BOX=$DV_MAIL/example.test/big
t0=$(now_ns)
EXPECT=$(python3 - "$MSGS" "$BIGDIR" "$SUBJECT_WORD" "$TEXT_WORD" "$TERN_BOX" "$DV_BOX" <<'EOF'
import os, random, sys, time
from email.utils import formatdate
n, where, sword, tword, boxes = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
for b in boxes:
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(b, sub), exist_ok=True)
rnd = random.Random(100000)
words = ("the quick brown fox jumps over lazy dog mail server imap message report meeting "
         "budget project schedule review draft attached please thanks regards tomorrow "
         "monday update status release notes question answer agenda minutes travel lunch "
         "customer contract offer delivery support ticket").split()
names = ["Alice Martin", "Bob Dupont", "Carol Weber", "Dave Rossi", "Eve Novak", "Frank Li",
         "Grace Kim", "Henri Blanc", "Ines Costa", "Jan Horak"]
t0 = int(time.time()) - 86400 * 400
n_subject = n_text = n_seen = 0
for i in range(1, n + 1):
    who = rnd.choice(names)
    frm = who.lower().replace(" ", ".") + "@example.org"
    sw = [rnd.choice(words) for _ in range(rnd.randint(2, 7))]
    if i % 100 == 0:
        sw.insert(rnd.randint(0, len(sw)), sword)
        n_subject += 1
    subj = " ".join(sw).capitalize()
    ts = t0 + i * 300
    hdr = [
        f"Return-Path: <{frm}>",
        f"Received: from mx.example.org (mx.example.org [192.0.2.10]) by bench.example.test"
        f" with ESMTPS id g{i:07d}; {formatdate(ts)}",
        f"From: {who} <{frm}>",
        "To: Big Mailbox <big@example.test>",
        f"Subject: {subj} #{i}",
        f"Date: {formatdate(ts)}",
        f"Message-ID: <{ts}.{i}.big@example.org>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    size = rnd.randint(2048, 4096)
    head_len = sum(len(h) + 2 for h in hdr) + 2
    body, blen = [], 0
    while head_len + blen < size:
        line = " ".join(rnd.choice(words) for _ in range(rnd.randint(8, 14)))
        body.append(line)
        blen += len(line) + 2
    if i % 10000 == 5000:
        body.insert(len(body) // 2, f"the shipment to {tword} leaves on monday")
        n_text += 1
    data = ("\r\n".join(hdr) + "\r\n\r\n" + "\r\n".join(body) + "\r\n").encode()
    base = f"{ts}.M{i:07d}P1.bench.example.test"
    if where == "cur":
        r = rnd.random()
        flags = "FS" if r < 0.02 else "S" if r < 0.85 else ""
        n_seen += "S" in flags
        rel = f"cur/{base}:2,{flags}"
    else:
        rel = f"new/{base}"
    for b in boxes:
        with open(os.path.join(b, rel), "wb") as f:
            f.write(data)
print(n_subject, n_text, n_seen)
EOF
) || die "writing the messages failed"
read -r EXP_SUBJECT EXP_TEXT EXP_SEEN <<<"$EXPECT"
t1=$(now_ns)
for d in "$TERN_BOX" "$DV_BOX"; do
	chown -R "$RUN_USER:$RUN_GROUP" "$d"
	find "$d" -type d -exec chmod 700 {} +
done
say "messages: $MSGS written into $BIGDIR/ of each server's Maildir in $(secs "$t0" "$t1")s" \
	"($(du -sh "$TERN_BOX" | cut -f1) each); '$SUBJECT_WORD' in $EXP_SUBJECT subjects," \
	"'$TEXT_WORD' in $EXP_TEXT bodies, $EXP_SEEN flagged \\Seen in their names"

# --- tern -------------------------------------------------------------------------------------
TERN_IMAP=$(free_port)
TERN_CONF=$TMP/tern.conf
TERN_LOG=$TMP/tern.log
{
	tern_conf_head "$TERN_DATA"
	echo "allow_plaintext_auth_loopback = yes"
	echo "[listen]"
	echo "imap = 127.0.0.1:$TERN_IMAP"
} >"$TERN_CONF"
tern_user_add "$USER_ADDR" "$PASS"
tern_start "$TERN_IMAP" "* OK"
say "tern: pid $TERN_PID, $WORKERS workers, IMAP 127.0.0.1:$TERN_IMAP, data $TERN_DATA"

# --- Dovecot ----------------------------------------------------------------------------------
DV_PORT=""
dv_setup() {
	DV_PORT=$(free_port "$TERN_IMAP")
	dovecot_passwd "$USER_ADDR"
	{
		dovecot_conf_head imap imap_big.sh
		cat <<-EOF
		service imap-login {
		  inet_listener imap {
		    address = 127.0.0.1
		    port = $DV_PORT
		  }
		  inet_listener imaps {
		    port = 0
		  }
		}
		EOF
	} >"$DV_CONF"
	dovecot_start "$DV_PORT" "* OK"
}
dovecot_usable imap && dv_setup || true
dovecot_started "IMAP 127.0.0.1:$DV_PORT"
port_of() { case $1 in tern) echo "$TERN_IMAP" ;; dovecot) echo "$DV_PORT" ;; esac; }
pid_of() { case $1 in tern) echo "$TERN_PID" ;; dovecot) echo "$DV_PID" ;; esac; }
say ""

# --- the runs ---------------------------------------------------------------------------------
declare -A T=()	# T[impl|measure|round] = seconds
declare -A CPU=()	# the client's CPU seconds, same keys
declare -A SCPU=()	# the server's CPU seconds (all its processes), same keys
# (LOGIN is printed per session, not tabled: tern answers a repeated login from its cache)
MEASURES=("SELECT cold" "SELECT warm" "FETCH 1:* (UID FLAGS)" "UID SEARCH SUBJECT $SUBJECT_WORD"
	"SEARCH TEXT $TEXT_WORD")

# check IMPL WHAT GOT WANT - a count that must match
check() {
	[ "$3" = "$4" ] && return 0
	warn "$1: $2: $3, expected $4"
	FAILURES+=("$1: $2: $3, expected $4")
}

# session IMPL ROUND NAME=COMMAND... - one connection: LOGIN, then the commands; records
# the seconds of each under NAME (LOGIN under LOGIN when ROUND is "cold"), checks the counts
session() {
	local impl=$1 round=$2 out=$TMP/$1-$2.out rc=0 i line name
	shift 2
	local names=() cmds=()
	for i in "$@"; do
		names+=("${i%%=*}")
		cmds+=("${i#*=}")
	done
	timeout $((CMD_TIMEOUT * (${#cmds[@]} + 1))) python3 "$CLIENT" --port "$(port_of "$impl")" \
		--user "$USER_ADDR" --password "$PASS" --timeout "$CMD_TIMEOUT" --server-pid "$(pid_of "$impl")" \
		"${cmds[@]}" >"$out" 2>&1 || rc=$?
	i=-1
	while IFS= read -r line; do
		[ "${line:0:1}" = "{" ] || continue
		if [ "$i" -lt 0 ]; then name=LOGIN; else name=${names[$i]}; fi
		i=$((i + 1))
		read -r sec cpu scpu ex fe se hi < <(python3 -c 'import json, sys
d = json.loads(sys.argv[1])
print(d["seconds"], d["client_cpu"], *(d.get(k, "-") for k in ("server_cpu", "exists", "fetch", "seen", "hits")))' "$line")
		T[$impl|$name|$round]=$sec
		CPU[$impl|$name|$round]=$cpu
		SCPU[$impl|$name|$round]=$scpu
		say "$(printf '%-8s %-5s %-28s %9ss  (server CPU %ss, client CPU %ss)' "$impl" "$round" "$name" \
			"$sec" "$scpu" "$cpu")"
		case $name in
		SELECT*) check "$impl" "$name: EXISTS" "$ex" "$MSGS" ;;
		FETCH*)
			check "$impl" "$name: FETCH responses" "$fe" "$MSGS"
			[ "$BIGDIR" = new ] || check "$impl" "$name: messages with \\Seen" "$se" "$EXP_SEEN"
			;;
		*SUBJECT*) check "$impl" "$name: hits" "$hi" "$EXP_SUBJECT" ;;
		*TEXT*) check "$impl" "$name: hits" "$hi" "$EXP_TEXT" ;;
		esac
	done <"$out"
	if [ "$rc" -ne 0 ]; then
		local why="status $rc"
		[ "$rc" -eq 124 ] && why="timeout"
		warn "$impl, round $round: bench/imap_big.py failed ($why): $(tail -n 1 "$out")"
		FAILURES+=("$impl round $round ($why): $(grep -v '^{' "$out" | tail -n 1)")
		return 1
	fi
	return 0
}

declare -A broken=()
for impl in $SERVERS; do
	session "$impl" cold "SELECT cold=SELECT INBOX" || broken[$impl]=1
done
for ((r = 1; r <= RUNS; r++)); do
	for impl in $SERVERS; do
		[ -n "${broken[$impl]:-}" ] && continue
		session "$impl" "$r" "SELECT warm=SELECT INBOX" "FETCH 1:* (UID FLAGS)=FETCH 1:* (UID FLAGS)" \
			"UID SEARCH SUBJECT $SUBJECT_WORD=UID SEARCH SUBJECT $SUBJECT_WORD" \
			"SEARCH TEXT $TEXT_WORD=SEARCH TEXT $TEXT_WORD" || broken[$impl]=1
	done
done

servers_stop
dovecot_check_log

# --- report -----------------------------------------------------------------------------------
# best IMPL MEASURE - "SECONDS SERVER_CPU" of the round with the shortest time (the cold
# measure: its one round); "- -" when there is none
best() {
	local k b="" c=""
	for k in "${!T[@]}"; do
		case $k in "$1|$2|"*) ;; *) continue ;; esac
		if [ -z "$b" ] || awk -v a="${T[$k]}" -v b="$b" 'BEGIN { exit !(a < b) }'; then
			b=${T[$k]}
			c=${SCPU[$k]}
		fi
	done
	echo "${b:--} ${c:--}"
}
# all IMPL MEASURE - every round's time, in round order
all() {
	local r v=""
	for r in cold $(seq 1 "$RUNS"); do
		[ -n "${T[$1|$2|$r]:-}" ] && v="$v${v:+ }${T[$1|$2|$r]}"
	done
	echo "${v:--}"
}
ratio() {
	if [ "$1" = - ] || [ "$2" = - ]; then echo -; return; fi
	awk -v t="$1" -v d="$2" 'BEGIN { if (d > 0) printf "%.2f", t / d; else print "inf" }'
}
say ""
say "seconds, one command on one connection ($MSGS messages; warm: best of $RUNS rounds;" \
	"cpu: the server's CPU seconds in that round; ratio = tern / dovecot, above 1: tern takes longer)"
printf '%-28s %9s %7s %9s %7s %7s %7s   %s\n' measure tern cpu dovecot cpu ratio "cpu r." \
	"every round, seconds: tern | dovecot"
printf '%-28s %9s %7s %9s %7s %7s %7s   %s\n' ---------------------------- --------- ------- --------- \
	------- ------- ------- ------------------------------------
for m in "${MEASURES[@]}"; do
	read -r t tc <<<"$(best tern "$m")"
	read -r d dc <<<"$(best dovecot "$m")"
	printf '%-28s %9s %7s %9s %7s %7s %7s   %s | %s\n' "$m" "$t" "$tc" "$d" "$dc" "$(ratio "$t" "$d")" \
		"$(ratio "$tc" "$dc")" "$(all tern "$m")" "$(all dovecot "$m")"
done
maxcpu=$(printf '%s\n' "${CPU[@]}" | sort -g | tail -n 1)
say ""
say "the client's CPU time per command was at most ${maxcpu}s (the rest of each wall time is the server and the socket)"
bench_finish
