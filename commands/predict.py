"""``ssl-derm predict``: a fine-tuned model's outputs for new images, as its target writes
them (``finetune/targets``): a classifier's class probabilities, a segmenter's predicted
lesion masks (``masks/<image>.png``).

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

from ssl_derm.commands.common import fine_tuned_target, load_model, open_images, write_skipped
from ssl_derm.data import ImagePipeline
from ssl_derm.engine import default_device, run_dir


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
    target = fine_tuned_target(loaded, "predict")
    model = loaded.classifier if loaded.classifier is not None else target.load(loaded.name, loaded.ckpt)[0]
    folder = run_dir(out, "predict", overwrite)
    images = open_images(data, loaded.image_size, cache_dir=cache_dir, progress=progress, resize=loaded.resize)
    start = time.perf_counter()
    outputs = target.predict(
        model, images.images(), ImagePipeline(loaded.normalization), default_device(), batch_size, tta, progress
    )
    seconds = time.perf_counter() - start
    table, verb, also, extra = target.prediction_table(folder, images, outputs, loaded.ckpt)
    _write(folder, table, images, loaded.name, tta, seconds, verb, also, **extra)
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
