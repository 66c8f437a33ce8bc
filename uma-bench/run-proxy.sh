#!/usr/bin/env bash
# e2e/proxy: uma-proxy with cached RPTs against a bare forwarding proxy built the same way
# (uma_proxy::forwarding_service served by uma_proxy::serve, hyper-util, no UMA) and against
# the upstream (the axum hello-world) reached directly.
#
# 1. Throughput: one upstream, the two proxies in front of it; rounds interleaved (direct,
#    proxy-bare, proxy-uma, then proxy-uma, proxy-bare, direct, ...); prints every round, the
#    medians and the ratios proxy-uma/proxy-bare (target >= 0.80) and proxy-bare/direct
#    (reported only: forwarding costs several times a hello-world).
# 2. Instructions per request: each proxy (only the proxy process) under callgrind, sent N1
#    and then, in a second run, N2 requests; (Ir(N2) - Ir(N1)) / (N2 - N1) cancels start-up.
#    Prints both figures and the difference (target: UMA adds <= 5,000 instructions/request).
# 3. With PROFILE=1, a steady-state profile of each proxy (as in run-e2e.sh): instructions per
#    request and the costliest functions per request.
#
# Every server receives the same requests, `Authorization: Bearer T` included: cached RPTs
# for proxy-uma, stand-in tokens of the same shape for the others (which forward or ignore
# them). Both proxies forward the header upstream.
#
# CPUs: the proxy under test is pinned to PROXY_CPU (0); the upstream and the load generator
# share UPSTREAM_CPU / CLIENT_CPU (1). The proxy, the thing measured, has a core of its own;
# the upstream's work per request is the same behind both proxies. In the direct rounds the
# upstream shares its core with the load generator, so the direct figure is an underestimate
# of what the upstream can do alone (the proxy-bare/direct ratio is flattering, not targeted).
#
# Usage: uma-bench/run-proxy.sh          (from anywhere; builds in release first)
# Settings (environment): ROUNDS=6 DURATION=5s WARMUP=1s CONNECTIONS=32 TOKENS=100
#   LOADGEN_ARGS=--raw PROXY_CPU=0 UPSTREAM_CPU=1 CLIENT_CPU=1 N1=2000 N2=12000 CG_CONNECTIONS=1
#   SKIP_THROUGHPUT= SKIP_CALLGRIND= PROFILE= OUT=target/uma-bench
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
CONNECTIONS=${CONNECTIONS:-32}
LOADGEN_ARGS=${LOADGEN_ARGS---raw}
TOKENS=${TOKENS:-100}
PROXY_CPU=${PROXY_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
UPSTREAM_CPU=${UPSTREAM_CPU:-$CLIENT_CPU}
N1=${N1:-2000}
N2=${N2:-12000}
CG_CONNECTIONS=${CG_CONNECTIONS:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$TARGET_DIR/uma-bench}
BIN=$TARGET_DIR/release

started=$SECONDS
echo "== $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) (other work on the CPUs skews throughput, not instruction counts)"
echo "== building (release)"
cargo build --release --locked -p uma-bench --bins
mkdir -p "$OUT"
. uma-bench/lib.sh

# The upstream: one hello-world for everything below, never under valgrind.
start_server upstream "$UPSTREAM_CPU" upstream
upstream_url=$url upstream_pid=$pid
echo "== upstream (axum hello-world) at $upstream_url on CPU $UPSTREAM_CPU"

if [ -z "${SKIP_THROUGHPUT:-}" ]; then
    echo "== e2e/proxy throughput: $ROUNDS rounds x $DURATION (after ${WARMUP} warm-up) per target," \
        "$CONNECTIONS connections, $TOKENS cached RPTs; proxies on CPU $PROXY_CPU, upstream on CPU $UPSTREAM_CPU," \
        "loadgen ${LOADGEN_ARGS:-(hyper client)} on CPU $CLIENT_CPU"
    phase=$SECONDS
    start_server proxy-bare "$PROXY_CPU" proxy-bare --upstream "$upstream_url"
    bare_url=$url bare_pid=$pid
    start_server proxy-uma "$PROXY_CPU" proxy-uma --upstream "$upstream_url"
    uma_url=$url uma_pid=$pid
    for m in direct proxy-bare proxy-uma; do
        : >"$tmp/$m.rps"
        : >"$tmp/$m.per-cpu"
    done
    for round in $(seq 1 "$ROUNDS"); do
        if [ $((round % 2)) -eq 1 ]; then order="direct proxy-bare proxy-uma"; else order="proxy-uma proxy-bare direct"; fi
        for mode in $order; do
            case $mode in
                direct) u=$upstream_url p=$upstream_pid extra=(--token-file "$tmp/upstream.tokens") ;;
                proxy-bare) u=$bare_url p=$bare_pid extra=(--token-file "$tmp/proxy-bare.tokens") ;;
                proxy-uma) u=$uma_url p=$uma_pid extra=(--token-file "$tmp/proxy-uma.tokens") ;;
            esac
            before=$(cpu_ticks "$p")
            up_before=$(cpu_ticks "$upstream_pid")
            line=$(loadgen --url "$u/hello" --connections "$CONNECTIONS" --warmup "$WARMUP" \
                --duration "$DURATION" "${extra[@]}")
            after=$(cpu_ticks "$p")
            up_after=$(cpu_ticks "$upstream_pid")
            rps=$(field rps "$line")
            secs=$(field seconds "$line")
            busy=$(awk -v a="$after" -v b="$before" -v s="$secs" -v w="$WARMUP" \
                'BEGIN { sub(/s$/, "", w); printf "%.2f", (a - b) / 100 / (s + w) }')
            up_busy=$(awk -v a="$up_after" -v b="$up_before" -v s="$secs" -v w="$WARMUP" \
                'BEGIN { sub(/s$/, "", w); printf "%.2f", (a - b) / 100 / (s + w) }')
            echo "$rps" >>"$tmp/$mode.rps"
            awk -v r="$rps" -v b="$busy" 'BEGIN { if (b > 0) print r / b }' >>"$tmp/$mode.per-cpu"
            if [ "$mode" = direct ]; then
                printf '  round %d %-10s %10.0f req/s  (upstream CPU %s, loadgen CPU %s, errors %s)\n' \
                    "$round" "$mode" "$rps" "$busy" "$(field client_cpu "$line")" "$(field errors "$line")"
            else
                printf '  round %d %-10s %10.0f req/s  (proxy CPU %s, upstream CPU %s, loadgen CPU %s, errors %s)\n' \
                    "$round" "$mode" "$rps" "$busy" "$up_busy" "$(field client_cpu "$line")" "$(field errors "$line")"
                if awk -v b="$busy" 'BEGIN { exit !(b < 0.9) }'; then
                    echo "    (the proxy used less than 90% of its CPU: the upstream, the load generator or other processes limit this round)"
                fi
            fi
        done
    done
    stop_server "$bare_pid"
    stop_server "$uma_pid"
    grep -h 'introspection calls' "$tmp/proxy-uma.err" | sed 's/^/  proxy-uma: /' || true
    d=$(median <"$tmp/direct.rps")
    b=$(median <"$tmp/proxy-bare.rps")
    u=$(median <"$tmp/proxy-uma.rps")
    awk -v d="$d" -v b="$b" -v u="$u" 'BEGIN {
        r = u / b
        printf "e2e/proxy: median direct %.0f, proxy-bare %.0f, proxy-uma %.0f req/s\n", d, b, u
        printf "e2e/proxy: ratio proxy-uma/proxy-bare %.3f (target >= 0.80: %s); proxy-bare/direct %.3f, proxy-uma/direct %.3f (reported, not targeted)\n",
            r, (r >= 0.80 ? "met" : "MISSED"), b / d, u / d
    }'
    bc=$(median <"$tmp/proxy-bare.per-cpu")
    uc=$(median <"$tmp/proxy-uma.per-cpu")
    awk -v b="$bc" -v u="$uc" 'BEGIN {
        printf "  per proxy CPU-second: median proxy-bare %.0f, proxy-uma %.0f requests, ratio %.3f\n", b, u, u / b
    }'
    echo "  (throughput phase took $((SECONDS - phase)) s)"
