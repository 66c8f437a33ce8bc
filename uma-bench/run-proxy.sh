#!/usr/bin/env bash
# e2e/proxy: the uma-proxy binary as users run it (release, started from a proxy.toml with the
# shipped defaults: metrics on through admin_listen as in the example proxy.toml, logs at info
# on stderr) with cached RPTs, against the smallest hyper-util reverse proxy (uma-forwarder:
# hyper server, legacy client, hop-by-hop removal, nothing else) and against the upstream (the
# axum hello-world) reached directly. One AS (uma-bench-server --mode as), one upstream, the
# same requests to every target: `GET /hello` with `Authorization: Bearer RPT`, the AS's RPTs
# taken in turn.
#
# 1. Throughput: rounds interleaved (direct, forwarder, uma-proxy, then uma-proxy, forwarder,
#    direct, ...); prints every round, the medians, the ratio uma-proxy/forwarder (target
#    >= 0.80) and the same ratio per proxy CPU-second.
# 2. Instructions per request: each proxy (only the proxy process) under callgrind, sent N1
#    and then, in a second run, N2 requests; (Ir(N2) - Ir(N1)) / (N2 - N1) cancels start-up
#    (for uma-proxy: discovery, the PAT, the resource sync and the first introspection of
#    each RPT). The token digest's SHA-256 block function is counted on a line of its own and
#    left out of the target (valgrind hides the CPU's SHA extensions, so it runs in software
#    there): uma-proxy adds <= 6,000 instructions/request over uma-forwarder. For reference
#    (CG_REFERENCE), the in-process construct of uma-bench-server: uma_proxy's forwarding
#    service served by uma_proxy::serve without (proxy-bare) and behind UmaLayer
#    (proxy-uma), with no metrics recorder and no log subscriber.
# 3. With PROFILE=1, a steady-state profile of both proxies: instructions per request and the
#    costliest functions per request.
# Each target line ends in MET or NOT MET.
#
# CPUs: the proxy under test is pinned to PROXY_CPU (0); the upstream, the AS and the load
# generator share CLIENT_CPU (1). In the direct rounds the upstream shares its core with the
# load generator (reported, not targeted).
#
# Usage: uma-bench/run-proxy.sh          (from anywhere; builds in release first)
# Settings (environment): ROUNDS=6 DURATION=5s WARMUP=1s CONNECTIONS=32 TOKENS=100
#   LOADGEN_ARGS=--raw PROXY_CPU=0 UPSTREAM_CPU=1 CLIENT_CPU=1 N1=2000 N2=12000 CG_CONNECTIONS=1
#   CG_REFERENCE="proxy-bare proxy-uma" (empty: skip) SKIP_THROUGHPUT= SKIP_CALLGRIND= PROFILE=
#   OUT=target/uma-bench
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
CG_REFERENCE=${CG_REFERENCE-proxy-bare proxy-uma}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$TARGET_DIR/uma-bench}
BIN=$TARGET_DIR/release

started=$SECONDS
echo "== $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), load average $(cut -d' ' -f1-3 /proc/loadavg) (other work on the CPUs skews throughput, not instruction counts)"
echo "== building (release)"
cargo build --release --locked -p uma-bench -p uma-proxy --bins
mkdir -p "$OUT"
. uma-bench/lib.sh

# One AS and one upstream for everything below, never under valgrind.
start_server as "$CLIENT_CPU" as
issuer=$url
start_server upstream "$UPSTREAM_CPU" upstream
upstream_url=$url upstream_pid=$pid
tokens=$tmp/as.tokens
echo "== AS at $issuer ($TOKENS RPTs), upstream (axum hello-world) at $upstream_url on CPU $UPSTREAM_CPU"
# What users run: the example proxy.toml's admin listener (so the Prometheus recorder is on),
# the default log level, every other setting at its default.
proxy_toml "$issuer" "listen = \"127.0.0.1:0\"
upstream = \"$upstream_url\"
admin_listen = \"127.0.0.1:0\"" >"$tmp/proxy.toml"

