#!/usr/bin/env python
"""The SSL budget curve: frozen-probe balanced accuracy on the *validation* split against
images seen in pretraining, one line per task continued from ImageNet, ImageNet itself as a
horizontal band. Reads a ``knn_probe.py --out`` file (every probe with its 95% interval over
validation lesions and its paired difference to ImageNet) and names each encoder by its run:
``imagenet+TASK`` is the v2 screen's 300-step run (19,200 images seen), ``imagenet+TASK_80k``
a budget run of 80,000.

    python benchmarks/ham10000/tools/budget_curve.py PROBE.json --md curve.md --png curve.png

Validation only: nothing here reads a test score.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

SCREEN_IMAGES = 300 * 64  # the v2 screen: 300 steps of 64 images
PROBES = {
    "linear_probe_adabn": "linear probe, AdaBN",
    "knn_adabn": "kNN, AdaBN",
    "linear_probe_stored": "linear probe, stored BN",
    "knn_stored": "kNN, stored BN",
}


def budget_of(name: str) -> tuple[str, int] | None:
    """(task, images seen) of an encoder continued from ImageNet, from its run's name."""
    m = re.fullmatch(r"imagenet\+(\w+?)(?:_(\d+)k)?", name)
    if m is None:
        return None
    return m.group(1), int(m.group(2)) * 1000 if m.group(2) else SCREEN_IMAGES


def _cell(row: dict, probe: str) -> str:
    lo, hi = row[f"{probe}_ci95"]
    return f"{row[probe]:.3f} [{lo:.3f}, {hi:.3f}]"


def _diff(row: dict, probe: str) -> str:
    key = f"{probe}_diff_to_imagenet"
    if key not in row:
        return ""
    lo, hi = row[f"{probe}_diff_ci95"]
    verdict = "better" if lo > 0 else "worse" if hi < 0 else "tie"
    return f"{row[key]:+.3f} [{lo:+.3f}, {hi:+.3f}] {verdict}"


def markdown(results: list[dict]) -> str:
    base = next(r for r in results if r["init"] == "imagenet")
    curve = sorted((budget_of(r["init"]) + (r,) for r in results if budget_of(r["init"])), key=lambda t: t[:2])
    lines = [
        "| task | images seen | " + " | ".join(f"{p} | vs ImageNet" for p in PROBES.values()) + " |",
        "|---|---:|" + "---|---|" * len(PROBES),
        "| imagenet (no pretraining) | 0 | " + " | ".join(f"{_cell(base, p)} | " for p in PROBES) + " |",
    ]
    for task, seen, row in curve:
        cells = " | ".join(f"{_cell(row, p)} | {_diff(row, p)}" for p in PROBES)
        lines.append(f"| {task} | {seen:,} | {cells} |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path, probe: str = "linear_probe_adabn") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = next(r for r in results if r["init"] == "imagenet")
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    lo, hi = base[f"{probe}_ci95"]
    ax.axhspan(lo, hi, color="grey", alpha=0.25, label="ImageNet (95% interval)")
    ax.axhline(base[probe], color="grey", lw=1)
    tasks: dict[str, list[tuple[int, dict]]] = {}
    for r in results:
        found = budget_of(r["init"])
        if found:
            tasks.setdefault(found[0], []).append((found[1], r))
    for task, points in sorted(tasks.items()):
        points.sort(key=lambda t: t[0])
        xs = [x for x, _ in points]
        ys = [r[probe] for _, r in points]
        err = [
            [r[probe] - r[f"{probe}_ci95"][0] for _, r in points],
            [r[f"{probe}_ci95"][1] - r[probe] for _, r in points],
        ]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=f"imagenet+{task}")
    ax.set_xscale("log")
    ax.set_xlabel("images seen in pretraining (log scale)")
    ax.set_ylabel(f"validation balanced accuracy ({PROBES[probe]})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("probe", type=Path, help="knn_probe.py --out file, ImageNet first")
    ap.add_argument("--md", type=Path, help="Markdown table to write (default: print it)")
    ap.add_argument("--png", type=Path, help="plot of the AdaBN linear probe against images seen")
    args = ap.parse_args(argv)
    results = json.loads(args.probe.read_text())["results"]
    table = markdown(results)
    if args.md:
        args.md.write_text(table)
    else:
        print(table, end="")
    if args.png:
        plot(results, args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
