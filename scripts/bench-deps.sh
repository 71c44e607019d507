#!/bin/sh
# bench-deps.sh - install what `make bench-smtp` needs beyond scripts/deps.sh:
# Debian's postfix, which ships /usr/sbin/smtp-source (the load generator) and the
# MTA the benchmark compares against. Not part of deps.sh: the tests must not need it.
# Idempotent: when postfix is present it only runs dpkg-query once.
set -eu
if dpkg-query -W -f='${Status}' postfix 2>/dev/null | grep -q "ok installed" &&
	[ -x /usr/sbin/smtp-source ]; then
	exit 0
fi
echo "bench-deps.sh: installing postfix" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# No configuration: we never want the package to set up (or start) a system mail server;
# bench/smtp.sh runs its own private instance in a temporary directory.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
# policy-rc.d: if the package's maintainer scripts try to start the system postfix, refuse.
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
$SUDO apt-get install -y -qq --no-install-recommends postfix >/dev/null
[ -x /usr/sbin/smtp-source ] || { echo "bench-deps.sh: /usr/sbin/smtp-source missing after install" >&2; exit 1; }
