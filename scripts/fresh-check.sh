#!/bin/bash
# shellcheck disable=SC2317  # cleanup() is called through trap
# fresh-check.sh - do the README's two commands work the first time on a fresh Debian 12?
#
#   scripts/fresh-check.sh [REPO]        (as root, on a Debian host)
#
# Builds a minimal Debian 12 (debootstrap --variant=minbase, plus git and make) in a chroot,
# clones REPO (default: the repository holding this script) at its HEAD into /srv/tern there
# ($FRESH_CLONE_DIR), and runs, as root in the clone, exactly what the README says:
#   1. `make run` in the background; waits until 127.0.0.1:2525 accepts, sends one message
#      to demo@localhost with swaks, checks that it lands in tern-data/mail/localhost/demo/ and
#      that POP3 (port 1110, the printed demo password) serves it; stops the instance.
#   2. `make test`, which must pass.
# Only committed work is checked (the clone is of HEAD). Prints a PASS/FAIL summary with
# timings; exits non-zero on any failure.
#
# The chroot shares the host's network: the development ports (2525 5587 4465 1110 1995) must
# be free on the host. The debootstrapped base is cached as a tarball in $FRESH_CACHE
# (default /var/cache/tern-fresh, rebuilt when older than 7 days); the clone and everything
# after it are always fresh.
#
# Environment:
#   FRESH_KEEP=1          keep the chroot directory after a successful run too
#   FRESH_DIR=DIR         parent of the work directory (default /var/tmp)
#   FRESH_CACHE=DIR       base tarball cache (default /var/cache/tern-fresh)
#   FRESH_NO_CACHE=1      debootstrap afresh and do not use or write the cache
#   FRESH_RUN_TIMEOUT=S   seconds for `make run` to listen on 2525 (deps + build; default 900)
#   FRESH_TEST_TIMEOUT=S  seconds for `make test` (default 3600)
#   FRESH_MAKEFLAGS=F     MAKEFLAGS for both commands, e.g. -j2 (default: none, as in the README)
#   FRESH_CLONE_DIR=DIR   where in the chroot to clone (default /root/tern, where a newcomer
#                         working as root clones it: root's `make run` runs tern's children
#                         as nobody, who cannot enter /root (0700), so tern keeps the data
#                         in /var/lib/tern-dev/ and prints where; this check reads it there)
set -u

SUITE=bookworm
PORTS="2525 5587 4465 1110 1995"
RUN_TIMEOUT=${FRESH_RUN_TIMEOUT:-900}
TEST_TIMEOUT=${FRESH_TEST_TIMEOUT:-3600}
CACHE=${FRESH_CACHE:-/var/cache/tern-fresh}
CACHE_MAX_DAYS=7
CLONE=${FRESH_CLONE_DIR:-/root/tern}
case $CLONE in /?*) ;; *) echo "fresh-check: FRESH_CLONE_DIR must be an absolute path" >&2; exit 2 ;; esac

