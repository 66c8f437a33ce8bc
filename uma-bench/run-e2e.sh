#!/usr/bin/env bash
# e2e/loopback: an axum hello-world over loopback, bare and behind tower-uma with cached RPTs.
#
# 1. Throughput: both servers pinned to one core, uma-loadgen pinned to another, rounds
#    interleaved (bare, layer, layer, bare, ...); prints every round, the medians and the ratio
#    (target: layer >= 0.85 x bare).
# 2. Instructions per request: each server under callgrind, sent N1 and then (in a second run)
#    N2 requests; (Ir(N2) - Ir(N1)) / (N2 - N1) cancels start-up. Prints both figures and the
#    difference; the token digest's SHA-256 block function is counted on a line of its own and
#    left out of the target (valgrind hides the CPU's SHA extensions): the layer adds <= 4,000
#    instructions per request. Each target line ends in MET or NOT MET.
# 3. With PROFILE=1, a steady-state profile of each server: callgrind_control zeroes the
#    counters after N1 requests and dumps them after N2 - N1 more; prints the instructions per
#    request and the costliest functions per request (self and, for tower-uma and moka,
#    inclusive).
# Every server receives the same requests: `Authorization: Bearer T` with cached RPTs for the
# layer, and stand-in tokens of the same shape (which it ignores) for bare axum. The callgrind
# phase also counts bare axum sent no Authorization header, for reference.
#
# Usage: uma-bench/run-e2e.sh            (from anywhere; builds in release first)
# Settings (environment): ROUNDS=6 DURATION=5s WARMUP=1s CONNECTIONS=32 TOKENS=100
#   LOADGEN_ARGS=--raw (the minimal client; LOADGEN_ARGS= uses hyper's client, which costs
#   about as much CPU per request as the server and then caps the bare figure)
#   SERVER_CPU=0 CLIENT_CPU=1 N1=2000 N2=12000 CG_CONNECTIONS=1 SKIP_THROUGHPUT= SKIP_CALLGRIND=
#   CG_EXTRA_MODES="noop-layer layer-outer" (also counted under callgrind, for reference:
#   a do-nothing layer added with Router::layer, which shows what axum charges for any layer,
#   and UmaLayer wrapped around the whole router)
#   PROFILE=
#   OUT=target/uma-bench (callgrind output files are kept there for callgrind_annotate)
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
CONNECTIONS=${CONNECTIONS:-32}
LOADGEN_ARGS=${LOADGEN_ARGS---raw}
TOKENS=${TOKENS:-100}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
N1=${N1:-2000}
N2=${N2:-12000}
CG_CONNECTIONS=${CG_CONNECTIONS:-1}
CG_EXTRA_MODES=${CG_EXTRA_MODES-noop-layer layer-outer}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$TARGET_DIR/uma-bench}
BIN=$TARGET_DIR/release

started=$SECONDS
echo "== $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) (other work on the CPUs skews throughput, not instruction counts)"
echo "== building (release)"
cargo build --release --locked -p uma-bench --bins
mkdir -p "$OUT"
. uma-bench/lib.sh

if [ -z "${SKIP_THROUGHPUT:-}" ]; then
    echo "== e2e/loopback throughput: $ROUNDS rounds x $DURATION (after ${WARMUP} warm-up) per server," \
        "$CONNECTIONS connections, $TOKENS cached RPTs; server on CPU $SERVER_CPU, loadgen ${LOADGEN_ARGS:-(hyper client)} on CPU $CLIENT_CPU"
    phase=$SECONDS
    start_server bare "$SERVER_CPU" bare
    bare_url=$url bare_pid=$pid
    start_server layer "$SERVER_CPU" layer
    layer_url=$url layer_pid=$pid
    : >"$tmp/bare.rps"
    : >"$tmp/layer.rps"
    : >"$tmp/bare.per-cpu"
    : >"$tmp/layer.per-cpu"
    for round in $(seq 1 "$ROUNDS"); do
        if [ $((round % 2)) -eq 1 ]; then order="bare layer"; else order="layer bare"; fi
        for mode in $order; do
            if [ "$mode" = bare ]; then u=$bare_url p=$bare_pid; else u=$layer_url p=$layer_pid; fi
            extra=(--token-file "$tmp/$mode.tokens")
            before=$(cpu_ticks "$p")
            line=$(loadgen --url "$u/hello" --connections "$CONNECTIONS" --warmup "$WARMUP" \
                --duration "$DURATION" "${extra[@]}")
            after=$(cpu_ticks "$p")
            rps=$(field rps "$line")
            secs=$(field seconds "$line")
            busy=$(awk -v a="$after" -v b="$before" -v s="$secs" -v w="$WARMUP" \
                'BEGIN { sub(/s$/, "", w); printf "%.2f", (a - b) / 100 / (s + w) }')
            echo "$rps" >>"$tmp/$mode.rps"
            awk -v r="$rps" -v b="$busy" 'BEGIN { if (b > 0) print r / b }' >>"$tmp/$mode.per-cpu"
            printf '  round %d %-5s %10.0f req/s  (server CPU %s, loadgen CPU %s, errors %s)\n' \
                "$round" "$mode" "$rps" "$busy" "$(field client_cpu "$line")" "$(field errors "$line")"
            if awk -v b="$busy" 'BEGIN { exit !(b < 0.9) }'; then
                echo "    (the server used less than 90% of its CPU: other processes or the load generator limit this round)"
            fi
        done
    done
    stop_server "$bare_pid"
    stop_server "$layer_pid"
    grep -h 'introspection calls' "$tmp/layer.err" | sed 's/^/  /' || true
    bare_med=$(median <"$tmp/bare.rps")
    layer_med=$(median <"$tmp/layer.rps")
    awk -v b="$bare_med" -v l="$layer_med" 'BEGIN {
        r = l / b
        printf "e2e/loopback: median bare %.0f req/s, median layer %.0f req/s, ratio layer/bare %.3f (target >= 0.85: %s)\n",
            b, l, r, (r >= 0.85 ? "MET" : "NOT MET")
    }'
    bare_cpu=$(median <"$tmp/bare.per-cpu")
    layer_cpu=$(median <"$tmp/layer.per-cpu")
    awk -v b="$bare_cpu" -v l="$layer_cpu" 'BEGIN {
        printf "  per server CPU-second: median bare %.0f, median layer %.0f requests, ratio %.3f\n", b, l, l / b
    }'
    echo "  (throughput phase took $((SECONDS - phase)) s)"
