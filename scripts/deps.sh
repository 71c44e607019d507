#!/bin/sh
# deps.sh - install the Debian packages Tern needs to build, test and benchmark.
# Idempotent: when every package is present it only runs dpkg-query once.
set -eu
# Tools the tests run: swaks (+ libnet-ssleay-perl, its TLS, only recommended by swaks and so
# not installed with --no-install-recommends), curl and fetchmail (POP3 clients), dnsmasq-base
# (the dnsmasq binary alone: the dnsmasq package would also start a system DNS server),
# dovecot-imapd (the IMAP oracle test runs Dovecot's imap binary over a pipe; the system
# Dovecot service is never started: see below), isync (mbsync, an IMAP client the tests drive),
# offlineimap3 and mutt (IMAP clients the tests drive; mutt through tmux, a terminal to type in;
# mutt also sends a message in batch mode that `tern read` must show and save); libpsl-dev and
# publicsuffix (DMARC's organisational domains from the Public Suffix List); python3-spf with
# python3-dnspython (the SPF interop test compares our results with pyspf's); valgrind
# (`make valgrind`: memcheck over the integration tests).
# DKIM/ARC interop: python3-dkim (dkim.verify, dkim.sign, dkim.arc_sign/arc_verify) with
# python3-nacl (its Ed25519), opendkim-tools (opendkim-testmsg, another verifier and signer).
# strace (the POP3 test that RETR goes out through sendfile); iproute2 (ss: which process
# serves a connection, for the POP3 speed tests; not in a minimal Debian).
# prometheus: for /usr/bin/promtool, whose `check metrics` (Prometheus's own text-format parser
# and linter) the metrics test runs on a scrape; the Prometheus server it also ships is never
# started (policy-rc.d below, then disabled like Dovecot).
# python3-pytest-xdist: `make test` runs the integration tests on several pytest workers.
# python3-cryptography: `tern check`'s test makes a private CA, an intermediate and leaf
# certificates (expiring, expired) with it.
# Install and the systemd unit (tests/integration/test_install.py): systemd (systemd-analyze
# verify checks the unit), procps (/bin/kill, the unit's ExecReload) and man-db (man(1): verify
# looks up the unit's Documentation=man:tern(8)).
# ACME ([tls] acme, src/acme): libcurl4-openssl-dev (HTTPS to the CA, OpenSSL flavour like
# the rest of tern) and libjansson-dev (JSON); pebble (Let's Encrypt's test CA, which
# test_acme.py runs on loopback).
PKGS="gcc make pkg-config clang libclang-rt-14-dev
libevent-dev libssl-dev libc-ares-dev libsqlite3-dev libcrypt-dev zlib1g-dev libpsl-dev publicsuffix
openssl ca-certificates curl swaks libnet-ssleay-perl fetchmail dnsmasq-base dovecot-imapd isync
offlineimap3 mutt tmux python3 python3-pytest python3-pytest-timeout python3-pytest-xdist python3-spf python3-dnspython
python3-dkim python3-nacl opendkim-tools valgrind strace iproute2 prometheus python3-cryptography systemd procps man-db
libcurl4-openssl-dev libjansson-dev pebble"
missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0
echo "deps.sh: installing:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d: a package's maintainer scripts may not start a system service (Dovecot)
prc=/usr/sbin/policy-rc.d
made_prc=""
if [ ! -e "$prc" ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$prc" >/dev/null
	$SUDO chmod 755 "$prc"
	made_prc=1
fi
cleanup() { [ -n "$made_prc" ] && $SUDO rm -f "$prc"; return 0; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
case $missing in
*prometheus*)
	# the same for the Prometheus server the package ships: only promtool is used
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		$SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
	fi
	;;
esac
case $missing in
*dovecot*)
	# should the system Dovecot have started after all (systemd ignores policy-rc.d for
	# some paths), stop it and keep it from starting at boot: tests run Dovecot privately
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		$SUDO systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
	elif [ -f /run/dovecot/master.pid ]; then
		$SUDO doveadm stop >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
