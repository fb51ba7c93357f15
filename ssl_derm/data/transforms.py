"""Batched augmentation on the device with kornia (uint8 batch in, float out)."""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float in [0, 1] on the same device."""
    return batch.float().div_(255.0)


class Normalize(nn.Module):
    def __init__(self, mean, std) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def train_augment(size: int, rotate: bool = True, colour: bool = True) -> nn.Module:
    """Flips, random 90-degree-free rotation, colour jitter and random resized crop.

    ``rotate=False`` for the rotation pretext task, whose labels are rotations.
    """
    ops: list[nn.Module] = [
        K.RandomResizedCrop((size, size), scale=(0.6, 1.0), ratio=(0.8, 1.25)),
        K.RandomHorizontalFlip(),
        K.RandomVerticalFlip(),
    ]
    if rotate:
        ops.append(K.RandomRotation(degrees=180.0, p=0.5))
    if colour:
        ops.append(K.ColorJitter(0.2, 0.2, 0.15, 0.02, p=0.8))
    return K.AugmentationSequential(*ops)
