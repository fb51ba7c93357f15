"""``ssl-derm finetune``: focal-loss classifier on an encoder from ``--init``, or with
``target=segmentation`` a lesion-segmentation U-Net (``finetune/segmentation.py``)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import WeightedRandomSampler

from ssl_derm.checkpoint import FORMAT_VERSION, init_name, save_checkpoint
from ssl_derm.config import FinetuneConfig, to_dict
from ssl_derm.data import BankDataset, ImagePipeline, class_weights, make_loader
from ssl_derm.data.identity import ContentIds
from ssl_derm.data.labeled import LabeledData
from ssl_derm.encoders import build_encoder, encoder_spec
from ssl_derm.engine import pin_memory
from ssl_derm.errors import UserError
from ssl_derm.finetune.classifier import Classifier, FinetuneModule, predict_proba
from ssl_derm.finetune.metrics import classification_metrics
from ssl_derm.finetune.report import log_confusion
from ssl_derm.finetune.run import (
    early_stopping_trainer,
    fit_keep_best,
    split_images,
    start_run,
    step_budget,
    table_sha1,
    training_record,
)

BEST = "val/balanced_accuracy"


def check_training_classes(lab: LabeledData) -> None:
    train = set(lab.rows("train")["label"])
    empty = [c for c in lab.classes if c not in train]
    if empty:
        raise UserError(f"class(es) {empty[:5]} have no training images; add images or drop the class")
    if len(lab.indices("val")) == 0:
        raise UserError("the validation split is empty; give more images or larger split_fractions[1]")
    if len(lab.indices("test")) == 0:
        raise UserError(
            "the test split is empty, and finetune reports test metrics; give split_fractions a test share "
            "or --splits with test rows (validation images choose the best epoch, they cannot also score it)"
        )


def focal_alpha(cfg, y_train: np.ndarray, num_classes: int) -> np.ndarray | None:
    """Per-class focal weights: ``auto`` is ``balanced``, or ``none`` with ``--balanced-sampler``
    (the sampler already balances the classes; weighting too would correct them twice)."""
    mode = cfg.class_weights
    if mode == "auto":
        mode = "none" if cfg.balanced_sampler else "balanced"
    elif cfg.balanced_sampler and mode != "none":
        print(
            f"ssl-derm: warning: --balanced-sampler with class_weights={mode} corrects the class imbalance "
            "twice (rare classes are over-weighted); use --class-weights none (the default with the sampler)",
            file=sys.stderr,
        )
    return class_weights(y_train, num_classes, mode)


def two_stage_index(cfg, classes: list[str]) -> int | None:
    """The index of the first stage's class with ``--two-stage``, else None."""
    if not cfg.two_stage:
        return None
    if cfg.two_stage_class not in classes:
        raise UserError(f"two_stage_class={cfg.two_stage_class!r} is not a class of the data ({', '.join(classes)})")
    if len(classes) < 3:
        raise UserError("--two-stage needs at least 3 classes")
    return list(classes).index(cfg.two_stage_class)


@dataclass
class FinetuneRun:
    """Everything ``build_finetune`` assembles for the fit and export steps."""

    cfg: FinetuneConfig
    out: Path
    lab: LabeledData
    inherited: ContentIds
    model: Classifier
    module: FinetuneModule
    steps_per_epoch: int
    batch: int


