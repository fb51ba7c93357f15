"""``ssl-derm evaluate``: metrics and per-image predictions of a ``model.ckpt`` of any
fine-tuning target (``finetune/targets``; a segmenter's writes its predicted masks)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

from ssl_derm.checkpoint import load_checkpoint
from ssl_derm.data.identity import ContentIds
from ssl_derm.data.labeled import prepare_labeled
from ssl_derm.data.leaks import check_unseen_ids
from ssl_derm.engine import default_device, run_dir
from ssl_derm.errors import UserError
from ssl_derm.finetune.targets import target_of


def rows_to_score(lab, ckpt: dict, split: str, splits: str | None, data) -> pd.DataFrame:
    """``all``: every image; with ``--splits``: that file's split; else the split the model
    was trained with, recorded in ``model.ckpt`` (matched by content, not by file name).

    A source that holds no image of any split the model was trained with is an external set:
    for ``val`` and ``test`` all of it is scored, with a note on stderr (``train`` names the
    model's own training images, which such a source lacks)."""
    if split == "all" or splits:
        rows = lab.rows(split)
    else:
        recorded = set(ckpt["split_images"][split]["sha1"])
        sha1 = np.array(lab.bank.ids(lab.indices()).sha1)
        rows = lab.table[np.isin(sha1, list(recorded))]
        known = {s for part in ckpt["split_images"].values() for s in part["sha1"]}
        if rows.empty and split != "train" and not np.isin(sha1, list(known)).any():
            print(
                f"ssl-derm: note: none of this model's train/val/test images are in {data or 'the bundled sample'}: "
                f"an external set, scoring all {len(lab.table):,} of its images",
                file=sys.stderr,
            )
            return lab.rows("all")
        if rows.empty:
            raise UserError(
                f"--split {split}: none of the {len(recorded):,} {split} images this model was trained with are in "
                f"{data or 'the bundled sample'}; use --split all (every image of --data) or --splits FILE"
            )
    if rows.empty:
        raise UserError(f"--split {split}: no images in that split")
    return rows


def unseen_rows_to_score(lab, ckpt: dict, checkpoint, split: str, splits: str | None, data) -> pd.DataFrame:
    """``rows_to_score``, refusing (for every split but train) images the model or its
    pretraining saw, and noting that a model's own validation split flatters it."""
    rows = rows_to_score(lab, ckpt, split, splits, data)
    if split != "train":  # scoring an image the model (or its pretraining) saw is no evaluation
        check_unseen_ids(
            ContentIds.from_state(ckpt["seen_images"]),
            lab.bank.ids(rows["row"].to_numpy()),
            f"this model or its pretraining ({checkpoint})",
            "evaluate on images it never saw: the default --split test uses the split it was trained with",
            kind=f"--split {split}",
        )
    if split == "val" and not splits:
        print(
            "ssl-derm: note: the model's validation split chose its best epoch; its score there is optimistic",
            file=sys.stderr,
        )
    return rows


def run_evaluate(
    checkpoint: str,
    data: str | None,
    out: str | None,
    split: str = "test",
    splits: str | None = None,
    overwrite: bool = False,
    cache_dir: str | None = None,
    tta: bool = False,
    skip_missing_masks: bool = False,
    progress: bool = True,
) -> dict:
    """Score a fine-tuned model (any target) on ``split``: ``OUT/metrics.json`` and the
    target's per-image predictions."""
    ckpt = load_checkpoint(checkpoint)
    target = target_of(ckpt, checkpoint)
    model, ckpt = target.load(checkpoint, ckpt)
    cfg = ckpt["config"]
    lab = prepare_labeled(
        data,
        ckpt["image_size"],
        fractions=tuple(cfg.get("split_fractions", (0.7, 0.15, 0.15))),
        seed=cfg.get("seed", 0),
        splits=splits,
        cache_dir=cache_dir,
        resize=cfg.get("resize", "crop"),
        progress=progress,
        **target.evaluation_data(ckpt, skip_missing_masks),
    )
    rows = unseen_rows_to_score(lab, ckpt, checkpoint, split, splits, data)
    folder = run_dir(out, "evaluate", overwrite)
    metrics, outputs = target.evaluate(model, ckpt, lab, rows, default_device(), tta)
    tag = {"target": target.name} if target.tag_metrics else {}
    metrics.update({**tag, "split": split, "checkpoint": str(checkpoint), "tta": tta})
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(target.write_evaluation(folder, rows, outputs, metrics, split, ckpt))
    return metrics
