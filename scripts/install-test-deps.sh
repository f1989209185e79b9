#!/usr/bin/env bash
# Installs what the test suite needs on Debian/Ubuntu: a real Prosody for
# the integration tests, slixmpp for the interoperability tests, gcc for
# cgo (go-sqlite3, the race detector), systemd-analyze (package systemd)
# to verify contrib/xmppbouncer.service, and Chromium, Node.js and npm for
# the web client test. Tests that need one of these fail without it
# (internal/testdeps); none skips. Quiet when nothing is missing.
set -euo pipefail

missing=()
command -v prosody >/dev/null 2>&1 || missing+=(prosody)
/usr/bin/python3 -c 'import slixmpp' >/dev/null 2>&1 || missing+=(python3-slixmpp)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# The web client test: Chromium (headless) loads Converse.js, which `make
# web` fetches with npm.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-test-deps: missing ${missing[*]}; run as root:" >&2
	echo "  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing[*]} && (service prosody stop || true)" >&2
	exit 1
fi

echo "install-test-deps: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
# The package starts a system instance on port 5222; the tests run their
# own instances and must not share the host with it.
service prosody stop >/dev/null 2>&1 || true
