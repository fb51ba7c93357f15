#!/usr/bin/env python
"""Markdown table of a screening (run.sh's, or studies/screen_pretext.sh's): per encoder, kNN and linear-probe balanced
accuracy on the validation split (95% bootstrap interval) and the paired difference to
ImageNet (95% interval; an interval that contains 0 is a tie), with stored BatchNorm
statistics and re-estimated ones (AdaBN), plus each pretraining run's wall time; with
ROOT/probe_vs_random.json (the scratch encoders probed with random first), their paired
difference to random weights too.

    python benchmarks/ham10000/tools/screen_table.py runs/screen
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _cell(row: dict, probe: str) -> str:
    ci = row[f"{probe}_ci95"]
    return f"{row[probe]:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _diff(row: dict, probe: str, ref: str) -> str:
    key = f"{probe}_diff_to_{ref}"
    if key not in row:
        return ""
    lo, hi = row[f"{probe}_diff_ci95"]
    verdict = "tie" if lo <= 0 <= hi else ("better" if lo > 0 else "worse")
    return f"{row[key]:+.3f} [{lo:+.3f}, {hi:+.3f}] {verdict}"


def main() -> None:
    root = Path(sys.argv[1])
    probe = json.loads((root / "probe.json").read_text())
    ref = probe["meta"]["reference"]
    lines = [
        f"Validation split, {probe['meta']['n_queries']} images; bank per class: {probe['meta']['bank_per_class']}.",
        "",
        "| encoder | wall s | kNN | kNN - ImageNet | linear probe | LP - ImageNet |",
        "|---|---:|---|---|---|---|",
    ]
    adabn = []
    for row in probe["results"]:
        # a run's folder: ROOT/pretrain/<init> (run.sh) or ROOT/<task>
        # (studies/screen_pretext.sh, ImageNet-continued runs only)
        walls = [root / "pretrain" / row["init"] / "wall_s", root / row["init"].removeprefix("imagenet+") / "wall_s"]
        wall = next((w for w in walls if w.is_file()), walls[0])
        cells = [
            row["init"],
            wall.read_text().strip() if wall.is_file() else "",
            _cell(row, "knn_stored"),
            _diff(row, "knn_stored", ref),
            _cell(row, "linear_probe_stored"),
            _diff(row, "linear_probe_stored", ref),
        ]
        lines.append("| " + " | ".join(cells) + " |")
        adabn.append(
            [
                row["init"],
                _cell(row, "knn_adabn"),
                _diff(row, "knn_adabn", ref),
                _cell(row, "linear_probe_adabn"),
                _diff(row, "linear_probe_adabn", ref),
            ]
        )
    lines += [
        "",
        "With BatchNorm statistics re-estimated on 2,000 training images (AdaBN), for every encoder:",
        "",
        "| encoder | kNN | kNN - ImageNet | linear probe | LP - ImageNet |",
        "|---|---|---|---|---|",
        *("| " + " | ".join(cells) + " |" for cells in adabn),
    ]
    scratch = root / "probe_vs_random.json"  # the scratch encoders against random weights, paired
    if scratch.is_file():
        versus = json.loads(scratch.read_text())
        lines += [
            "",
            "Encoders pretrained from scratch against random weights (AdaBN), paired on the same draws:",
            "",
            "| encoder | kNN - random | LP - random |",
            "|---|---|---|",
        ]
        ref = versus["meta"]["reference"]
        for row in versus["results"][1:]:
            knn, lp = _diff(row, "knn_adabn", ref), _diff(row, "linear_probe_adabn", ref)
            lines.append(f"| {row['init']} | {knn} | {lp} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
