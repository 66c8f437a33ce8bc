#!/usr/bin/env bash
# uma-proxy in decision mode behind real gateways: nginx (auth_request) and Caddy
# (forward_auth), from Debian's packages, with the configs of uma-proxy/examples/gateways/.
#
#   interop/gateways/test.sh          install nginx and Caddy if missing, run the tests
#
# It FAILS (exit 1) when a gateway cannot be installed or started: these tests never pass by
# skipping. They live in uma-proxy's tests/gateways.rs, built only with its feature
# `gateways`, so the hermetic `cargo test --workspace` neither builds nor runs them.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
t0=$SECONDS

# shellcheck source=../apt-install.sh
. "$(dirname "${BASH_SOURCE[0]}")/../apt-install.sh"
find_bin() { command -v "$1" || { [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1"; } || true; }

need=()
[[ -n $(find_bin nginx) ]] || need+=(nginx-light)
[[ -n $(find_bin caddy) ]] || need+=(caddy)
if ((${#need[@]})); then
  echo "== installing ${need[*]} (Debian packages)"
  # Their system services (port 80) are not started.
  if ! apt_install "${need[@]}"; then
    echo "FAIL: could not install ${need[*]}; the gateway tests did not run" >&2
    exit 1
  fi
fi

NGINX_BIN=$(find_bin nginx)
CADDY_BIN=$(find_bin caddy)
if [[ -z $NGINX_BIN || -z $CADDY_BIN ]]; then
  echo "FAIL: nginx or caddy is missing after installation; the gateway tests did not run" >&2
  exit 1
fi
if ! "$NGINX_BIN" -V 2>&1 | grep -q http_auth_request_module; then
  echo "FAIL: $NGINX_BIN has no auth_request module" >&2
  exit 1
fi
export NGINX_BIN CADDY_BIN
echo "== $("$NGINX_BIN" -v 2>&1), caddy $("$CADDY_BIN" version)"
cargo test -p uma-proxy --features gateways --test gateways --locked
echo "== gateway tests done in $((SECONDS - t0))s"
