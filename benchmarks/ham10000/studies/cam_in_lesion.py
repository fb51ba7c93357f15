#!/usr/bin/env python
"""Does self-supervised pretraining make the classifier look at the lesion? For each
fine-tuned model, ``ssl-derm explain`` on the test split it was trained with (recorded
in model.ckpt, matched by content) with every image (``--n 0``), then the share of the
Grad-CAM mass inside the HAM10000 lesion mask, per model and per init.

    python benchmarks/ham10000/studies/cam_in_lesion.py --data ../shared/data/ham10000 --out runs/cam_in_lesion \\
        runs/bench/runs/*/*/seed*/model.ckpt
    python benchmarks/ham10000/studies/cam_in_lesion.py --out runs/cam_in_lesion imagenet=a/model.ckpt ssl=b/model.ckpt

A model is ``PATH`` (named by its init, read from the checkpoint) or ``NAME=PATH``.
Each explain run goes to ``OUT/runs/<name>-<n>`` and is reused when its summary.json
exists (the script resumes). Writes ``OUT/cam_in_lesion.csv`` (one row per model) and
``OUT/cam_in_lesion.md`` (the rows, then the mean per init over its models / seeds).

Columns: ``cam_in_lesion`` is the mean over test images of sum(cam * mask) / sum(cam)
(maps >= 0, rescaled to [0, 1] per image by pytorch-grad-cam); ``lesion_area`` the mean
lesion share of the image, which is what a uniform map would score (chance);
``excess`` = cam_in_lesion - lesion_area with its 95% bootstrap interval over images
(paired per image); ``centre_in_lesion`` the score of a fixed map peaked at the image
centre (dermoscopy centres the lesion, so a centre-biased model beats chance without
looking at the lesion); ``correct`` / ``wrong`` the mean cam_in_lesion of correctly and
wrongly classified images.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ssl_derm.cli import main as ssl_derm

BOOT = 2000


def _init_of(path: Path) -> str:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    chain = ckpt.get("init_chain")
    if chain:
        return str(chain)
    init = str(ckpt.get("config", {}).get("init", ""))
    return init if init in ("random", "imagenet") else Path(init).stem or path.parent.name


def _models(specs: list[str]) -> list[tuple[str, Path, dict]]:
    out = []
    for spec in specs:
        name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        path = Path(path)
        if not path.is_file():
            sys.exit(f"cam_in_lesion: {path}: no such model.ckpt")
        cfg = torch.load(path, map_location="cpu", weights_only=False).get("config", {})
        out.append((name or _init_of(path), path, cfg))
    return out


def _excess_interval(table: pd.DataFrame, rng: np.random.Generator) -> tuple[float, float, float]:
    d = (table["cam_in_lesion"] - table["lesion_area"]).dropna().to_numpy()
    if len(d) == 0:
        return float("nan"), float("nan"), float("nan")
    draws = d[rng.integers(0, len(d), (BOOT, len(d)))].mean(1)
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(d.mean()), float(lo), float(hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("models", nargs="+", metavar="[NAME=]MODEL.ckpt")
    ap.add_argument("--data", help="labelled source with masks/ (default: the bundled sample)")
    ap.add_argument("--masks", help="mask folder (default: DATA/masks)")
    ap.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    ap.add_argument("--method", default="gradcam", choices=["gradcam", "gradcam++", "eigencam", "scorecam"])
    ap.add_argument("--n", type=int, default=0, help="images per model (default 0: the whole split)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()

    out = Path(args.out)
    rng = np.random.default_rng(0)
    rows = []
    for k, (name, path, cfg) in enumerate(_models(args.models)):
        run = out / "runs" / f"{name.replace('/', '_')}-{k}"
        if not (run / "summary.json").is_file():
            cmd = ["explain", "--checkpoint", str(path), "--split", args.split, "--n", str(args.n)]
            cmd += ["--method", args.method, "--out", str(run), "--overwrite"]
            cmd += ["--data", args.data] if args.data else []
            cmd += ["--masks", args.masks] if args.masks else []
            cmd += [] if args.progress else ["--no-progress"]
            if ssl_derm(cmd) != 0:
                sys.exit(f"cam_in_lesion: explain failed for {path}")
        summary = json.loads((run / "summary.json").read_text())
        table = pd.read_csv(run / "explain.csv")
        excess, lo, hi = _excess_interval(table, rng)
        overall = summary["overall"]
        rows.append(
            {
                "init": name,
                "label_fraction": cfg.get("label_fraction", 1.0),
                "seed": cfg.get("seed", 0),
                "method": summary["method"],
                "images": summary["n"],
                "masked": overall["masked"],
                "cam_in_lesion": overall["cam_in_lesion"],
                "lesion_area": overall["lesion_area"],
                "centre_in_lesion": overall.get("centre_in_lesion"),
                "excess": excess,
                "excess_lo": lo,
                "excess_hi": hi,
                "correct": summary["correct"]["cam_in_lesion"],
                "wrong": summary["wrong_predictions"]["cam_in_lesion"],
                "model": str(path),
            }
        )
        print(f"{name}: cam_in_lesion {overall['cam_in_lesion']} (chance {overall['lesion_area']}), {run}")

    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "cam_in_lesion.csv", index=False)

    def fmt(v, spec=".3f"):
        return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)

    lines = [
        f"CAM mass inside the lesion mask ({args.method}, split {args.split}); chance = lesion area.",
        "",
        "| init | label fraction | seed | images | CAM in lesion | lesion area | centre map | excess [95% CI] "
        "| correct | wrong |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = f"{fmt(r['excess'], '+.3f')} [{fmt(r['excess_lo'], '+.3f')}, {fmt(r['excess_hi'], '+.3f')}]"
        lines.append(
            f"| {r['init']} | {r['label_fraction']} | {r['seed']} | {r['masked']} | {fmt(r['cam_in_lesion'])} | "
            f"{fmt(r['lesion_area'])} | {fmt(r['centre_in_lesion'])} | {ci} | {fmt(r['correct'])} | "
            f"{fmt(r['wrong'])} |"
        )
    lines += ["", "| init | label fraction | models | CAM in lesion | excess |", "|---|---|---|---|---|"]
    for (init, frac), g in table.groupby(["init", "label_fraction"], sort=False):
        sd = {c: f" ± {g[c].std(ddof=0):.3f}" if len(g) > 1 else "" for c in ("cam_in_lesion", "excess")}
        lines.append(
            f"| {init} | {frac} | {len(g)} | {g['cam_in_lesion'].mean():.3f}{sd['cam_in_lesion']} | "
            f"{g['excess'].mean():+.3f}{sd['excess']} |"
        )
    (out / "cam_in_lesion.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
