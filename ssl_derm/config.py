"""Frozen configuration dataclasses, one per stage.

Resolution order: dataclass defaults, then a YAML file (``--config``), then
command-line flags, then ``--set key=value``.  Unknown keys are rejected with
the valid ones named; impossible values name the valid range.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ssl_derm.errors import UserError


@dataclass(frozen=True)
class EngineConfig:
    """Settings shared by every training command (the Lightning engine)."""

    out: str | None = None
    data: str | None = None
    encoder: str | None = None
    image_size: int | None = None
    resize: str = "crop"  # crop: short side to image_size, centre square; squash: whole frame (old)
    batch_size: int = 64
    epochs: int = 10
    max_steps: int = -1
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    seed: int = 0
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    augment: bool = True
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    cache_dir: str | None = None
    strict: bool = False
    log_every_n_steps: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        _check_positive(self, "batch_size", "epochs", "num_nodes", "log_every_n_steps")
        _check_positive(self, "lr", strict=True)
        if self.image_size is not None and (self.image_size < 32 or self.image_size % 32):
            raise UserError(f"image_size={self.image_size}: must be a multiple of 32 and >= 32 (e.g. 96, 128, 224)")
        if self.resize not in ("crop", "squash"):
            raise UserError(f"resize={self.resize!r}: choose crop (keep the aspect ratio) or squash")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise UserError("weight_decay and warmup_epochs must be >= 0")
        fr = self.split_fractions
        if len(fr) != 3 or any(f < 0 or f >= 1 for f in fr[1:]) or not (0 < fr[0] <= 1):
            raise UserError(f"split_fractions={fr}: need three fractions train,val,test in [0, 1)")
        if abs(sum(fr) - 1) > 1e-6:
            raise UserError(f"split_fractions={fr}: must sum to 1")


@dataclass(frozen=True)
class PretrainConfig(EngineConfig):
    """``ssl-derm pretrain``: a pretext task on the unlabelled pool."""

    task: str = "context_restore"
    init: str = "random"
    unlabeled: tuple[str, ...] = ()
    splits: str | None = None  # a splits.csv: the pool takes its train rows, fine-tuning can reuse it
    holdout_fraction: float = 0.05
    log_images_every_n_steps: int = 100
    # rotation
    rotation_angles: tuple[float, ...] = (0, 60, 120, 180, 240, 300)
    angle_jitter: float = 5.0
    rotation_stretch: float = 1.25  # random-direction stretch before rotating (1 = none); see pretext/rotation.py
    # context restoration
    swaps: int = 20
    patch_size: int = 0  # 0: image_size // 10 (12 px at 128 px)
    corrupted_weight: float = 1.0
    # kNN monitor on the labelled validation split
    knn_k: int = 20
    knn_max_bank: int = 2000

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_fraction(self, "holdout_fraction", allow_zero=True)
        _check_positive(self, "swaps", "knn_k", "log_images_every_n_steps")
        if self.patch_size < 0 or self.corrupted_weight < 1:
            raise UserError("patch_size must be >= 0 (0 = auto) and corrupted_weight >= 1")
        if self.image_size is not None and 3 * self.patch_size > self.image_size:
            raise UserError(
                f"patch_size={self.patch_size}: at most a third of image_size ({self.image_size // 3}), so that "
                "two disjoint patches are easy to place"
            )
        if len(self.rotation_angles) < 2:
            raise UserError("rotation_angles: need at least two angles")
        if self.task == "rotation" and self.resize == "squash":
            raise UserError("resize=squash with the rotation task: the stretch turns with the label and gives it away")
        if not (1 <= self.rotation_stretch <= 2):
            raise UserError(f"rotation_stretch={self.rotation_stretch}: must be in [1, 2] (1 = no stretch)")


@dataclass(frozen=True)
class FinetuneConfig(EngineConfig):
    """``ssl-derm finetune``: a focal-loss classifier on a (pretrained) encoder."""

    init: str = "imagenet"
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
    label_fraction: float = 1.0
    min_steps: int = 0  # raise epochs so that at least this many steps run (small label fractions)
    splits: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_fraction(self, "label_fraction")
        if self.class_weights not in ("auto", "none", "balanced", "median"):
            raise UserError(f"class_weights={self.class_weights!r}: choose auto, none, balanced or median")
        if self.focal_gamma < 0 or not (0 <= self.dropout < 1) or self.freeze_epochs < 0:
            raise UserError("focal_gamma >= 0, 0 <= dropout < 1 and freeze_epochs >= 0 are required")
        _check_positive(self, "encoder_lr", strict=True)
        _check_positive(self, "patience")
        if self.min_steps < 0:
            raise UserError(f"min_steps={self.min_steps}: must be >= 0")


@dataclass(frozen=True)
class BenchmarkConfig(FinetuneConfig):
    """``ssl-derm benchmark``: finetune for every init x label fraction x seed."""

    inits: tuple[str, ...] = ("random", "imagenet")
    seeds: int = 2
    label_fractions: tuple[float, ...] = (0.1, 1.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive(self, "seeds")
        for f in self.label_fractions:
            if not (0 < f <= 1):
                raise UserError(f"label_fractions: {f} is outside (0, 1]")
        if not self.inits:
            raise UserError("inits: give at least one init (random, imagenet or a checkpoint path)")


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


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Convert ``value`` (from YAML or the command line) to the field's type."""
    hint = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if value is None:
        if type(None) in typing.get_args(hint):
            return None
        raise UserError(f"{name}: may not be null")
    origin = typing.get_origin(hint)
    base = hint if origin is None else (args[0] if origin is not tuple else hint)
    if typing.get_origin(base) is tuple:
        elem = typing.get_args(base)[0]
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            items = [items]
        return tuple(_scalar(name, elem, v) for v in items)
    return _scalar(name, base, value)


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
    """Merge override layers (later wins) over ``cls``'s defaults and validate."""
    valid = {f.name for f in fields(cls)}
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            key = key.replace("-", "_")
            if key not in valid:
                raise UserError(f"unknown setting {key!r}; valid: {', '.join(sorted(valid))}")
            merged[key] = _coerce(cls, key, value)
    return cls(**merged)


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
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


# Settings that decide which images a run trains on: a resumed run must keep them, or the
# weights in last.ckpt (which saw the old images) would be recorded with the new ones.
DATA_SETTINGS = (
    "data",
    "splits",
    "seed",
    "split_fractions",
    "unlabeled",
    "init",
    "label_fraction",
    "image_size",
    "resize",
)


def check_resume_settings(cfg: Any, path: Path) -> None:
    """Refuse ``--resume`` with other data settings than the run's saved ``config.yaml``."""
    if not path.is_file():
        return
    saved, now = load_yaml(path), to_dict(cfg)
    changed = [k for k in DATA_SETTINGS if k in saved and k in now and saved[k] != now[k]]
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
    "field",
    "load_yaml",
    "parse_set",
    "save_yaml",
    "to_dict",
]
