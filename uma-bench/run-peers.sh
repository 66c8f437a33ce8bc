#!/usr/bin/env bash
# e2e/peers: uma-proxy next to the other ways of putting authorization in front of an API, on
# the same upstream (uma-bench-server's hello-world), the same AS (the real Keycloak of
# interop/keycloak/keycloak.sh, photos realm) and the same requests: `GET /hello` with
# `Authorization: Bearer RPT`, RPTs for bob obtained from Keycloak once per run.
#
# Targets (PEERS, in this order by default):
#   nginx           nginx (Debian's nginx-light) proxying with no authorization: the floor
#   uma-introspect  the uma-proxy binary (release), RPTs introspected at Keycloak, cached
#   uma-jwt         the same binary with rpt_validation = "local": RPTs verified with the
#                   realm's keys, cached the same way
#   oathkeeper      Ory Oathkeeper (built from the Go module proxy at OATHKEEPER_VERSION),
#                   oauth2_introspection authenticator with its cache, allow authorizer,
#                   noop mutator
#   enforcer        Keycloak's own policy enforcer in a Quarkus service
#                   (interop/keycloak/enforcer.sh), from the same keycloak.json
#
# Each target runs as its own process pinned to PROXY_CPU; the upstream, the load generator
# and the AS relay share CLIENT_CPU (Keycloak itself runs wherever the OS puts it). Every target
# is sent each RPT once (priming its cache) and WARM_UP_EACH of load (the JVM of the enforcer
# needs it to compile its hot paths; 0 skips it), then rounds rotate the order of the
# targets, one loadgen run each (WARMUP unmeasured, then DURATION measured). Per round: requests per second, requests per target CPU-second (utime +
# stime of the target's processes from /proc over the round), the loadgen's p50 and p99
# latency, and the AS calls the target made.
#
# AS calls are counted by a relay (uma-bench/peers/as-relay.py) between every target and
# Keycloak: each target is configured with the relay's address, the relay logs every HTTP
# request it forwards, and the lines logged while a target is started, primed or measured are
# charged to it (only one target is busy at a time).
#
# Usage: uma-bench/run-peers.sh       (from anywhere; builds, installs and fetches what it needs)
# Settings (environment): ROUNDS=5 DURATION=5s WARMUP=1s WARM_UP_EACH=60s CONNECTIONS=32 TOKENS=20
#   LOADGEN_ARGS=--raw PROXY_CPU=0 CLIENT_CPU=1 CACHE_TTL=60 OATHKEEPER_VERSION=v0.40.9
#   PEERS="nginx uma-introspect uma-jwt oathkeeper enforcer" CHART=uma-bench/peers.png
#   OUT=target/peers (tools, logs, results: OUT/results.tsv, OUT/rounds.tsv)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
WARM_UP_EACH=${WARM_UP_EACH:-60s}
CONNECTIONS=${CONNECTIONS:-32}
TOKENS=${TOKENS:-20}
LOADGEN_ARGS=${LOADGEN_ARGS---raw}
PROXY_CPU=${PROXY_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
CACHE_TTL=${CACHE_TTL:-60}
OATHKEEPER_VERSION=${OATHKEEPER_VERSION:-v0.40.9}
PEERS=${PEERS:-nginx uma-introspect uma-jwt oathkeeper enforcer}
CHART=${CHART:-uma-bench/peers.png}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$TARGET_DIR/peers}
BIN=$TARGET_DIR/release
KEYCLOAK=http://127.0.0.1:8280
REALM=photos
RS_CLIENT=photo-api
RS_SECRET=photo-api-secret
APP_CLIENT=uma-bench-app
RESOURCE=uma-bench-hello
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

started=$SECONDS
say() { echo "== $*"; }
die() {
    echo "run-peers.sh: error: $*" >&2
    exit 1
}
# shellcheck source=../interop/apt-install.sh
. interop/apt-install.sh
want() { [[ " $PEERS " == *" $1 "* ]]; }

say "machine: $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), $(free -g | awk '/^Mem:/ { print $2 }') GiB," \
    "kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"

