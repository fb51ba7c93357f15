#!/usr/bin/env python
"""Frozen-feature probe of encoders: class-balanced kNN and linear-probe balanced
accuracy on the HAM10000 validation split (95% bootstrap intervals over the queries, and paired
differences to the first init), with the encoder's stored BatchNorm statistics and with
statistics re-estimated on the training split (AdaBN: same weights, in-domain
statistics). Separates what pretraining changed in the weights from what it
changed in the normalisation.

    python benchmarks/ham10000/tools/knn_probe.py --data ../shared/data/ham10000 \
        --splits runs/ham10000_cpu/benchmark/splits.csv \
        --inits random imagenet runs/ham10000_cpu/pretrain/*/ssl.ckpt --out runs/knn_probe.json

With ``--cache DIR`` each encoder's predictions are kept in ``DIR/<name>.json`` (with the
probe's settings, the split's fingerprint and the encoder's weights fingerprint) and reused:
an encoder probed once needs no checkpoint on disk later, so a screen can probe each
checkpoint as it is pretrained and tabulate them all in another session.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ssl_derm.checkpoint import init_seen, weights_fingerprint
from ssl_derm.data import ImagePipeline
from ssl_derm.data.labeled import prepare_labeled
from ssl_derm.data.leaks import check_unseen
from ssl_derm.encoders import build_encoder, encoder_spec
from ssl_derm.finetune.run import table_sha1
from ssl_derm.pretext.knn import bootstrap_balanced_accuracy, frozen_probe, knn_data


def _cache_name(init: str) -> str:
    """random, imagenet, or the run folder of a checkpoint (pretrain/<name>/ssl.ckpt): an encoder's
    name in the tables, so two budgets of one task (imagenet+moco, imagenet+moco_80k) stay apart."""
    path = Path(init)
    return init if init in ("random", "imagenet") else (path.parent.name if path.suffix else path.name)


def _cached(cache: Path | None, init: str, settings: dict) -> dict | None:
    """The kept predictions of ``init``, when they were made with these settings on this split
    and (where its checkpoint is on disk) from the same weights."""
    if cache is None or not (cache / f"{_cache_name(init)}.json").is_file():
        return None
    record = json.loads((cache / f"{_cache_name(init)}.json").read_text())
    if record.get("settings") != settings:
        return None
    if (init in ("random", "imagenet") or Path(init).exists()) and record["weights"] != weights_fingerprint(init):
        return None
    return record


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
    ap.add_argument("--out", help="probe.json to write (without it, only --cache is filled)")
    ap.add_argument("--cache", type=Path, help="folder of per-encoder predictions, reused when current")
    args = ap.parse_args()
    torch.manual_seed(0)
    lab = prepare_labeled(args.data, args.image_size, splits=args.splits, progress=False)
    knn = knn_data(lab, args.bank, seed=0)  # the pretraining monitor's bank and queries
    adapt_idx = np.random.default_rng(0).permutation(lab.indices("train"))[: args.adapt]
    train = lab.bank.gather(np.sort(adapt_idx))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pipeline = ImagePipeline(encoder_spec("efficientnet-lite0").normalization).to(device)
    settings = {
        "image_size": args.image_size,
        "bank": args.bank,
        "k": args.k,
        "adapt": args.adapt,
        "queries": hashlib.sha1(knn["query_labels"].numpy().tobytes()).hexdigest(),
        "split": table_sha1(lab.table),
    }
    cached = {init: _cached(args.cache, init, settings) for init in args.inits}
    for init in args.inits:  # every encoder is checked before the first is probed
        if cached[init] is None:
            hint = "probe on the split the encoder was pretrained with"
            check_unseen(init_seen(init), lab, f"the encoder {init}", hint)  # its val queries must be unseen
    predictions: dict[str, dict[str, np.ndarray]] = {}  # probe -> init -> predicted class per query
    names = []
    for init in args.inits:
        if cached[init] is not None:
            name, mine = _cache_name(init), {k: np.array(v) for k, v in cached[init]["predictions"].items()}
        else:
            encoder = build_encoder("efficientnet-lite0", init).to(device)
            name, mine = _cache_name(init), {}
            for key, pred in frozen_probe(encoder, knn, pipeline, args.k, device).items():
                mine[f"{key}_stored"] = pred
            adapt_batchnorm(encoder, train, pipeline, device=device)
            for key, pred in frozen_probe(encoder, knn, pipeline, args.k, device).items():
                mine[f"{key}_adabn"] = pred
            if args.cache is not None:
                args.cache.mkdir(parents=True, exist_ok=True)
                record = {
                    "name": name,
                    "weights": weights_fingerprint(init),
                    "settings": settings,
                    "predictions": {k: np.asarray(v).tolist() for k, v in mine.items()},
                }
                (args.cache / f"{_cache_name(init)}.json").write_text(json.dumps(record))
        names.append(name)
        for key, pred in mine.items():
            predictions.setdefault(key, {})[name] = pred
        print(name, "cached" if cached[init] is not None else "done", flush=True)
    if args.out is None:
        return
    labels = knn["query_labels"].numpy()
    ref = names[0]
    groups = knn["query_groups"]  # lesions: all images of one drawn together
    stats = {
        probe: bootstrap_balanced_accuracy(labels, preds, reference=ref, groups=groups)
        for probe, preds in predictions.items()
    }
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
        "bootstrap": "2000 resamples of the validation "
        + ("lesions (all images of a lesion together)" if groups is not None else "queries")
        + ", the same for every init (paired)",
        "n_lesions": int(len(np.unique(groups))) if groups is not None else None,
        "reference": ref,
    }
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
