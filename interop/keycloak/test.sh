#!/usr/bin/env bash
# tower-uma, uma-proxy and uma-test-as against a real Keycloak.
#
#   interop/keycloak/test.sh            start Keycloak unless one is up, run the tests, stop what
#                                       this script started, print cargo's summary lines
#   interop/keycloak/test.sh NAME       only the tests whose name contains NAME (not the outage
#                                       test, which stops Keycloak, unless NAME matches it)
#
# It FAILS (exit 1) when Keycloak cannot start: these tests never pass by skipping. The tests
# live in the crate keycloak-interop (interop/keycloak/), built only with its feature
# `keycloak`, so the hermetic `cargo test --workspace` neither builds nor runs them.
# The outage test stops and restarts Keycloak, so it runs alone, after the others.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
filter=${1:-}
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
  t_start=$SECONDS
  if ! "$here/keycloak.sh" start; then
    echo "FAIL: Keycloak could not start (see above); the Keycloak interop tests did not run" >&2
    exit 1
  fi
  started=1
  echo "== Keycloak ready after $((SECONDS - t_start))s"
fi

log=$(mktemp)
status=0
run() {
  # cargo's own output goes to the terminal and a log; the summary lines are printed again at
  # the end.
  cargo test -p keycloak-interop --features keycloak --locked --no-fail-fast "$@" 2>&1 | tee -a "$log" || status=1
}

echo "== building uma-proxy and the tests"
cargo build -p uma-proxy --locked
cargo test -p keycloak-interop --features keycloak --locked --no-run

echo "== the Keycloak tests (t=$((SECONDS - t0))s)"
run --test layer --test proxy --test dialect --test forgotten --test enforcer_config --test tenants -- ${filter:+"$filter"}
if [[ -z "$filter" || "keycloak_stopped_mid_run_and_back" == *"$filter"* ]]; then
  echo "== the outage test: Keycloak stopped and started again (t=$((SECONDS - t0))s)"
  run --test outage
fi

echo "== summary (t=$((SECONDS - t0))s)"
grep -E '^test result:|^     Running |panicked at|^failures:' "$log" | grep -v '^failures:$' || true
rm -f "$log"
if [[ $status != 0 ]]; then
  echo "FAIL: some Keycloak interop tests failed" >&2
fi
exit $status