# --- tools ----------------------------------------------------------------------------------
say "building uma-proxy and uma-bench (release)"
cargo build --release --locked -p uma-proxy -p uma-bench --bins

NGINX_BIN=
if want nginx; then
    NGINX_BIN=$(command -v nginx || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true)
    if [[ -z $NGINX_BIN ]]; then
        say "installing nginx-light (Debian package)"
        # Its system service (port 80) is not started.
        apt_install nginx-light || die "could not install nginx-light"
        NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
    fi
    say "$("$NGINX_BIN" -v 2>&1)"
fi

OATHKEEPER_BIN=$OUT/bin/oathkeeper-$OATHKEEPER_VERSION
if want oathkeeper && [[ ! -x $OATHKEEPER_BIN ]]; then
    command -v go >/dev/null 2>&1 || die "Go is not installed; it builds Oathkeeper"
    # `go install github.com/ory/oathkeeper@VERSION` cannot be used: the module proxy refuses
    # the module's version list (403), which `go install` reads for deprecation notices, and
    # the module's go.mod has a replace directive, which `go install pkg@version` refuses.
    # So: download that version's module zip (checked against go.sum's database like any
    # module), and build it as its own main module.
    say "building Oathkeeper $OATHKEEPER_VERSION from the Go module proxy"
    dir=$(go mod download -json "github.com/ory/oathkeeper@$OATHKEEPER_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
    [[ -n $dir && -d $dir ]] || die "go mod download github.com/ory/oathkeeper@$OATHKEEPER_VERSION failed"
    src=$OUT/oathkeeper-src-$OATHKEEPER_VERSION
    rm -rf "$src"
    cp -r "$dir" "$src"
    chmod -R u+w "$src"
    mkdir -p "$OUT/bin"
    (cd "$src" && GOFLAGS=-mod=mod go build -trimpath -ldflags "-X github.com/ory/oathkeeper/x.Version=$OATHKEEPER_VERSION" -o "$OATHKEEPER_BIN.partial" .) || die "building Oathkeeper failed"
    mv "$OATHKEEPER_BIN.partial" "$OATHKEEPER_BIN"
fi
if want oathkeeper; then say "oathkeeper $OATHKEEPER_VERSION: $OATHKEEPER_BIN"; fi

ENFORCER=interop/keycloak/enforcer.sh
if want enforcer; then
    [[ -x $ENFORCER ]] || die "$ENFORCER is missing (Keycloak's policy enforcer in Quarkus); leave it out with PEERS=\"...\""
    say "building Keycloak's policy enforcer (Quarkus)"
    "$ENFORCER" build
fi

PY=$OUT/venv/bin/python
if [[ ! -x $PY ]] || ! "$PY" -c 'import matplotlib' 2>/dev/null; then
    say "installing matplotlib into $OUT/venv (for the chart)"
    python3 -m venv "$OUT/venv"
    "$OUT/venv/bin/pip" install -q matplotlib || die "pip could not install matplotlib"
fi

say "Keycloak"
interop/keycloak/keycloak.sh start

. uma-bench/lib.sh
nginx_pid=
enforcer_port=
peers_cleanup() {
    if [[ -n $nginx_pid ]]; then kill -QUIT "$nginx_pid" 2>/dev/null || true; fi
    if [[ -n $enforcer_port ]]; then "$ENFORCER" stop --port "$enforcer_port" >/dev/null 2>&1 || true; fi
    cleanup
}
trap peers_cleanup EXIT

# free_port: a TCP port nothing listens on now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL: until URL answers anything (up to 120 s).
wait_http() {
    local i
    for i in $(seq 1 600); do
        curl -s -o /dev/null --max-time 2 "$1" && return 0
        sleep 0.2
    done
    die "$1 did not answer"
}

# --- the AS relay ---------------------------------------------------------------------------
relay_log=$OUT/as-calls.log
: >"$relay_log"
taskset -c "$CLIENT_CPU" python3 uma-bench/peers/as-relay.py --target 127.0.0.1:8280 --log "$relay_log" \
    >"$tmp/relay.out" 2>"$tmp/relay.err" &
pids+=($!)
wait_listening relay $!
relay=$url
issuer=$relay/realms/$REALM
say "AS relay at $relay (Keycloak $KEYCLOAK): every target talks to $issuer"

# as_calls: lines the relay has logged so far.
as_calls() { wc -l <"$relay_log"; }
# as_breakdown FROM TO: the relay's lines FROM+1..TO, counted by endpoint.
as_breakdown() {
    if (($2 <= $1)); then
        echo -
        return
    fi
    sed -n "$(($1 + 1)),$2p" "$relay_log" | awk '{
        p = $2; sub("^/realms/[^/]*", "", p)
        if (p ~ /token\/introspect$/) k = "introspect"
        else if (p ~ /openid-connect\/token$/) k = "token"
        else if (p ~ /certs$/) k = "jwks"
        else if (p ~ /well-known/) k = "discovery"
        else if (p ~ /authz\/protection/) k = "protection"
        else k = "other"
        n[k]++
    } END { s = ""; for (k in n) s = s (s ? "," : "") k ":" n[k]; print (s ? s : "-") }'
}

