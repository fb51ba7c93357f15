"""The classification target: a focal-loss classifier head on the encoder (``--target
classification``, the default). Its model and LightningModule are in
``finetune/classifier.py``; this module says how a run builds, scores, exports and
reports it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import WeightedRandomSampler

from ssl_derm.config import FinetuneConfig
from ssl_derm.data import BankDataset, ImagePipeline, class_weights, make_loader
from ssl_derm.data.identity import ContentIds
from ssl_derm.data.labeled import LabeledData
from ssl_derm.encoders import build_encoder, encoder_spec, load_strict
from ssl_derm.errors import UserError
from ssl_derm.finetune.classifier import Classifier, FinetuneModule, predict_proba
from ssl_derm.finetune.metrics import classification_metrics
from ssl_derm.finetune.report import METRICS, log_confusion
from ssl_derm.finetune.run import step_budget
from ssl_derm.finetune.targets.base import FinetuneRun, Target

PREDICTIONS = "test_predictions.csv"
PREDICTIONS_TTA = "test_predictions_tta.csv"  # the same, averaged over the 8 dihedral views


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


def load_classifier(path: str | Path, ckpt: dict | None = None) -> tuple[Classifier, dict]:
    """A fine-tuned classifier (``model.ckpt`` of ``finetune``), strict keys, in eval mode."""
    from ssl_derm.checkpoint import load_checkpoint

    ckpt = ckpt if ckpt is not None else load_checkpoint(path)
    if ckpt["task"] != "classifier" or "head_state_dict" not in ckpt:
        raise UserError(f"{path}: a {ckpt['task']!r} checkpoint, not a fine-tuned classifier (model.ckpt)")
    model = Classifier(
        build_encoder(ckpt["encoder_name"], "random"),
        len(ckpt["class_names"]),
        ckpt.get("dropout", 0.0),
        ckpt.get("two_stage_first"),
    )
    load_strict(model.encoder, ckpt["encoder_state_dict"], f"{path} (encoder)")
    load_strict(model.head, ckpt["head_state_dict"], f"{path} (head)")
    return model.eval(), ckpt


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


class Classification(Target):
    name = "classification"
    task = "classifier"
    tag_metrics = False  # metrics.json predates the field; kept so that runs and their keys stay as they were
    per_class = True
    monitor = "val/balanced_accuracy"
    metrics = tuple(METRICS)
    title = "# Benchmark: test split, balanced accuracy = mean recall"
    plot_metric = "balanced_accuracy"
    score_name = "balanced accuracy"
    plot_label = "balanced accuracy (test)"

    def check_data(self, lab: LabeledData) -> None:
        check_training_classes(lab)

    def build(self, cfg: FinetuneConfig, out: Path, lab: LabeledData, inherited: ContentIds) -> FinetuneRun:
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

    def loaders(self, run: FinetuneRun, pin: bool) -> tuple:
        cfg, lab = run.cfg, run.lab
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
            BankDataset(lab.bank, lab.indices("val"), lab.targets("val")),
            128,
            shuffle=False,
            seed=cfg.seed,
            pin_memory=pin,
        )
        return train_loader, val_loader

    def describe(self, run: FinetuneRun) -> str:
        cfg = run.cfg
        return (
            f"fine-tuning {cfg.encoder} (init={cfg.init}) on {len(run.lab.indices('train')):,} images, "
            f"{len(run.lab.classes)} classes, @ {cfg.image_size}px -> {run.out}"
        )

    def score_test(self, run: FinetuneRun, model, trainer, log: bool = True) -> dict:
        normalization = encoder_spec(run.cfg.encoder).normalization
        metrics = test_metrics(model, run.lab, normalization, trainer.strategy.root_device, run.out)
        if log:
            log_confusion(trainer.logger, metrics["confusion_matrix"], "test/confusion_matrix", trainer.global_step)
        return metrics

    def checkpoint_fields(self, run: FinetuneRun, model) -> dict:
        return {
            "head_state_dict": model.head.state_dict(),
            "class_names": list(run.lab.classes),
            "dropout": run.cfg.dropout,
            "two_stage_first": model.two_stage_first,
        }

    def summary(self, metrics: dict, scored: bool) -> str:
        if not scored:
            return f"{self.val_line(metrics)} (test not scored)"
        return (
            f"test: balanced accuracy {metrics['balanced_accuracy']:.3f}, macro F1 {metrics['macro_f1']:.3f}, "
            f"AUC {metrics['auc_macro'] or float('nan'):.3f} ({metrics['n_images']} images)"
        )

    def val_line(self, metrics: dict) -> str:
        return f"validation balanced accuracy {metrics[self.val_key]:.3f}"

    def load(self, path, ckpt: dict) -> tuple[Classifier, dict]:
        return load_classifier(path, ckpt)

    def evaluation_data(self, ckpt: dict, skip_missing_masks: bool) -> dict:
        return {"classes": list(ckpt["class_names"])}

    def evaluate(self, model, ckpt: dict, lab: LabeledData, rows, device, tta: bool) -> tuple[dict, np.ndarray]:
        classes = list(ckpt["class_names"])
        pipeline = ImagePipeline(ckpt["normalization"])
        probs = predict_proba(model, lab.bank.gather(rows["row"].to_numpy()), pipeline, device, tta=tta)
        targets = rows["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
        return classification_metrics(targets, probs, classes), probs

    def write_evaluation(self, folder: Path, rows, probs, metrics: dict, split: str, ckpt: dict) -> str:
        classes = list(ckpt["class_names"])
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
        return (
            f"{split}: {metrics['n_images']} images, balanced accuracy {metrics['balanced_accuracy']:.3f}, "
            f"macro F1 {metrics['macro_f1']:.3f}\n"
            f"wrote {folder / 'metrics.json'} and {folder / 'predictions.csv'}"
        )

    def predict(self, model, images, pipeline, device, batch_size: int, tta: bool, progress: bool):
        return predict_proba(model, images, pipeline, device, batch_size=batch_size, tta=tta, progress=progress)

    def prediction_table(self, folder: Path, images, probs, ckpt: dict) -> tuple:
        classes = list(ckpt["class_names"])
        table = pd.DataFrame({"image": images.names, "source": images.sources})
        if images.labeled:
            table["true_label"] = images.labels
        table["predicted_label"] = [classes[i] for i in probs.argmax(1)]
        table["probability"] = probs.max(1)
        for i, c in enumerate(classes):
            table[f"prob_{c}"] = probs[:, i]
        predicted = {k: int(v) for k, v in table["predicted_label"].value_counts().items()}
        return table, "predicted", "", {"predicted": predicted}

    def per_image_scores(self, run: Path, predictions: str = PREDICTIONS):
        """Hits and class indices from the run's ``predictions`` file (``test_predictions.csv``,
        or the TTA one)."""
        path = run / predictions
        if not path.is_file():
            return None
        table = pd.read_csv(path).sort_values("image", kind="stable")
        classes = [c for c in table.columns if c not in ("image", "label")]
        lookup = {c: i for i, c in enumerate(classes)}
        labels = table["label"].map(lookup).to_numpy()
        hits = (table[classes].to_numpy().argmax(1) == labels).astype(float)
        return table["image"].to_numpy(), hits, labels
