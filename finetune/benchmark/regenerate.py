"""Outputs that older finished runs lack, written from their ``model.ckpt`` without training:
test predictions (plain and TTA) and the Grad-CAM mass inside the lesion."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_derm.checkpoint import load_checkpoint
from ssl_derm.data.labeled import LabeledData, attach_masks
from ssl_derm.engine import default_device
from ssl_derm.errors import UserError
from ssl_derm.finetune.targets.classification import PREDICTIONS, PREDICTIONS_TTA, load_classifier, test_metrics

CAM_FILE = "test_cam_in_lesion.csv"


def ensure_predictions(run: Path, lab: LabeledData, tta: bool = False) -> None:
    """Write a finished classification run's test probabilities from its ``model.ckpt`` where
    they are missing: ``test_predictions.csv`` for runs older than the file, and with ``tta``
    ``test_predictions_tta.csv`` (the 8 dihedral views). The metrics are unchanged, and a run
    whose test split was never scored is left alone (test is scored once, by the benchmark)."""

    missing = [f for f in (PREDICTIONS, *([PREDICTIONS_TTA] if tta else [])) if not (run / f).is_file()]
    if not missing or not (run / "model.ckpt").is_file():
        return
    if json.loads((run / "metrics.json").read_text()).get("split") != "test":
        return
    ckpt = load_checkpoint(run / "model.ckpt")
    if ckpt["image_size"] != lab.bank.image_size:
        return
    model, ckpt = load_classifier(run / "model.ckpt", ckpt)
    device = default_device()
    for name in missing:
        test_metrics(model, lab, ckpt["normalization"], device, run, tta=name == PREDICTIONS_TTA)


def ensure_cam_in_lesion(run: Path, lab: LabeledData, data=None) -> None:
    """Where does a finished classification run look? For each test image, the share of the
    Grad-CAM mass of its predicted class (the encoder's last stage, ``explain.compute_cams``)
    inside the HAM10000 lesion mask, with the two baselines of ``ssl-derm explain``: the
    lesion's share of the image (a uniform map's score) and a map peaked at the centre.
    Written once to ``test_cam_in_lesion.csv`` from ``model.ckpt`` and ``test_predictions.csv``
    (nothing when either is gone); an image without a mask gets empty cells."""
    from ssl_derm.cam import cam_in_lesion, centre_map, compute_cams, read_mask
    from ssl_derm.data import ImagePipeline

    if (run / CAM_FILE).is_file() or not (run / "model.ckpt").is_file() or not (run / PREDICTIONS).is_file():
        return
    rows = attach_masks(lab.rows("test"), data)
    if (rows["mask"] == "").all():
        print(f"{run}: no lesion masks for its test images, so no Grad-CAM mass inside the lesion", file=sys.stderr)
        return
    ckpt = load_checkpoint(run / "model.ckpt")
    size = ckpt["image_size"]
    if size != lab.bank.image_size:
        print(
            f"{run}: trained at {size} px, not the benchmark's {lab.bank.image_size}: no CAM in lesion", file=sys.stderr
        )
        return
    probs = pd.read_csv(run / PREDICTIONS)
    if list(probs["image"]) != list(rows["image"]):
        raise UserError(f"{run / PREDICTIONS}: not the test split of this benchmark")
    predicted = probs[list(lab.classes)].to_numpy().argmax(1)
    model, ckpt = load_classifier(run / "model.ckpt", ckpt)
    images = lab.bank.gather(lab.indices("test"))
    cams = compute_cams(model, images, predicted, ImagePipeline(ckpt["normalization"]), "gradcam", default_device())
    resize, centre, out = ckpt["config"].get("resize", "crop"), centre_map(size), []
    for (image, label, mask_file), cam, pred in zip(rows[["image", "label", "mask"]].to_numpy(), cams, predicted):
        mask = read_mask(Path(mask_file), image, size, resize) if mask_file else None
        out.append(
            {
                "image": image,
                "label": label,
                "predicted": lab.classes[pred],
                "cam_in_lesion": cam_in_lesion(cam, mask) if mask is not None else np.nan,
                "lesion_area": float(mask.mean()) if mask is not None else np.nan,
                "centre_in_lesion": cam_in_lesion(centre, mask) if mask is not None else np.nan,
            }
        )
    pd.DataFrame(out).to_csv(run / CAM_FILE, index=False, float_format="%.4g")
