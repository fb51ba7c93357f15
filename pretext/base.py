"""The pretext-task contract.

A task is one module of this package that declares, in one place:

- its **name**: ``@register_task("name")`` on the class;
- its **settings**: a frozen dataclass (``Settings``) validated on creation,
  reachable as ``--set name.key=value`` and as a YAML section ``name:``;
- how it builds its **inputs** from a batch of decoded images, split after
  kornia into ``draw`` (every random number of a step, from an explicit
  ``torch.Generator``) and ``make_views`` (deterministic given them), composed
  from the shared augmentation recipes of ``ssl_derm.data.transforms``.
  ``forward`` goes through both, so a replayed draw is what was trained on;
- its **loss** and what it **logs**: ``compute`` returns a ``StepOutput`` whose
  scalars, images and texts the training module logs under their own names;
- what it **saves** into ``ssl.ckpt`` besides the encoder: ``extra_state``.

Optional hooks: ``on_train_step`` (momentum updates, schedules) and
``Settings.check`` (rules that involve the run's other settings).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ssl_derm.data.transforms import ImagePipeline, to_float, two_view_augment
from ssl_derm.encoders import encoder_spec, feature_dim, pooled_features
from ssl_derm.errors import UserError


@dataclass(frozen=True)
class TaskSettings:
    """Base of every task's settings; subclasses add fields and ``validate``."""

    task: ClassVar[str] = "task"  # set by @register_task, names the settings in error messages

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``UserError`` naming the setting and its valid range."""

    def check(self, cfg) -> None:
        """Rules involving the run's other settings (image size, resize, augment)."""

    def require(self, name: str, ok: bool, rule: str) -> None:
        if not ok:
            raise UserError(f"{self.task}.{name}={getattr(self, name)!r}: {rule}")

    def as_dict(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


@dataclass
class StepOutput:
    """What one step of a task returns: the loss, and what the module logs (under
    ``train/`` or ``val/``): scalars every step, images (normalised ``[N, 3, H, W]``)
    and texts (called only when logged) every ``log_images_every_n_steps``."""

    loss: torch.Tensor
    scalars: dict[str, torch.Tensor | float] = field(default_factory=dict)
    images: dict[str, torch.Tensor] = field(default_factory=dict)
    texts: dict[str, Callable[[], str]] = field(default_factory=dict)

    def prefixed(self, prefix: str) -> StepOutput:
        def rename(d):
            return {f"{prefix}/{k}": v for k, v in d.items()}

        return StepOutput(self.loss, rename(self.scalars), rename(self.images), rename(self.texts))


class PretextTask(nn.Module):
    """Base class: subclasses register a name, set ``Settings`` and implement
    ``draw``, ``make_views`` and ``compute``."""

    name: ClassVar[str] = "base"
    Settings: ClassVar[type[TaskSettings]] = TaskSettings

    def __init__(self, encoder: nn.Module, cfg) -> None:
        super().__init__()
        self.encoder = encoder
        self.settings = self.settings_from(cfg)
        self.settings.check(cfg)
        self.image_size = int(cfg.image_size or 128)
        self.augment = bool(cfg.augment)
        self.fused = getattr(cfg, "augmentation", "kornia") == "fused"  # the recipes as one warp (data/fused.py)
        self.pipeline = ImagePipeline(encoder_spec(cfg.encoder).normalization)

    @classmethod
    def settings_from(cls, cfg) -> TaskSettings:
        found = (getattr(cfg, "task_settings", None) or {}).get(cls.name)
        return found if found is not None else cls.Settings()

    @classmethod
    def uses(cls, settings: TaskSettings) -> tuple[str, ...]:
        """Other tasks whose settings this one needs (a combined task's parts)."""
        return ()

    @staticmethod
    def check_input(x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(x.shape)}")
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"image height and width must be multiples of 32, got {tuple(x.shape[-2:])}")

    # --- the contract ---------------------------------------------------------
    def draw(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, Any]:
        """Every random number of a step for the decoded batch ``x`` (float in [0, 1])."""
        raise NotImplementedError

    def make_views(self, x: torch.Tensor, params: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The networks' inputs (normalised, channels_last), deterministic given ``params``."""
        raise NotImplementedError

    def compute(self, x: torch.Tensor, views: dict[str, torch.Tensor], params: dict[str, Any]) -> StepOutput:
        """Loss and logs from the views."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> StepOutput:
        """``images``: a decoded batch, uint8 or float in [0, 1], ``[B, 3, H, W]``."""
        self.check_input(images)
        x = to_float(images)
        # Views are made in float32 outside autocast: warps and patch swaps are exact there.
        with torch.autocast(x.device.type, enabled=False):
            params = self.draw(x, generator)
            views = self.make_views(x, params)
        return self.compute(x, views, params)

    def on_train_step(self, step: int, total_steps: int) -> None:
        """Called before every training step (momentum encoders, schedules)."""

    def extra_state(self) -> dict:
        """Weights and settings besides the encoder's that ``ssl.ckpt`` keeps."""
        return {}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


# --- two-view methods (SimCLR, BYOL, MoCo) ---------------------------------------
@dataclass(frozen=True)
class TwoViewSettings(TaskSettings):
    min_scale: float = 0.2  # smallest crop, as a share of the image
    blur: float = 0.5  # probability of a Gaussian blur per view
    hidden_dim: int = 1024
    projection_dim: int = 128

    def validate(self) -> None:
        self.require("min_scale", 0 < self.min_scale <= 1, "must be in (0, 1]")
        self.require("blur", 0 <= self.blur <= 1, "must be in [0, 1]")
        self.require("hidden_dim", self.hidden_dim >= 1, "must be >= 1")
        self.require("projection_dim", self.projection_dim >= 1, "must be >= 1")

    def check(self, cfg) -> None:
        if not cfg.augment:
            raise UserError(f"{self.task} learns from two augmented views of each image; it needs augment=true")


class TwoViewTask(PretextTask):
    """Two augmented views of every image (``two_view_augment``), encoded and pooled."""

    Settings: ClassVar[type[TaskSettings]] = TwoViewSettings

    def __init__(self, encoder: nn.Module, cfg) -> None:
        super().__init__(encoder, cfg)
        s = self.settings
        self.views_augment = two_view_augment(self.image_size, s.min_scale, s.blur, fused=self.fused)
        self.feature_dim = feature_dim(encoder)

    def draw(self, x, generator=None):
        return {"view0": self.views_augment.draw(x, generator), "view1": self.views_augment.draw(x, generator)}

    def make_views(self, x, params):
        return {k: self.pipeline.normalize(self.views_augment.apply(x, p)) for k, p in params.items()}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return pooled_features(self.encoder, x)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a step's drawn parameters (drawn on the CPU) to ``device`` without making the
    host wait for the GPU: a plain copy from pageable memory waits for the GPU's queue to
    drain, every step. From pinned memory it is queued like a kernel."""
    if device.type != "cuda" or t.is_cuda:
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


@torch.no_grad()
def embedding_health(z0: torch.Tensor, z1: torch.Tensor) -> dict[str, torch.Tensor]:
    """Health signals of a two-view method on a batch of embeddings of paired views:

    - ``positive_similarity``: mean cosine of an image's two views (1: views agree);
    - ``negative_similarity``: mean cosine between different images (near 0 is healthy);
    - ``embedding_spread``: the standard deviation of the L2-normalised embeddings
      times sqrt(dim): about 1 for well spread embeddings, 0 when they collapse to a
      point (lightly's ``std_of_l2_normalized``, scaled to be dimension-free).
    """
    from lightly.utils.debug import std_of_l2_normalized

    a, b = F.normalize(z0.float(), dim=1), F.normalize(z1.float(), dim=1)
    sim = a @ b.T
    n = sim.shape[0]
    pos = sim.diagonal().mean()
    neg = (sim.sum() - sim.diagonal().sum()) / max(1, n * n - n)
    spread = std_of_l2_normalized(a) * math.sqrt(a.shape[1])
    return {"positive_similarity": pos, "negative_similarity": neg, "embedding_spread": spread}
