#!/usr/bin/env python
"""The SSL budget study's targets (fixed before any test figure), checked once its label regime
has finished: met, missed, or not yet measurable, with the numbers.

    python benchmarks/ham10000/tools/budget_verdict.py \
        --choice benchmarks/ham10000/ssl_budget/state/labels/choice.json \
        OUT/low OUT/mid OUT/full [--out verdict.json]

Each folder is a finished ``ssl-derm benchmark`` (its ``results.csv`` and ``paired.csv``: test
balanced accuracy, paired 95% bootstrap intervals over test lesions and seeds); together they
hold label fractions 0.03, 0.1 and 1.0. Which SSL init is "the best" was decided on the
*validation* probe before any test figure, and is read from ``--choice`` (a record naming
``best`` and ``second``); nothing here chooses on test. Targets, the best SSL init minus
ImageNet on test balanced accuracy:

- label fractions 0.03 and 0.1: the paired interval above zero;
- label fraction 1.0: not behind, the interval's lower end above -0.03;
- moonshot: at least +0.05 at 0.03.

The second SSL init and random are reported beside it against ImageNet (no target). A fraction
reads "not all runs in" until random, ImageNet and both SSL inits have their seeds there (5 at
0.03 and 0.1, 3 at 1.0).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

SEEDS = {0.03: 5, 0.1: 5, 1.0: 3}
NOT_BEHIND = -0.03
MOONSHOT = 0.05


def _target(frac: float) -> tuple[str, object]:
    if frac < 1.0:
        return "interval above zero", lambda p: p["lo"] > 0
    return f"not behind: lower end above {NOT_BEHIND:+.2f}", lambda p: p["lo"] > NOT_BEHIND


def load(folders: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every folder's results.csv and paired.csv, as one pair of tables; a label fraction held by
    two folders is refused (each part of the study runs its own fractions)."""
    results, paired = [], []
    for folder in folders:
        for name in ("results.csv", "paired.csv"):
            if not (folder / name).is_file():
                raise SystemExit(f"{folder / name}: not found; run (or --report-only) the benchmark first")
        r = pd.read_csv(folder / "results.csv")
        if r["fold"].nunique() > 1:
            raise SystemExit(f"{folder}: a --folds benchmark; the targets are defined on one split")
        results.append(r.assign(_folder=str(folder)))
        paired.append(pd.read_csv(folder / "paired.csv"))
    results = pd.concat(results, ignore_index=True)
    twice = results.groupby("label_fraction")["_folder"].nunique()
    if (twice > 1).any():
        raise SystemExit(f"label fraction(s) {', '.join(f'{f:g}' for f in twice[twice > 1].index)} in two folders")
    return results.drop(columns="_folder"), pd.concat(paired, ignore_index=True)


def verdict(results: pd.DataFrame, paired: pd.DataFrame, best: str, second: str) -> list[dict]:
    """One row per label fraction and init compared with ImageNet (the best SSL init's rows carry
    the target), plus the moonshot row."""
    seeds = results.groupby(["init", "label_fraction"])["seed"].nunique()
    out = []
    for frac in sorted(SEEDS):
        complete = all(seeds.get((i, frac), 0) >= SEEDS[frac] for i in ("random", "imagenet", best, second))
        for init, role in ((best, "best SSL"), (second, "second SSL"), ("random", "random")):
            at = (paired["init"] == init) & (paired["baseline"] == "imagenet") & (paired["label_fraction"] == frac)
            row = paired[at]
            p = None if row.empty else row.iloc[0].to_dict()
            target, test = _target(frac) if role == "best SSL" else ("", None)
            met = None
            if complete and test is not None:
                met = p is not None and bool(test(p))
            out.append(
                {
                    "label_fraction": frac,
                    "role": role,
                    "init": init,
                    "seeds": int(seeds.get((init, frac), 0)),
                    "diff": None if p is None else float(p["diff"]),
                    "lo": None if p is None else float(p["lo"]),
                    "hi": None if p is None else float(p["hi"]),
                    "target": target,
                    "met": met,  # None: no target, or not every run is in
                    "complete": complete,
                }
            )
        if frac == 0.03:
            b = out[-3]
            met = None if not complete else b["diff"] is not None and b["diff"] >= MOONSHOT
            out.append({**b, "role": "best SSL", "target": f"moonshot: at least {MOONSHOT:+.2f}", "met": met})
    return out


def markdown(rows: list[dict]) -> str:
    def num(v):
        return "–" if v is None else f"{v:+.3f}"

    lines = [
        "| label fraction | init | seeds | minus ImageNet, test | 95% CI (paired) | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = "" if r["lo"] is None else f"[{num(r['lo'])}, {num(r['hi'])}]"
        if r["target"]:
            met = {True: "yes", False: "**no**", None: "not all runs in"}[r["met"]]
        else:
            met = "" if r["complete"] else "not all runs in"
        name = f"{r['init']} ({r['role']})" if r["role"] != "random" else "random"
        lines.append(
            f"| {r['label_fraction']:g} | {name} | {r['seeds']} | {num(r['diff'])} | {ci} | {r['target']} | {met} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", type=Path, nargs="+", help="the finished benchmark folders of the label regime's parts")
    ap.add_argument("--choice", type=Path, required=True, help="the record of the SSL inits chosen on validation")
    ap.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    choice = json.loads(args.choice.read_text())
    if "validation" not in choice.get("on", ""):
        said = choice.get("on")
        raise SystemExit(f"{args.choice}: the SSL inits must be chosen on validation (its 'on' says: {said})")
    results, paired = load(args.folders)
    rows = verdict(results, paired, choice["best"], choice["second"])
    print(markdown(rows), end="")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
