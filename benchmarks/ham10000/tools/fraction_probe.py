#!/usr/bin/env python
"""Frozen-encoder linear probe at each label fraction: the evaluation of Reed et al. (2022) that
separates feature quality from fine-tuning dynamics. For every init, label fraction and seed, a
class-balanced logistic regression is fitted on the frozen, L2-normalised pooled features of the
training images that fine-tuning would see (``label_fraction(table, fraction, seed)``, the same
draw as ``ssl-derm benchmark``'s seed) and scored on one split by balanced accuracy: the mean
over seeds, its std, a 95% bootstrap interval over lesions and seeds, and the paired difference
to the first init (the same resamples for both).

Features are taken with the encoder's stored BatchNorm statistics and with statistics
re-estimated on 2,000 training images (AdaBN, as ``knn_probe.py``; images only, no labels).

    python benchmarks/ham10000/tools/fraction_probe.py --data ../shared/data/ham10000 \
        --splits runs/split/splits.csv --inits imagenet random runs/pretrain/imagenet+moco/ssl.ckpt \
        --fractions 0.03 0.1 1.0 --seeds 5 --split val --cache runs/fraction_probe --out probe.json

``--split val`` is for choosing; ``--split test`` scores the test split, once, at the end.
With ``--cache DIR`` each encoder's predictions are kept in ``DIR/<split>/<name>.json`` (with
the settings, the split's fingerprint and the weights' fingerprint) and reused, so a table is
rebuilt without the checkpoints. At fraction 1.0 every seed draws the same images and the
solver is deterministic, so it is fitted once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score

from ssl_derm.checkpoint import init_seen, is_checkpoint, weights_fingerprint
from ssl_derm.data import ImagePipeline
from ssl_derm.data.labeled import prepare_labeled
from ssl_derm.data.leaks import check_unseen
from ssl_derm.data.splits import label_fraction
from ssl_derm.encoders import build_encoder, encoder_spec
from ssl_derm.finetune.run import table_sha1
from ssl_derm.pretext.knn import encoder_features, linear_probe
from ssl_derm.stats import bootstrap_interval, paired_bootstrap

sys.path.insert(0, str(Path(__file__).resolve().parent))  # knn_probe.py, beside this script
from knn_probe import _cache_name, adapt_batchnorm  # noqa: E402

STATS = ("stored", "adabn")


def seeds_at(fraction: float, seeds: int) -> list[int]:
    return [0] if fraction >= 1 else list(range(seeds))


def probe_init(init: str, lab, split: str, fractions, seeds: int, adapt, size: int) -> dict:
    """{stats: {fraction: {seed: predictions on ``split``}}} of one encoder."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = ImagePipeline(encoder_spec("efficientnet-lite0").normalization).to(device)
    torch.manual_seed(0)  # random weights are the same whatever was probed before
    encoder = build_encoder("efficientnet-lite0", init).to(device)
    train_rows, query_rows = lab.indices("train"), lab.indices(split)  # bank rows
    names, train_y = lab.rows("train")["image"].to_numpy(), lab.targets("train")  # in the same order
    out = {}
    for stats in STATS:
        if stats == "adabn":
            adapt_batchnorm(encoder, lab.bank.gather(adapt), pipeline, device=device)
        train_x = encoder_features(encoder, lab.bank.gather(train_rows), pipeline, device).cpu().numpy()
        query_x = encoder_features(encoder, lab.bank.gather(query_rows), pipeline, device).cpu().numpy()
        out[stats] = {}
        for fraction in fractions:
            out[stats][str(fraction)] = {}
            for seed in seeds_at(fraction, seeds):
                sub = label_fraction(lab.table, fraction, seed)
                keep = np.isin(names, sub.loc[sub["split"] == "train", "image"].to_numpy())
                pred = linear_probe(train_x[keep], train_y[keep], query_x, seed)  # the v2 screen's probe
                out[stats][str(fraction)][str(seed)] = pred.tolist()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--splits", required=True, help="splits.csv of the benchmark")
    ap.add_argument("--inits", nargs="+", required=True, help="the first is the reference of the differences")
    ap.add_argument("--fractions", nargs="+", type=float, default=[0.03, 0.1, 1.0])
    ap.add_argument("--seeds", type=int, default=5, help="label draws per fraction below 1 (seeds 0..N-1)")
    ap.add_argument("--split", choices=["val", "test"], default="val", help="test: once, at the end")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--adapt", type=int, default=2000, help="training images that re-estimate BatchNorm statistics")
    ap.add_argument("--cache", type=Path, help="folder of per-encoder predictions, reused when current")
    ap.add_argument("--out", help="JSON summary to write")
    args = ap.parse_args(argv)
    lab = prepare_labeled(args.data, args.image_size, splits=args.splits, progress=False)
    adapt = np.sort(np.random.default_rng(0).permutation(lab.indices("train"))[: args.adapt])
    settings = {
        "image_size": args.image_size,
        "adapt": args.adapt,
        "split": table_sha1(lab.table),
        "scored": args.split,
        "fractions": args.fractions,
        "seeds": args.seeds,
    }
    cache = args.cache / args.split if args.cache else None
    preds = {}
    for init in args.inits:
        name = _cache_name(init)
        file = cache / f"{name}.json" if cache else None
        record = json.loads(file.read_text()) if file and file.is_file() else None
        on_disk = init in ("random", "imagenet") or is_checkpoint(init)
        if record and (record["settings"] != settings or (on_disk and record["weights"] != weights_fingerprint(init))):
            record = None
        if record is None:
            check_unseen(init_seen(init), lab, f"the encoder {init}", "probe on the split it was pretrained with")
            record = {
                "name": name,
                "weights": weights_fingerprint(init),
                "settings": settings,
                "predictions": probe_init(init, lab, args.split, args.fractions, args.seeds, adapt, args.image_size),
            }
            if file:
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_text(json.dumps(record))
        preds[name] = record["predictions"]
        print(name, "probed", flush=True)
    y, groups = lab.targets(args.split), lab.rows(args.split)["group"].to_numpy()
    ref = _cache_name(args.inits[0])
    results = []
    for stats in STATS:
        for fraction in args.fractions:
            seeds = [str(s) for s in seeds_at(fraction, args.seeds)]

            def hits(name, stats=stats, fraction=fraction, seeds=seeds):
                return np.stack([np.asarray(preds[name][stats][str(fraction)][s]) == y for s in seeds]).astype(float)

            for name in preds:
                scores = [balanced_accuracy_score(y, preds[name][stats][str(fraction)][s]) for s in seeds]
                alone = bootstrap_interval(hits(name), y, groups=groups)
                row = {
                    "init": name,
                    "bn": stats,
                    "label_fraction": fraction,
                    "seeds": len(seeds),
                    "mean": round(float(np.mean(scores)), 4),
                    "std": round(float(np.std(scores, ddof=1)), 4) if len(scores) > 1 else None,
                    "ci95": [round(alone["lo"], 4), round(alone["hi"], 4)],
                }
                if name != ref:
                    d = paired_bootstrap(hits(name), hits(ref), y, groups=groups)
                    row.update({f"vs_{ref}": round(d["diff"], 4), "lo": round(d["lo"], 4), "hi": round(d["hi"], 4)})
                    row["verdict"] = d["verdict"]
                results.append(row)
                print(row, flush=True)
    if args.out:
        meta = {
            "scored": f"{args.split} split, {len(y)} images, {len(np.unique(groups))} lesions",
            "reference": ref,
            "interval": "95% bootstrap over lesions and seeds (over lesions alone at fraction 1.0: one fit); "
            "differences paired (stats.paired_bootstrap)",
            "seeds": "the benchmark's reported seeds 0..N-1 (its seed setting is 0): the same label draws",
        }
        Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