START=$(date +%s)
say() { printf 'fresh-check: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot, mount)"
[ -r /etc/debian_version ] || die "needs a Debian host (apt, debootstrap)"

# ---- the repository and commit to check ------------------------------------------------------
here=$(cd "$(dirname "$0")" && pwd)
src=${1:-$here}
src_top=$(git -C "$src" rev-parse --show-toplevel 2>/dev/null) || die "$src: not a git repository"
rev=$(git -C "$src_top" rev-parse HEAD) || die "$src_top: no HEAD commit"
if [ -n "$(git -C "$src_top" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	say "note: $src_top has uncommitted changes; only HEAD ($rev) is checked"
fi

# ---- the Debian mirror: the one the host's apt uses -----------------------------------------
# Prints "URI SUITE" for every deb source of the host (one-line .list and deb822 .sources).
host_sources() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
			if (i + 1 <= NF) print $i, $(i + 1) }' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk 'function flush() { if (types ~ /(^| )deb( |$)/ && enabled != "no")
				for (u in uris) for (s in suites) print uris[u], suites[s]
			types = ""; enabled = ""; delete uris; delete suites }
		/^[ \t]*#/ { next }
		/^[ \t]*$/ { flush(); next }
		{ key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
		  if (key == "types") types = $0
		  else if (key == "enabled") enabled = tolower($0)
		  else if (key == "uris") split($0, uris, " ")
		  else if (key == "suites") split($0, suites, " ") }
		END { flush() }' "$f"
	done
}
sources=$(host_sources)
MIRROR=$(printf '%s\n' "$sources" | awk -v s="$SUITE" '$2 == s { print $1; exit }')
[ -n "$MIRROR" ] || die "no '$SUITE' deb source in /etc/apt/sources.list*: cannot pick a mirror"
UPDATES=$(printf '%s\n' "$sources" | awk -v s="$SUITE-updates" '$2 == s { print $1; exit }')
SECURITY=$(printf '%s\n' "$sources" | awk -v s="$SUITE-security" '$2 == s { print $1; exit }')

# ---- one run at a time (fixed ports), tools on the host ---------------------------------------
mkdir -p "$CACHE" || die "cannot create $CACHE"
exec 9>"$CACHE/lock"
flock -n 9 || die "another fresh-check.sh is running (lock $CACHE/lock)"

busy=""
for p in $PORTS; do
	if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then busy="$busy $p"; fi
done
[ -z "$busy" ] || { ss -ltnp 2>/dev/null | grep -E ":($(echo "$busy" | tr ' ' '|'))\b" >&2
	die "ports in use on the host:$busy (the chroot shares the host's network)"; }

if ! command -v debootstrap >/dev/null 2>&1; then
	say "installing debootstrap on the host"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null ||
		die "cannot install debootstrap"
fi

# ---- work directory, mounts, cleanup ----------------------------------------------------------
WORK=$(mktemp -d "${FRESH_DIR:-/var/tmp}/tern-fresh.XXXXXX") || die "mktemp failed"
ROOT=$WORK/root
mkdir -p "$ROOT"
MOUNTED=""          # mount points, last mounted first
RUN_PGID=""
TEST_PID=""
FAILED=0
SUMMARY=""

chroot_pids() {     # processes whose root directory is the chroot
	local p r
	for p in /proc/[0-9]*; do
		r=$(readlink "$p/root" 2>/dev/null) || continue
		[ "$r" = "$ROOT" ] && echo "${p#/proc/}"
	done
}

