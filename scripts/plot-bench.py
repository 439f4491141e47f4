#!/usr/bin/env python3
"""Plot metadwr-bench results: build/bench/results.json -> docs/bench.png.

Left: overhead ratio metadwr/plain per workload (bars; whiskers are the
25th-75th percentile of the per-round ratios; dashed marks are the targets).
Right: recovery time against schema size.

usage: plot-bench.py RESULTS.json OUT.png   (needs matplotlib:
       python3 -m venv build/venv && build/venv/bin/pip install matplotlib)
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {
    "commit-heavy": "#4c72b0",
    "two connections": "#64b5cd",
    "schema-heavy": "#8172b2",
    "read-heavy": "#55a868",
    "control (A/A)": "#aaaaaa",
    "open": "#937860",
    "speedtest1": "#c44e52",
}


def main(src, dst):
    with open(src) as f:
        r = json.load(f)
    rows = [a for a in r.get("ab", []) if a.get("ratio") is not None and "error" not in a]
    rec = [x for x in r.get("recovery", []) if "error" not in x]
    m = r.get("machine", {})

    if not rows:
        rows = []
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(15, max(5.5, 0.42 * len(rows) + 2.2)), gridspec_kw={"width_ratios": [1.7, 1]}
    )

    # Overhead ratios, top to bottom in run order.
    labels = [a["label"] for a in rows][::-1]
    ratios = [a["ratio"] for a in rows][::-1]
    colors = [COLORS.get(a["group"], "#777777") for a in rows][::-1]
    y = list(range(len(rows)))
    ax1.barh(y, [v - 1.0 for v in ratios], left=1.0, color=colors, height=0.62)
    # The spread of the per-round ratios, drawn as its own interval (it need
    # not contain the ratio of the pooled medians).
    p25 = [a.get("paired_ratio_p25") or a["ratio"] for a in rows][::-1]
    p75 = [a.get("paired_ratio_p75") or a["ratio"] for a in rows][::-1]
    ax1.hlines(y, p25, p75, color="#333333", linewidth=1.2)
    ax1.plot(p25, y, "|", color="#333333", markersize=8)
    ax1.plot(p75, y, "|", color="#333333", markersize=8)
    lo = [max(0.0, r_ - q) for r_, q in zip(ratios, p25)]
    hi = [max(0.0, q - r_) for r_, q in zip(ratios, p75)]
    cpu = [a.get("cpu_ratio") for a in rows][::-1]
    ax1.plot([c if c is not None else float("nan") for c in cpu], y, "D", color="black",
             markersize=4, label="CPU-time ratio", zorder=5)
    for yi, a, h in zip(y, rows[::-1], hi):
        t = a.get("target")
        if t:
            ax1.plot([t, t], [yi - 0.42, yi + 0.42], color="#d62728", linestyle="--", linewidth=1.6)
        right = max(a["ratio"] + h, a["ratio"], 1.0, a.get("cpu_ratio") or 1.0)
        ax1.text(right + 0.006, yi, f"{a['ratio']:.3f}", va="center", ha="left",
                 fontsize=8, color="#222222")
    ax1.axvline(1.0, color="black", linewidth=0.8)
    ax1.set_yticks(y)
    ax1.set_yticklabels(labels, fontsize=8.5)
    allv = ([1.0] + ratios + [a.get("target") or 1.0 for a in rows]
            + [r_ + h for r_, h in zip(ratios, hi)] + [r_ - l for r_, l in zip(ratios, lo)]
            + [c for c in cpu if c is not None])
    ax1.set_xlim(min(0.9, min(allv) - 0.02), max(allv) + 0.06 * (max(allv) - min(allv)) + 0.05)
    ax1.set_xlabel("wall-time ratio metadwr / plain (median of interleaved runs; whiskers: p25-p75 of per-round ratios)")
    ax1.set_title("Overhead per workload (red dashes: target)")
    ax1.grid(axis="x", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for g, c in COLORS.items()
               if any(a["group"] == g for a in rows)]
    names = [g for g in COLORS if any(a["group"] == g for a in rows)]
    handles += [plt.Line2D([], [], marker="D", color="black", linestyle="", markersize=4),
                plt.Line2D([], [], color="#d62728", linestyle="--")]
    names += ["CPU-time ratio", "target"]
    if rows:
        ax1.legend(handles, names, loc="lower right", fontsize=8)

    # Recovery time against schema size.
    if rec:
        n = [x["tables"] for x in rec]
        series = [
            ("recover_ms", "PRAGMA meta_recover (reported)", "o-", "#c44e52"),
            ("heal_open_ms", "heal on open + first query", "s-", "#dd8452"),
            ("open_metadwr_ms", "healthy first query, metadwr", "^--", "#4c72b0"),
            ("open_plain_ms", "healthy first query, plain", "v:", "#55a868"),
        ]
        for key, label, style, color in series:
            ax2.plot(n, [x.get(key) for x in rec], style, label=label, color=color)
        ax2.axhline(20, color="#d62728", linestyle="--", linewidth=1.2)
        ax2.plot([1000], [20], marker="x", color="#d62728")
        ax2.text(n[0], 21.5, "target: < 20 ms at 1,000 tables", color="#d62728", fontsize=8)
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("tables in the schema")
        ax2.set_ylabel("ms (median)")
        ax2.set_title("Recovery time after zeroing page 1")
        ax2.grid(True, which="both", alpha=0.3)
        ax2.legend(fontsize=8, loc="lower right")
    else:
        ax2.set_axis_off()

    fig.suptitle(
        f"metadwr vs plain SQLite {m.get('sqlite', '')} - {m.get('nproc', '?')} x {m.get('cpu', '?')}, "
        f"kernel {m.get('kernel', '?')}, {r.get('rounds')} rounds"
        + (" (quick)" if r.get("quick") else ""),
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
