#!/usr/bin/env python
"""A long benchmark's progress, from validation fields only.

A finished run's ``metrics.json`` holds its test scores at the top level (resuming needs
them), so reading one to see how far a protocol has come shows test figures before the end.
This view reads only the fields below and prints one row per run: which init, label
fraction and run (a reported seed or a selection point, and a longer run of the budget
rule), the epoch kept, the epochs run of the budget, and the validation score of the kept
epoch. Test fields are never read into the table.

    python benchmarks/ham10000/tools/protocol_progress.py runs/ham10000_cpu        # or its benchmark/ folder
    python benchmarks/ham10000/tools/protocol_progress.py benchmarks/ham10000/state
    python benchmarks/ham10000/tools/protocol_progress.py --seeds benchmarks/ham10000/state   # per init and fraction
    python benchmarks/ham10000/tools/protocol_progress.py --seeds --paired-to imagenet benchmarks/ham10000/state
    python benchmarks/ham10000/tools/protocol_progress.py --seeds --paired-to imagenet \
        benchmarks/ham10000/ssl_budget/state/labels/mid benchmarks/ham10000/state/benchmark

Several folders read as one, the first holding a run winning (as ``protocol_state.py restore``
fills one folder from several, never overwriting): a study's own state, then the state whose
runs it reuses. A seed or selection point is taken whole, with its longer budget runs.

``--seeds`` summarises the reported seeds instead (a seed's longest finished budget doubling
counts, as in the benchmark's tables once its doublings are done; one still running is not
waited for): per init and fraction, how many seeds have finished and the mean ±
std of their validation scores. These are the scores early stopping chose the kept epoch by,
so they lean upwards alike for every init; the test split is what the verdict reads.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
from pathlib import Path

VALIDATION_FIELDS = ("best_epoch", "epochs_run", "epochs_budget", "best_epoch_val_balanced_accuracy")


def _metrics(path: Path) -> dict:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    m = json.loads(raw)
    return {k: m.get(k) for k in VALIDATION_FIELDS}  # nothing else leaves this function


def progress(root: Path) -> list[dict]:
    """One row per finished run under ``root``'s ``runs/`` (``root`` is a benchmark folder, or
    a protocol folder holding ``benchmark/``), sorted by init, fraction and run."""
    from ssl_derm.finetune.benchmark import kept_last_epoch  # the budget rule's own test

    runs = root / "benchmark" / "runs" if (root / "benchmark" / "runs").is_dir() else root / "runs"
    rows = []
    for path in sorted([*runs.rglob("metrics.json"), *runs.rglob("metrics.json.gz")]):
        rel = path.parent.relative_to(runs).parts  # init / fractionF / (seedN | select/POINT) [/ budget_xK]
        if len(rel) < 3:
            continue
        m = _metrics(path)
        rows.append(
            {
                "init": rel[0],
                "fraction": rel[1].removeprefix("fraction"),
                "run": "/".join(rel[2:]),
                "kept": m["best_epoch"],
                "ran": m["epochs_run"],
                "budget": m["epochs_budget"],
                "last": kept_last_epoch(m),
                "val": m["best_epoch_val_balanced_accuracy"],
            }
        )
    return sorted(rows, key=lambda r: (r["init"], r["fraction"], r["run"]))


def merged(roots: list[Path]) -> list[dict]:
    """``progress`` of several folders as one: a reported seed or a selection point (with every
    longer run of its budget rule) is taken whole from the first folder that holds it, so a later
    folder's ``budget_x2`` never joins an earlier folder's run."""

    def job(r: dict) -> tuple:
        parts = r["run"].split("/")
        return r["init"], r["fraction"], "/".join(parts[:2] if parts[0] == "select" else parts[:1])

    taken, rows = set(), []
    for root in roots:
        mine = progress(root)
        new = {job(r) for r in mine} - taken
        rows += [r for r in mine if job(r) in new]
        taken |= new
    return sorted(rows, key=lambda r: (r["init"], r["fraction"], r["run"]))


def table(rows: list[dict]) -> str:
    lines = [
        "| init | label fraction | run | epoch kept | epochs run / budget | validation balanced accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        val = "–" if r["val"] is None else f"{r['val']:.3f}"
        kept = f"{r['kept']}" + (" (the last: the budget rule runs it again, twice as long)" if r["last"] else "")
        lines.append(f"| {r['init']} | {r['fraction']} | {r['run']} | {kept} | {r['ran']} / {r['budget']} | {val} |")
    return "\n".join(lines)


def seeds_summary(rows: list[dict], reference: str | None = None) -> str:
    """Per init and fraction, the finished reported seeds' validation scores (mean ± std), and
    with ``reference``, each init's paired difference to it over the seeds both have finished
    (the same label draws), with a 95% t interval over those seeds."""
    from scipy.stats import t as student

    final: dict[tuple, tuple] = {}  # (init, fraction, seed) -> (doubling, val)
    for r in rows:
        m = re.fullmatch(r"seed(\d+)(?:/budget_x(\d+))?", r["run"])
        if m is None or r["val"] is None:
            continue
        key, doubling = (r["init"], r["fraction"], int(m[1])), int(m[2] or 1)
        if key not in final or doubling > final[key][0]:
            final[key] = (doubling, r["val"])
    groups: dict[tuple, dict] = {}
    for (init, fraction, seed), (_, val) in sorted(final.items()):
        groups.setdefault((init, fraction), {})[seed] = val
    vs = f" | minus {reference} (paired seeds), mean [95% t interval]" if reference else ""
    lines = [
        f"| init | label fraction | seeds finished | validation balanced accuracy, mean ± std{vs} |",
        "|---|---|---|---|" + ("---|" if reference else ""),
    ]
    for (init, fraction), vals in sorted(groups.items(), key=lambda kv: (float(kv[0][1]), kv[0][0])):
        v = list(vals.values())
        spread = f" ± {statistics.stdev(v):.3f}" if len(v) > 1 else ""
        seeds = ",".join(str(s) for s in vals)
        row = f"| {init} | {fraction} | {len(v)} ({seeds}) | {statistics.fmean(v):.3f}{spread} |"
        if reference:
            ref = groups.get((reference, fraction), {})
            d = [vals[s] - ref[s] for s in vals if s in ref]
            if init == reference or len(d) < 2:
                row += " |" if init == reference else f" ({len(d)} paired seed(s)) |"
            else:
                half = student.ppf(0.975, len(d) - 1) * statistics.stdev(d) / len(d) ** 0.5
                m = statistics.fmean(d)
                row += f" {m:+.3f} [{m - half:+.3f}, {m + half:+.3f}] over {len(d)} |"
        lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "folder",
        type=Path,
        nargs="+",
        help="the protocol's output folder, its benchmark/ folder, or a state folder; several read as one, "
        "the first holding a run winning",
    )
    ap.add_argument("--seeds", action="store_true", help="per init and fraction: the reported seeds' mean ± std")
    ap.add_argument("--paired-to", metavar="INIT", help="with --seeds: each init minus INIT on the same seeds")
    args = ap.parse_args(argv)
    missing = [str(f) for f in args.folder if not f.is_dir()]
    if missing:
        print(f"protocol_progress: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = merged(args.folder)
    if not rows:
        print(f"protocol_progress: no finished run under {', '.join(map(str, args.folder))}", file=sys.stderr)
        return 2
    print(seeds_summary(rows, args.paired_to) if args.seeds else table(rows))
    print(f"\n{len(rows)} finished run(s); validation fields only")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
