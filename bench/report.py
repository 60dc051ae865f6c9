#!/usr/bin/env python3
"""Turns bench/run.sh's measurements into Markdown tables (medians, ratios to the peers).

usage: report.py RECORDS.tsv

RECORDS.tsv: one line per measured run, tab-separated: work, tool, repetition, wall seconds,
peak RSS in KiB. Works and tools keep the order they first appear in. A tool whose name starts
with "syncengine" is ours; every other tool of the same work is a peer. Prints a summary table
(one line per work: syncengine, the fastest peer, the ratio) and the full table (every tool).
"""
import statistics
import sys
from collections import OrderedDict


def fmt_s(s: float) -> str:
    return f"{s:.2f} s" if s < 100 else f"{s:.0f} s"


def fmt_mib(kib: float) -> str:
    return f"{kib / 1024:.0f} MiB" if kib >= 10 * 1024 else f"{kib / 1024:.1f} MiB"


def main() -> None:
    works: "OrderedDict[str, OrderedDict[str, list]]" = OrderedDict()
    with open(sys.argv[1]) as fh:
        for line in fh:
            if not line.strip():
                continue
            work, tool, _rep, wall, rss = line.rstrip("\n").split("\t")[:5]
            works.setdefault(work, OrderedDict()).setdefault(tool, []).append((float(wall), float(rss)))

    med = {}
    for work, tools in works.items():
        for tool, runs in tools.items():
            walls = [w for w, _ in runs]
            rsss = [r for _, r in runs]
            med[(work, tool)] = (statistics.median(walls), statistics.median(rsss), min(walls), max(walls), len(runs))

    def ours(tool: str) -> bool:
        return tool.startswith("syncengine")

    print("| work | syncengine | fastest peer | ratio |")
    print("|---|---|---|---|")
    for work, tools in works.items():
        for tool in tools:
            if not ours(tool):
                continue
            w, r, *_ = med[(work, tool)]
            peers = [(med[(work, t)][0], t) for t in tools if not ours(t)]
            label = work if sum(ours(t) for t in tools) == 1 else f"{work} ({tool})"
            if peers:
                pw, pt = min(peers)
                pr = med[(work, pt)][1]
                ratio = f"{w / pw:.2f}×" if pw > 0 else "n/a"
                print(f"| {label} | {fmt_s(w)}, {fmt_mib(r)} | {pt} {fmt_s(pw)}, {fmt_mib(pr)} | {ratio} |")
            else:
                print(f"| {label} | {fmt_s(w)}, {fmt_mib(r)} | (no peer) | |")
    print()
    print("| work | tool | runs | wall, median (min–max) | peak RSS, median | syncengine ÷ tool |")
    print("|---|---|---|---|---|---|")
    for work, tools in works.items():
        se = [t for t in tools if ours(t)]
        for tool in tools:
            w, r, lo, hi, n = med[(work, tool)]
            spread = f" ({lo:.2f}–{hi:.2f})" if n > 1 else ""
            ratio = ""
            if not ours(tool) and se and w > 0:
                ratio = " · ".join(f"{med[(work, s)][0] / w:.2f}×" for s in se)
            print(f"| {work} | {tool} | {n} | {fmt_s(w)}{spread} | {fmt_mib(r)} | {ratio} |")


if __name__ == "__main__":
    main()
