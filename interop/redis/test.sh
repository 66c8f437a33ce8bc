#!/usr/bin/env bash
# The shared cache on Redis (feature `redis`): tower-uma's tests/shared_cache.rs and
# uma-proxy's tests/fleet.rs (three replicas on one redis-server), against a real
# redis-server from Debian's packages, installed here when missing.
#
#   interop/redis/test.sh          install redis-server if missing, lint and run the tests
#
# It FAILS (exit 1) when redis-server cannot be installed; the tests themselves start one
# redis-server per test on a free loopback port and fail, never skip, when CI is set.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

. interop/apt-install.sh

if ! command -v redis-server >/dev/null && [[ ! -x /usr/bin/redis-server ]]; then
  echo "== installing redis-server (Debian package)"
  # Its system service (port 6379) is not started: each test starts its own server.
  if ! apt_install redis-server; then
    echo "FAIL: could not install redis-server; the shared-cache tests did not run" >&2
    exit 1
  fi
fi
redis-server --version

# Fail, never skip, inside these tests.
export CI=${CI:-true}
cargo clippy -p tower-uma -p uma-proxy --all-targets --locked --features tower-uma/axum,tower-uma/jwt,tower-uma/redis,uma-proxy/redis -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc -p tower-uma -p uma-proxy --no-deps --locked --features tower-uma/axum,tower-uma/jwt,tower-uma/redis,uma-proxy/redis
cargo test -p tower-uma --locked --features axum,jwt,redis --lib cache::shared
cargo test -p tower-uma --locked --features axum,jwt,redis --test shared_cache
cargo test -p uma-proxy --locked --features redis --test fleet
# uma-proxy's [cache.shared] configuration tests, and the bench (compiled, not run).
cargo test -p uma-proxy --locked --features redis --lib
cargo bench -p tower-uma --locked --features redis,axum --no-run