def build_finetune(
    cfg: FinetuneConfig, overwrite: bool = False, resume: bool = False, lab: LabeledData | None = None
) -> FinetuneRun:
    """Run folder, data (label fraction, leak checks), model and LightningModule."""
    cfg, out, lab, inherited = start_run(cfg, overwrite, resume, lab, check_data=check_training_classes)
    spec = encoder_spec(cfg.encoder)
    first = two_stage_index(cfg, lab.classes)
    model = Classifier(build_encoder(cfg.encoder, cfg.init), len(lab.classes), cfg.dropout, first)
    model = model.to(memory_format=torch.channels_last)
    y_train = lab.targets("train")
    alpha = focal_alpha(cfg, y_train, len(lab.classes))
    stage_alpha = None
    if first is not None:  # class weights per stage: first class vs rest, then among the rest
        others = y_train[y_train != first]
        remap = np.cumsum(np.arange(len(lab.classes)) != first) - 1
        stage_alpha = (
            focal_alpha(cfg, (y_train != first).astype(int), 2),
            focal_alpha(cfg, remap[others], len(lab.classes) - 1),
        )
    batch = min(cfg.batch_size, len(y_train))
    steps = max(1, len(y_train) // batch)
    cfg = step_budget(cfg, steps)
    prior = np.bincount(y_train, minlength=len(lab.classes)) / len(y_train)
    module = FinetuneModule(model, cfg, spec.normalization, lab.classes, alpha, steps, prior, stage_alpha)
    return FinetuneRun(cfg, out, lab, inherited, model, module, steps, batch)


def fit_finetune(run: FinetuneRun, resume: bool = False):
    """Train with early stopping on validation balanced accuracy; the module ends with
    the best epoch's weights. Returns the trainer and the best-checkpoint callback."""
    cfg, lab = run.cfg, run.lab
    trainer, best = early_stopping_trainer(cfg, run.out, run.steps_per_epoch, BEST)
    pin = pin_memory(trainer)
    y_train = lab.targets("train")
    sampler = None
    if cfg.balanced_sampler:
        weights = 1.0 / np.bincount(y_train, minlength=len(lab.classes))[y_train]
        sampler = WeightedRandomSampler(weights, len(y_train), generator=torch.Generator().manual_seed(cfg.seed))
    train_loader = make_loader(
        BankDataset(lab.bank, lab.indices("train"), y_train),
        run.batch,
        shuffle=True,
        seed=cfg.seed,
        drop_last=len(y_train) > run.batch,
        sampler=sampler,
        pin_memory=pin,
    )
    val_loader = make_loader(
        BankDataset(lab.bank, lab.indices("val"), lab.targets("val")), 128, shuffle=False, seed=cfg.seed, pin_memory=pin
    )
    print(
        f"fine-tuning {cfg.encoder} (init={cfg.init}) on {len(y_train):,} images, {len(lab.classes)} classes, "
        f"@ {cfg.image_size}px -> {run.out}"
    )
    fit_keep_best(trainer, best, run.module, train_loader, val_loader, run.out, resume)
    return trainer, best


def export_finetune(run: FinetuneRun, trainer, best) -> dict:
    """Score the test split once; write metrics.json, the confusion matrix and model.ckpt."""
    cfg, lab = run.cfg, run.lab
    model = run.module.export_model()  # the EMA weights with --ema, the logit adjustment folded in
    name = _safe_init_name(cfg.init)  # reads the init checkpoint once, for metrics and model.ckpt
    metrics = {}
    if cfg.score_test:
        metrics = test_metrics(
            model, lab, encoder_spec(cfg.encoder).normalization, trainer.strategy.root_device, run.out
        )
    metrics.update(
        {
            "split": "test" if cfg.score_test else "val only (test not scored)",
            "init": cfg.init,
            "init_name": name,
            "label_fraction": cfg.label_fraction,
            "seed": cfg.seed,
            "splits_sha1": table_sha1(lab.table),
            "format_version": FORMAT_VERSION,
            "best_epoch_val_balanced_accuracy": float(best.best_model_score)
            if best.best_model_score is not None
            else None,
            **training_record(trainer, run.module, cfg),
        }
    )
    (run.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if cfg.score_test:
        log_confusion(trainer.logger, metrics["confusion_matrix"], "test/confusion_matrix", trainer.global_step)
    save_checkpoint(
        run.out / "model.ckpt",
        encoder_name=cfg.encoder,
        encoder_state_dict=model.encoder.state_dict(),
        image_size=cfg.image_size,
        normalization=encoder_spec(cfg.encoder).normalization,
        task="classifier",
        config=to_dict(cfg),
        head_state_dict=model.head.state_dict(),
        class_names=list(lab.classes),
        dropout=cfg.dropout,
        two_stage_first=model.two_stage_first,
        init_chain=name,
        seen_images=ContentIds.concat([run.inherited, lab.bank.ids(lab.indices("train"))]).to_state(),
        split_images=split_images(lab),
    )
    if cfg.score_test:
        print(
            f"test: balanced accuracy {metrics['balanced_accuracy']:.3f}, macro F1 {metrics['macro_f1']:.3f}, "
            f"AUC {metrics['auc_macro'] or float('nan'):.3f} ({metrics['n_images']} images)"
        )
    else:
        print(f"validation balanced accuracy {metrics['best_epoch_val_balanced_accuracy']:.3f} (test not scored)")
    print(f"wrote {run.out / 'model.ckpt'} and {run.out / 'metrics.json'}")
    return metrics


PREDICTIONS = "test_predictions.csv"
PREDICTIONS_TTA = "test_predictions_tta.csv"  # the same, averaged over the 8 dihedral views


def test_metrics(
    model, lab: LabeledData, normalization: dict, device, out: Path | None = None, tta: bool = False
) -> dict:
    """Metrics of ``model`` on the test split of ``lab``; with ``out``, also every test image's
    probabilities in ``out/test_predictions.csv`` (image, label, one column per class), which
    the benchmark's paired comparisons read (``test_predictions_tta.csv`` with ``tta``)."""
    images = lab.bank.gather(lab.indices("test"))
    probs = predict_proba(model, images, ImagePipeline(normalization), device, tta=tta)
    if out is not None:
        rows = lab.rows("test")
        table = pd.DataFrame({"image": rows["image"].to_numpy(), "label": rows["label"].to_numpy()})
        table[list(lab.classes)] = probs
        table.to_csv(Path(out) / (PREDICTIONS_TTA if tta else PREDICTIONS), index=False, float_format="%.6g")
    return classification_metrics(lab.targets("test"), probs, lab.classes)


def run_finetune(
    cfg: FinetuneConfig, overwrite: bool = False, resume: bool = False, lab: LabeledData | None = None
) -> dict:
    """Fine-tune; return the test metrics (also in ``OUT/metrics.json``)."""
    if cfg.target == "segmentation":
        from ssl_derm.finetune.segmentation import run_segmentation

        return run_segmentation(cfg, overwrite, resume, lab)
    run = build_finetune(cfg, overwrite, resume, lab)
    trainer, best = fit_finetune(run, resume)
    if not trainer.is_global_zero:
        return {}
    return export_finetune(run, trainer, best)


def _safe_init_name(init: str) -> str:
    try:
        return init_name(init)
    except UserError:
        return Path(init).stem
