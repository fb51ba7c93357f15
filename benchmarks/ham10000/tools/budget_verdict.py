#!/usr/bin/env python
"""The SSL budget study's targets (fixed before any test figure), checked once its label regime
has finished: met, missed, or not yet measurable, with the numbers.

    python benchmarks/ham10000/tools/budget_verdict.py \
        --choice benchmarks/ham10000/ssl_budget/state/labels/choice.json \
        OUT/low OUT/mid OUT/full [--out verdict.json]

Each folder is a finished ``ssl-derm benchmark`` of one part (``score.sh`` runs ``labels.sh``
with all four inits, so the benchmark's run keys have checked every run's weights): its
``results.csv`` and ``paired.csv``, test balanced accuracy with paired 95% bootstrap intervals
over test lesions and seeds. Together they hold label fractions 0.03, 0.1 and 1.0. Which SSL
init is "the best" was decided on the *validation* probe before any test figure, and is read
from ``--choice`` (a record naming ``best``, ``second`` and each one's ``--init``); nothing here
chooses on test. An init's name comes from its checkpoint's task chain, so two checkpoints can
share one (v2's multitask checkpoint and the shipped file are both ``imagenet+multitask``): every
reported run of a chosen init must have been trained from the recorded ``--init`` (its
``metrics.json``'s ``init`` field, the only field read there), or the tool refuses. Targets, the
best SSL init minus ImageNet on test balanced accuracy:

- label fractions 0.03 and 0.1: the paired interval above zero;
- label fraction 1.0: not behind, the interval's lower end above -0.03;
- moonshot: at least +0.05 at 0.03.

The second SSL init and random are reported beside it against ImageNet (no target). A fraction
reads "not all runs in" until random, ImageNet and both SSL inits have the same seeds there (5
at 0.03 and 0.1, 3 at 1.0) and the paired rows cover them; a complete fraction without a paired
row or with an undefined interval is an error, never a verdict.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # protocol_verdict.py, beside this script
from protocol_verdict import _paired  # noqa: E402

SEEDS = {0.03: 5, 0.1: 5, 1.0: 3}
NOT_BEHIND = -0.03
MOONSHOT = 0.05


def _target(frac: float) -> tuple[str, object]:
    if frac < 1.0:
        return "interval above zero", lambda p: p["lo"] > 0
    return f"not behind: lower end above {NOT_BEHIND:+.2f}", lambda p: p["lo"] > NOT_BEHIND


def load(folders: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every folder's results.csv and paired.csv, as one pair of tables (``results`` gains the
    run's folder as ``path``); a label fraction held by two folders is refused (each part of the
    study runs its own fractions)."""
    results, paired = [], []
    for folder in folders:
        for name in ("results.csv", "paired.csv"):
            if not (folder / name).is_file():
                raise SystemExit(f"{folder / name}: not found; run the benchmark (score.sh) first")
        r = pd.read_csv(folder / "results.csv")
        if r["fold"].nunique() > 1:
            raise SystemExit(f"{folder}: a --folds benchmark; the targets are defined on one split")
        results.append(r.assign(_folder=str(folder), path=[str(folder / run) for run in r["run"]]))
        paired.append(pd.read_csv(folder / "paired.csv"))
    results = pd.concat(results, ignore_index=True)
    twice = results.groupby("label_fraction")["_folder"].nunique()
    if (twice > 1).any():
        raise SystemExit(f"label fraction(s) {', '.join(f'{f:g}' for f in twice[twice > 1].index)} in two folders")
    return results.drop(columns="_folder"), pd.concat(paired, ignore_index=True)


def check_weights(results: pd.DataFrame, inits: dict[str, str]) -> None:
    """Refuse unless every reported run of a chosen init (name -> its ``--init``) was trained from
    that ``--init``: the ``init`` field of the run's metrics.json, nothing else of it read."""
    wrong = []
    for name, init in inits.items():
        for path in results.loc[results["init"] == name, "path"]:
            recorded = json.loads((Path(path) / "metrics.json").read_text()).get("init")
            if recorded != init:
                wrong.append(f"{path} ({recorded})")
    if wrong:
        raise SystemExit(f"{len(wrong)} run(s) not trained from the chosen --init: {', '.join(wrong[:3])}")


def verdict(results: pd.DataFrame, paired: pd.DataFrame, best: str, second: str) -> list[dict]:
    """One row per label fraction and init compared with ImageNet (the best SSL init's rows carry
    the target), plus the moonshot row."""
    if not best or not second or best == second:
        raise SystemExit(f"the choice must name two different SSL inits (best {best!r}, second {second!r})")
    out = []
    for frac in sorted(SEEDS):
        at = results[results["label_fraction"] == frac]
        seeds = {i: set(at.loc[at["init"] == i, "seed"]) for i in ("random", "imagenet", best, second)}
        same = len({frozenset(v) for v in seeds.values()}) == 1
        complete = same and len(seeds["imagenet"]) >= SEEDS[frac]
        for init, role in ((best, "best SSL"), (second, "second SSL"), ("random", "random")):
            p = _paired(paired, init, "imagenet", frac)
            if complete:
                bounds = None if p is None else (p["diff"], p["lo"], p["hi"])
                if bounds is None or any(math.isnan(v) for v in bounds) or p["seeds"] < SEEDS[frac]:
                    raise SystemExit(
                        f"{init} at {frac:g}: every run is in, but its paired row to imagenet is "
                        f"missing, undefined or short of seeds ({p}); report the benchmark again"
                    )
            target, test = _target(frac) if role == "best SSL" else ("", None)
            out.append(
                {
                    "label_fraction": frac,
                    "role": role,
                    "init": init,
                    "seeds": len(seeds[init]),
                    "diff": None if p is None else float(p["diff"]),
                    "lo": None if p is None else float(p["lo"]),
                    "hi": None if p is None else float(p["hi"]),
                    "target": target,
                    "met": bool(test(p)) if complete and test is not None else None,  # None: no target, or runs missing
                    "complete": complete,
                }
            )
        if frac == 0.03:
            b = out[-3]
            met = bool(b["diff"] >= MOONSHOT) if complete else None
            out.append({**b, "target": f"moonshot: at least {MOONSHOT:+.2f}", "met": met})
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
    check_weights(results, {n: choice["inits"][n] for n in (choice["best"], choice["second"])})
    rows = verdict(results, paired, choice["best"], choice["second"])
    print(markdown(rows), end="")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
