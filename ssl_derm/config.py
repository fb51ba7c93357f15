"""Frozen configuration dataclasses, one per stage.

Resolution order: dataclass defaults, then a YAML file (``--config``), then
command-line flags, then ``--set key=value``.  Unknown keys are rejected with
the valid ones named; impossible values name the valid range.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ssl_derm.errors import UserError


def setting(
    default: Any = None, *, data: bool = False, in_key: bool = True, key_if_set: bool = False, default_factory=None
) -> Any:
    """A settings field with its role declared on it, once:

    - ``data``: it decides which images a run trains on, so a resumed run must keep it (the
      weights in ``last.ckpt`` saw the old images; ``check_resume_settings``);
    - ``in_key=False``: it says where a run lives or how it reports, not what it trains, so the
      benchmark's ``run_key`` leaves it out and a finished run is not redone for it;
    - ``key_if_set``: a setting added after runs were keyed, whose default trains as those runs
      did: ``run_key`` counts it only when it is set to something else, so they keep their keys."""
    meta = {"data": data, "in_key": in_key, "key_if_set": key_if_set}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def data_settings(cfg: Any) -> list[str]:
    """The settings of ``cfg`` (an instance or class) that a resumed run must keep."""
    return [f.name for f in fields(cfg) if f.metadata.get("data")]


def key_settings(cfg: Any) -> list[str]:
    """The settings of ``cfg`` that change what a run trains (its ``run_key``)."""
    return [f.name for f in fields(cfg) if f.metadata.get("in_key", True)]


def key_values(cfg: Any) -> dict:
    """The values of ``key_settings`` of the instance ``cfg``, less each ``key_if_set`` one at
    its default: what a benchmark's ``run_key`` hashes."""
    values = to_dict(cfg)
    return {
        f.name: values[f.name]
        for f in fields(cfg)
        if f.metadata.get("in_key", True) and not (f.metadata.get("key_if_set") and getattr(cfg, f.name) == f.default)
    }


@dataclass(frozen=True)
class EngineConfig:
    """Settings shared by every training command (the Lightning engine)."""

    out: str | None = setting(None, in_key=False)
    data: str | None = setting(None, data=True, in_key=False)
    encoder: str | None = None
    image_size: int | None = setting(None, data=True)
    resize: str = setting("crop", data=True)  # crop: short side to image_size, centre square; squash: whole frame
    batch_size: int = 64
    epochs: int = 10
    max_steps: int = -1
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    seed: int = setting(0, data=True)
    split_fractions: tuple[float, float, float] = setting((0.7, 0.15, 0.15), data=True)
    augment: bool = True
    # kornia: the recipes as a chain of kornia ops; fused: the same recipes as one warp, one colour
    # map and one blur per batch (ssl_derm/data/fused.py), for GPUs whose host would wait on kornia
    augmentation: str = setting("kornia", key_if_set=True)
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    cache_dir: str | None = setting(None, in_key=False)
    # the decoded images on the training device: auto = on a GPU when they fit in a quarter of
    # its free memory; batches are then indexed there, with no host-to-device copy per step
    data_on_device: str = setting("auto", in_key=False)
    strict: bool = False
    log_every_n_steps: int = setting(10, in_key=False)
    progress: bool = setting(True, in_key=False)

    def __post_init__(self) -> None:
        _check_positive(self, "batch_size", "epochs", "num_nodes", "log_every_n_steps")
        _check_positive(self, "lr", strict=True)
        if self.image_size is not None and (self.image_size < 32 or self.image_size % 32):
            raise UserError(f"image_size={self.image_size}: must be a multiple of 32 and >= 32 (e.g. 96, 128, 224)")
        if self.augmentation not in ("kornia", "fused"):
            raise UserError(f"augmentation={self.augmentation!r}: choose kornia or fused")
        if self.data_on_device not in ("auto", "on", "off"):
            raise UserError(f"data_on_device={self.data_on_device!r}: choose auto, on or off")
        if self.resize not in ("crop", "squash"):
            raise UserError(f"resize={self.resize!r}: choose crop (keep the aspect ratio) or squash")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise UserError("weight_decay and warmup_epochs must be >= 0")
        if self.precision in ("16-true", "bf16-true", "16", "bf16"):
            raise UserError(
                f"precision={self.precision}: half-precision weights are not supported; "
                "use 16-mixed or bf16-mixed (GPU), or 32-true"
            )
        fr = self.split_fractions
        if len(fr) != 3 or any(f < 0 or f >= 1 for f in fr[1:]) or not (0 < fr[0] <= 1):
            raise UserError(f"split_fractions={fr}: need three fractions train,val,test in [0, 1)")
        if abs(sum(fr) - 1) > 1e-6:
            raise UserError(f"split_fractions={fr}: must sum to 1")


