#!/usr/bin/env bash
# Writes the bouncer's config for make demo (scripts/demo.sh):
#   demo-config.sh DIR PROSODY_PORT BOUNCER_PORT DIRECT_TLS_PORT [WEB_PORT [WEB_ROOT]]
# to DIR/xmppbouncer.toml, with mode 0600 from the start: it holds
# passwords, and the bouncer warns at every start about a config file
# others can read.
set -euo pipefail
[ $# -ge 4 ] && [ $# -le 6 ] || {
	echo "usage: $0 DIR PROSODY_PORT BOUNCER_PORT DIRECT_TLS_PORT [WEB_PORT [WEB_ROOT]]" >&2
	exit 2
}
dir=$1 prosody_port=$2 bouncer_port=$3 direct_port=$4 web_port=${5:-} web_root=${6:-}
config="$dir/xmppbouncer.toml"
ws_line=""
if [ -n "$web_port" ]; then
	ws_line="websocket_address = \"127.0.0.1:$web_port\""
fi
umask 077
rm -f "$config" # a file already there would keep its mode
cat >"$config" <<TOML
# Written by scripts/demo.sh for the throwaway Prosody in $dir.
[upstream]
jid = "alice@localhost"
password = "alicepw"
address = "127.0.0.1:$prosody_port"
tls = "starttls"
ca_file = "$dir/certs/localhost.crt"

[listen]
address = "127.0.0.1:$bouncer_port"
direct_tls_address = "127.0.0.1:$direct_port"
$ws_line

[auth]
password = "demo"

[storage]
path = "$dir/bouncer/xmppbouncer.db"

[[rooms]]
jid = "demo@conference.localhost"
autojoin = true
TOML
if [ -n "$web_root" ]; then
	printf '\n[web]\nroot = "%s"\n' "$web_root" >>"$config"
fi
