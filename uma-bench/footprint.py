#!/usr/bin/env python3
"""Instructions and code lines per request, from two callgrind profiles of one variant.

Usage: footprint.py SMALL.out LARGE.out REQUESTS [TOP]

SMALL.out and LARGE.out are `valgrind --tool=callgrind --dump-instr=yes` profiles of the same
variant run for N and N + REQUESTS requests (`UMA_BENCH_ONLY=VARIANT:N`): what differs between
them is REQUESTS requests' worth, the set-up cancels out. Prints the instructions per request
and the 64-byte lines of code that run on every request (an instruction counts when it ran at
least 0.98 times per request): the request's instruction-cache footprint. With TOP, also the
functions holding the most of those lines.
"""

import collections
import re
import sys

LINE = 64


def parse(path):
    """Executions per (object, function, instruction address)."""
    names = {}
    counts = collections.Counter()
    obj = fn = None
    last = 0
    after_call = False
    for raw in open(path, encoding="utf-8", errors="replace"):
        line = raw.rstrip("\n")
        head = re.match(r"^(ob|fn|cfn|cob)=\((\d+)\)(?: (.*))?$", line)
        if head:
            kind, ident, name = head.groups()
            key = ("ob" if kind in ("ob", "cob") else "fn", ident)
            if name:
                names[key] = name
            if kind == "ob":
                obj = names.get(key, ident)
            elif kind == "fn":
                fn = names.get(key, ident)
            continue
        if line.startswith("calls="):
            after_call = True
            continue
        if not line or line[0] not in "0123456789+-*":
            continue
        fields = line.split()
        pos = fields[0]
        if pos == "*":
            addr = last
        elif pos[0] in "+-":
            addr = last + int(pos, 0)
        else:
            try:
                addr = int(pos, 0)
            except ValueError:
                continue
        if after_call:
            # The inclusive cost of a call, at the call's address: not executions (and not a
            # position the next line is relative to).
            after_call = False
            continue
        last = addr
        if len(fields) >= 3:
            counts[(obj, fn, addr)] += int(fields[2])
    return counts


def main():
    small, large = parse(sys.argv[1]), parse(sys.argv[2])
    requests = int(sys.argv[3])
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    instructions = sum(large.values()) - sum(small.values())
    lines = collections.defaultdict(set)
    for (obj, fn, addr), n in large.items():
        if (n - small.get((obj, fn, addr), 0)) / requests >= 0.98:
            lines[(obj, addr // LINE)].add(fn)
    print(
        f"{instructions / requests:.0f} instructions per request, "
        f"{len(lines)} lines of code run on every request ({len(lines) * LINE} bytes)"
    )
    share = collections.Counter()
    for fns in lines.values():
        for fn in fns:
            share[fn] += 1 / len(fns)
    for fn, n in share.most_common(top):
        print(f"  {n:6.1f}  {fn}")


if __name__ == "__main__":
    main()
