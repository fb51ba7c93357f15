"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019), batched on the device.

Each mixes a batch with a permutation of itself and returns soft targets that
sum to one: ``lam * onehot(y) + (1 - lam) * onehot(y[perm])``, with ``lam`` from
Beta(alpha, alpha) (for CutMix, the share of the image the box leaves, after
clipping it to the image).  All random numbers come from an explicit
``torch.Generator``, so a resumed run mixes what the uninterrupted one did.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _beta(alpha: float, generator: torch.Generator) -> float:
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mix_batch(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    mixup: float = 0.0,
    cutmix: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixed images and soft targets ``[B, K]``. With both ``mixup`` and ``cutmix`` > 0,
    each batch gets one of them, chosen with equal odds; with neither, one-hot targets."""
    generator = generator or torch.Generator().manual_seed(0)
    target = F.one_hot(y, num_classes).float()
    methods = [m for m, a in (("mixup", mixup), ("cutmix", cutmix)) if a > 0]
    if not methods or x.shape[0] < 2:
        return x, target
    method = methods[int(torch.randint(len(methods), (1,), generator=generator))]
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    if method == "mixup":
        lam = _beta(mixup, generator)
        mixed = lam * x + (1 - lam) * x[perm]
    else:
        lam = _beta(cutmix, generator)
        h, w = x.shape[-2:]
        cut = math.sqrt(1 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = (int(v) for v in torch.randint(0, 1 << 30, (2,), generator=generator))
        cy, cx = cy % h, cx % w
        y1, y2 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x1, x2 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        mixed = x.clone()
        mixed[:, :, y1:y2, x1:x2] = x[perm, :, y1:y2, x1:x2]
        lam = 1 - (y2 - y1) * (x2 - x1) / (h * w)  # the share each image keeps, after clipping
    return mixed, lam * target + (1 - lam) * target[perm]
