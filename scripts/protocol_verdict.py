#!/usr/bin/env python
"""The HAM10000 protocol's targets (issue: the benchmark done right), checked on a finished
``ssl-derm benchmark`` folder: met, missed, or not yet measurable, with the numbers.

    python scripts/protocol_verdict.py runs/ham10000_cpu/benchmark [--seeds 3] [--out verdict.json]

Which SSL init is "the best" is decided on the *validation* split: the init whose reported
runs have the highest mean validation balanced accuracy at that label fraction. Test is only
read for the chosen init's figures, never to choose it. Targets, on test balanced accuracy:

1. ImageNet at label fraction 1.0: at least 0.65.
2. The best SSL init ahead of ImageNet at every label fraction; at 0.1, its paired 95%
   interval above zero.
3. The best scratch SSL init (pretrained from random weights) at least +0.05 over random at
   every label fraction, with its paired 95% interval above zero.

Prints a markdown table; ``--out`` also writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

BASELINES = ("random", "imagenet")


def is_ssl(init: str) -> bool:
    return init not in BASELINES


def is_scratch(init: str) -> bool:
    return is_ssl(init) and not init.startswith("imagenet+")


def best_on_validation(results: pd.DataFrame, frac: float, keep) -> tuple[str | None, dict[str, float]]:
    """The init (among those ``keep`` accepts) with the highest mean validation balanced
    accuracy of its reported runs at label fraction ``frac``, and every candidate's mean."""
    rows = results[(results["label_fraction"] == frac) & results["init"].map(keep)]
    means = rows.groupby("init")["val_balanced_accuracy"].mean().sort_values(ascending=False)
    return (means.index[0] if len(means) else None), {k: round(float(v), 4) for k, v in means.items()}


def _paired(paired: pd.DataFrame, init: str, base: str, frac: float) -> dict | None:
    row = paired[(paired["init"] == init) & (paired["baseline"] == base) & (paired["label_fraction"] == frac)]
    return None if row.empty else row.iloc[0].to_dict()


def verdict(results: pd.DataFrame, paired: pd.DataFrame, seeds: int) -> list[dict]:
    """One row per target and label fraction: what was measured and whether it is met."""
    fractions = sorted(results["label_fraction"].unique())
    runs = results.groupby(["init", "label_fraction"])["seed"].nunique()
    complete = bool(len(runs)) and bool((runs >= seeds).all())
    out = []

    def row(target, frac, init, value, lo, hi, met, chosen_by=None, note=""):
        out.append(
            {
                "target": target,
                "label_fraction": frac,
                "init": init,
                "value": value,
                "lo": lo,
                "hi": hi,
                "seeds": int(runs.get((init, frac), 0)) if init else 0,
                "met": met if complete else None,  # None: not every run is in yet
                "validation_means": chosen_by or {},
                "note": note,
            }
        )

    if 1.0 in fractions:
        ba = results[(results["init"] == "imagenet") & (results["label_fraction"] == 1.0)]["balanced_accuracy"]
        mean = float(ba.mean()) if len(ba) else None
        row("imagenet >= 0.65", 1.0, "imagenet", mean, None, None, mean is not None and mean >= 0.65)
    for frac in fractions:
        best, means = best_on_validation(results, frac, is_ssl)
        p = _paired(paired, best, "imagenet", frac) if best else None
        if p is None:
            row("best SSL > imagenet", frac, best, None, None, None, False, means, "no paired comparison")
        else:
            need_interval = frac == 0.1
            met = p["diff"] > 0 and (p["lo"] > 0 if need_interval else True)
            note = "interval above zero required" if need_interval else "ahead required"
            row("best SSL > imagenet", frac, best, p["diff"], p["lo"], p["hi"], met, means, note)
        best, means = best_on_validation(results, frac, is_scratch)
        p = _paired(paired, best, "random", frac) if best else None
        if p is None:
            row("best scratch SSL >= random + 0.05", frac, best, None, None, None, False, means, "no scratch init")
        else:
            met = p["diff"] >= 0.05 and p["lo"] > 0
            row("best scratch SSL >= random + 0.05", frac, best, p["diff"], p["lo"], p["hi"], met, means)
    return out


def markdown(rows: list[dict]) -> str:
    def num(v, signed=False):
        return "–" if v is None or v != v else (f"{v:+.3f}" if signed else f"{v:.3f}")

    lines = [
        "| target | label fraction | init (best on validation) | seeds | test | 95% CI | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        signed = r["target"] != "imagenet >= 0.65"
        ci = "" if r["lo"] is None else f"[{num(r['lo'], signed)}, {num(r['hi'], signed)}]"
        met = {True: "yes", False: "**no**", None: "not all runs in"}[r["met"]]
        lines.append(
            f"| {r['target']} | {r['label_fraction']:g} | {r['init'] or '–'} | {r['seeds']} | "
            f"{num(r['value'], signed)} | {ci} | {met} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("benchmark", type=Path, help="the ssl-derm benchmark folder (results.csv, paired.csv)")
    ap.add_argument("--seeds", type=int, default=3, help="reported seeds every init must have (default 3)")
    ap.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    for name in ("results.csv", "paired.csv"):
        if not (args.benchmark / name).is_file():
            raise SystemExit(f"{args.benchmark / name}: not found; run the benchmark first")
    results = pd.read_csv(args.benchmark / "results.csv")
    paired = pd.read_csv(args.benchmark / "paired.csv")
    rows = verdict(results, paired, args.seeds)
    print(markdown(rows), end="")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