@dataclass(frozen=True)
class PretrainConfig(EngineConfig):
    """``ssl-derm pretrain``: a pretext task on the unlabelled pool."""

    task: str = "context_restore"
    init: str = setting("random", data=True)
    unlabeled: tuple[str, ...] = setting((), data=True)
    # a splits.csv: the pool takes its train rows, fine-tuning can reuse it
    splits: str | None = setting(None, data=True, in_key=False)
    holdout_fraction: float = 0.05
    log_images_every_n_steps: int = 100
    # kNN monitor on the labelled validation split
    knn_k: int = 20
    knn_max_bank: int = 2000
    # The task's own settings (and its parts'), by task name: {name: the task's Settings}.
    # YAML: a section named after the task; command line: --set <task>.<key>=value.
    task_settings: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_fraction(self, "holdout_fraction", allow_zero=True)
        _check_positive(self, "knn_k", "log_images_every_n_steps")
        object.__setattr__(self, "task_settings", resolve_task_settings(self.task, self.task_settings or {}))
        for settings in self.task_settings.values():
            settings.check(self)  # rules involving the run's other settings (image size, resize, augment)


def resolve_task_settings(task: str, sections: dict[str, Any]) -> dict[str, Any]:
    """``{name: Settings}`` for ``task`` and the tasks it uses, from ``sections``
    (``{name: Settings or {key: value}}``); a section of a task the run does not use
    is an error, so a mistyped ``--set`` is never silently ignored."""
    from ssl_derm.pretext.registry import get_task

    cls = get_task(task)
    out = {task: settings_from_section(cls.Settings, sections.get(task))}
    for part in cls.uses(out[task]):
        out[part] = settings_from_section(get_task(part).Settings, sections.get(part))
    unused = [name for name in sections if name not in out]
    if unused:
        raise UserError(f"settings for task(s) {', '.join(unused)} given, but the run trains task {task!r}")
    return out


