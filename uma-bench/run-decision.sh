#!/usr/bin/env bash
# e2e/decision: the uma-proxy binary in decision mode (a gateway's authorization service)
# against the same binary in proxy mode, both with their shipped defaults, the same AS, the
# same cached RPTs and the same protected route.
#
# - proxy mode: `GET /hello` with `Authorization: Bearer RPT`, forwarded to the upstream (the
#   axum hello-world of uma-bench-server);
# - decision mode: `GET /auth` with the same `Authorization` and `X-Forwarded-Method: GET`,
#   `X-Forwarded-Uri: /hello` (what Traefik and Caddy send); answered 200 + X-Uma-* without
#   any upstream.
#
# Rounds interleaved (proxy, decision, then decision, proxy, ...). For each, the requests per
# second and per CPU-second of the uma-proxy process (utime + stime from /proc), then the
# medians and the ratio decision/proxy per CPU-second: what a gateway's authorization call
# costs next to running the request through uma-proxy.
#
# CPUs: each uma-proxy on PROXY_CPU (0); the AS, the upstream and the load generator on
# CLIENT_CPU (1).
#
# Usage: uma-bench/run-decision.sh      (from anywhere; builds in release first)
# Settings (environment): ROUNDS=6 DURATION=5s WARMUP=1s CONNECTIONS=32 TOKENS=100
#   LOADGEN_ARGS=--raw PROXY_CPU=0 CLIENT_CPU=1
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
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN=$TARGET_DIR/release

echo "== $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) (other work on the CPUs skews throughput)"
echo "== building (release)"
cargo build --release --locked -p uma-proxy -p uma-bench --bins
. uma-bench/lib.sh

start_server as "$CLIENT_CPU" as
issuer=$url
start_server upstream "$CLIENT_CPU" upstream
upstream_url=$url
echo "== AS at $issuer, upstream at $upstream_url, $TOKENS RPTs"

# The shipped defaults, plus what a deployment must say: where, which AS, which resource.
proxy_toml "$issuer" "listen = \"127.0.0.1:0\"
upstream = \"$upstream_url\"" >"$tmp/proxy.toml"
proxy_toml "$issuer" "listen = \"127.0.0.1:0\"
mode = \"decision\"" >"$tmp/decision.toml"

# start_proxy NAME: the uma-proxy binary with $tmp/NAME.toml on PROXY_CPU; sets $url, $pid.
start_proxy() {
    start_uma_proxy "$1" "$PROXY_CPU"
}
start_proxy proxy
proxy_url=$url proxy_pid=$pid
start_proxy decision
decision_url=$url decision_pid=$pid
cp "$tmp/as.tokens" "$tmp/proxy.tokens"

# request MODE: the loadgen arguments of one request of MODE.
request() {
    case $1 in
        proxy) args=(--url "$proxy_url/hello") ;;
        decision) args=(--url "$decision_url/auth" --header "x-forwarded-method: GET" --header "x-forwarded-uri: /hello") ;;
    esac
}

# Every RPT introspected once before measuring (cached afterwards).
for mode in proxy decision; do
    request "$mode"
    loadgen "${args[@]}" --connections 1 --requests "$TOKENS" --token-file "$tmp/as.tokens" >/dev/null
done

echo "== $ROUNDS rounds x $DURATION (after $WARMUP warm-up), $CONNECTIONS connections, loadgen ${LOADGEN_ARGS:-(hyper client)}"
for mode in proxy decision; do : >"$tmp/$mode.rps"; : >"$tmp/$mode.per-cpu"; done
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then order="proxy decision"; else order="decision proxy"; fi
    for mode in $order; do
        request "$mode"
        if [ "$mode" = proxy ]; then p=$proxy_pid; else p=$decision_pid; fi
        before=$(cpu_ticks "$p")
        line=$(loadgen "${args[@]}" --connections "$CONNECTIONS" --warmup "$WARMUP" \
            --duration "$DURATION" --token-file "$tmp/as.tokens")
        after=$(cpu_ticks "$p")
        rps=$(field rps "$line")
        secs=$(field seconds "$line")
        busy=$(awk -v a="$after" -v b="$before" -v s="$secs" -v w="$WARMUP" \
            'BEGIN { sub(/s$/, "", w); printf "%.2f", (a - b) / 100 / (s + w) }')
        echo "$rps" >>"$tmp/$mode.rps"
        awk -v r="$rps" -v b="$busy" 'BEGIN { if (b > 0) print r / b }' >>"$tmp/$mode.per-cpu"
        printf '  round %d %-9s %10.0f req/s  (uma-proxy CPU %s, loadgen CPU %s, errors %s)\n' \
            "$round" "$mode" "$rps" "$busy" "$(field client_cpu "$line")" "$(field errors "$line")"
    done
done
pr=$(median <"$tmp/proxy.rps")
dr=$(median <"$tmp/decision.rps")
pc=$(median <"$tmp/proxy.per-cpu")
dc=$(median <"$tmp/decision.per-cpu")
awk -v pr="$pr" -v dr="$dr" -v pc="$pc" -v dc="$dc" 'BEGIN {
    printf "e2e/decision: median req/s proxy %.0f, decision %.0f (ratio %.3f)\n", pr, dr, dr / pr
    printf "e2e/decision: median requests per uma-proxy CPU-second: proxy %.0f, decision %.0f (ratio decision/proxy %.3f)\n", pc, dc, dc / pc
}'
stop_server "$proxy_pid"
stop_server "$decision_pid"