# --- realm content (idempotent) -------------------------------------------------------------
admin_token=$(curl -fsS -d grant_type=password -d client_id=admin-cli -d username=admin -d password=admin \
    "$KEYCLOAK/realms/master/protocol/openid-connect/token" | jq -r .access_token)
if [[ $(curl -fsS -H "Authorization: Bearer $admin_token" "$KEYCLOAK/admin/realms/$REALM/clients?clientId=$APP_CLIENT" | jq length) == 0 ]]; then
    curl -fsS -H "Authorization: Bearer $admin_token" -H 'Content-Type: application/json' \
        --data @uma-bench/peers/keycloak-client.json "$KEYCLOAK/admin/realms/$REALM/clients"
    say "created the client $APP_CLIENT in the $REALM realm"
fi
pat=$(curl -fsS -u "$RS_CLIENT:$RS_SECRET" -d grant_type=client_credentials "$issuer/protocol/openid-connect/token" | jq -r .access_token)
resource_id=$(curl -fsS -H "Authorization: Bearer $pat" "$issuer/authz/protection/resource_set?name=$RESOURCE&exactName=true" | jq -r '.[0] // empty')
if [[ -z $resource_id ]]; then
    resource_id=$(curl -fsS -H "Authorization: Bearer $pat" -H 'Content-Type: application/json' \
        --data @uma-bench/peers/keycloak-resource.json "$issuer/authz/protection/resource_set" | jq -r ._id)
    say "created the resource $RESOURCE ($resource_id)"
fi
say "resource $RESOURCE = $resource_id (GET /hello needs view; the realm's policy lets bob view)"

