#!/usr/bin/env python
"""Tabulate studies/recipes_ham10000_cpu.sh: per recipe and label fraction, validation and
test balanced accuracy (mean ± std over seeds) and the paired difference to the plain
recipe, seed by seed (the same seeds and split for every recipe).

    python benchmarks/ham10000/studies/recipes_table.py runs/recipes benchmarks/ham10000/recipes
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def _pm(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {0 if pd.isna(std) else std:.3f}"


def main() -> None:
    root, dest = Path(sys.argv[1]), Path(sys.argv[2])
    frames = []
    for csv in sorted(root.glob("*/fraction*/results.csv")):
        t = pd.read_csv(csv)
        t["recipe"] = csv.parent.parent.name
        frames.append(t)
    if not frames:
        raise SystemExit(f"no results under {root}")
    runs = pd.concat(frames)[["recipe", "label_fraction", "seed", "val_balanced_accuracy", "balanced_accuracy"]]
    runs = runs.rename(columns={"val_balanced_accuracy": "val", "balanced_accuracy": "test"})
    plain = runs[runs["recipe"] == "plain"].set_index(["label_fraction", "seed"])
    lines = [
        "| label fraction | recipe | seeds | val BA | test BA | val - plain (per seed) | test - plain (per seed) |"
    ]
    lines.append("|---|---|---|---|---|---|---|")
    rows = []
    for (frac, recipe), g in runs.groupby(["label_fraction", "recipe"], sort=True):
        g = g.set_index(["label_fraction", "seed"])
        both = g.index.intersection(plain.index)
        dv = (g.loc[both, "val"] - plain.loc[both, "val"]).round(3).tolist()
        dt = (g.loc[both, "test"] - plain.loc[both, "test"]).round(3).tolist()
        row = {
            "label_fraction": frac,
            "recipe": recipe,
            "seeds": len(g),
            "val_mean": g["val"].mean(),
            "val_std": g["val"].std(),
            "test_mean": g["test"].mean(),
            "test_std": g["test"].std(),
            "val_diff": sum(dv) / len(dv) if dv else None,
            "test_diff": sum(dt) / len(dt) if dt else None,
        }
        rows.append(row)
        vd = "" if recipe == "plain" else f"{row['val_diff']:+.3f} {dv}"
        td = "" if recipe == "plain" else f"{row['test_diff']:+.3f} {dt}"
        lines.append(
            f"| {frac:g} | {recipe} | {len(g)} | {_pm(row['val_mean'], row['val_std'])} | "
            f"{_pm(row['test_mean'], row['test_std'])} | {vd} | {td} |"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).round(4).to_csv(dest.with_suffix(".csv"), index=False)
    runs.round(4).to_csv(dest.parent / (dest.name + "_runs.csv"), index=False)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
