"""Context restoration (Chen et al., Medical Image Analysis 58:101539, 2019).

Corruption: per image, T times, pick two random non-overlapping square
patches and swap them.  A U-Net on the shared encoder restores the original;
the loss is L2.  ``corrupted_weight`` > 1 weighs the swapped pixels more, so
the decoder cannot score well by copying the untouched rest of the image.

The corruption is batched: a loop over the T swaps, each one gather/scatter
over the whole batch on the device; no per-image Python.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from ssl_derm.pretext.base import PretextTask
from torch import nn


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
    swaps = swaps.to(x.device)
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
        touched[b, zero, ia[0], ia[1]] = 1.0
        touched[b, zero, ib[0], ib[1]] = 1.0
    return out, touched


class ContextRestoreTask(PretextTask):
    name = "context_restore"

    def __init__(
        self, encoder: nn.Module, smp_name: str, swaps: int = 20, patch_size: int = 0, corrupted_weight: float = 1.0
    ) -> None:
        super().__init__(encoder)
        self.unet = smp.Unet(smp_name, encoder_weights=None, classes=3, activation=None)
        self.unet.encoder = encoder  # one encoder, shared with the rest of ssl-derm
        self.swaps = int(swaps)
        self.patch_size = int(patch_size)
        self.corrupted_weight = float(corrupted_weight)

    def patch_for(self, size: int) -> int:
        return self.patch_size or max(4, size // 10)

    def draw(self, x, generator=None):
        b, _, h, w = x.shape
        return {"swaps": draw_swaps(b, h, w, self.patch_for(min(h, w)), self.swaps, generator)}

    def apply(self, x, params):
        return swap_patches(x, params["swaps"], self.patch_for(min(x.shape[-2:])))[0]

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        self.check_input(x)
        params = self.draw(x, generator)
        corrupted, touched = swap_patches(x, params["swaps"], self.patch_for(min(x.shape[-2:])))
        restored = self.unet(corrupted)
        sq = (restored.float() - x.float()) ** 2
        if self.corrupted_weight == 1.0:
            loss = sq.mean()
        else:
            w = 1.0 + (self.corrupted_weight - 1.0) * touched
            loss = (sq * w).sum() / (w.sum() * x.shape[1])
        with torch.no_grad():
            mse_touched = (sq * touched).sum() / (touched.sum() * x.shape[1]).clamp_min(1)
        return {"loss": loss, "mse_swapped": mse_touched, "corrupted": corrupted, "restored": restored}

    def visuals(self, x, out):
        return {"corrupted": out["corrupted"], "restored": out["restored"], "original": x}

    def extra_state(self):
        return {
            "decoder_state_dict": self.unet.decoder.state_dict(),
            "segmentation_head_state_dict": self.unet.segmentation_head.state_dict(),
            "swaps": self.swaps,
            "patch_size": self.patch_size,
        }
