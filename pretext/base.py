"""The pretext-task contract (after timm's ``task``): an ``nn.Module`` that turns
a batch of unlabelled, normalised images into ``{"loss": ..., ...}``.

Randomness comes from an explicit ``torch.Generator`` and is split into
``draw`` (random parameters) and ``apply`` (deterministic given them), after
kornia, so a corruption can be replayed exactly.
"""

from __future__ import annotations

import torch
from torch import nn


class PretextTask(nn.Module):
    """Base class: subclasses set ``name`` and implement ``draw``/``apply``/``forward``."""

    name = "base"
    preserves_up = False  # True: the shared augmentation must keep "up" (no rotation, no vertical flip)

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    @staticmethod
    def check_input(x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W], got {tuple(x.shape)}")
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"image height and width must be multiples of 32, got {tuple(x.shape[-2:])}")

    def draw(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def visuals(self, x: torch.Tensor, out: dict) -> dict[str, torch.Tensor]:
        """Image batches ``[N, 3, H, W]`` (normalised) to show in TensorBoard."""
        return {}

    def extra_state(self) -> dict:
        """Weights besides the encoder's that the portable checkpoint keeps."""
        return {}
