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


def train_augment(size: int, preserve_up: bool = False, colour: bool = True) -> nn.Module:
    """Random resized crop, flips, random rotation and colour jitter, batched on the device.

    ``preserve_up=True`` is for pretext tasks whose labels are orientations
    (rotation prediction): no vertical flip (a vertical flip is a 180 degree
    rotation of a horizontally flipped image, so angles 180 apart would become
    indistinguishable), no rotation, and square crops only (a crop of another
    aspect ratio resized to a square stretches the image along its axes, and the
    axis of that stretch turns with the rotation label: a shortcut).
    """
    ratio = (1.0, 1.0) if preserve_up else (0.8, 1.25)
    ops: list[nn.Module] = [
        K.RandomResizedCrop((size, size), scale=(0.6, 1.0), ratio=ratio),
        K.RandomHorizontalFlip(),
    ]
    if not preserve_up:
        ops += [K.RandomVerticalFlip(), K.RandomRotation(degrees=180.0, p=0.5)]
    if colour:
        # No hue jitter: hue carries diagnosis in dermoscopy (blue-white veil, vascular red), and
        # kornia's RGB->HSV round trip cost 50 of 89 ms per 32-image batch at 128 px on a CPU.
        ops.append(K.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.15, hue=0.0, p=0.8))
    return K.AugmentationSequential(*ops)