# --- upstream and targets -------------------------------------------------------------------
start_server upstream "$CLIENT_CPU" upstream
upstream_url=$url upstream_pid=$pid
upstream_port=${upstream_url##*:}
say "upstream (axum hello-world) at $upstream_url on CPU $CLIENT_CPU"

declare -A target_url target_pids startup_calls
ttl_ms=$((CACHE_TTL * 1000))

# The keycloak.json of the enforcer (uma-proxy reads the same format).
cat >"$tmp/keycloak.json" <<JSON
{
  "realm": "$REALM",
  "auth-server-url": "$relay",
  "resource": "$RS_CLIENT",
  "credentials": { "secret": "$RS_SECRET" },
  "policy-enforcer": {
    "enforcement-mode": "ENFORCING",
    "user-managed-access": {},
    "path-cache": { "max-entries": 10000, "lifespan": $ttl_ms },
    "paths": [
      { "name": "$RESOURCE", "path": "/hello", "methods": [ { "method": "GET", "scopes": [ "view" ] } ] }
    ]
  }
}
JSON

# uma_config VALIDATION: an uma-proxy config with rpt_validation VALIDATION.
uma_config() {
    cat <<TOML
listen = "127.0.0.1:0"
upstream = "$upstream_url"
realm = "$REALM"
[authorization_server]
issuer = "$issuer"
dialect = "keycloak"
rpt_validation = "$1"
client_id = "$RS_CLIENT"
client_secret_env = "UMA_PEERS_SECRET"
allow_http = true
[cache]
max_ttl = "${CACHE_TTL}s"
max_entries = 10000
[[resources]]
name = "$RESOURCE"
path = "/hello"
scopes = { GET = ["view"] }
TOML
}

start_target() {
    local name=$1 before port
    before=$(as_calls)
    case $name in
        nginx)
            port=$(free_port)
            mkdir -p "$tmp/nginx"
            cat >"$tmp/nginx/nginx.conf" <<NGINX
worker_processes 1;
error_log $tmp/nginx/error.log warn;
pid $tmp/nginx/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx;
    proxy_temp_path $tmp/nginx;
    fastcgi_temp_path $tmp/nginx;
    uwsgi_temp_path $tmp/nginx;
    scgi_temp_path $tmp/nginx;
    upstream hello { server ${upstream_url#http://}; keepalive 64; }
    server {
        listen 127.0.0.1:$port;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://hello;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
NGINX
            taskset -c "$PROXY_CPU" "$NGINX_BIN" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' \
                >"$tmp/nginx.out" 2>"$tmp/nginx.err" &
            nginx_pid=$!
            target_url[$name]=http://127.0.0.1:$port
            wait_http "${target_url[$name]}/"
            target_pids[$name]="$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')"
            ;;
        uma-introspect | uma-jwt)
            local mode=introspect
            [[ $name == uma-jwt ]] && mode=local
            uma_config "$mode" >"$tmp/$name.toml"
            UMA_PEERS_SECRET=$RS_SECRET taskset -c "$PROXY_CPU" "$BIN/uma-proxy" --config "$tmp/$name.toml" \
                >"$tmp/$name.out" 2>"$tmp/$name.err" &
            pids+=($!)
            target_pids[$name]=$!
            wait_listening "$name" $!
            target_url[$name]=$url
            ;;
        oathkeeper)
            port=$(free_port)
            cat >"$tmp/oathkeeper-rules.json" <<JSON
[{
  "id": "hello",
  "upstream": { "url": "$upstream_url" },
  "match": { "url": "http://<**>/hello", "methods": ["GET"] },
  "authenticators": [{ "handler": "oauth2_introspection" }],
  "authorizer": { "handler": "allow" },
  "mutators": [{ "handler": "noop" }]
}]
JSON
            cat >"$tmp/oathkeeper.yaml" <<YAML
log:
  level: error
serve:
  proxy: { host: 127.0.0.1, port: $port }
  api: { host: 127.0.0.1, port: $(free_port) }
  prometheus: { host: 127.0.0.1, port: $(free_port) }
access_rules:
  repositories: [ "file://$tmp/oathkeeper-rules.json" ]
  matching_strategy: glob
authenticators:
  oauth2_introspection:
    enabled: true
    config:
      introspection_url: $issuer/protocol/openid-connect/token/introspect
      introspection_request_headers:
        authorization: "Basic $(printf '%s:%s' "$RS_CLIENT" "$RS_SECRET" | base64 -w0)"
      cache:
        enabled: true
        ttl: ${CACHE_TTL}s
        max_cost: 10000
authorizers:
  allow: { enabled: true }
mutators:
  noop: { enabled: true }
YAML
            taskset -c "$PROXY_CPU" "$OATHKEEPER_BIN" serve --config "$tmp/oathkeeper.yaml" \
                >"$tmp/oathkeeper.out" 2>"$tmp/oathkeeper.err" &
            pids+=($!)
            target_pids[$name]=$!
            target_url[$name]=http://127.0.0.1:$port
            wait_http "${target_url[$name]}/hello"
            ;;
        enforcer)
            port=$(free_port)
            taskset -c "$PROXY_CPU" "$ENFORCER" start --port "$port" --config "$tmp/keycloak.json" \
                --upstream "$upstream_url" >"$tmp/enforcer.out" 2>"$tmp/enforcer.err" ||
                { cat "$tmp/enforcer.err" >&2; die "the enforcer did not start"; }
            enforcer_port=$port
            target_url[$name]=$(sed -n 's/^enforcer ready at //p' "$tmp/enforcer.out")
            target_pids[$name]=$(cat "interop/keycloak/.work/enforcer-$port.pid")
            ;;
    esac
    startup_calls[$name]=$(as_breakdown "$before" "$(as_calls)")
    say "$name at ${target_url[$name]} (pids ${target_pids[$name]}; AS calls at start-up: ${startup_calls[$name]})"
}