def settings_from_section(cls: type, values: Any) -> Any:
    """A task's Settings dataclass from a mapping (YAML section or --set keys), coerced and validated."""
    if values is None:
        return cls()
    if isinstance(values, cls):
        return values
    if not isinstance(values, dict):
        raise UserError(f"{cls.task}: expected a mapping of setting: value, got {values!r}")
    valid = {f.name for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        key = str(key).replace("-", "_")
        if key not in valid:
            raise UserError(
                f"unknown setting {cls.task}.{key}; valid: {', '.join(f'{cls.task}.{v}' for v in sorted(valid))}"
            )
        kwargs[key] = _coerce(cls, key, value, prefix=f"{cls.task}.")
    return cls(**kwargs)


# The fine-tuning targets: each --target name and the module:class of ssl_derm.finetune.targets
# that implements it (read here without importing torch, so the CLI can list them).
TARGETS = {"classification": "classification:Classification", "segmentation": "segmentation:Segmentation"}


@dataclass(frozen=True)
class FinetuneConfig(EngineConfig):
    """``ssl-derm finetune``: a focal-loss classifier on a (pretrained) encoder."""

    init: str = setting("imagenet", data=True)
    epochs: int = 15
    lr: float = 1e-3
    encoder_lr: float = 3e-4
    focal_gamma: float = 1.0
    class_weights: str = "auto"  # balanced, or none with balanced_sampler
    balanced_sampler: bool = False
    freeze_epochs: int = 0
    freeze_bn: bool = False  # BatchNorm keeps the init's running statistics for the whole run
    linear_probe: bool = False
    dropout: float = 0.2
    patience: int = 5
    min_epochs: int = 0  # early stopping cannot end a run before this many epochs (stretched like patience)
    label_fraction: float = setting(1.0, data=True)
    min_steps: int = 0  # raise epochs so that at least this many steps run (small label fractions)
    # where an epoch is shorter than this many optimiser steps, validate every k epochs instead of
    # every epoch (k = val_check_steps // steps per epoch; patience counted in those checks, the
    # epoch budget rounded up to a multiple of k); 0 = every epoch
    val_check_steps: int = setting(0, key_if_set=True)
    splits: str | None = setting(None, data=True, in_key=False)
    freeze_blocks: int = 0  # the first N encoder stages (stem, blocks...) stay frozen the whole run
    mixup: float = 0.0  # mixup alpha: pairs of images mixed with Beta(alpha, alpha) weights; 0 = off
    cutmix: float = 0.0  # CutMix alpha; with mixup too, each batch gets one of them; 0 = off
    ema: float = 0.0  # decay of an exponential moving average of the weights, validated and kept; 0 = off
    logit_adjust: float = 0.0  # post-hoc logit adjustment tau (Menon et al. 2021); 0 = off
    two_stage: bool = False  # first two_stage_class vs the rest, then the other classes among the rest
    two_stage_class: str = "nv"
    # false: validation only (the benchmark's recipe selection scores test later, once)
    score_test: bool = setting(True, in_key=False)
    # segmentation: a U-Net (encoder from init; decoder too from a context-restoration checkpoint
    # when init_decoder) trained on lesion masks with Dice + BCE; selected on validation Dice
    target: str = setting("classification", data=True)  # classification or segmentation
    init_decoder: bool = True  # segmentation: start the decoder from the init's U-Net decoder when it has one
    # segmentation: leave out (and count) images without a readable mask
    skip_missing_masks: bool = setting(False, data=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target not in TARGETS:
            raise UserError(f"target={self.target!r}: choose {' or '.join(TARGETS)}")
        if self.target == "segmentation":
            off = [n for n in ("mixup", "cutmix", "logit_adjust", "two_stage", "balanced_sampler") if getattr(self, n)]
            if off:
                raise UserError(
                    f"{', '.join(off)}: classification recipes, not for target=segmentation "
                    "(its loss is Dice + BCE on the lesion masks)"
                )
        _check_fraction(self, "label_fraction")
        if self.class_weights not in ("auto", "none", "balanced", "median"):
            raise UserError(f"class_weights={self.class_weights!r}: choose auto, none, balanced or median")
        if self.focal_gamma < 0 or not (0 <= self.dropout < 1) or self.freeze_epochs < 0:
            raise UserError("focal_gamma >= 0, 0 <= dropout < 1 and freeze_epochs >= 0 are required")
        _check_positive(self, "encoder_lr", strict=True)
        _check_positive(self, "patience")
        for name in ("min_steps", "min_epochs", "val_check_steps"):
            if getattr(self, name) < 0:
                raise UserError(f"{name}={getattr(self, name)}: must be >= 0")
        for name in ("freeze_blocks", "mixup", "cutmix", "logit_adjust"):
            if getattr(self, name) < 0:
                raise UserError(f"{name}={getattr(self, name)}: must be >= 0 (0 = off)")
        if self.two_stage and (self.mixup > 0 or self.cutmix > 0 or self.logit_adjust > 0):
            raise UserError("two_stage does not combine with mixup, cutmix or logit_adjust yet; choose one recipe")
        if not (0 <= self.ema < 1):
            raise UserError(f"ema={self.ema}: must be in [0, 1) (a decay such as 0.999; 0 = off)")


@dataclass(frozen=True)
class BenchmarkConfig(FinetuneConfig):
    """``ssl-derm benchmark``: finetune for every init x label fraction x seed."""

    inits: tuple[str, ...] = ("random", "imagenet")
    seeds: int = 2
    label_fractions: tuple[float, ...] = (0.1, 1.0)
    folds: int = 0  # >= 3: lesion-grouped stratified K-fold instead of one split
    select_on: str = "none"  # val: per init, fraction and fold, the select_grid point with the best val score
    select_grid: str = "encoder_lr=0.0001,0.0003,0.001;freeze_epochs=0,1"  # key=v1,v2;key=...
    select_extend: int = (
        0  # select_on=val: while the winning encoder_lr is the grid's lowest or highest, try one step on
    )
    # a run whose kept (best validation) epoch is the last of its budget runs again with twice the
    # epochs, min_steps and min_epochs (patience unchanged), at most this many times
    budget_doublings: int = 0
    tta: bool = False  # also keep each run's test predictions with the 8 dihedral views, and compare
    cam_in_lesion: bool = False  # also keep each run's Grad-CAM mass inside the lesion per test image, and compare
    # score test in every run but show validation only: no test figure printed, no table written
    # (benchmark --report-only writes them, once the study is complete)
    blind: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive(self, "seeds")
        if self.folds and self.folds < 3:
            raise UserError(f"folds={self.folds}: 0 (one split) or >= 3 (test, validation and training parts)")
        if self.select_on not in ("none", "val"):
            raise UserError(f"select_on={self.select_on!r}: none or val (recipes are never chosen on test)")
        if self.select_on == "val":
            select_grid(self)
        if self.select_extend < 0:
            raise UserError(f"select_extend={self.select_extend}: must be >= 0 (0 = the grid alone)")
        if self.budget_doublings < 0:
            raise UserError(f"budget_doublings={self.budget_doublings}: must be >= 0 (0 = the budget as set)")
        if not self.score_test:
            raise UserError("score_test=false: the benchmark reports test metrics (selection runs skip them itself)")
        for f in self.label_fractions:
            if not (0 < f <= 1):
                raise UserError(f"label_fractions: {f} is outside (0, 1]")
        if not self.inits:
            raise UserError("inits: give at least one init (random, imagenet or a checkpoint path)")


def select_grid(cfg: Any) -> list[dict[str, Any]]:
    """The grid of ``select_grid`` (``key=v1,v2;key=v1``) as a list of fine-tuning overrides,
    every combination once; keys must be fine-tuning settings, values are coerced and checked."""
    import itertools

    axes = []
    for item in filter(None, (part.strip() for part in cfg.select_grid.split(";"))):
        key, sep, values = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in {f.name for f in fields(FinetuneConfig)} or key in ("init", "seed", "out"):
            raise UserError(f"select_grid: {item!r} is not key=v1,v2 with a fine-tuning setting as key")
        axes.append([(key, _coerce(FinetuneConfig, key, v.strip())) for v in values.split(",")])
    if not axes:
        raise UserError("select_grid: give at least one key=v1,v2")
    grid = [dict(combo) for combo in itertools.product(*axes)]
    for point in grid:
        FinetuneConfig(**point)  # each point must be a valid recipe
    return grid


def _check_positive(cfg: Any, *names: str, strict: bool = True) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value is not None and (value <= 0 if strict else value < 0):
            raise UserError(f"{name}={value}: must be > 0")


def _check_fraction(cfg: Any, name: str, allow_zero: bool = False) -> None:
    value = getattr(cfg, name)
    lo_ok = value >= 0 if allow_zero else value > 0
    if not (lo_ok and value <= 1):
        bound = "[0, 1]" if allow_zero else "(0, 1]"
        raise UserError(f"{name}={value}: must be in {bound}")


def _coerce(cls: type, name: str, value: Any, prefix: str = "") -> Any:
    """Convert ``value`` (from YAML or the command line) to the field's type."""
    hint = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if hint is Any:
        return value
    if value is None:
        if type(None) in typing.get_args(hint):
            return None
        raise UserError(f"{prefix}{name}: may not be null")
    origin = typing.get_origin(hint)
    base = hint if origin is None else (args[0] if origin is not tuple else hint)
    if typing.get_origin(base) is tuple:
        elem = typing.get_args(base)[0]
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            items = [items]
        return tuple(_scalar(prefix + name, elem, v) for v in items)
    return _scalar(prefix + name, base, value)


def _scalar(name: str, typ: type, value: Any) -> Any:
    if isinstance(value, str) and typ is not str:
        value = yaml.safe_load(value)
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            raise ValueError
        if typ is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return typ(value)
    except (TypeError, ValueError):
        raise UserError(f"{name}={value!r}: expected {typ.__name__}") from None


def build_config(cls: type, *layers: dict[str, Any]) -> Any:
    """Merge override layers (later wins) over ``cls``'s defaults and validate.

    For ``PretrainConfig``, a key named after a task (a YAML section) or ``task.key``
    (``--set``) sets that task's own settings; YAML sections of tasks the run does
    not use are ignored (a profile may hold several), dotted keys are not."""
    valid = {f.name for f in fields(cls)} - {"task_settings"}
    tasks = _task_names() if "task_settings" in {f.name for f in fields(cls)} else ()
    merged: dict[str, Any] = {}
    sections: dict[str, dict] = {}
    dotted: set[str] = set()
    for layer in layers:
        for key, value in layer.items():
            key = key.replace("-", "_")
            head, dot, rest = key.partition(".")
            if key in valid:
                merged[key] = _coerce(cls, key, value)
            elif head in tasks and dot:
                sections.setdefault(head, {})[rest] = value
                dotted.add(head)
            elif head in tasks and isinstance(value, dict):
                sections.setdefault(head, {}).update(value)
            else:
                hint = f"; task settings: <task>.<key> with task one of {', '.join(tasks)}" if tasks else ""
                raise UserError(f"unknown setting {key!r}; valid: {', '.join(sorted(valid))}{hint}")
    if tasks:
        from ssl_derm.pretext.registry import get_task

        task = merged.get("task", cls.task)
        if task not in tasks:
            raise UserError(f"task={task!r}: choose one of {', '.join(tasks)}")
        sections[task] = settings_from_section(get_task(task).Settings, sections.get(task))  # built once
        used = {task, *get_task(task).uses(sections[task])}
        sections = {k: v for k, v in sections.items() if k in used or k in dotted}
        merged["task_settings"] = sections
    return cls(**merged)


def _task_names() -> tuple[str, ...]:
    from ssl_derm.pretext.registry import task_names

    return task_names()


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of setting: value")
    return data


def parse_set(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected key=value")
        out[key.strip()] = value
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain YAML-able settings; a pretraining config's task settings become sections named after the tasks."""
    out = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "task_settings":
            out.update({name: settings.as_dict() for name, settings in (value or {}).items()})
        else:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def check_resume_settings(cfg: Any, path: Path) -> None:
    """Refuse ``--resume`` with other data settings than the run's saved ``config.yaml``."""
    if not path.is_file():
        return
    saved, now = load_yaml(path), to_dict(cfg)
    changed = [k for k in data_settings(cfg) if k in saved and k in now and saved[k] != now[k]]
    if changed:
        diffs = ", ".join(f"{k}: {saved[k]!r} -> {now[k]!r}" for k in changed)
        raise UserError(
            f"--resume with other data settings than the run was started with ({diffs}); the weights "
            "already saw the old images. Resume with the same settings or start a new --out"
        )


def save_yaml(cfg: Any, path: Path) -> None:
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


__all__ = [
    "BenchmarkConfig",
    "EngineConfig",
    "FinetuneConfig",
    "PretrainConfig",
    "build_config",
    "data_settings",
    "field",
    "key_settings",
    "key_values",
    "load_yaml",
    "parse_set",
    "save_yaml",
    "setting",
    "to_dict",
]
