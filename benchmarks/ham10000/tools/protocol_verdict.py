#!/usr/bin/env python
"""The HAM10000 protocol's targets (issue: the benchmark done right), checked on a finished
``ssl-derm benchmark`` folder: met, missed, or not yet measurable, with the numbers.

    python benchmarks/ham10000/tools/protocol_verdict.py runs/ham10000_cpu/benchmark [--seeds 3] [--out verdict.json]

Which SSL init is "the best" is decided on the *validation* split, once for all label
fractions: the init with the highest validation balanced accuracy of its reported runs,
averaged per label fraction, then over the fractions. Test is only read for the chosen
init's figures, never to choose it. Targets, on test balanced accuracy:

1. ImageNet at label fraction 1.0: at least 0.65.
2. The best SSL init ahead of ImageNet at every label fraction. The issue asks for the paired
   95% interval above zero at 0.1 only; here it is required at every fraction, since a point
   estimate ahead whose interval contains zero is a tie, and the table says so.
3. The best scratch SSL init (pretrained from random weights) at least +0.05 over random at
   every label fraction, with its paired 95% interval above zero.

Until every init of the benchmark's ``config.yaml`` has every seed at every label fraction,
each target reads "not all runs in". One split only (``--folds`` benchmarks: refused).
Prints a markdown table; ``--out`` also writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import yaml

from ssl_derm.finetune.benchmark import BASELINES

TIE = "a tie: ahead on the point estimate only"  # a note of the verdict's rows, and the table's word for them


def is_ssl(init: str) -> bool:
    return init not in BASELINES


def is_scratch(init: str) -> bool:
    return is_ssl(init) and not init.startswith("imagenet+")


def best_on_validation(results: pd.DataFrame, keep) -> tuple[str | None, dict[str, float]]:
    """The init (among those ``keep`` accepts, and run at every label fraction) with the
    highest validation balanced accuracy: its reported runs' mean per label fraction, then
    the mean over the fractions. Returns it and every candidate's score."""
    rows = results[results["init"].map(keep)]
    per_fraction = rows.groupby(["init", "label_fraction"])["val_balanced_accuracy"].mean().unstack()
    per_fraction = per_fraction.reindex(columns=sorted(results["label_fraction"].unique())).dropna()
    means = per_fraction.mean(axis=1).sort_values(ascending=False)
    return (means.index[0] if len(means) else None), {k: round(float(v), 4) for k, v in means.items()}


def _paired(paired: pd.DataFrame, init: str, base: str, frac: float) -> dict | None:
    row = paired[(paired["init"] == init) & (paired["baseline"] == base) & (paired["label_fraction"] == frac)]
    return None if row.empty else row.iloc[0].to_dict()


def verdict(
    results: pd.DataFrame,
    paired: pd.DataFrame,
    seeds: int,
    fractions: list[float] | None = None,
    inits: int | None = None,
) -> list[dict]:
    """One row per target and label fraction: what was measured and whether it is met
    (None until every one of ``inits`` inits has ``seeds`` seeds at every one of ``fractions``;
    by default, the inits and fractions in ``results``)."""
    fractions = sorted(fractions or results["label_fraction"].unique())
    runs = results.groupby(["init", "label_fraction"])["seed"].nunique()
    names = results["init"].unique()
    expected = [(i, f) for i in names for f in fractions]
    complete = len(names) >= (inits or 0) and bool(expected) and all(runs.get(k, 0) >= seeds for k in expected)
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

    ba = results[(results["init"] == "imagenet") & (results["label_fraction"] == 1.0)]["balanced_accuracy"]
    mean = float(ba.mean()) if len(ba) else None
    note = "" if 1.0 in fractions else "label fraction 1.0 is not in this benchmark"
    row("imagenet >= 0.65", 1.0, "imagenet", mean, None, None, mean is not None and mean >= 0.65, note=note)
    best_ssl, ssl_means = best_on_validation(results, is_ssl)
    best_scratch, scratch_means = best_on_validation(results, is_scratch)
    for frac in fractions:
        best, means = best_ssl, ssl_means
        p = _paired(paired, best, "imagenet", frac) if best else None
        if p is None:
            row("best SSL > imagenet", frac, best, None, None, None, False, means, "no paired comparison")
        else:
            # The issue asks "ahead" at 1.0 and an interval above zero at 0.1. A point estimate
            # ahead whose interval contains zero is a tie (the protocol's rule), so both
            # fractions need the interval above zero (decided 2026-11-26, before the 1.0 runs).
            met = p["lo"] > 0
            note = "interval above zero required"
            if not met and p["diff"] > 0:
                note += f"; {TIE}"
            row("best SSL > imagenet", frac, best, p["diff"], p["lo"], p["hi"], met, means, note)
        best, means = best_scratch, scratch_means
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
        if r["met"] is False and TIE in r.get("note", ""):
            met = f"**no** ({TIE})"
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
    if results["fold"].nunique() > 1:
        raise SystemExit(f"{args.benchmark}: a --folds benchmark; the targets are defined on one split")
    paired = pd.read_csv(args.benchmark / "paired.csv")
    fractions, inits = None, None
    config = args.benchmark / "config.yaml"
    if config.is_file():  # what the benchmark was asked to run: every init at every fraction
        asked = yaml.safe_load(config.read_text())
        fractions, inits = [float(f) for f in asked["label_fractions"]], len(asked["inits"])
    rows = verdict(results, paired, args.seeds, fractions, inits)
    print(markdown(rows), end="")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
