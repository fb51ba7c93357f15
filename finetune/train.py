"""``ssl-derm finetune``: a model for one target (``finetune/targets``: a focal-loss
classifier, or with ``target=segmentation`` a lesion-segmentation U-Net) on an encoder from
``--init``. What every target's run does is here; what is the target's own, it says."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ssl_derm.checkpoint import FORMAT_VERSION, save_checkpoint
from ssl_derm.config import FinetuneConfig, to_dict
from ssl_derm.data.identity import ContentIds
from ssl_derm.data.labeled import LabeledData
from ssl_derm.encoders import encoder_spec
from ssl_derm.engine import loader_pinning
from ssl_derm.finetune.run import (
    early_stopping_trainer,
    fit_keep_best,
    split_images,
    start_run,
    table_sha1,
    training_record,
)
from ssl_derm.finetune.targets import TARGETS, FinetuneRun, Target


def build_finetune(
    cfg: FinetuneConfig, overwrite: bool = False, resume: bool = False, lab: LabeledData | None = None
) -> FinetuneRun:
    """Run folder, data (label fraction, the target's and the leak checks), model and LightningModule."""
    target = TARGETS[cfg.target]
    cfg, out, lab, inherited = start_run(
        cfg, overwrite, resume, lab, target.write_table, target.check_data, target.masks
    )
    return target.build(cfg, out, lab, inherited)


def fit_finetune(run: FinetuneRun, resume: bool = False):
    """Train with early stopping on the target's validation score; the module ends with the
    best epoch's weights. Returns the trainer and the best-checkpoint callback."""
    target = TARGETS[run.cfg.target]
    trainer, best = early_stopping_trainer(run.cfg, run.out, run.steps_per_epoch, target.monitor)
    train_loader, val_loader = target.loaders(run, loader_pinning(run.lab.bank, trainer, run.cfg.data_on_device))
    print(target.describe(run))
    fit_keep_best(trainer, best, run.module, train_loader, val_loader, run.out, resume)
    return trainer, best


def export_finetune(run: FinetuneRun, trainer, best, blind: bool = False) -> dict:
    """Score the test split once; write metrics.json and model.ckpt. ``blind``: print the
    validation score only and keep test out of TensorBoard (its scores are in metrics.json)."""
    cfg, lab = run.cfg, run.lab
    target: Target = TARGETS[cfg.target]
    model = run.module.export_model()  # classifier: the EMA weights with --ema, the logit adjustment folded in
    record = target.init_record(run)  # reads the init checkpoint once, for metrics and model.ckpt
    metrics = target.score_test(run, model, trainer, log=not blind) if cfg.score_test else {}
    metrics.update(
        {
            **({"target": target.name} if target.tag_metrics else {}),
            "split": "test" if cfg.score_test else "val only (test not scored)",
            "init": cfg.init,
            **record,
            "label_fraction": cfg.label_fraction,
            "seed": cfg.seed,
            "splits_sha1": table_sha1(lab.table),
            "format_version": FORMAT_VERSION,
            target.val_key: float(best.best_model_score) if best.best_model_score is not None else None,
            **training_record(trainer, run.module, cfg, run.steps_per_epoch),
        }
    )
    (run.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    save_checkpoint(
        run.out / "model.ckpt",
        encoder_name=cfg.encoder,
        encoder_state_dict=model.encoder.state_dict(),
        image_size=cfg.image_size,
        normalization=encoder_spec(cfg.encoder).normalization,
        task=target.task,
        config=to_dict(cfg),
        **target.checkpoint_fields(run, model),
        init_chain=record["init_name"],
        seen_images=ContentIds.concat([run.inherited, lab.bank.ids(lab.indices("train"))]).to_state(),
        split_images=split_images(lab),
    )
    if blind and cfg.score_test:
        print(f"{target.val_line(metrics)} (test scored, held back)")
    else:
        print(target.summary(metrics, cfg.score_test))
    print(f"wrote {run.out / 'model.ckpt'} and {run.out / 'metrics.json'}")
    return metrics


def run_finetune(
    cfg: FinetuneConfig,
    overwrite: bool = False,
    resume: bool = False,
    lab: LabeledData | None = None,
    started: Callable[[Path], None] | None = None,
    blind: bool = False,
) -> dict:
    """Fine-tune; return the test metrics (also in ``OUT/metrics.json``). ``started`` is called
    with the run folder once it is set up, before training; ``blind`` keeps the test scores out
    of the printed summary."""
    run = build_finetune(cfg, overwrite, resume, lab)
    if started is not None:
        started(run.out)
    trainer, best = fit_finetune(run, resume)
    if not trainer.is_global_zero:
        return {}
    return export_finetune(run, trainer, best, blind)
