#!/usr/bin/env bash
# make demo: try xmppbouncer without an XMPP account of your own.
#
# With no ./xmppbouncer.toml it sets up everything in a throwaway directory:
# a Prosody on 127.0.0.1 with the accounts alice and bob, a room
# demo@conference.localhost where a bot (bob) talks every 20 s, and the
# bouncer logged in upstream as alice. Point your client at the bouncer,
# chat with bob; Ctrl-C stops everything and removes the directory.
#
# With ./xmppbouncer.toml it builds the bouncer and runs it with that file.
#
# DEMO_PORT=5222 make demo fixes the bouncer's STARTTLS port (default: a
# free one).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
python=/usr/bin/python3 # Debian's python3-slixmpp lives here, not in a pyenv

say() { printf 'demo: %s\n' "$*" >&2; }
die() {
	say "$*"
	exit 1
}

build() {
	command -v go >/dev/null 2>&1 || die "Go is needed to build xmppbouncer: install it from https://go.dev/dl/ (or apt-get install golang-go if recent enough)"
	# The first build compiles SQLite (cgo) and takes a minute or more on 2
	# cores: show that it is working rather than look hung.
	say "building ./xmppbouncer (the first build compiles SQLite: a minute or two; later ones take seconds)"
	go build -tags sqlite_fts5 -o xmppbouncer ./cmd/xmppbouncer &
	local pid=$! start=$SECONDS rc=0
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
		if (((SECONDS - start) % 10 == 0)); then
			say "still building... $((SECONDS - start)) s"
		fi
	done
	wait "$pid" || rc=$?
	[ "$rc" -eq 0 ] || die "go build failed (see above)"
	say "built in $((SECONDS - start)) s"
}

if [ -f xmppbouncer.toml ]; then
	say "$repo/xmppbouncer.toml exists, so no throwaway demo: running the bouncer with your config (Ctrl-C stops it)."
	say "(Move that file away to get the self-contained demo with a local Prosody.)"
	build
	./xmppbouncer check-config -config xmppbouncer.toml
	exec ./xmppbouncer -config xmppbouncer.toml
fi

# --- prerequisites -----------------------------------------------------------

./scripts/install-test-deps.sh || die "could not install Prosody and slixmpp (see above)"
if ! command -v openssl >/dev/null 2>&1; then
	if [ "$(id -u)" -ne 0 ]; then
		die "openssl is missing; as root: apt-get install -y openssl"
	fi
	say "installing openssl"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi
build
# The web client (Converse.js from npm); the demo goes on without it.
web_root=""
if ./scripts/make-web.sh; then
	web_root="$repo/web/root"
else
	say "warning: no web client (make web failed, see above); the XMPP ports work as usual"
fi

# --- throwaway directory and cleanup ------------------------------------------

dir=$(mktemp -d "${TMPDIR:-/tmp}/xmppbouncer-demo.XXXX")
prosody_pid="" bot_pid="" bouncer_pid=""

