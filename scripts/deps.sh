#!/bin/sh
# deps.sh - install the Debian packages Tern needs to build, test and benchmark.
# Idempotent: when every package is present it only runs dpkg-query once.
set -eu
# Tools the tests run: swaks (+ libnet-ssleay-perl, its TLS, only recommended by swaks and so
# not installed with --no-install-recommends), curl and fetchmail (POP3 clients), dnsmasq-base
# (the dnsmasq binary alone: the dnsmasq package would also start a system DNS server).
PKGS="gcc make pkg-config clang libclang-rt-14-dev
libevent-dev libssl-dev libc-ares-dev libsqlite3-dev libcrypt-dev zlib1g-dev
openssl ca-certificates curl swaks libnet-ssleay-perl fetchmail dnsmasq-base
python3 python3-pytest python3-pytest-timeout"
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
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