cleanup() {
	local rc=$? m p
	trap - EXIT INT TERM HUP
	if [ -n "$RUN_PGID" ]; then kill -KILL -- "-$RUN_PGID" 2>/dev/null; fi
	if [ -n "$TEST_PID" ]; then kill -TERM "$TEST_PID" 2>/dev/null; fi
	# Anything still running in the chroot was started by this script (tests' servers...).
	for p in $(chroot_pids); do kill -KILL "$p" 2>/dev/null; done
	sleep 0.2
	for m in $MOUNTED; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "cannot unmount $m"
	done
	MOUNTED=""
	if [ "$FAILED" -ne 0 ] || [ "$rc" -ne 0 ] || [ "${FRESH_KEEP:-0}" = 1 ]; then
		say "kept the chroot for inspection: $ROOT (logs in $WORK)"
	elif grep -q " $WORK/" /proc/mounts; then
		say "something is still mounted under $WORK; not removing it"
	else
		rm -rf --one-file-system "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

do_mount() {        # do_mount TARGET mount-args...
	local t=$ROOT$1; shift
	mkdir -p "$t"
	mount "$@" "$t" || die "mount $* $t failed"
	MOUNTED="$t $MOUNTED"
}

mount_all() {
	# the chroot's / a mount point of its own, as on a real machine (unshare -m, which a
	# test uses for a private resolv.conf, cannot make a non-mount-point / private)
	do_mount / --bind "$ROOT"
	do_mount /proc -t proc proc
	do_mount /sys -t sysfs sysfs
	do_mount /dev --bind /dev
	do_mount /dev/pts --bind /dev/pts
	do_mount /dev/shm -t tmpfs -o mode=1777,nosuid,nodev tmpfs
}

# in_chroot CMD: run CMD with bash as root's login shell in the chroot, in a clean environment
# (what a root login on a fresh machine has: HOME, PATH from /etc/profile, no locale).
in_chroot() {
	chroot "$ROOT" /usr/bin/env -i HOME=/root USER=root LOGNAME=root SHELL=/bin/bash \
		TERM="${TERM:-dumb}" MAKEFLAGS="${FRESH_MAKEFLAGS:-}" /bin/bash -l -c "$1"
}

now() { date +%s; }
result() {          # result NAME PASS|FAIL SECONDS [NOTE]
	SUMMARY="$SUMMARY$(printf '  %-38s %-4s %5ss  %s' "$1" "$2" "$3" "${4:-}")
"
	[ "$2" = PASS ] || FAILED=1
	say "$1: $2 ($3 s)${4:+ - $4}"
}

# ---- 1. the base system -----------------------------------------------------------------------
arch=$(dpkg --print-architecture)
include=git,make
case $MIRROR in https:*) include=$include,ca-certificates ;; esac
key=$(printf '%s %s %s' "$MIRROR" "$arch" "$include" | md5sum | cut -c1-12)
tarball=$CACHE/$SUITE-minbase-$arch-$key.tar.gz

t0=$(now)
if [ "${FRESH_NO_CACHE:-0}" != 1 ] && [ -s "$tarball" ] &&
	[ -n "$(find "$tarball" -mtime -"$CACHE_MAX_DAYS" 2>/dev/null)" ]; then
	say "base system from the cache: $tarball"
	tar -xzpf "$tarball" -C "$ROOT" || die "cannot unpack $tarball"
	base_note="cached $(basename "$tarball")"
