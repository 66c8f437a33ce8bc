# Shared helpers of run-e2e.sh and run-proxy.sh; sourced after `cd` to the workspace root,
# with BIN, TOKENS, CLIENT_CPU and LOADGEN_ARGS set (and N1, N2, CG_CONNECTIONS and OUT for
# `profile`).

tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# start_server NAME CPU MODE [ARGS...] [-- PREFIX...]: starts uma-bench-server in the
# background with ARGS (such as --upstream URL), pinned to CPU (behind PREFIX such as
# valgrind); sets $url and $pid once it is listening.
start_server() {
    local name=$1 cpu=$2 mode=$3
    shift 3
    local args=() prefix=()
    while [ $# -gt 0 ]; do
        if [ "$1" = -- ]; then
            shift
            prefix=("$@")
            break
        fi
        args+=("$1")
        shift
    done
    start_cmd "$name" "$cpu" "${prefix[@]}" "$BIN/uma-bench-server" --mode "$mode" --listen 127.0.0.1:0 \
        --tokens "$TOKENS" --token-file "$tmp/$name.tokens" "${args[@]}"
}

# start_cmd NAME CPU COMMAND...: runs COMMAND in the background pinned to CPU, its output in
# $tmp/NAME.out and $tmp/NAME.err; sets $url and $pid once it prints `listening on URL`.
start_cmd() {
    local name=$1 cpu=$2
    shift 2
    taskset -c "$cpu" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    pid=$!
    pids+=("$pid")
    wait_listening "$name" "$pid"
}

# proxy_toml ISSUER LINES: an uma-proxy configuration with the shipped defaults plus what a
# deployment must say: LINES (where to listen, `upstream` or `mode`, ...), the AS at ISSUER
# (uma-bench-server --mode as: client bench-api, its secret in UMA_BENCH_SECRET) and the
# resource `hello` at /hello (GET needs `read`).
proxy_toml() {
    cat <<TOML
realm = "bench"
$2
[authorization_server]
issuer = "$1"
client_id = "bench-api"
client_secret_env = "UMA_BENCH_SECRET"
allow_http = true

[[resources]]
name = "hello"
owner = "alice"
path = "/hello"
scopes = { GET = ["read"] }
TOML
}

# start_uma_proxy NAME CPU [PREFIX...]: the uma-proxy binary with $tmp/NAME.toml, pinned to
# CPU (behind PREFIX such as valgrind); sets $url and $pid once it serves.
start_uma_proxy() {
    local name=$1 cpu=$2
    shift 2
    UMA_BENCH_SECRET=bench-api-secret-41c9 start_cmd "$name" "$cpu" "$@" "$BIN/uma-proxy" \
        --config "$tmp/$name.toml"
}

# wait_listening NAME PID: waits until $tmp/NAME.out has its `listening on URL` line (the
# process PID writes it once it serves); sets $url. Exits with NAME.err if PID dies first.
wait_listening() {
    local name=$1 pid=$2 waited=0
    until grep -q '^listening on ' "$tmp/$name.out" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "the $name server exited:" >&2
            cat "$tmp/$name.err" >&2
            exit 1
        fi
        sleep 0.2
        waited=$((waited + 1))
        if [ "$waited" -gt 3000 ]; then
            echo "the $name server did not start" >&2
            exit 1
        fi
    done
    url=$(sed -n 's/^listening on //p' "$tmp/$name.out" | head -n1)
}

# stop_server PID: SIGINT, then wait for a clean exit (valgrind writes its output then).
stop_server() {
    kill -INT "$1"
    wait "$1" || true
}

# loadgen ARGS...: runs uma-loadgen pinned to CLIENT_CPU; prints its machine-readable line.
loadgen() {
    # shellcheck disable=SC2086 # LOADGEN_ARGS holds separate words
    taskset -c "$CLIENT_CPU" "$BIN/uma-loadgen" $LOADGEN_ARGS "$@" | tail -n1
}

# field NAME LINE: the value of NAME=... in a loadgen line.
field() {
    tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"
}

# cpu_ticks PID: utime + stime of a process, in clock ticks.
cpu_ticks() {
    awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# median: the median of the numbers on standard input.
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# profile NAME CPU MODE [ARGS...]: a steady-state callgrind profile of one uma-bench-server. It is sent
# N1 requests (with its token file), then callgrind_control zeroes the counters, N2 - N1 more
# requests follow and the counters are dumped. Prints the instructions per request and the
# costliest functions (self) per request; sets $profile_file.
profile() {
    local name=$1 cpu=$2 mode=$3
    shift 3
    rm -f "$OUT/profile.$name.out" "$OUT/profile.$name.out".*
    start_server "prof-$name" "$cpu" "$mode" "$@" -- valgrind --tool=callgrind --callgrind-out-file="$OUT/profile.$name.out"
    profile_running "$name" "$tmp/prof-$name.tokens"
}

# profile_running NAME TOKEN_FILE: `profile` of a server already started (at $url, process
# $pid) under `valgrind --tool=callgrind --callgrind-out-file=$OUT/profile.NAME.out`, sent
# the tokens of TOKEN_FILE; stops it.
profile_running() {
    local name=$1 tokens=$2
    local n=$((N2 - N1)) base="$OUT/profile.$name.out" ir
    loadgen --url "$url/hello" --connections "$CG_CONNECTIONS" --requests "$N1" --token-file "$tokens" >/dev/null
    callgrind_control --zero "$pid" >/dev/null 2>&1
    loadgen --url "$url/hello" --connections "$CG_CONNECTIONS" --requests "$n" --token-file "$tokens" >/dev/null
    callgrind_control --dump "$pid" >/dev/null 2>&1
    stop_server "$pid"
    profile_file="$base.1"
    ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$profile_file")
    echo "  $name: $((ir / n)) instructions per request; costliest functions (self), per request:"
    callgrind_annotate --threshold=100 "$profile_file" 2>/dev/null |
        sed -n 's/^ *\([0-9,]*\) ([ 0-9.%]*) *\(.*\) \[.*$/\1 \2/p' |
        awk -v n="$n" '{ gsub(",", "", $1) } $1 / n >= 1 && $2 !~ /below|libc_start|lang_start|block_on|enter_runtime|backtrace|:main$|0x0/ && c++ < 25 {
            v = $1 / n; $1 = ""; printf "    %7.0f %s\n", v, substr($0, 2) }'
}

# inclusive FILE REGEX: the functions of a profile whose names match REGEX, by inclusive cost
# per request (at least 50), costliest first.
inclusive() {
    local n=$((N2 - N1))
    callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null |
        sed -n 's/^ *\([0-9,]*\) ([ 0-9.%]*) *\(.*\) \[.*$/\1 \2/p' |
        awk -v n="$n" -v re="$2" '{ gsub(",", "", $1) } $2 ~ re && $1 / n >= 50 && c++ < 30 {
            v = $1 / n; $1 = ""; printf "    %7.0f %s\n", v, substr($0, 2) }'
}

# The token digest's SHA-256 compression function (aws-lc-rs; the sha2 crate without
# `rustls`), counted on its own: valgrind hides the CPU's SHA extensions, so it runs in software
# there and costs far more than natively.
SHA_BLOCK='sha256_block_data_order|sha2::sha256::.*compress'

# self_cost FILE REGEX: the instructions (self cost) of the functions of a callgrind output
# file whose names match REGEX, summed.
self_cost() {
    callgrind_annotate --threshold=100 "$1" 2>/dev/null |
        sed -n 's/^ *\([0-9,]*\) ([ 0-9.%]*) *\(.*\) \[.*$/\1 \2/p' |
        awk -v re="$2" '{ gsub(",", "", $1) } $2 ~ re { s += $1 } END { printf "%d", s }'
}

# callgrind_total FILE: the instructions a callgrind output file counted.
callgrind_total() {
    local ir
    ir=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$1")
    if [ -z "$ir" ]; then ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$1"); fi
    echo "$ir"
}