fi

if [ -z "${SKIP_CALLGRIND:-}" ]; then
    echo "== e2e/proxy instructions per request under callgrind (the proxy process only): N1=$N1, N2=$N2 requests," \
        "$CG_CONNECTIONS connection(s), $TOKENS cached RPTs"
    phase=$SECONDS
    declare -A per_request
    for mode in proxy-bare proxy-uma; do
        declare -A ir
        for n in "$N1" "$N2"; do
            out="$OUT/callgrind.$mode.$n.out"
            rm -f "$out"
            start_server "cg-$mode-$n" "$PROXY_CPU" "$mode" --upstream "$upstream_url" \
                -- valgrind --tool=callgrind --callgrind-out-file="$out"
            extra=(--token-file "$tmp/cg-$mode-$n.tokens")
            line=$(loadgen --url "$url/hello" --connections "$CG_CONNECTIONS" --requests "$n" "${extra[@]}")
            stop_server "$pid"
            ir[$n]=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$out")
            if [ -z "${ir[$n]}" ]; then ir[$n]=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$out"); fi
            printf '  %-10s %6d requests: Ir %s  (%s)\n' "$mode" "$n" "${ir[$n]}" "$(field errors "$line") errors"
        done
        per_request[$mode]=$(awk -v a="${ir[$N1]}" -v b="${ir[$N2]}" -v n1="$N1" -v n2="$N2" \
            'BEGIN { printf "%.0f", (b - a) / (n2 - n1) }')
        echo "  $mode: ${per_request[$mode]} instructions per request"
        unset ir
    done
    awk -v b="${per_request[proxy-bare]}" -v u="${per_request[proxy-uma]}" 'BEGIN {
        d = u - b
        printf "e2e/proxy callgrind: proxy-bare %d, proxy-uma %d instructions/request; UMA adds %d (ratio %.3f; target <= 5,000: %s)\n",
            b, u, d, u / b, (d <= 5000 ? "met" : "MISSED")
    }'
    echo "  callgrind files: $OUT/callgrind.{proxy-bare,proxy-uma}.{$N1,$N2}.out (callgrind_annotate them)"
    echo "  (callgrind phase took $((SECONDS - phase)) s)"
fi
if [ -n "${PROFILE:-}" ]; then
    echo "== steady-state profiles: counters zeroed after $N1 requests, dumped after $((N2 - N1)) more"
    phase=$SECONDS
    profile proxy-bare "$PROXY_CPU" proxy-bare --upstream "$upstream_url"
    profile proxy-uma "$PROXY_CPU" proxy-uma --upstream "$upstream_url"
    echo "  proxy-uma: tower-uma, uma-proxy and moka functions (inclusive), per request:"
    inclusive "$profile_file" 'tower_uma|uma_proxy|moka::future::cache::Cache.*::get'
    echo "  profiles: $OUT/profile.{proxy-bare,proxy-uma}.out.1 (callgrind_annotate --inclusive=yes FILE)"
    echo "  (profile phase took $((SECONDS - phase)) s)"
fi
stop_server "$upstream_pid"
echo "== done in $((SECONDS - started)) s"
