#!/bin/sh
# bench-deps.sh - install what `make bench` and the `make bench-*` targets need beyond
# scripts/deps.sh:
#   postfix        ships /usr/sbin/smtp-source (the load generator of both benchmarks) and is
#                  the MTA bench-smtp compares against;
#   dovecot-pop3d  (with dovecot-core) the POP3 server bench-pop3 compares against;
#   dovecot-imapd  the IMAP server bench-imap compares against;
#   time           /usr/bin/time: the CPU time of smtp-source (is the load generator the limit?).
# Not part of deps.sh: the tests must not need them. Neither package may set up or start a
# system service: the benchmarks run private instances in a temporary directory.
# Idempotent: when everything is present it only runs dpkg-query.
set -eu
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
need=""
if ! have postfix || [ ! -x /usr/sbin/smtp-source ]; then
	need="$need postfix"
fi
if ! have dovecot-pop3d || ! have dovecot-imapd || ! have dovecot-core || [ ! -x /usr/sbin/dovecot ]; then
	need="$need dovecot-core dovecot-pop3d dovecot-imapd"
fi
if ! have time || [ ! -x /usr/bin/time ]; then
	need="$need time"
fi
[ -n "$need" ] || exit 0
echo "bench-deps.sh: installing$need" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# No configuration: we never want the package to set up (or start) a system mail server;
# bench/smtp.sh runs its own private instance in a temporary directory.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
# policy-rc.d: if a package's maintainer scripts try to start the system postfix or dovecot,
# refuse (exit 101: "action forbidden by policy").
prc=/usr/sbin/policy-rc.d
made_prc=""
if [ ! -e "$prc" ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$prc" >/dev/null
	$SUDO chmod 755 "$prc"
	made_prc=1
fi
cleanup() { [ -n "$made_prc" ] && $SUDO rm -f "$prc"; return 0; }
trap cleanup EXIT
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
[ -x /usr/sbin/smtp-source ] || { echo "bench-deps.sh: /usr/sbin/smtp-source missing after install" >&2; exit 1; }
case $need in
*dovecot*)
	[ -x /usr/sbin/dovecot ] || { echo "bench-deps.sh: /usr/sbin/dovecot missing after install" >&2; exit 1; }
	# Belt and braces: should the system dovecot have been started after all (no policy-rc.d
	# honoured, e.g. under systemd), stop it and keep it from starting at boot.
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		$SUDO systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
	elif [ -f /run/dovecot/master.pid ]; then
		$SUDO doveadm stop >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