# stop ends one of our children: SIGTERM, then SIGKILL after 5 s.
# shellcheck disable=SC2317 # reached through the EXIT trap
stop() {
	local pid=$1 i
	[ -n "$pid" ] || return 0
	kill "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # reached through the EXIT trap
cleanup() {
	trap - EXIT INT TERM
	set +e
	say "stopping the bouncer, the bot and Prosody; removing $dir"
	stop "$bouncer_pid"
	stop "$bot_pid"
	stop "$prosody_pid"
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# tail_of prints the end of a log to stderr, for a failure message.
tail_of() {
	say "last lines of $1:"
	tail -n 20 "$1" >&2 || true
}

# wait_port waits until 127.0.0.1:port accepts while process pid lives.
wait_port() {
	local port=$1 pid=$2 log=$3 i
	for ((i = 0; i < 150; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail_of "$log"
			die "$(basename "$log" .log) exited during startup"
		fi
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	tail_of "$log"
	die "nothing listens on 127.0.0.1:$port after 15 s"
}

# wait_log waits up to secs seconds for a line matching pattern in log,
# written by process pid; it fails the demo if that process exits.
wait_log() {
	local log=$1 pattern=$2 secs=$3 pid=$4 i
	for ((i = 0; i < secs * 10; i++)); do
		grep -q -- "$pattern" "$log" 2>/dev/null && return 0
		if ! kill -0 "$pid" 2>/dev/null; then
			tail_of "$log"
			die "$(basename "$log" .log) exited during startup"
		fi
		sleep 0.1
	done
	return 1
}

# Free loopback ports, held open together so they are distinct. Another
# program could take one before we bind it; then startup fails loudly.
read -r prosody_port bouncer_port direct_port web_port < <("$python" -c '
import socket
s = [socket.socket() for _ in range(4)]
for x in s:
    x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))
') || die "could not find free ports on 127.0.0.1"
bouncer_port=${DEMO_PORT:-$bouncer_port}
web_port=${DEMO_WEB_PORT:-$web_port}

# --- Prosody -----------------------------------------------------------------

mkdir -p "$dir/certs" "$dir/data" "$dir/bouncer"
chmod 700 "$dir"
# One self-signed certificate for both names Prosody serves (RFC 6125): the
# bouncer and the bot trust exactly this file.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
	-days 7 -subj "/CN=localhost" \
	-addext "subjectAltName=DNS:localhost,DNS:conference.localhost" \
	-keyout "$dir/certs/localhost.key" -out "$dir/certs/localhost.crt" 2>"$dir/openssl.log" ||
	{
		tail_of "$dir/openssl.log"
		die "openssl could not make a certificate"
	}

cat >"$dir/prosody.cfg.lua" <<EOF
-- generated by xmppbouncer's scripts/demo.sh; removed when the demo stops
run_as_root = true
daemonize = false
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
log = { info = "$dir/prosody.log" }
certificates = "$dir/certs"
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { $prosody_port }
c2s_direct_tls_ports = { }
s2s_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
modules_disabled = { "s2s" }
modules_enabled = {
	"roster"; "saslauth"; "tls"; "disco"; "ping"; "posix"; "carbons";
	"pep"; "bookmarks"; "mam"; "smacks"; "csi_simple"; "blocklist";
	"private"; "vcard_legacy"; "version";
}
authentication = "internal_hashed"
storage = "internal"
allow_registration = false
c2s_require_encryption = true
ssl = { key = "$dir/certs/localhost.key"; certificate = "$dir/certs/localhost.crt" }
archive_expires_after = "never"
default_archive_policy = true

VirtualHost "localhost"

Component "conference.localhost" "muc"
	modules_enabled = { "muc_mam" }
	muc_room_locking = false
	restrict_room_creation = false
	muc_room_default_persistent = true
	max_history_messages = 50
	muc_log_by_default = true
	muc_log_expires_after = "never"
EOF

say "registering alice and bob on a fresh Prosody in $dir"
for user in alice bob; do
	prosodyctl --config "$dir/prosody.cfg.lua" register "$user" localhost "${user}pw" >>"$dir/prosodyctl.log" 2>&1 ||
		{
			tail_of "$dir/prosodyctl.log"
			die "prosodyctl register $user failed"
		}
done

prosody --config "$dir/prosody.cfg.lua" -F >"$dir/prosody.out" 2>&1 &
prosody_pid=$!
wait_port "$prosody_port" "$prosody_pid" "$dir/prosody.log"
say "Prosody listens on 127.0.0.1:$prosody_port"

# --- the bot -----------------------------------------------------------------

"$python" "$repo/scripts/demobot.py" bob@localhost bobpw 127.0.0.1 "$prosody_port" \
	"$dir/certs/localhost.crt" demo@conference.localhost bob >"$dir/bot.log" 2>&1 &
bot_pid=$!
if ! wait_log "$dir/bot.log" "^JOINED" 20 "$bot_pid"; then
	tail_of "$dir/bot.log"
	die "the bot did not join demo@conference.localhost"
fi
say "bob is talking in demo@conference.localhost"

# --- the bouncer -------------------------------------------------------------

# Mode 0600 from the start: it holds passwords (the bouncer warns otherwise).
./scripts/demo-config.sh "$dir" "$prosody_port" "$bouncer_port" "$direct_port" "$web_port" "$web_root"

./xmppbouncer check-config -config "$dir/xmppbouncer.toml" >/dev/null
./xmppbouncer -config "$dir/xmppbouncer.toml" >"$dir/bouncer.log" 2>&1 &
bouncer_pid=$!
wait_port "$bouncer_port" "$bouncer_pid" "$dir/bouncer.log"
if ! wait_log "$dir/bouncer.log" "joined room.*demo@conference.localhost" 20 "$bouncer_pid"; then
	tail_of "$dir/bouncer.log"
	say "warning: the bouncer has not joined demo@conference.localhost yet (see its log above)"
fi
fingerprint=$(grep -o 'sha256=[0-9A-F:]*' "$dir/bouncer.log" | head -n 1 | cut -d= -f2)
certificate="$dir/bouncer/xmppbouncer-cert.pem"

cat <<EOF

  xmppbouncer is running. Log in with any XMPP client:

    JID        alice@localhost
    password   demo
    host       127.0.0.1
    port       $bouncer_port  (STARTTLS; direct TLS, XEP-0368: $direct_port)

  Keep a fixed resource (laptop, phone, ...) in every client. Set host and
  port by hand and accept the self-signed certificate when asked:
    Gajim 1.7: Accounts > Modify Account... > Connection > Hostname
      (in the new-account wizard: Advanced Settings)
    Profanity:
      /connect alice@localhost/laptop server 127.0.0.1 port $bouncer_port tls trust
  The certificate is
    $certificate
  with the SHA-256 fingerprint
    $fingerprint
  poezio refuses a self-signed certificate without asking and has no
  /connect: in poezio.cfg set jid = alice@localhost/laptop,
  custom_host = 127.0.0.1, custom_port = $bouncer_port,
  ca_cert_path = $certificate, then restart poezio.
  mcabber: set jid, server = 127.0.0.1, port = $bouncer_port, tls = 1,
  ssl_ca = (the certificate), resource, disable_random_resource = 1.

  The bouncer's own commands (status, clients, rooms, history, reconnect)
  are in your client's ad-hoc commands for the server "localhost"; bob
  answers 1:1 chats too: send alice's contact bob@localhost a message.

  Then join demo@conference.localhost: bob speaks every 20 s and answers
  when you mention "bob". Disconnect, wait, reconnect: you missed nothing.

  Dino has no host/port setting: it connects to localhost on port 5222
  (DEMO_PORT=5222 make demo) and takes only a certificate the system
  trusts: add the one above to the system store (Debian: copy it to
  /usr/local/share/ca-certificates/xmppbouncer.crt, update-ca-certificates).

  In a browser: https://127.0.0.1:$web_port/  (the web client, Converse.js:
  accept the certificate, log in with the password above; the demo room is
    https://127.0.0.1:$web_port/#converse/room?jid=demo@conference.localhost
  ). Other WebSocket clients: wss://127.0.0.1:$web_port/xmpp-websocket

  Logs: $dir/bouncer.log (bouncer), prosody.log, bot.log
  Ctrl-C stops the bouncer, the bot and Prosody and removes $dir.

EOF

wait "$bouncer_pid" || true
tail_of "$dir/bouncer.log"
die "the bouncer exited"
