#!/usr/bin/env python3
"""The chart of run-peers.sh: chart.py RESULTS.tsv OUT.png SUBTITLE

RESULTS.tsv has a header and one row per target: target, rps, per_cpu_s, p50_ms, p99_ms,
as_calls_rounds, as_calls_startup, as_calls_priming (the medians over the rounds). Draws the
requests per target CPU-second and the p50/p99 latencies side by side, the AS calls made in
the measured rounds written on the bars.
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {
    "nginx": "nginx\n(no auth)",
    "uma-introspect": "uma-proxy\nintrospection",
    "uma-jwt": "uma-proxy\nlocal JWT",
    "oathkeeper": "Oathkeeper\nintrospection",
    "enforcer": "Keycloak enforcer\n(Quarkus)",
}


def main():
    results, out, subtitle = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(results) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    names = [LABELS.get(r["target"], r["target"]) for r in rows]
    colors = ["#999999" if r["target"] == "nginx" else "#1f77b4" if r["target"].startswith("uma-") else "#ff7f0e" for r in rows]
    per_cpu = [float(r["per_cpu_s"]) for r in rows]
    p50 = [float(r["p50_ms"]) for r in rows]
    p99 = [float(r["p99_ms"]) for r in rows]

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5.2))
    bars = a.bar(names, per_cpu, color=colors)
    a.set_title("requests per target CPU-second (higher is better)")
    a.set_ylabel("requests / CPU-second")
    for bar, r in zip(bars, rows):
        a.annotate(
            f"{float(r['per_cpu_s']):,.0f}\nAS calls: {r['as_calls_rounds']}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    a.margins(y=0.18)

    x = range(len(rows))
    w = 0.38
    b.bar([i - w / 2 for i in x], p50, w, label="p50", color="#8fbbd9")
    b.bar([i + w / 2 for i in x], p99, w, label="p99", color="#1f4e79")
    for i in x:
        b.annotate(f"{p99[i]:.2f}", (i + w / 2, p99[i]), ha="center", va="bottom", fontsize=8)
    b.set_xticks(list(x))
    b.set_xticklabels(names)
    b.set_title("latency at saturation (lower is better)")
    b.set_ylabel("ms")
    b.legend()
    b.margins(y=0.12)
    for ax in (a, b):
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"GET /hello through each target, Keycloak as AS — {subtitle}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
