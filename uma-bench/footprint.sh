#!/usr/bin/env bash
# The in-process bench's variants (benches/middleware.rs) under valgrind: instructions per
# request, the 64-byte lines of code that run on every request (the request's instruction-cache
# footprint), and the misses per request of a simulated 32 KiB, 8-way L1 instruction cache with
# 64-byte lines (cachegrind), the size of the project's VM's (an AMD EPYC of family 25: 512
# lines per core). A request whose lines do not fit misses on lines that would otherwise stay.
#
# Each variant runs twice, for N and N + 10,000 requests (`UMA_BENCH_ONLY=VARIANT:N`), and
# uma-bench/footprint.py takes the difference: the set-up cancels out. Under valgrind the token's
# SHA-256 runs aws-lc's software code (valgrind hides the CPU's SHA extensions), which adds about
# 2,700 instructions and 80 lines per request to the variants that hash the token; the native
# path (`sha2` with the SHA extensions) runs about 22 lines.
#
# Usage: uma-bench/footprint.sh [VARIANT...]   (default: bare noop minimal ideal layer wrapped tenants)
# Settings (environment): N=1000 TOP=0 (with TOP=k, each variant's k largest functions).
# Needs valgrind (apt-get install valgrind) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-1000}
TOP=${TOP:-0}
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(bare noop minimal ideal layer wrapped tenants)
command -v valgrind >/dev/null || { echo "footprint.sh: needs valgrind" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "== building the bench (release)"
if ! cargo bench --locked --bench middleware --features axum,jwt --no-run >"$out/build" 2>&1; then
    cat "$out/build" >&2
    echo "footprint.sh: the bench did not build" >&2
    exit 1
fi
bench=$(sed -nE 's/.*Executable .*\(([^)]*deps\/middleware-[0-9a-f]+)\).*/\1/p' "$out/build" | tail -1)
[ -x "$bench" ] || { echo "footprint.sh: no bench binary in cargo's output" >&2; exit 1; }

# I1 misses in cachegrind's summary (on stderr).
i1_misses() { grep -E '^==[0-9]+== I1 +misses:' "$1" | tr -d , | awk '{print $4}'; }

for v in "${variants[@]}"; do
    pids=()
    for n in "$N" $((N + 10000)); do
        UMA_BENCH_ONLY="$v:$n" valgrind --tool=callgrind --dump-instr=yes \
            --callgrind-out-file="$out/$v.$n.out" "$bench" --bench >/dev/null 2>"$out/$v.$n.err" &
        pids+=($!)
        UMA_BENCH_ONLY="$v:$n" valgrind --tool=cachegrind --cache-sim=yes \
            --I1=32768,8,64 --D1=32768,8,64 --LL=33554432,16,64 \
            --cachegrind-out-file=/dev/null "$bench" --bench >/dev/null 2>"$out/$v.$n.cache" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || {
            tail -n 20 "$out/$v".*.err "$out/$v".*.cache >&2
            echo "footprint.sh: variant $v failed under valgrind" >&2
            exit 1
        }
    done
    small=$(i1_misses "$out/$v.$N.cache")
    large=$(i1_misses "$out/$v.$((N + 10000)).cache")
    [ -n "$small" ] && [ -n "$large" ] || { echo "footprint.sh: no I1 summary for $v" >&2; exit 1; }
    printf '%-8s ' "$v"
    python3 uma-bench/footprint.py "$out/$v.$N.out" "$out/$v.$((N + 10000)).out" 10000 "$TOP" \
        | sed "1s/\$/, $(( (large - small) / 10000 )) L1 instruction-cache misses/"
done
