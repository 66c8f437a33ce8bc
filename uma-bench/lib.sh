# Shared helpers of run-e2e.sh and run-proxy.sh; sourced after `cd` to the workspace root,
# with BIN, TOKENS, CLIENT_CPU and LOADGEN_ARGS set.

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
    taskset -c "$cpu" "${prefix[@]}" "$BIN/uma-bench-server" --mode "$mode" --listen 127.0.0.1:0 \
        --tokens "$TOKENS" --token-file "$tmp/$name.tokens" "${args[@]}" \
        >"$tmp/$name.out" 2>"$tmp/$name.err" &
    pid=$!
    pids+=("$pid")
    local waited=0
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
