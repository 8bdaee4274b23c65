#!/usr/bin/env bash
# Prints a link to the demo page with a fresh token for room `demo` (identity guest, publish and
# subscribe, valid 12 h), for the daemon `make run` is about to start on CONFIG. The token rides
# in the URL fragment, which the browser never sends; the page takes it out of the address bar.
#
# Usage: scripts/demo-link.sh BIN CONFIG
set -euo pipefail
bin="$1"
config="$2"

# Where the daemon listens: the environment's override, else `listen` under [http] in CONFIG.
listen="${SWITCHBOARD_HTTP__LISTEN:-}"
if [ -z "$listen" ]; then
    listen="$(awk '/^\[/ { section = $0 }
        section == "[http]" && /^[ \t]*listen[ \t]*=/ { sub(/^[^"]*"/, ""); sub(/".*$/, ""); print; exit }' "$config")"
fi
listen="${listen:-127.0.0.1:8080}"
# A wildcard address is reached through loopback from this machine.
case "$listen" in
    0.0.0.0:*) listen="127.0.0.1:${listen#0.0.0.0:}" ;;
    "[::]:"*) listen="[::1]:${listen#\[::\]:}" ;;
esac

if token="$("$bin" token --config "$config" --room demo --identity guest --grant publish,subscribe --ttl 12h)"; then
    echo "Demo page: room demo, as guest, for 12 h. Open it in two tabs and give each its own name:"
    echo "  http://$listen/demo#token=$token"
else
    echo "Demo page (no token could be minted from $config; paste one into the page):"
    echo "  http://$listen/demo"
fi
