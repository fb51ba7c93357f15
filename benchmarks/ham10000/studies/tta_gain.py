#!/usr/bin/env python
"""What test-time augmentation (the 8 flips and 90-degree rotations) adds to test
balanced accuracy, per fine-tuned model: the same model scored on the test split it
was trained with (recorded in model.ckpt, matched by content), without and with TTA,
with the paired difference and its 95% bootstrap interval over the test images.

    python benchmarks/ham10000/studies/tta_gain.py --data ../shared/data/ham10000 \
        --models runs/recipes/plain/fraction*/runs/*/*/seed*/model.ckpt --out benchmarks/ham10000/tta

Writes OUT.csv (one row per model) and OUT.md (the rows, then the mean gain per
init and label fraction with the interval pooled over seeds: every resample draws
test images once and applies them to all seeds of the group).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import balanced_accuracy_score

from ssl_derm.checkpoint import init_name
from ssl_derm.data import ImagePipeline
from ssl_derm.data.labeled import prepare_labeled
from ssl_derm.finetune.classifier import predict_proba
from ssl_derm.finetune.evaluate import rows_to_score
from ssl_derm.finetune.targets.classification import load_classifier
from ssl_derm.stats import balanced_accuracy_draws

BOOT = 2000


def _mean_std(values: pd.Series) -> str:
    return f"{values.mean():.3f} ± {values.std(ddof=0):.3f}"


def score(model_path: Path, data: str) -> dict:
    model, ckpt = load_classifier(model_path)
    cfg = ckpt["config"]
    classes = list(ckpt["class_names"])
    lab = prepare_labeled(
        data, ckpt["image_size"], seed=cfg.get("seed", 0), classes=classes, progress=False, resize=cfg.get("resize")
    )
    rows = rows_to_score(lab, ckpt, "test", None, data)
    images = lab.bank.gather(rows["row"].to_numpy())
    labels = rows["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    pipeline = ImagePipeline(ckpt["normalization"])
    start = time.perf_counter()
    plain = predict_proba(model, images, pipeline, "cpu").argmax(1)
    mid = time.perf_counter()
    tta = predict_proba(model, images, pipeline, "cpu", tta=True).argmax(1)
    end = time.perf_counter()
    return {
        "model": str(model_path),
        "init": init_name(cfg["init"]),
        "label_fraction": cfg.get("label_fraction", 1.0),
        "seed": cfg.get("seed", 0),
        "test_images": len(labels),
        "balanced_accuracy": balanced_accuracy_score(labels, plain),
        "balanced_accuracy_tta": balanced_accuracy_score(labels, tta),
        "images_per_s": len(labels) / (mid - start),
        "images_per_s_tta": len(labels) / (end - mid),
        "_labels": labels,
        "_plain_hits": (plain == labels).astype(float),
        "_tta_hits": (tta == labels).astype(float),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--out", required=True, help="output path without suffix")
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = [score(Path(m), args.data) for m in args.models]
    for r in rows:
        ba, tta = r["balanced_accuracy"], r["balanced_accuracy_tta"]
        print(f"{r['init']} {r['label_fraction']} seed {r['seed']}: {ba:.3f} -> tta {tta:.3f}")
    table = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])
    table["gain"] = table["balanced_accuracy_tta"] - table["balanced_accuracy"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False)

    rng = np.random.default_rng(0)
    summary = []
    for (init, frac), group in table.groupby(["init", "label_fraction"]):
        members = [rows[i] for i in group.index]
        n = members[0]["test_images"]
        assert all(m["test_images"] == n and np.array_equal(m["_labels"], members[0]["_labels"]) for m in members)
        weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(BOOT)])
        diffs = np.mean(
            [
                balanced_accuracy_draws(m["_labels"], m["_tta_hits"], weights)
                - balanced_accuracy_draws(m["_labels"], m["_plain_hits"], weights)
                for m in members
            ],
            axis=0,
        )
        lo, hi = np.percentile(diffs, [2.5, 97.5])
        summary.append(
            {
                "init": init,
                "label_fraction": frac,
                "seeds": len(members),
                "balanced_accuracy": _mean_std(group["balanced_accuracy"]),
                "with_tta": _mean_std(group["balanced_accuracy_tta"]),
                "gain": f"{group['gain'].mean():+.3f} [{lo:+.3f}, {hi:+.3f}]",
                "verdict": "tie" if lo <= 0 <= hi else ("gain" if lo > 0 else "loss"),
            }
        )
    lines = [
        "| init | label fraction | seeds | test BA | with TTA | gain [95% CI] | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = ("init", "label_fraction", "seeds", "balanced_accuracy", "with_tta", "gain", "verdict")
    lines += ["| " + " | ".join(str(s[k]) for k in keys) + " |" for s in summary]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
