"""Context restoration (Chen et al., Medical Image Analysis 58:101539, 2019).

Corruption: per image, T times, pick two random non-overlapping square
patches and swap them.  A U-Net on the shared encoder restores the original;
the loss is L2.  ``corrupted_weight`` > 1 weighs the swapped pixels more, so
the decoder cannot score well by copying the untouched rest of the image.

The corruption is batched: a loop over the T swaps, each one gather/scatter
over the whole batch on the device; no per-image Python.
"""

from __future__ import annotations

from dataclasses import dataclass

import segmentation_models_pytorch as smp
import torch
from torch import nn

from ssl_derm.data.transforms import train_augment
from ssl_derm.encoders import encoder_spec
from ssl_derm.pretext.base import PretextTask, StepOutput, TaskSettings, to_device
from ssl_derm.pretext.registry import register_task


def draw_swaps(
    batch: int, height: int, width: int, patch: int, swaps: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``[B, T, 4]`` int64 of ``(y1, x1, y2, x2)``: top-left corners of two
    non-overlapping ``patch``-sized squares per swap, uniform over such pairs.

    A pair that overlaps is redrawn whole (rejection sampling), so every pair
    returned is disjoint; a patch too large for two to fit side by side is refused.
    """
    if patch < 1 or 2 * patch > max(height, width) or patch > min(height, width):
        raise ValueError(
            f"patch size {patch} cannot be placed twice without overlap in {height}x{width} images "
            f"(need 1 <= patch <= {min(min(height, width), max(height, width) // 2)})"
        )

    def corners(n):
        y = torch.randint(0, height - patch + 1, (n,), generator=generator)
        x = torch.randint(0, width - patch + 1, (n,), generator=generator)
        return y, x

    n = batch * swaps
    y1, x1 = corners(n)
    y2, x2 = corners(n)
    for _ in range(10_000):
        bad = ((y1 - y2).abs() < patch) & ((x1 - x2).abs() < patch)
        if not bad.any():
            return torch.stack([y1, x1, y2, x2], dim=1).view(batch, swaps, 4)
        k = int(bad.sum())
        (y1[bad], x1[bad]), (y2[bad], x2[bad]) = corners(k), corners(k)
    raise RuntimeError(f"could not place {n} disjoint patch pairs of {patch} px in {height}x{width}")


def swap_patches(x: torch.Tensor, swaps: torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``swaps`` ``[B, T, 4]`` to ``x`` ``[B, C, H, W]`` in order.

    Returns the corrupted batch and a ``[B, 1, H, W]`` mask of touched pixels.
    """
    if swaps.ndim != 3 or swaps.shape[0] != x.shape[0] or swaps.shape[2] != 4:
        raise ValueError(f"swaps must be [B, T, 4] with B={x.shape[0]}, got {tuple(swaps.shape)}")
    out = x.clone()
    touched = torch.zeros_like(x[:, :1])
    one = torch.ones((), dtype=x.dtype, device=x.device)  # a Python 1.0 here is a host-GPU copy per write
    swaps = to_device(swaps, x.device)
    ar = torch.arange(patch, device=x.device)
    b = torch.arange(x.shape[0], device=x.device)[:, None, None]
    zero = torch.zeros_like(b)
    for t in range(swaps.shape[1]):
        y1, x1, y2, x2 = swaps[:, t].unbind(1)
        ia = ((y1[:, None] + ar)[:, :, None], (x1[:, None] + ar)[:, None, :])
        ib = ((y2[:, None] + ar)[:, :, None], (x2[:, None] + ar)[:, None, :])
        pa = out[b, :, ia[0], ia[1]]  # [B, p, p, C]
        pb = out[b, :, ib[0], ib[1]]
        out[b, :, ia[0], ia[1]] = pb
        out[b, :, ib[0], ib[1]] = pa
        touched[b, zero, ia[0], ia[1]] = one
        touched[b, zero, ib[0], ib[1]] = one
    return out, touched


@dataclass(frozen=True)
class Settings(TaskSettings):
    swaps: int = 20  # patch-pair swaps per image
    patch_size: int = 0  # 0: image_size // 10 (12 px at 128 px)
    corrupted_weight: float = 1.0  # > 1 weighs the swapped pixels more in the L2 loss

    def validate(self) -> None:
        self.require("swaps", self.swaps >= 1, "must be >= 1")
        self.require("patch_size", self.patch_size >= 0, "must be >= 0 (0 = image_size // 10)")
        self.require("corrupted_weight", self.corrupted_weight >= 1, "must be >= 1 (1 = plain L2)")

    def check(self, cfg) -> None:
        if cfg.image_size is not None and 3 * self.patch_size > cfg.image_size:
            self.require(
                "patch_size",
                False,
                f"at most a third of image_size ({cfg.image_size // 3}), so two disjoint patches are easy to place",
            )


@register_task("context_restore")
class ContextRestoreTask(PretextTask):
    """Restore the original image from its patch-swapped copy with a U-Net (L2 loss)."""

    Settings = Settings

    def __init__(self, encoder: nn.Module, cfg) -> None:
        super().__init__(encoder, cfg)
        self.unet = smp.Unet(encoder_spec(cfg.encoder).smp_name, encoder_weights=None, classes=3, activation=None)
        self.unet.encoder = encoder  # one encoder, shared with the rest of ssl-derm
        s = self.settings
        self.swaps, self.patch_size, self.corrupted_weight = s.swaps, s.patch_size, s.corrupted_weight
        self.augment_views = train_augment(self.image_size, fused=self.fused) if self.augment else None

    def patch_for(self, size: int) -> int:
        return self.patch_size or max(4, size // 10)

    def draw(self, x, generator=None):
        b, _, h, w = x.shape
        params = {}
        if self.augment_views is not None:
            params["augment"] = self.augment_views.draw(x, generator)
            h = w = self.image_size
        params["swaps"] = draw_swaps(b, h, w, self.patch_for(min(h, w)), self.swaps, generator)
        return params

    def make_views(self, x, params):
        if "augment" in params:
            x = self.augment_views.apply(x, params["augment"])
        original = self.pipeline.normalize(x)
        corrupted, touched = swap_patches(original, params["swaps"], self.patch_for(min(x.shape[-2:])))
        return {"original": original, "corrupted": corrupted, "touched": touched}

    def compute(self, x, views, params):
        original, touched = views["original"], views["touched"]
        restored = self.unet(views["corrupted"])
        sq = (restored.float() - original.float()) ** 2
        if self.corrupted_weight == 1.0:
            loss = sq.mean()
        else:
            w = 1.0 + (self.corrupted_weight - 1.0) * touched
            loss = (sq * w).sum() / (w.sum() * original.shape[1])
        with torch.no_grad():
            mse_touched = (sq * touched).sum() / (touched.sum() * original.shape[1]).clamp_min(1)
        return StepOutput(
            loss,
            scalars={"mse_swapped": mse_touched},
            images={"corrupted": views["corrupted"], "restored": restored, "original": original},
        )

    def extra_state(self):
        return {
            "decoder_state_dict": self.unet.decoder.state_dict(),
            "segmentation_head_state_dict": self.unet.segmentation_head.state_dict(),
            "swaps": self.swaps,
            "patch_size": self.patch_size,
        }
