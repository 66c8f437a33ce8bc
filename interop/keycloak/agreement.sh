#!/usr/bin/env bash
# The agreement between uma-proxy and Keycloak's own policy enforcer (issue 14).
#
#   interop/keycloak/agreement.sh
#
# Starts Keycloak unless one is up (keycloak.sh), builds the Quarkus service of quarkus/
# (enforcer.sh build) and uma-proxy, then runs tests/agreement.rs: it makes the realm content of
# agreement/ (resources, clients) unless present, starts two enforcers and two uma-proxies from
# agreement/keycloak-exchange.json and agreement/keycloak-uma.json, sends the same corpus to
# both sides and prints the table; it fails on any difference not listed, with its reason, in
# agreement/allow.json. Stops what it started (a Keycloak it started too). It FAILS when a server
# cannot start: it never passes by skipping.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
t0=$SECONDS

started=0
cleanup() {
  if [[ $started == 1 ]]; then
    "$here/keycloak.sh" stop || true
  fi
}
trap cleanup EXIT

if "$here/keycloak.sh" status >/dev/null 2>&1; then
  echo "== Keycloak already up: $("$here/keycloak.sh" status)"
else
  echo "== starting Keycloak"
  if ! "$here/keycloak.sh" start; then
    echo "FAIL: Keycloak could not start (see above); the agreement did not run" >&2
    exit 1
  fi
  started=1
fi

echo "== building Keycloak's enforcer (Quarkus) and uma-proxy (t=$((SECONDS - t0))s)"
if ! "$here/enforcer.sh" build; then
  echo "FAIL: the enforcer could not be built (see above); the agreement did not run" >&2
  exit 1
fi
cargo build -p uma-proxy --locked
cargo test -p keycloak-interop --features keycloak --locked --test agreement --no-run

echo "== the agreement (t=$((SECONDS - t0))s)"
status=0
cargo test -p keycloak-interop --features keycloak --locked --test agreement -- --nocapture || status=1
echo "== done in $((SECONDS - t0))s"
if [[ $status != 0 ]]; then
  echo "FAIL: uma-proxy and Keycloak's enforcer disagree beyond agreement/allow.json (table above)" >&2
fi
exit $status