for t in $PEERS; do start_target "$t"; done

# --- tokens ---------------------------------------------------------------------------------
before=$(as_calls)
user_token=$(curl -fsS -d grant_type=password -d client_id=$APP_CLIENT -d username=bob -d password=bob \
    "$issuer/protocol/openid-connect/token" | jq -r .access_token)
: >"$tmp/rpts"
for i in $(seq 1 "$TOKENS"); do
    curl -fsS -H "Authorization: Bearer $user_token" -d grant_type=urn:ietf:params:oauth:grant-type:uma-ticket \
        -d audience=$RS_CLIENT -d "permission=$resource_id#view" "$issuer/protocol/openid-connect/token" |
        jq -r .access_token >>"$tmp/rpts"
done
[[ $(sort -u "$tmp/rpts" | grep -c .) == "$TOKENS" ]] || die "Keycloak did not issue $TOKENS distinct RPTs"
say "$TOKENS RPTs for bob from Keycloak ($(head -c 2000 "$tmp/rpts" | head -n1 | wc -c) bytes each; AS calls: $(as_breakdown "$before" "$(as_calls)"))"

# cpu_of NAME: CPU ticks of all of NAME's processes.
cpu_of() {
    local p s=0
    for p in ${target_pids[$1]}; do s=$((s + $(cpu_ticks "$p"))); done
    echo "$s"
}

# --- priming: each RPT once through each target ---------------------------------------------
declare -A prime_calls
for t in $PEERS; do
    before=$(as_calls)
    loadgen --url "${target_url[$t]}/hello" --connections 1 --requests "$TOKENS" --token-file "$tmp/rpts" >/dev/null ||
        die "$t did not answer 200 to every RPT (its log: $tmp/$t.err)"
    # Refused without a token: the target does check.
    status=$(curl -s -o /dev/null -w '%{http_code}' "${target_url[$t]}/hello")
    forged=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(head -n1 "$tmp/rpts" | cut -d. -f1-2).AAAA" \
        "${target_url[$t]}/hello")
    prime_calls[$t]=$(as_breakdown "$before" "$(as_calls)")
    say "$t: every RPT answered 200; without a token: $status; an RPT with a bad signature: $forged; AS calls priming: ${prime_calls[$t]}"
done

# --- warm-up: the JVM compiles its hot paths, Go and Rust fill their pools ------------------
if [[ $WARM_UP_EACH != 0 ]]; then
    for t in $PEERS; do
        line=$(loadgen --url "${target_url[$t]}/hello" --connections "$CONNECTIONS" --duration "$WARM_UP_EACH" \
            --token-file "$tmp/rpts") || die "$t: loadgen failed: $line"
        say "$t warmed up: $WARM_UP_EACH of load, $(field rps "$line") req/s"
    done
fi

# --- rounds ---------------------------------------------------------------------------------
say "$ROUNDS rounds x $DURATION (after $WARMUP warm-up) per target, $CONNECTIONS connections, $TOKENS RPTs," \
    "loadgen ${LOADGEN_ARGS:-(hyper client)}; targets on CPU $PROXY_CPU, upstream + loadgen + relay on CPU $CLIENT_CPU; cache TTL ${CACHE_TTL}s"
