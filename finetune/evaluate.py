"""``ssl-derm evaluate``: metrics and per-image predictions of a ``model.ckpt``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch
from ssl_derm.finetune.classifier import Classifier, predict_proba
from ssl_derm.finetune.metrics import classification_metrics

from ssl_derm.checkpoint import load_checkpoint
from ssl_derm.data import Normalize
from ssl_derm.data.labeled import prepare_labeled
from ssl_derm.encoders import build_encoder, load_strict
from ssl_derm.engine import run_dir
from ssl_derm.errors import UserError


def load_classifier(path: str | Path) -> tuple[Classifier, dict]:
    ckpt = load_checkpoint(path)
    if ckpt["task"] != "classifier" or "head_state_dict" not in ckpt:
        raise UserError(f"{path}: a {ckpt['task']!r} checkpoint, not a fine-tuned classifier (model.ckpt)")
    model = Classifier(
        build_encoder(ckpt["encoder_name"], "random"), len(ckpt["class_names"]), ckpt.get("dropout", 0.0)
    )
    load_strict(model.encoder, ckpt["encoder_state_dict"], f"{path} (encoder)")
    load_strict(model.head, ckpt["head_state_dict"], f"{path} (head)")
    return model.eval(), ckpt


def run_evaluate(
    checkpoint: str,
    data: str | None,
    out: str | None,
    split: str = "all",
    splits: str | None = None,
    overwrite: bool = False,
    cache_dir: str | None = None,
) -> dict:
    model, ckpt = load_classifier(checkpoint)
    classes = list(ckpt["class_names"])
    cfg = ckpt["config"]
    lab = prepare_labeled(
        data,
        ckpt["image_size"],
        fractions=tuple(cfg.get("split_fractions", (0.7, 0.15, 0.15))),
        seed=cfg.get("seed", 0),
        splits=splits,
        cache_dir=cache_dir,
        classes=classes,
    )
    rows = lab.rows(split)
    if rows.empty:
        raise UserError(f"--split {split}: no images in that split")
    folder = run_dir(out, "evaluate", overwrite)
    norm = Normalize(ckpt["normalization"]["mean"], ckpt["normalization"]["std"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    probs = predict_proba(model, lab.bank.gather(rows["row"].to_numpy()), norm, device)
    metrics = classification_metrics(lab.targets(split), probs, classes)
    metrics.update({"split": split, "checkpoint": str(checkpoint)})
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    pred = pd.DataFrame(
        {
            "image": rows["image"].to_numpy(),
            "true_label": rows["label"].to_numpy(),
            "predicted_label": [classes[i] for i in probs.argmax(1)],
        }
    )
    for i, c in enumerate(classes):
        pred[f"prob_{c}"] = probs[:, i]
    pred.to_csv(folder / "predictions.csv", index=False)
    print(
        f"{split}: {metrics['n_images']} images, balanced accuracy {metrics['balanced_accuracy']:.3f}, "
        f"macro F1 {metrics['macro_f1']:.3f}"
    )
    print(f"wrote {folder / 'metrics.json'} and {folder / 'predictions.csv'}")
    return metrics