fi

if [ -z "${SKIP_CALLGRIND:-}" ]; then
    echo "== e2e/loopback instructions per request under callgrind: N1=$N1, N2=$N2 requests," \
        "$CG_CONNECTIONS connection(s), $TOKENS cached RPTs"
    phase=$SECONDS
    declare -A per_request sha
    for mode in bare layer $CG_EXTRA_MODES bare-no-token; do
        declare -A ir sha_ir
        for n in "$N1" "$N2"; do
            out="$OUT/callgrind.$mode.$n.out"
            rm -f "$out"
            start_server "cg-$mode-$n" "$SERVER_CPU" "${mode%-no-token}" -- valgrind --tool=callgrind --callgrind-out-file="$out"
            extra=(--token-file "$tmp/cg-$mode-$n.tokens")
            if [ "$mode" = bare-no-token ]; then extra=(); fi
            line=$(loadgen --url "$url/hello" --connections "$CG_CONNECTIONS" --requests "$n" "${extra[@]}")
            stop_server "$pid"
            ir[$n]=$(callgrind_total "$out")
            sha_ir[$n]=$(self_cost "$out" "$SHA_BLOCK")
            printf '  %-5s %6d requests: Ir %s  (%s)\n' "$mode" "$n" "${ir[$n]}" "$(field errors "$line") errors"
        done
        per_request[$mode]=$(awk -v a="${ir[$N1]}" -v b="${ir[$N2]}" -v n1="$N1" -v n2="$N2" \
            'BEGIN { printf "%.0f", (b - a) / (n2 - n1) }')
        sha[$mode]=$(awk -v a="${sha_ir[$N1]}" -v b="${sha_ir[$N2]}" -v n1="$N1" -v n2="$N2" \
            'BEGIN { printf "%.0f", (b - a) / (n2 - n1) }')
        echo "  $mode: $(printf '%s' "${per_request[$mode]}") instructions per request (SHA-256 block function: ${sha[$mode]})"
        unset ir sha_ir
    done
    awk -v b="${per_request[bare]}" -v l="${per_request[layer]}" -v s="${sha[layer]}" -v bs="${sha[bare]}" 'BEGIN {
        d = l - b
        printf "e2e/loopback callgrind: bare %d, layer %d instructions/request; the layer adds %d (ratio %.3f)\n", b, l, d, l / b
        printf "  the token digest'"'"'s SHA-256 block function (software under valgrind): %d instructions/request, left out below\n", s - bs
        x = d - (s - bs)
        printf "e2e/loopback callgrind: the layer adds %d instructions/request without it (target <= +4,000: %s)\n",
            x, (x <= 4000 ? "MET" : "NOT MET")
    }'
    for mode in $CG_EXTRA_MODES; do
        awk -v b="${per_request[bare]}" -v m="${per_request[$mode]}" -v name="$mode" 'BEGIN {
            printf "  for reference: %s %d instructions/request, %+d over bare\n", name, m, m - b
        }'
    done
    awk -v b="${per_request[bare-no-token]}" -v l="${per_request[layer]}" 'BEGIN {
        printf "  for reference: bare axum sent no Authorization header %d instructions/request; the layer is %+d over it\n", b, l - b
    }'
    echo "  callgrind files: $OUT/callgrind.{bare,layer}.{$N1,$N2}.out (callgrind_annotate them)"
    echo "  (callgrind phase took $((SECONDS - phase)) s)"
fi
if [ -n "${PROFILE:-}" ]; then
    echo "== steady-state profiles: counters zeroed after $N1 requests, dumped after $((N2 - N1)) more"
    phase=$SECONDS
    profile bare "$SERVER_CPU" bare
    profile layer "$SERVER_CPU" layer
    echo "  layer: tower-uma and moka functions (inclusive), per request:"
    inclusive "$profile_file" 'tower_uma|moka::future::cache::Cache.*::get'
    echo "  profiles: $OUT/profile.{bare,layer}.out.1 (callgrind_annotate --inclusive=yes FILE)"
    echo "  (profile phase took $((SECONDS - phase)) s)"
fi
echo "== done in $((SECONDS - started)) s"