rounds_file=$OUT/rounds.tsv
printf 'round\ttarget\trps\tcpu\tper_cpu_s\tp50_ms\tp99_ms\tas_calls\terrors\n' >"$rounds_file"
read -r -a order <<<"$PEERS"
n=${#order[@]}
for round in $(seq 1 "$ROUNDS"); do
    for i in $(seq 0 $((n - 1))); do
        # Round r starts at target r - 1 and goes backwards on even rounds: every target takes
        # every position.
        if ((round % 2)); then j=$(((i + round - 1) % n)); else j=$(((n - 1 - i + round - 1) % n)); fi
        t=${order[$j]}
        calls_before=$(as_calls)
        before=$(cpu_of "$t")
        line=$(loadgen --url "${target_url[$t]}/hello" --connections "$CONNECTIONS" --warmup "$WARMUP" \
            --duration "$DURATION" --token-file "$tmp/rpts") || die "$t: loadgen failed: $line"
        after=$(cpu_of "$t")
        calls=$(($(as_calls) - calls_before))
        rps=$(field rps "$line")
        secs=$(field seconds "$line")
        busy=$(awk -v a="$after" -v b="$before" -v s="$secs" -v w="$WARMUP" \
            'BEGIN { sub(/s$/, "", w); printf "%.3f", (a - b) / 100 / (s + w) }')
        per_cpu=$(awk -v r="$rps" -v b="$busy" 'BEGIN { if (b > 0) printf "%.0f", r / b; else print 0 }')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$t" "$rps" "$busy" "$per_cpu" \
            "$(field p50_ms "$line")" "$(field p99_ms "$line")" "$calls" "$(field errors "$line")" >>"$rounds_file"
        printf '  round %d %-15s %8.0f req/s  CPU %5.2f  %8s req/CPU-s  p50 %7s ms  p99 %7s ms  AS calls %s  (loadgen CPU %s)\n' \
            "$round" "$t" "$rps" "$busy" "$per_cpu" "$(field p50_ms "$line")" "$(field p99_ms "$line")" "$calls" \
            "$(field client_cpu "$line")"
    done
done

# --- results --------------------------------------------------------------------------------
results=$OUT/results.tsv
printf 'target\trps\tper_cpu_s\tp50_ms\tp99_ms\tas_calls_rounds\tas_calls_startup\tas_calls_priming\n' >"$results"
col() { awk -F'\t' -v t="$1" -v c="$2" 'NR > 1 && $2 == t { print $c }' "$rounds_file" | median; }
for t in $PEERS; do
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$(col "$t" 3)" "$(col "$t" 5)" "$(col "$t" 6)" "$(col "$t" 7)" \
        "$(awk -F'\t' -v t="$t" 'NR > 1 && $2 == t { s += $8 } END { print s + 0 }' "$rounds_file")" \
        "${startup_calls[$t]}" "${prime_calls[$t]}" >>"$results"
done
echo
echo "e2e/peers: medians of $ROUNDS rounds (GET /hello, $CONNECTIONS connections, load average $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "| target | req/s | requests per target CPU-second | p50 ms | p99 ms | AS calls in the rounds | AS calls at start-up | AS calls priming $TOKENS RPTs |"
echo "|---|---|---|---|---|---|---|---|"
awk -F'\t' 'NR > 1 { printf "| %s | %.0f | %.0f | %.3f | %.3f | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8 }' "$results"
echo
# The goal: uma-proxy >= 2x every auth peer per CPU-second, p99 no worse.
awk -F'\t' 'NR > 1 { cpu[$1] = $3; p99[$1] = $5 }
    END {
        for (u in cpu) if (u ~ /^uma-/) for (p in cpu) if (p == "oathkeeper" || p == "enforcer") {
            r = cpu[u] / cpu[p]
            printf "e2e/peers: %s / %s per CPU-second %.2fx (goal >= 2: %s), p99 %.3f vs %.3f ms (%s)\n",
                u, p, r, (r >= 2 ? "met" : "MISSED"), p99[u], p99[p], (p99[u] <= p99[p] ? "no worse" : "WORSE")
        }
        if ("nginx" in cpu) for (u in cpu) if (u != "nginx")
            printf "e2e/peers: %s / nginx (no auth) per CPU-second %.2f\n", u, cpu[u] / cpu["nginx"]
    }' "$results" | sort
"$PY" uma-bench/peers/chart.py "$results" "$CHART" \
    "$ROUNDS rounds x $DURATION, $CONNECTIONS connections, $TOKENS RPTs, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)"
say "chart: $CHART; per-round figures: $rounds_file; AS calls logged: $relay_log"
for t in $PEERS; do
    case $t in
        uma-introspect | uma-jwt) stop_server "${target_pids[$t]}" ;;
    esac
done
stop_server "$upstream_pid"
say "done in $((SECONDS - started)) s"