else
	say "debootstrap --variant=minbase --include=$include $SUITE from $MIRROR (log $WORK/debootstrap.log)"
	if ! debootstrap --variant=minbase --include="$include" "$SUITE" "$ROOT" "$MIRROR" \
		>"$WORK/debootstrap.log" 2>&1; then
		tail -n 30 "$WORK/debootstrap.log" >&2
		result "debootstrap" FAIL $(($(now) - t0))
		printf '\nfresh-check summary:\n%s' "$SUMMARY"
		exit 1
	fi
	# The same suites the host uses (a fresh install has updates and security too).
	{
		echo "deb $MIRROR $SUITE main"
		[ -n "$UPDATES" ] && echo "deb $UPDATES $SUITE-updates main"
		[ -n "$SECURITY" ] && echo "deb $SECURITY $SUITE-security main"
	} >"$ROOT/etc/apt/sources.list"
	chroot "$ROOT" apt-get clean
	rm -rf "$ROOT"/var/lib/apt/lists/*
	if [ "${FRESH_NO_CACHE:-0}" != 1 ]; then
		tar -czpf "$tarball.tmp" -C "$ROOT" --one-file-system . && mv "$tarball.tmp" "$tarball" ||
			{ rm -f "$tarball.tmp"; say "could not write the cache $tarball"; }
	fi
	base_note="debootstrap from $MIRROR"
fi
# Network settings of the moment come from the host, as an installer would set them up.
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
# A chroot has no init: keep packages' maintainer scripts from starting system services,
# which would run on the host's network and outlive the check (standard for chroots).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
mount_all
result "base system ($SUITE minbase+$include)" PASS $(($(now) - t0)) "$base_note"

# ---- 2. the clone -----------------------------------------------------------------------------
t0=$(now)
if git -c safe.directory='*' clone -q --no-hardlinks "$src_top" "$ROOT$CLONE" >"$WORK/clone.log" 2>&1 &&
	in_chroot "cd $CLONE && git checkout -q --detach $rev && git log -1 --format='%h %s'" \
		>>"$WORK/clone.log" 2>&1; then
	result "clone $src_top" PASS $(($(now) - t0)) "$(tail -n 1 "$WORK/clone.log" | cut -c1-60)"
else
	cat "$WORK/clone.log" >&2
	result "clone $src_top" FAIL $(($(now) - t0))
	printf '\nfresh-check summary:\n%s' "$SUMMARY"
	exit 1
fi

# ---- 3. make run ------------------------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

RUN_LOG=$WORK/make-run.log
t0=$(now)
say "make run (log $RUN_LOG; up to $RUN_TIMEOUT s for deps + build + start)"
# setsid: its own process group, so that stopping it stops make and every tern process.
setsid chroot "$ROOT" /usr/bin/env -i HOME=/root USER=root LOGNAME=root SHELL=/bin/bash \
	TERM="${TERM:-dumb}" MAKEFLAGS="${FRESH_MAKEFLAGS:-}" \
	/bin/bash -l -c "cd $CLONE && exec make run" \
	</dev/null >"$RUN_LOG" 2>&1 &
RUN_PGID=$!
up=0
while [ $(($(now) - t0)) -lt "$RUN_TIMEOUT" ]; do
	if ! kill -0 "$RUN_PGID" 2>/dev/null; then break; fi
	if port_open 2525 && grep -q "password:" "$RUN_LOG"; then up=1; break; fi
	sleep 1
done
if [ "$up" = 1 ]; then
	result "make run: listening on 2525" PASS $(($(now) - t0))
else
	tail -n 40 "$RUN_LOG" >&2
	if kill -0 "$RUN_PGID" 2>/dev/null; then why="not listening after $RUN_TIMEOUT s"
	else why="make run exited"; fi
	result "make run: listening on 2525" FAIL $(($(now) - t0)) "$why"
fi

if [ "$up" = 1 ]; then
	t0=$(now)
	tok=fresh-$(date +%s)-$$
	pw=$(sed -n 's/.*demo account: demo@localhost *password: *\([^ ]*\).*/\1/p' "$RUN_LOG" | head -n 1)
	ok=1
	note=""
	# The README's example, run inside the chroot with the swaks deps.sh installed.
	if ! in_chroot "swaks --server 127.0.0.1:2525 --to demo@localhost --from fresh@example.net \
		--header 'Subject: $tok' --body 'fresh-check $tok'" >"$WORK/swaks.log" 2>&1; then
		ok=0; note="swaks failed"; tail -n 20 "$WORK/swaks.log" >&2
	fi
	# where the instance says its data is (./tern-data, or /var/lib/tern-dev/... as root)
	data=$(sed -n 's/.*development instance is running.*Data: *\([^ ]*\).*/\1/p' "$RUN_LOG" | head -n 1)
	[ -n "$data" ] || data=$CLONE/tern-data
	md=$ROOT$data/mail/localhost/demo
	found=""
	if [ "$ok" = 1 ]; then
		for _ in $(seq 1 100); do
			found=$(grep -l "$tok" "$md"/new/* "$md"/cur/* 2>/dev/null | head -n 1)
			[ -n "$found" ] && break
			sleep 0.1
		done
		[ -n "$found" ] || { ok=0; note="no message with $tok in $md/{new,cur}"; }
	fi
	if [ "$ok" = 1 ]; then
		# Read it back over POP3 (STLS) with the printed password, as the banner suggests.
		if [ -z "$pw" ]; then
			ok=0; note="no demo password printed"
		elif ! in_chroot "curl -sS -k --ssl-reqd --user 'demo@localhost:$pw' \
			pop3://127.0.0.1:1110/1" >"$WORK/pop3.log" 2>&1 || ! grep -q "$tok" "$WORK/pop3.log"; then
			ok=0; note="POP3 retrieval failed"; tail -n 20 "$WORK/pop3.log" >&2
		else
			note="in ${found#"$ROOT"}, read back over POP3"
		fi
	fi
	result "make run: deliver to demo@localhost" "$([ "$ok" = 1 ] && echo PASS || echo FAIL)" \
		$(($(now) - t0)) "$note"
fi

# Stop the instance: SIGTERM to its process group, then SIGKILL if it lingers.
if [ "$up" = 1 ]; then
	t0=$(now)
	kill -TERM -- "-$RUN_PGID" 2>/dev/null
	stopped=0
	for _ in $(seq 1 100); do
		kill -0 -- "-$RUN_PGID" 2>/dev/null || { stopped=1; break; }
		sleep 0.1
	done
	if [ "$stopped" = 0 ]; then kill -KILL -- "-$RUN_PGID" 2>/dev/null; sleep 0.5; fi
	wait "$RUN_PGID" 2>/dev/null
	RUN_PGID=""
	busy=""
	for p in $PORTS; do port_open "$p" && busy="$busy $p"; done
	if [ "$stopped" = 1 ] && [ -z "$busy" ]; then
		result "make run: stop (SIGTERM)" PASS $(($(now) - t0))
	else
		result "make run: stop (SIGTERM)" FAIL $(($(now) - t0)) \
			"$([ "$stopped" = 0 ] && echo "needed SIGKILL")${busy:+ ports still open:$busy}"
	fi
fi

# ---- 4. make test -----------------------------------------------------------------------------
TEST_LOG=$WORK/make-test.log
t0=$(now)
say "make test (log $TEST_LOG)"
timeout -k 30 "$TEST_TIMEOUT" chroot "$ROOT" /usr/bin/env -i HOME=/root USER=root LOGNAME=root \
	SHELL=/bin/bash TERM="${TERM:-dumb}" MAKEFLAGS="${FRESH_MAKEFLAGS:-}" \
	/bin/bash -l -c "cd $CLONE && make test" \
	</dev/null >"$TEST_LOG" 2>&1 &
TEST_PID=$!
wait "$TEST_PID"    # in the background, so that a signal to this script is handled at once
rc=$?
TEST_PID=""
# "unit: N passed, N failed" and pytest's closing lines ("N passed, N skipped in 9.9s").
counts=$(grep -E '^unit: [0-9]+ passed, [0-9]+ failed$|^=* ?[0-9]+ (passed|failed|error|skipped).* in [0-9.]+s' \
	"$TEST_LOG" | sed 's/^=* *//; s/ *=*$//' | tr '\n' ';' | sed 's/;$//; s/;/; /g')
skips=$(grep -c '^SKIPPED' "$TEST_LOG")
if [ "$rc" = 0 ]; then
	result "make test" PASS $(($(now) - t0)) "$counts"
else
	grep -E '^(FAILED|ERROR)' "$TEST_LOG" >&2
	tail -n 40 "$TEST_LOG" >&2
	result "make test" FAIL $(($(now) - t0)) "exit $rc; $counts"
fi
if [ "$skips" -gt 0 ]; then
	grep '^SKIPPED' "$TEST_LOG" >&2
	say "note: $skips skipped test line(s) in make test (see above)"
fi

# ---- summary ----------------------------------------------------------------------------------
printf '\nfresh-check summary (%s at %s, Debian %s, %s%s):\n%s' "$(basename "$src_top")" \
	"$(git -C "$src_top" rev-parse --short "$rev")" "$(cat "$ROOT/etc/debian_version")" \
	"$CLONE in $ROOT" "${FRESH_MAKEFLAGS:+, MAKEFLAGS=$FRESH_MAKEFLAGS}" "$SUMMARY"
printf '  %-38s %-4s %5ss\n' "total" "$([ "$FAILED" = 0 ] && echo PASS || echo FAIL)" \
	$(($(now) - START))
if [ "$FAILED" = 0 ]; then
	echo "fresh-check: PASS"
	exit 0
fi
echo "fresh-check: FAIL (logs: $WORK)"
exit 1
