#!/usr/bin/env bash
# soak: the release uma-proxy binary under load for minutes or hours, with churning RPTs and an
# authorization server that keeps failing; checks that nothing unauthorised is forwarded, that
# outages fail closed, that the proxy recovers, that memory and file descriptors stay flat
# (scraped or not), and reports log lines and AS calls during outages. See uma-bench/README.md.
#
# Usage: uma-bench/run-soak.sh           (from anywhere; builds in release first)
#   DURATION=3600 uma-bench/run-soak.sh  (an hour per mode)
# Settings (environment): DURATION=300 (seconds per mode) MODES="no-admin unscraped scraped"
#   SOAK_ARGS= (more uma-soak options, e.g. "--tokens 20000 --max-outage-as-calls off")
# Exit status: 0 when every check of every mode passed, 1 when one failed, 2 when a run could
# not be carried out.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-300}
MODES=${MODES:-no-admin unscraped scraped}
SOAK_ARGS=${SOAK_ARGS:-}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN=$TARGET_DIR/release

echo "== $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== building (release)"
cargo build --release --locked -p uma-proxy -p uma-bench --bins
status=0
for mode in $MODES; do
    echo "== mode $mode, $DURATION s"
    rc=0
    # shellcheck disable=SC2086 # SOAK_ARGS holds separate words
    "$BIN/uma-soak" --proxy "$BIN/uma-proxy" --mode "$mode" --duration "$DURATION" $SOAK_ARGS || rc=$?
    if [ "$rc" -gt "$status" ]; then status=$rc; fi
done
echo "== soak: $([ "$status" -eq 0 ] && echo PASS || echo "FAIL (exit $status)")"
exit "$status"
