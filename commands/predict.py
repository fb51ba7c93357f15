"""``ssl-derm predict``: class probabilities of a fine-tuned model for new images, or with
a segmentation ``model.ckpt`` their predicted lesion masks (``masks/<image>.png``).

Every image of each SOURCE is decoded once into the cache (as in pretraining),
then scored in batches under ``torch.inference_mode``; ``--tta`` averages the
probabilities over the 8 flips and 90-degree rotations.  Unreadable files are
skipped, counted and listed in ``skipped.txt``.  Labels of a labelled source
are ignored for scoring and kept in a ``true_label`` column for reference.
"""

from __future__ import annotations

import json
import time

import pandas as pd

from ssl_derm.commands.common import load_model, open_images, require_classifier, write_skipped
from ssl_derm.data import ImagePipeline
from ssl_derm.engine import default_device, run_dir
from ssl_derm.finetune.classifier import predict_proba


def run_predict(
    checkpoint: str,
    data: list[str] | None,
    out: str | None,
    tta: bool = False,
    overwrite: bool = False,
    cache_dir: str | None = None,
    batch_size: int = 128,
    progress: bool = True,
) -> pd.DataFrame:
    loaded = load_model(checkpoint)
    if loaded.ckpt is not None and loaded.ckpt["task"] == "segmenter":
        return predict_masks_of(loaded, data, out, tta, overwrite, cache_dir, batch_size, progress)
    require_classifier(loaded, "predict")
    folder = run_dir(out, "predict", overwrite)
    images = open_images(data, loaded.image_size, cache_dir=cache_dir, progress=progress, resize=loaded.resize)
    start = time.perf_counter()
    probs = predict_proba(
        loaded.classifier,
        images.images(),
        ImagePipeline(loaded.normalization),
        default_device(),
        batch_size=batch_size,
        tta=tta,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    classes = loaded.classes
    table = pd.DataFrame({"image": images.names, "source": images.sources})
    if images.labeled:
        table["true_label"] = images.labels
    table["predicted_label"] = [classes[i] for i in probs.argmax(1)]
    table["probability"] = probs.max(1)
    for i, c in enumerate(classes):
        table[f"prob_{c}"] = probs[:, i]
    predicted = {k: int(v) for k, v in table["predicted_label"].value_counts().items()}
    _write(folder, table, images, checkpoint, tta, seconds, "predicted", "", predicted=predicted)
    return table


def _write(folder, table: pd.DataFrame, images, checkpoint, tta: bool, seconds: float, verb: str, also: str, **extra):
    """predictions.csv, skipped.txt and summary.json (``extra`` joins it), and one line on stdout."""
    table.to_csv(folder / "predictions.csv", index=False)
    write_skipped(folder, images.skipped)
    summary = {
        "checkpoint": str(checkpoint),
        "images": len(images),
        "skipped": len(images.skipped),
        "tta": tta,
        **extra,
        "images_per_s": round(len(images) / max(seconds, 1e-9), 1),
        "device": str(default_device()),
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    skipped = f", {len(images.skipped)} unreadable skipped (skipped.txt)" if images.skipped else ""
    print(
        f"{verb} {len(images):,} images{' with TTA' if tta else ''} at {summary['images_per_s']:,} images/s"
        f"{skipped}; wrote {folder / 'predictions.csv'}{also}"
    )


def predict_masks_of(
    loaded,
    data: list[str] | None,
    out: str | None,
    tta: bool = False,
    overwrite: bool = False,
    cache_dir: str | None = None,
    batch_size: int = 128,
    progress: bool = True,
) -> pd.DataFrame:
    """A segmenter's lesion masks for every image of the sources: ``masks/<image>.png`` (0 skin,
    255 lesion, probability > 0.5, at the model's working size: the square the model saw) and
    ``predictions.csv`` (image, source, mask file, predicted lesion area share)."""
    import numpy as np
    from PIL import Image

    from ssl_derm.finetune.segmentation import load_segmenter, predict_masks, safe_stem

    model, ckpt = load_segmenter(loaded.name, loaded.ckpt)
    folder = run_dir(out, "predict", overwrite)
    images = open_images(data, loaded.image_size, cache_dir=cache_dir, progress=progress, resize=loaded.resize)
    start = time.perf_counter()
    probs = predict_masks(
        model, images.images(), ImagePipeline(loaded.normalization), default_device(), batch_size, tta
    )
    seconds = time.perf_counter() - start
    (folder / "masks").mkdir(exist_ok=True)
    taken: set[str] = set()
    files = []
    for name, p in zip(images.names, probs):
        stem = safe_stem(name, taken)
        Image.fromarray(((p > 0.5) * 255).astype(np.uint8), mode="L").save(folder / "masks" / f"{stem}.png")
        files.append(f"masks/{stem}.png")
    table = pd.DataFrame({"image": images.names, "source": images.sources, "predicted_mask": files})
    if images.labeled:
        table["true_label"] = images.labels
    table["lesion_area_pred"] = (probs > 0.5).mean(axis=(1, 2)) if len(probs) else []
    also = f" and the masks in {folder / 'masks'}"
    _write(folder, table, images, loaded.name, tta, seconds, "segmented", also, target="segmentation")
    return table
