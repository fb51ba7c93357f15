"""The segmentation target: a lesion-segmentation U-Net (``--target segmentation``). Its
model and LightningModule are in ``finetune/segmentation.py``; this module says how a run
builds, scores, exports and reports it, and how ``evaluate`` and ``predict`` write its
masks (``masks/<image>.png``: 0 skin, 255 lesion, at the model's working size)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ssl_derm.checkpoint import init_name, is_checkpoint
from ssl_derm.config import FinetuneConfig
from ssl_derm.data import BankDataset, ImagePipeline, make_loader
from ssl_derm.data.identity import ContentIds
from ssl_derm.data.labeled import LabeledData, write_splits_with_masks
from ssl_derm.encoders import encoder_spec
from ssl_derm.errors import UserError
from ssl_derm.finetune.metrics import SEGMENTATION_METRICS, segmentation_metrics
from ssl_derm.finetune.run import step_budget
from ssl_derm.finetune.segmentation import (
    PREVIEW,
    TASK,
    SegmentationModule,
    build_segmenter,
    has_decoder,
    load_segmenter,
    log_overlays,
    predict_masks,
    safe_stem,
)
from ssl_derm.finetune.targets.base import FinetuneRun, Target, safe_init_name, split_variant


def check_segmentation_data(lab: LabeledData) -> None:
    if not lab.bank.has_masks:
        raise UserError("target=segmentation needs lesion masks; the data were prepared without them")
    for split, what in (("train", "training"), ("val", "validation"), ("test", "test")):
        if len(lab.indices(split)) == 0:
            raise UserError(
                f"the {what} split holds no image with a lesion mask; give more images or other split_fractions"
            )


def run_name(init: str, decoder_from: str | None) -> str:
    """The init's name (``init_name``), ``+decoder`` when the decoder came from it too."""
    name = safe_init_name(init)
    return f"{name}+decoder" if decoder_from else name


def score_segmentation(model, lab: LabeledData, normalization: dict, device, rows=None) -> tuple:
    """Metrics of ``model`` on the test split (or on table ``rows``) and the probabilities."""
    rows = lab.rows("test") if rows is None else rows
    idx = rows["row"].to_numpy()
    probs = predict_masks(model, lab.bank.gather(idx), ImagePipeline(normalization), device)
    masks = lab.bank.gather_masks(idx)[:, 0].numpy()
    names = [Path(p).name for p in rows["image"]]
    return segmentation_metrics(probs, masks, names), probs


def write_masks(folder: Path, names, probs: np.ndarray) -> list[str]:
    """``folder/masks/<image>.png`` (0/255, probability > 0.5) per image; returns the files,
    relative to ``folder``."""
    from PIL import Image

    (folder / "masks").mkdir(exist_ok=True)
    taken: set[str] = set()
    files = []
    for name, p in zip(names, probs):
        stem = safe_stem(Path(name).name, taken)
        Image.fromarray(((p > 0.5) * 255).astype(np.uint8), mode="L").save(folder / "masks" / f"{stem}.png")
        files.append(f"masks/{stem}.png")
    return files