# start_target NAME CPU [PREFIX...]: starts the proxy NAME (forwarder or uma-proxy) on CPU,
# under PREFIX; sets $url and $pid. The instance is called NAME.N (its config a copy).
instance=0
start_target() {
    local name=$1 cpu=$2
    shift 2
    instance=$((instance + 1))
    case $name in
        forwarder) start_cmd "$name.$instance" "$cpu" "$@" "$BIN/uma-forwarder" --upstream "$upstream_url" ;;
        uma-proxy)
            cp "$tmp/proxy.toml" "$tmp/$name.$instance.toml"
            start_uma_proxy "$name.$instance" "$cpu" "$@"
            ;;
    esac
}

if [ -z "${SKIP_THROUGHPUT:-}" ]; then
    echo "== e2e/proxy throughput: $ROUNDS rounds x $DURATION (after ${WARMUP} warm-up) per target," \
        "$CONNECTIONS connections; proxies on CPU $PROXY_CPU, upstream on CPU $UPSTREAM_CPU," \
        "loadgen ${LOADGEN_ARGS:-(hyper client)} on CPU $CLIENT_CPU"
    phase=$SECONDS
    start_target forwarder "$PROXY_CPU"
    fwd_url=$url fwd_pid=$pid
    start_target uma-proxy "$PROXY_CPU"
    uma_url=$url uma_pid=$pid
    # Every RPT introspected once before measuring.
    loadgen --url "$uma_url/hello" --connections 1 --requests "$TOKENS" --token-file "$tokens" >/dev/null
    for m in direct forwarder uma-proxy; do
        : >"$tmp/$m.rps"
        : >"$tmp/$m.per-cpu"
    done
    for round in $(seq 1 "$ROUNDS"); do
        if [ $((round % 2)) -eq 1 ]; then order="direct forwarder uma-proxy"; else order="uma-proxy forwarder direct"; fi
        for mode in $order; do
            case $mode in
                direct) u=$upstream_url p=$upstream_pid ;;
                forwarder) u=$fwd_url p=$fwd_pid ;;
                uma-proxy) u=$uma_url p=$uma_pid ;;
            esac
            before=$(cpu_ticks "$p")
            up_before=$(cpu_ticks "$upstream_pid")
            line=$(loadgen --url "$u/hello" --connections "$CONNECTIONS" --warmup "$WARMUP" \
                --duration "$DURATION" --token-file "$tokens")
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
    stop_server "$fwd_pid"
    stop_server "$uma_pid"
    d=$(median <"$tmp/direct.rps")
    f=$(median <"$tmp/forwarder.rps")
    u=$(median <"$tmp/uma-proxy.rps")
    fc=$(median <"$tmp/forwarder.per-cpu")
    uc=$(median <"$tmp/uma-proxy.per-cpu")
    awk -v d="$d" -v f="$f" -v u="$u" -v fc="$fc" -v uc="$uc" 'BEGIN {
        r = u / f
        printf "e2e/proxy: median direct %.0f, forwarder %.0f, uma-proxy %.0f req/s\n", d, f, u
        printf "e2e/proxy: throughput uma-proxy/forwarder %.3f (target >= 0.80: %s)\n", r, (r >= 0.80 ? "MET" : "NOT MET")
        printf "  per proxy CPU-second: median forwarder %.0f, uma-proxy %.0f requests, ratio %.3f; forwarder/direct %.3f (reported)\n",
            fc, uc, uc / fc, f / d
    }'
    echo "  (throughput phase took $((SECONDS - phase)) s)"
fi

