"""What every fine-tuning run does, whatever its target (classifier or U-Net): the run
folder and its data checks (``start_run``), the step budget, the early-stopping trainer that
keeps the best epoch, and the record of how the run ended."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from ssl_derm.checkpoint import init_seen
from ssl_derm.config import FinetuneConfig
from ssl_derm.data import label_fraction, write_splits
from ssl_derm.data.identity import ContentIds
from ssl_derm.data.labeled import LabeledData, labeled_from_config
from ssl_derm.data.leaks import check_split_by_content, check_unseen
from ssl_derm.engine import make_trainer, open_run, resume_path


def table_sha1(table) -> str:
    """Which images were in which split (after the label fraction), by name."""
    import hashlib

    rows = table[["image", "split"]].astype(str).sort_values("image")
    return hashlib.sha1(rows.to_csv(index=False).encode()).hexdigest()


def split_images(lab: LabeledData) -> dict:
    """Who was in each split, by content, for ``evaluate``'s default split."""
    out = {}
    for split in ("train", "val", "test"):
        ids = lab.bank.ids(lab.indices(split))
        out[split] = {"names": [Path(n).name for n in ids.names], "sha1": ids.sha1}
    return out


def step_budget(cfg, steps_per_epoch: int):
    """Raise ``epochs`` so that at least ``min_steps`` optimiser steps run (small label
    fractions get the same optimisation budget), and stretch ``freeze_epochs``, the
    early-stopping ``patience`` and ``min_epochs`` by the same factor, so the frozen
    warm-up stays the same share of training and a short epoch does not stop a run early.
    With ``val_check_steps`` validating every k epochs, the budget is rounded up to a
    multiple of k, so that its last epoch is validated too."""
    if cfg.min_steps and cfg.epochs * steps_per_epoch < cfg.min_steps:
        epochs = -(-cfg.min_steps // steps_per_epoch)
        freeze = round(cfg.freeze_epochs * epochs / cfg.epochs)
        patience = -(-cfg.patience * epochs // cfg.epochs)
        least = -(-cfg.min_epochs * epochs // cfg.epochs)
        cfg = dataclasses.replace(cfg, epochs=epochs, freeze_epochs=freeze, patience=patience, min_epochs=least)
    every = val_every(cfg, steps_per_epoch)
    if cfg.epochs % every:
        cfg = dataclasses.replace(cfg, epochs=-(-cfg.epochs // every) * every)
    return cfg


def val_every(cfg, steps_per_epoch: int) -> int:
    """The epochs between validation checks: 1, or where an epoch is shorter than
    ``val_check_steps`` optimiser steps, as many epochs as make that many steps. (At label
    fraction 0.03 of HAM10000 an epoch is 2-3 steps: validating after each would spend most of
    a run on the validation split.)"""
    steps = getattr(cfg, "val_check_steps", 0)
    if not steps or steps_per_epoch >= steps:
        return 1
    return steps // steps_per_epoch


def patience_checks(cfg, steps_per_epoch: int) -> int:
    """``patience`` (in epochs) as a number of validation checks, rounded up."""
    return -(-cfg.patience // val_every(cfg, steps_per_epoch))


def training_record(trainer, module, cfg, steps_per_epoch: int = 1) -> dict:
    """How a fine-tuning run ended, for metrics.json: the epoch kept and the epochs run
    (counted from 1: best_epoch == epochs_run means the last epoch was the best), the
    epoch budget after ``step_budget``, the optimiser steps (a best epoch at the budget's
    end says the run may not have converged) and the validation curve (``val_history``);
    with ``val_check_steps`` validating every k > 1 epochs, k and the patience in checks."""
    record = {
        "best_epoch": getattr(module, "best_epoch", None),
        "epochs_run": int(trainer.current_epoch),
        "epochs_budget": int(cfg.epochs),
        "patience_epochs": int(cfg.patience),
        "min_epochs": int(least_epochs(cfg)),
        "global_step": int(trainer.global_step),
        "val_history": list(getattr(module, "val_history", [])),  # the validation score per epoch
    }
    every = val_every(cfg, steps_per_epoch)
    if every > 1:
        record.update({"val_every_epochs": every, "patience_checks": patience_checks(cfg, steps_per_epoch)})
    return record


def start_run(
    cfg: FinetuneConfig,
    overwrite: bool,
    resume: bool,
    lab: LabeledData | None,
    write_table=write_splits,
    check_data=None,
    masks: bool = False,
) -> tuple[FinetuneConfig, Path, LabeledData, ContentIds]:
    """What every fine-tuning run does first, whatever its target: the encoder's settings
    resolved, the run folder (``config.yaml``; a resume must keep the settings), the seed, the
    labelled data (its lesion masks too with ``masks``) cut to ``label_fraction`` and written
    (``write_table``), checked for the target (``check_data``), for copies across splits, and
    against every image the ``--init`` checkpoint has seen. Returns the resolved config, the
    folder, the data and that record."""
    cfg, out = open_run(cfg, "finetune", overwrite, resume)
    if lab is None:
        lab = labeled_from_config(cfg, masks=masks)
    lab = LabeledData(label_fraction(lab.table, cfg.label_fraction, cfg.seed), lab.bank, lab.classes)
    write_table(lab.table, out)
    if check_data is not None:
        check_data(lab)
    check_split_by_content(lab)
    inherited = init_seen(cfg.init)
    check_unseen(
        inherited,
        lab,
        f"the --init encoder {cfg.init}",
        "fine-tune on the split it was pretrained with (--splits <its run folder>/splits.csv)",
    )
    return cfg, out, lab, inherited


class FreshEarlyStopping(EarlyStopping):
    """Lightning's ``EarlyStopping`` with its stop signal decided afresh at every check.

    Lightning's signal is sticky: once patience runs out it stays set, and the Trainer holds
    it back only until ``min_epochs``, so a run whose validation score rose again in between
    would still stop at exactly ``min_epochs``. Here a new best clears this callback's own
    earlier signal: a run stops at the first check, at or after ``min_epochs``, that ends
    ``patience`` checks without improvement. (Nothing else sets ``should_stop`` in a
    fine-tuning run.)"""

    _signalled = False

    @property
    def state_key(self) -> str:  # EarlyStopping's own, so a checkpoint written with it resumes here
        return "EarlyStopping" + repr({"monitor": self.monitor, "mode": self.mode})

    def _run_early_stopping_check(self, trainer) -> None:
        if self._signalled:
            trainer.should_stop = False
        super()._run_early_stopping_check(trainer)
        self._signalled = bool(trainer.should_stop)

    # The signal is part of the state a resumed run must keep: Lightning does not save
    # ``trainer.should_stop``, so a run resumed after its stop was signalled (killed while it
    # scored the test split) would otherwise train on.
    def state_dict(self) -> dict:
        return {**super().state_dict(), "signalled": self._signalled}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._signalled = bool(state_dict.get("signalled", False))

    def on_fit_start(self, trainer, pl_module) -> None:  # after a resume has restored the state
        if self._signalled:
            trainer.should_stop = True


def early_stopping_trainer(cfg, out: Path, steps_per_epoch: int, monitor: str):
    """The fine-tuning trainer: early stopping on ``monitor`` (higher is better) and a
    checkpoint of the best epoch, validating every ``val_every`` epochs. Returns the trainer
    and that checkpoint callback."""
    best = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename="best",
        monitor=monitor,
        mode="max",
        save_top_k=1,
        save_last=False,
        enable_version_counter=False,
    )
    stop = FreshEarlyStopping(
        monitor=monitor, mode="max", patience=patience_checks(cfg, steps_per_epoch), check_finite=False
    )
    trainer = make_trainer(
        cfg,
        out,
        callbacks=[best, stop],
        steps_per_epoch=steps_per_epoch,
        find_unused_parameters=cfg.freeze_epochs > 0,
        min_epochs=least_epochs(cfg),
        val_every_n_epochs=val_every(cfg, steps_per_epoch),
    )
    return trainer, best


def least_epochs(cfg) -> int:
    """The epochs a run trains before early stopping may end it: ``min_epochs``, and never
    while the encoder is still frozen or the learning rate still warming up. A slow start
    (validation at chance for the first epochs, common at small label fractions with a high
    encoder learning rate) is not a plateau to stop on."""
    return min(cfg.epochs, max(cfg.min_epochs, cfg.freeze_epochs + math.ceil(cfg.warmup_epochs)))


def fit_keep_best(trainer, best, module, train_loader, val_loader, out: Path, resume: bool) -> None:
    """Fit (resuming from ``out`` with ``resume``), then load the best epoch's weights into
    ``module``, not the last epoch's."""
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume_path(out, resume), weights_only=True)
    if trainer.is_global_zero and best.best_model_path:
        kept = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
        module.load_state_dict(kept["state_dict"])
        module.best_epoch = int(kept["epoch"]) + 1  # counted from 1, like epochs_run