class Segmentation(Target):
    name = "segmentation"
    task = TASK
    masks = True
    monitor = "val/dice"
    metrics = tuple(SEGMENTATION_METRICS)
    title = "# Segmentation benchmark: test split, means over images (Jaccard thresholded at 0.65: ISIC 2018)"
    plot_metric = "dice"
    score_name = "Dice"
    plot_label = "Dice (test)"

    def write_table(self, table, out: Path) -> Path:
        return write_splits_with_masks(table, out)

    def check_data(self, lab: LabeledData) -> None:
        check_segmentation_data(lab)

    def build(self, cfg: FinetuneConfig, out: Path, lab: LabeledData, inherited: ContentIds) -> FinetuneRun:
        model, decoder_from = build_segmenter(cfg.encoder, cfg.init, cfg.init_decoder)
        if cfg.init_decoder and decoder_from is None and cfg.init not in ("random", "imagenet"):
            print(f"ssl-derm: note: {cfg.init} has no U-Net decoder; the decoder starts at random", file=sys.stderr)
        model = model.to(memory_format=torch.channels_last)
        n_train = len(lab.indices("train"))
        batch = min(cfg.batch_size, n_train)
        steps = max(1, n_train // batch)
        cfg = step_budget(cfg, steps)
        module = SegmentationModule(model, cfg, encoder_spec(cfg.encoder).normalization, steps)
        return FinetuneRun(cfg, out, lab, inherited, model, module, steps, batch, {"decoder_from": decoder_from})

    def loaders(self, run: FinetuneRun, pin: bool) -> tuple:
        cfg, lab = run.cfg, run.lab
        n_train = len(lab.indices("train"))
        train_loader = make_loader(
            BankDataset(lab.bank, lab.indices("train"), masks=True),
            run.batch,
            shuffle=True,
            seed=cfg.seed,
            drop_last=n_train > run.batch,
            pin_memory=pin,
        )
        val_loader = make_loader(
            BankDataset(lab.bank, lab.indices("val"), masks=True), 64, shuffle=False, seed=cfg.seed, pin_memory=pin
        )
        return train_loader, val_loader

    def describe(self, run: FinetuneRun) -> str:
        cfg, source = run.cfg, run.extra["decoder_from"]
        decoder = f"decoder from {source}" if source else "decoder from scratch"
        return (
            f"fine-tuning a U-Net on {cfg.encoder} (init={cfg.init}, {decoder}) for lesion segmentation on "
            f"{len(run.lab.indices('train')):,} images @ {cfg.image_size}px -> {run.out}"
        )

    def score_test(self, run: FinetuneRun, model, trainer, log: bool = True) -> dict:
        lab = run.lab
        normalization = encoder_spec(run.cfg.encoder).normalization
        metrics, probs = score_segmentation(model, lab, normalization, trainer.strategy.root_device)
        if not log:
            return metrics
        n = min(PREVIEW, len(probs))
        idx = lab.indices("test")[:n]
        log_overlays(
            trainer.logger,
            "test/overlays",
            lab.bank.gather(idx).float() / 255,
            lab.bank.gather_masks(idx),
            torch.from_numpy(probs[:n])[:, None],
            trainer.global_step,
        )
        return metrics

    def init_record(self, run: FinetuneRun) -> dict:
        source = run.extra["decoder_from"]
        return {"init_name": run_name(run.cfg.init, source), "decoder_init": source}

    def checkpoint_fields(self, run: FinetuneRun, model) -> dict:
        return {
            "decoder_state_dict": {k: v.detach().cpu().clone() for k, v in model.decoder.state_dict().items()},
            "segmentation_head_state_dict": {
                k: v.detach().cpu().clone() for k, v in model.segmentation_head.state_dict().items()
            },
            "decoder_init": run.extra["decoder_from"],
        }

    def summary(self, metrics: dict, scored: bool) -> str:
        if not scored:
            return f"{self.val_line(metrics)} (test not scored)"
        return (
            f"test: Dice {metrics['dice']:.3f}, Jaccard {metrics['jaccard']:.3f} (thresholded at 0.65: "
            f"{metrics['jaccard_thresholded']:.3f}), pixel accuracy {metrics['pixel_accuracy']:.3f} "
            f"({metrics['n_images']} images)"
        )

    def val_line(self, metrics: dict) -> str:
        return f"validation Dice {metrics[self.val_key]:.3f}"

    def load(self, path, ckpt: dict):
        return load_segmenter(path, ckpt)

    def evaluation_data(self, ckpt: dict, skip_missing_masks: bool) -> dict:
        return {"masks": True, "skip_missing_masks": skip_missing_masks}

    def evaluate(self, model, ckpt: dict, lab: LabeledData, rows, device, tta: bool) -> tuple[dict, np.ndarray]:
        idx = rows["row"].to_numpy()
        probs = predict_masks(model, lab.bank.gather(idx), ImagePipeline(ckpt["normalization"]), device, tta=tta)
        truth = lab.bank.gather_masks(idx)[:, 0].numpy()
        return segmentation_metrics(probs, truth, [Path(p).name for p in rows["image"]]), probs

    def write_evaluation(self, folder: Path, rows, probs, metrics: dict, split: str, ckpt: dict) -> str:
        """predictions.csv (per-image scores) and the predicted masks as ``masks/<image>.png``."""
        files = write_masks(folder, rows["image"], probs)
        table = pd.DataFrame({"image": rows["image"].to_numpy(), "predicted_mask": files})
        for key in [*SEGMENTATION_METRICS, "lesion_area_true", "lesion_area_pred"]:
            table[key] = [m[key] for m in metrics["per_image"]]
        table.to_csv(folder / "predictions.csv", index=False)
        return (
            f"{split}: {metrics['n_images']} images, Dice {metrics['dice']:.3f}, Jaccard {metrics['jaccard']:.3f} "
            f"(thresholded {metrics['jaccard_thresholded']:.3f}), pixel accuracy {metrics['pixel_accuracy']:.3f}\n"
            f"wrote {folder / 'metrics.json'}, predictions.csv and {len(files)} predicted masks in {folder / 'masks'}"
        )

    def predict(self, model, images, pipeline, device, batch_size: int, tta: bool, progress: bool):
        return predict_masks(model, images, pipeline, device, batch_size, tta)

    def prediction_table(self, folder: Path, images, probs, ckpt: dict) -> tuple:
        """The masks (``masks/<image>.png``) and a table of image, source, mask file and the
        predicted lesion area share."""
        files = write_masks(folder, images.names, probs)
        table = pd.DataFrame({"image": images.names, "source": images.sources, "predicted_mask": files})
        if images.labeled:
            table["true_label"] = images.labels
        table["lesion_area_pred"] = (probs > 0.5).mean(axis=(1, 2)) if len(probs) else []
        return table, "segmented", f" and the masks in {folder / 'masks'}", {"target": "segmentation"}

    def benchmark_inits(self, cfg, name_of=init_name) -> list[tuple[str, str, dict]]:
        """A checkpoint with a U-Net decoder may be named ``PATH:encoder`` (its encoder only) or
        ``PATH:decoder`` (its decoder too); plain, ``init_decoder`` decides. The name gets
        ``+decoder`` when the decoder is transferred."""
        out: list[tuple[str, str, dict]] = []
        for entry in cfg.inits:
            init, decoder = split_variant(entry)
            if init not in ("random", "imagenet") and not is_checkpoint(init):
                raise UserError(
                    f"--inits {entry}: no checkpoint {init} (a segmentation benchmark reads each init's checkpoint "
                    "to name it and to find its decoder)"
                )
            name = name_of(init)
            has = has_decoder(init)
            if decoder and not has:
                raise UserError(
                    f"--inits {entry}: {init} has no U-Net decoder to transfer (context-restoration checkpoints "
                    "and segmenters have one); name it without :decoder"
                )
            transfer = has and (cfg.init_decoder if decoder is None else decoder)
            name = f"{name}+decoder" if transfer else name
            if name in [n for n, _, _ in out]:
                name = f"{name}:{Path(init).parent.name or Path(init).stem}"
            out.append((name, init, {"init_decoder": bool(transfer)}))
        return out

    def per_image_scores(self, run: Path, predictions: str = ""):
        """Per-image Dice from the run's ``metrics.json`` (``per_image``)."""
        m = json.loads((run / "metrics.json").read_text())
        per = sorted(m.get("per_image") or [], key=lambda r: r["image"])
        if not per:
            return None
        return np.array([r["image"] for r in per]), np.array([r[self.plot_metric] for r in per]), None