if [ -z "${SKIP_CALLGRIND:-}" ]; then
    echo "== e2e/proxy instructions per request under callgrind (the proxy process only): N1=$N1, N2=$N2 requests," \
        "$CG_CONNECTIONS connection(s), $TOKENS RPTs"
    phase=$SECONDS
    declare -A per_request sha
    for mode in forwarder uma-proxy $CG_REFERENCE; do
        declare -A ir sha_ir
        for n in "$N1" "$N2"; do
            out="$OUT/callgrind.$mode.$n.out"
            rm -f "$out"
            prefix=(valgrind --tool=callgrind --callgrind-out-file="$out")
            case $mode in
                forwarder | uma-proxy)
                    start_target "$mode" "$PROXY_CPU" "${prefix[@]}"
                    t=$tokens
                    ;;
                *)
                    start_server "cg-$mode-$n" "$PROXY_CPU" "$mode" --upstream "$upstream_url" -- "${prefix[@]}"
                    t=$tmp/cg-$mode-$n.tokens
                    ;;
            esac
            line=$(loadgen --url "$url/hello" --connections "$CG_CONNECTIONS" --requests "$n" --token-file "$t")
            stop_server "$pid"
            ir[$n]=$(callgrind_total "$out")
            sha_ir[$n]=$(self_cost "$out" "$SHA_BLOCK")
            printf '  %-10s %6d requests: Ir %s  (%s)\n' "$mode" "$n" "${ir[$n]}" "$(field errors "$line") errors"
        done
        per_request[$mode]=$(awk -v a="${ir[$N1]}" -v b="${ir[$N2]}" -v n1="$N1" -v n2="$N2" \
            'BEGIN { printf "%.0f", (b - a) / (n2 - n1) }')
        sha[$mode]=$(awk -v a="${sha_ir[$N1]}" -v b="${sha_ir[$N2]}" -v n1="$N1" -v n2="$N2" \
            'BEGIN { printf "%.0f", (b - a) / (n2 - n1) }')
        echo "  $mode: ${per_request[$mode]} instructions per request (SHA-256 block function: ${sha[$mode]})"
        unset ir sha_ir
    done
    awk -v f="${per_request[forwarder]}" -v u="${per_request[uma-proxy]}" -v s="${sha[uma-proxy]}" -v fs="${sha[forwarder]}" 'BEGIN {
        d = u - f
        printf "e2e/proxy callgrind: forwarder %d, uma-proxy %d instructions/request; uma-proxy adds %d\n", f, u, d
        printf "  the token digest'"'"'s SHA-256 block function (software under valgrind): %d instructions/request, left out below\n", s - fs
        x = d - (s - fs)
        printf "e2e/proxy callgrind: uma-proxy adds %d instructions/request over the forwarder without it (target <= +6,000: %s)\n",
            x, (x <= 6000 ? "MET" : "NOT MET")
    }'
    for mode in $CG_REFERENCE; do
        awk -v f="${per_request[forwarder]}" -v m="${per_request[$mode]}" -v name="$mode" 'BEGIN {
            printf "  for reference: in-process %s %d instructions/request, %+d over the forwarder\n", name, m, m - f
        }'
    done
    echo "  callgrind files: $OUT/callgrind.{forwarder,uma-proxy,...}.{$N1,$N2}.out (callgrind_annotate them)"
    echo "  (callgrind phase took $((SECONDS - phase)) s)"
fi
if [ -n "${PROFILE:-}" ]; then
    echo "== steady-state profiles: counters zeroed after $N1 requests, dumped after $((N2 - N1)) more"
    phase=$SECONDS
    for mode in forwarder uma-proxy; do
        rm -f "$OUT/profile.$mode.out" "$OUT/profile.$mode.out".*
        start_target "$mode" "$PROXY_CPU" valgrind --tool=callgrind --callgrind-out-file="$OUT/profile.$mode.out"
        profile_running "$mode" "$tokens"
    done
    echo "  uma-proxy: tower-uma, uma-proxy and moka functions (inclusive), per request:"
    inclusive "$profile_file" 'tower_uma|uma_proxy|moka::future::cache::Cache.*::get'
    echo "  profiles: $OUT/profile.{forwarder,uma-proxy}.out.1 (callgrind_annotate --inclusive=yes FILE)"
    echo "  (profile phase took $((SECONDS - phase)) s)"
fi
stop_server "$upstream_pid"
echo "== done in $((SECONDS - started)) s"
