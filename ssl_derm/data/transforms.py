"""Images on the device: the one path from a decoded uint8 batch to the network's input.

``uint8 [B, 3, H, W]`` -> float in [0, 1] -> (augmentation) -> normalised ->
``channels_last``.  Every command goes through ``ImagePipeline`` (fine-tuning,
evaluation, the kNN monitor, the pretext tasks' views, bench-speed), so the
chain is written once.

``Augment`` is a kornia augmentation split into ``draw`` (every random number,
from an explicit ``torch.Generator``) and ``apply`` (deterministic given them),
so a view can be replayed exactly; the recipes below are the ones ssl-derm's
tasks compose their views from.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float in [0, 1] on the same device (float input is returned as is)."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(255.0)
    return batch.float()


class Normalize(nn.Module):
    def __init__(self, mean, std) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Augment:
    """A kornia ``AugmentationSequential`` with kornia's draw/apply split exposed and
    its random numbers taken from a ``torch.Generator`` (kornia itself draws from the
    global generator, which DDP ranks and resumed runs do not share)."""

    def __init__(self, *ops: nn.Module) -> None:
        self.seq = K.AugmentationSequential(*ops)

    def __getitem__(self, i: int) -> nn.Module:
        return self.seq[i]

    def draw(self, x: torch.Tensor, generator: torch.Generator | None = None) -> list:
        if generator is None:
            return self.seq.forward_parameters(x.shape)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        # kornia samples its parameters on the CPU (this Augment is no nn.Module and stays
        # there); only the CPU generator is seeded and restored, CUDA streams are untouched.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self.seq.forward_parameters(x.shape)

    def apply(self, x: torch.Tensor, params: list) -> torch.Tensor:
        return self.seq(x, params=params)

    def apply_pair(self, x: torch.Tensor, mask: torch.Tensor, params: list) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` as ``apply`` does, and its ``[B, 1, H, W]`` mask through the same geometric
        transform (kornia: one set of parameters, nearest-neighbour for the mask, intensity
        ops such as colour jitter leave it alone). Returns the mask as float {0, 1}."""
        x, m = self.seq(x, mask.float(), params=params, data_keys=["input", "mask"])
        return x, (m > 0.5).to(x.dtype)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(x, self.draw(x, generator))


# No hue jitter in any recipe: hue carries diagnosis in dermoscopy (blue-white veil, vascular
# red), and kornia's RGB->HSV round trip cost 50 of 89 ms per 32-image batch at 128 px on a CPU.
def _colour(strength: float = 1.0) -> nn.Module:
    return K.ColorJitter(brightness=0.2 * strength, contrast=0.2 * strength, saturation=0.15 * strength, hue=0.0, p=0.8)


def train_augment(size: int, preserve_up: bool = False, colour: bool = True, fused: bool = False) -> Augment:
    """Random resized crop, flips, random rotation and colour jitter (fine-tuning, context restoration).
    ``fused``: the same recipe as one warp, one colour map (``fused.fused_train_augment``; the
    ``augmentation=fused`` setting).

    ``preserve_up=True`` is for tasks whose labels are orientations (rotation
    prediction): no vertical flip (a vertical flip is a 180 degree rotation of a
    horizontally flipped image, so angles 180 apart would become
    indistinguishable), no rotation, and square crops only (a crop of another
    aspect ratio resized to a square stretches the image along its axes, and the
    axis of that stretch turns with the rotation label: a shortcut).
    """
    if fused:
        from ssl_derm.data.fused import fused_train_augment

        return fused_train_augment(size, preserve_up, colour)
    ratio = (1.0, 1.0) if preserve_up else (0.8, 1.25)
    ops: list[nn.Module] = [
        K.RandomResizedCrop((size, size), scale=(0.6, 1.0), ratio=ratio),
        K.RandomHorizontalFlip(),
    ]
    if not preserve_up:
        ops += [K.RandomVerticalFlip(), K.RandomRotation(degrees=180.0, p=0.5)]
    if colour:
        ops.append(_colour())
    return Augment(*ops)


def two_view_augment(size: int, min_scale: float = 0.2, blur: float = 0.5, fused: bool = False) -> Augment:
    """One view of the two-view (contrastive, self-distillation) recipe, after SimCLR's,
    adapted for dermoscopy: crops of 20-100% of the image (SimCLR's 8% often holds no
    lesion), flips and rotations by any angle (a lesion has no "up"), a stronger
    brightness/contrast/saturation jitter but no hue jitter and no grayscale (colour
    is diagnostic), Gaussian blur with probability ``blur``. ``fused``: as ``train_augment``."""
    if fused:
        from ssl_derm.data.fused import fused_two_view_augment

        return fused_two_view_augment(size, min_scale, blur)
    kernel = max(3, (size // 10) | 1)
    ops: list[nn.Module] = [
        K.RandomResizedCrop((size, size), scale=(min_scale, 1.0), ratio=(0.75, 1.333)),
        K.RandomHorizontalFlip(),
        K.RandomVerticalFlip(),
        K.RandomRotation(degrees=180.0, p=1.0),
        _colour(2.0),
    ]
    if blur > 0:
        ops.append(K.RandomGaussianBlur((kernel, kernel), (0.1, 2.0), p=blur))
    return Augment(*ops)


class ImagePipeline(nn.Module):
    """uint8 (or float [0, 1]) batch on the device -> (augmented) -> normalised, channels_last.

    channels_last: 1.6x faster convolutions on CPU (depthwise) and tensor cores on GPU.
    """

    def __init__(self, normalization: dict, augment: Augment | None = None) -> None:
        super().__init__()
        self.norm = Normalize(normalization["mean"], normalization["std"])
        self.augment = augment

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x).contiguous(memory_format=torch.channels_last)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() * self.norm.std + self.norm.mean).clamp(0, 1)

    def forward(
        self, images: torch.Tensor, train: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        x = to_float(images)
        if train and self.augment is not None:
            x = self.augment(x, generator)
        return self.normalize(x)

    def pair(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        train: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` for an image batch and its ``[B, 1, H, W]`` lesion masks (uint8 or float
        {0, 1}): one draw of the augmentation moves both alike. Returns the normalised
        channels_last images and float {0, 1} masks."""
        x = to_float(images)
        m = masks.float()
        if train and self.augment is not None:
            x, m = self.augment.apply_pair(x, m, self.augment.draw(x, generator))
        return self.normalize(x), m
