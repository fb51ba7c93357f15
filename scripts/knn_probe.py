#!/usr/bin/env python
"""Frozen-feature probe of encoders: class-balanced kNN and linear-probe balanced
accuracy on the HAM10000 validation split (95% bootstrap intervals over the queries, and paired
differences to the first init), with the encoder's stored BatchNorm statistics and with
statistics re-estimated on the training split (AdaBN: same weights, in-domain
statistics). Separates what pretraining changed in the weights from what it
changed in the normalisation.

    python scripts/knn_probe.py --data ../shared/data/ham10000 \
        --splits runs/ham10000_cpu/benchmark/splits.csv \
        --inits random imagenet runs/ham10000_cpu/pretrain/*/ssl.ckpt --out runs/knn_probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from ssl_derm.pretext.knn import bootstrap_balanced_accuracy, frozen_probe, knn_data

from ssl_derm.checkpoint import init_name, init_seen
from ssl_derm.data import ImagePipeline
from ssl_derm.data.labeled import prepare_labeled
from ssl_derm.data.leaks import check_unseen
from ssl_derm.encoders import build_encoder, encoder_spec


@torch.no_grad()
def adapt_batchnorm(encoder, images, pipeline, batch: int = 128, device="cpu") -> None:
    """Replace every BatchNorm's running statistics by their average over ``images``."""
    bns = [m for m in encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    encoder.train()
    for i in range(0, len(images), batch):
        encoder(pipeline(images[i : i + batch].to(device)))
    encoder.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--splits", required=True, help="splits.csv of the benchmark")
    ap.add_argument("--inits", nargs="+", required=True)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--bank", type=int, default=2000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--adapt", type=int, default=2000, help="training images that re-estimate BatchNorm statistics")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(0)
    lab = prepare_labeled(args.data, args.image_size, splits=args.splits, progress=False)
    knn = knn_data(lab, args.bank, seed=0)  # the pretraining monitor's bank and queries
    adapt_idx = np.random.default_rng(0).permutation(lab.indices("train"))[: args.adapt]
    train = lab.bank.gather(np.sort(adapt_idx))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = ImagePipeline(encoder_spec("efficientnet-lite0").normalization).to(device)
    for init in args.inits:  # every encoder is checked before the first is probed
        hint = "probe on the split the encoder was pretrained with"
        check_unseen(init_seen(init), lab, f"the encoder {init}", hint)  # its val queries must be unseen
    predictions: dict[str, dict[str, np.ndarray]] = {}  # probe -> init -> predicted class per query
    names = []
    for init in args.inits:
        encoder = build_encoder("efficientnet-lite0", init).to(device)
        name = init_name(init)
        names.append(name)
        for key, pred in frozen_probe(encoder, knn, pipeline, args.k, device).items():
            predictions.setdefault(f"{key}_stored", {})[name] = pred
        adapt_batchnorm(encoder, train, pipeline, device=device)
        for key, pred in frozen_probe(encoder, knn, pipeline, args.k, device).items():
            predictions.setdefault(f"{key}_adabn", {})[name] = pred
        print(name, "done", flush=True)
    labels = knn["query_labels"].numpy()
    ref = names[0]
    stats = {probe: bootstrap_balanced_accuracy(labels, preds, reference=ref) for probe, preds in predictions.items()}
    results = []
    for name in names:
        row = {"init": name}
        for probe, by_init in stats.items():
            s = by_init[name]
            row[probe] = round(s["balanced_accuracy"], 4)
            row[f"{probe}_ci95"] = [round(v, 4) for v in s["ci95"]]
            if "diff_ci95" in s:
                row[f"{probe}_diff_to_{ref}"] = round(s[f"diff_to_{ref}"], 4)
                row[f"{probe}_diff_ci95"] = [round(v, 4) for v in s["diff_ci95"]]
        print(row, flush=True)
        results.append(row)
    meta = {
        "queries": "validation split",
        "n_queries": int(len(labels)),
        "bank_per_class": {c: int((knn["bank_labels"] == i).sum()) for i, c in enumerate(knn["classes"])},
        "bootstrap": "2000 resamples of the validation queries, the same for every init (paired)",
        "reference": ref,
    }
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
