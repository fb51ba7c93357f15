#!/usr/bin/env python
"""Did the screened encoders stop learning within their budget? Reads each pretraining
run's TensorBoard log under PRETRAIN (one folder per run) once, keeps its validation
curves in the run's ``curves.csv`` (step, tag, value: every ``val/`` scalar, logged once
per epoch: the held-out pretext loss and the kNN monitor's balanced accuracy on the
validation split), and prints a markdown table of them per run: first, best and last
epoch. The CSV outlives the log (``tools/protocol_state.py`` keeps it), so the table can
be rebuilt in a later session.

    python benchmarks/ham10000/tools/pretrain_curves.py runs/ham10000_cpu/pretrain \\
        > runs/ham10000_cpu/screening/curves.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

CURVES = "curves.csv"


def read_log(run: Path) -> pd.DataFrame | None:
    """Every ``val/`` scalar of the run's TensorBoard log(s), or None without one."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted((run / "tensorboard").rglob("events.out.tfevents.*"))
    if not files:
        return None
    rows = []
    for f in files:  # a resumed run writes a second file: the later value of a step wins
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            if tag.startswith("val/"):
                rows += [{"step": e.step, "tag": tag, "value": e.value} for e in acc.Scalars(tag)]
    table = pd.DataFrame(rows, columns=["step", "tag", "value"])
    return table.drop_duplicates(["step", "tag"], keep="last").sort_values(["tag", "step"], kind="stable")


def curves(run: Path) -> pd.DataFrame | None:
    """The run's ``curves.csv``, written from its log the first time once the run is
    finished (its ``DONE`` file, written by run.sh); a run still
    going is read from its log and left unwritten."""
    path = run / CURVES
    if path.is_file():
        return pd.read_csv(path)
    table = read_log(run)
    if table is None or table.empty:
        return None
    if (run / "DONE").is_file():
        table.to_csv(path, index=False, float_format="%.6g")
    return table


def _trace(series: pd.Series, higher: bool) -> str:
    """first -> last value, with the best epoch's when it is neither."""
    values = series.to_numpy()
    best = int(values.argmax() if higher else values.argmin())
    text = f"{values[0]:.3f} → {values[-1]:.3f}"
    if 0 < best < len(values) - 1:
        text += f" (best {values[best]:.3f}, epoch {best + 1})"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pretrain", help="folder of pretraining runs (one sub-folder per run)")
    args = ap.parse_args()
    lines = [
        "| run | epochs | held-out pretext loss, first → last epoch | kNN balanced accuracy (validation), "
        "first → last epoch | kNN still rising at the end |",
        "|---|---|---|---|---|",
    ]
    for run in sorted(p for p in Path(args.pretrain).iterdir() if p.is_dir()):
        table = curves(run)
        if table is None:
            continue
        loss = table[table["tag"] == "val/loss"]["value"]
        knn = table[table["tag"] == "val/knn_balanced_accuracy"]["value"]
        if loss.empty or knn.empty:
            continue
        rising = "yes" if len(knn) > 1 and knn.iloc[-1] >= knn.max() - 1e-9 and knn.iloc[-1] > knn.iloc[-2] else "no"
        lines.append(f"| {run.name} | {len(knn)} | {_trace(loss, False)} | {_trace(knn, True)} | {rising} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
